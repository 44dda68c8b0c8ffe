#!/usr/bin/env python3
"""Writes a Hugging Face folder with random fp16 weights for a config.json (e.g. the Llama-2-7B shape), sharded
like the real checkpoints, for start-up benchmarks that need real files (no model hub is reachable).

  python3 tools/gpu/make_model.py --config config/examples/models/llama-2-7b --out /tmp/llama-2-7b
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shard-gib", type=float, default=4.0)
    args = ap.parse_args()
    cfg = json.load(open(os.path.join(args.config, "config.json")))
    H, F, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    D = H // nh
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                       p + "self_attn.q_proj.weight": (nh * D, H), p + "self_attn.k_proj.weight": (nkv * D, H),
                       p + "self_attn.v_proj.weight": (nkv * D, H), p + "self_attn.o_proj.weight": (H, nh * D),
                       p + "mlp.gate_proj.weight": (F, H), p + "mlp.up_proj.weight": (F, H),
                       p + "mlp.down_proj.weight": (H, F)})
    os.makedirs(args.out, exist_ok=True)
    shutil.copy(os.path.join(args.config, "config.json"), args.out)
    g = torch.Generator().manual_seed(0)
    shards, cur, cur_bytes, limit = [], {}, 0, args.shard_gib * (1 << 30)
    for name, shape in shapes.items():
        t = torch.ones(shape, dtype=torch.float16) if name.endswith("norm.weight") else \
            (torch.rand(shape, generator=g, dtype=torch.float32) * 0.0692 - 0.0346).half()
        cur[name] = t
        cur_bytes += t.numel() * 2
        if cur_bytes >= limit:
            shards.append(cur)
            cur, cur_bytes = {}, 0
    if cur:
        shards.append(cur)
    index = {"metadata": {"total_size": sum(t.numel() * 2 for s in shards for t in s.values())}, "weight_map": {}}
    for k, s in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(s, os.path.join(args.out, fname), metadata={"format": "pt"})
        for name in s:
            index["weight_map"][name] = fname
    json.dump(index, open(os.path.join(args.out, "model.safetensors.index.json"), "w"), indent=1)
    print(f"wrote {args.out}: {len(shapes)} tensors, {index['metadata']['total_size'] / 2**30:.2f} GiB in "
          f"{len(shards)} shards", flush=True)


if __name__ == "__main__":
    main()
