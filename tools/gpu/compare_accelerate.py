#!/usr/bin/env python3
"""On the GPU machine, in one call: transformers + accelerate CPU offload against `zeroinfer bench`, on the same
Llama-2-7B-shape fp16 model (random weights from config.json), the same batch and lengths, and 2 GiB of resident
weights in both (max_memory={0: "2GiB"} / --gpu-weights-budget 2GiB). Prints both and their ratio, and one JSON
line per batch size for docs/BENCHMARKS.md.

  python3 tools/gpu/compare_accelerate.py --zeroinfer /tmp/gpu/bin/zeroinfer \
      --model config/examples/models/llama-2-7b --batches 1,16 --prompt-len 512 --gen-len 8
"""
import argparse
import json
import subprocess
import sys
import time

import torch
from accelerate import dispatch_model, infer_auto_device_map
from transformers import AutoConfig, AutoModelForCausalLM


def build_model(path):
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float16)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.0346, 0.0346)  # std 0.02, as the dummy weights zeroinfer makes
        # Buffers were left uninitialised by to_empty: rebuild the rotary embedding as it is built normally.
        rope = model.model.rotary_emb
        model.model.rotary_emb = type(rope)(config=config)
    model.eval()
    return model


def time_generate(model, ids, new_tokens):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=0)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zeroinfer", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--gen-len", type=int, default=8)
    ap.add_argument("--budget", default="2GiB")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    t0 = time.perf_counter()
    model = build_model(args.model)
    device_map = infer_auto_device_map(model, max_memory={0: args.budget, "cpu": "200GiB"},
                                       no_split_module_classes=["LlamaDecoderLayer"], dtype=torch.float16)
    model = dispatch_model(model, device_map=device_map)
    on_gpu = sum(1 for v in device_map.values() if v == 0)
    print(f"accelerate: model built and dispatched in {time.perf_counter() - t0:.1f} s; "
          f"{on_gpu} of {len(device_map)} modules on the GPU", flush=True)

    rows = []
    for b in batches:
        ids = torch.randint(0, model.config.vocab_size, (b, args.prompt_len), device="cuda:0")
        time_generate(model, ids[:, :16], 2)  # warm-up (CUDA context, kernels)
        t_prefill = time_generate(model, ids, 1)
        t_total = time_generate(model, ids, args.gen_len)
        acc_step = (t_total - t_prefill) / max(1, args.gen_len - 1)
        acc_tps = b * args.gen_len / t_total
        print(f"accelerate batch {b}: prefill {t_prefill:.2f} s, decode step {acc_step:.3f} s, "
              f"{acc_tps:.2f} tokens/s", flush=True)

        cmd = [args.zeroinfer, "bench", "--model", args.model, "--dummy", "--cpu-offload", "--gpu-weights-budget",
               args.budget, "--batch-size", str(b), "--prompt-len", str(args.prompt_len), "--gen-len",
               str(args.gen_len), "--loops", "2", "--json"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr[-2000:], file=sys.stderr)
            sys.exit(1)
        z = json.loads(r.stdout.strip().splitlines()[-1])
        zi_tps = z["e2e_tokens_per_second"]
        row = {"batch": b, "prompt_len": args.prompt_len, "gen_len": args.gen_len, "budget": args.budget,
               "accelerate_prefill_s": t_prefill, "accelerate_decode_step_s": acc_step,
               "accelerate_tokens_per_s": acc_tps, "zeroinfer_prefill_s": z["prefill_seconds"],
               "zeroinfer_decode_step_s": z["decode_step_seconds"], "zeroinfer_tokens_per_s": zi_tps,
               "ratio_tokens_per_s": zi_tps / acc_tps, "ratio_decode_step": acc_step / z["decode_step_seconds"]}
        rows.append(row)
        print(f"zeroinfer  batch {b}: prefill {z['prefill_seconds']:.2f} s, decode step "
              f"{z['decode_step_seconds']:.3f} s, {zi_tps:.2f} tokens/s → {row['ratio_tokens_per_s']:.2f}× "
              f"accelerate's tokens/s ({row['ratio_decode_step']:.2f}× per decode step)", flush=True)
        print("JSON " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
