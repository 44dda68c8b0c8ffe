#!/usr/bin/env python3
"""Builds tiny reference models for zeroinfer's tests with Hugging Face transformers (run where torch exists).

For every model in SPECS it writes OUT/<name>/:
  config.json, generation_config.json, model.safetensors   (save_pretrained of a bfloat16 copy)
  tokenizer.json, tokenizer_config.json                     (copied from --tokenizer)
  reference.safetensors  prompt_i int32 [L], prefill_logits_i float32 [L, V],
                         greedy_i int32 [12], greedy_logits_i float32 [12, V]   for i = 0, 1, 2 (L = 1, 7, 33)
  reference.json         {"prompts": [...], "greedy": [...], "top2_margin": [...], "versions": {...}}

The recipe (tests/data/models/README in the shared fixtures; follow it exactly, the tests rely on it):
  * create the model in float32 with a fixed seed (a constant, never hash(name): that is randomised per process);
  * round its *parameters* to bfloat16 in place: p.copy_(p.to(torch.bfloat16).float());
  * save a bfloat16 copy with save_pretrained;
  * compute the reference with the float32 model. Never call model.to(torch.bfloat16) on the model you compute
    with: that also rounds buffers such as RoPE's inv_freq, and the reference then differs from a correct
    implementation by ~2e-3 at 33 tokens.
Greedy decoding is an explicit argmax loop (no generate(), so EOS can never end it early); greedy_logits_i[k] are
the logits that chose greedy_i[k], so greedy_logits_i[0] == prefill_logits_i[-1].

Parameters are re-drawn after construction (N(0, 0.08) for matrices, 1 + N(0, 0.05) for norm weights, N(0, 0.05)
for biases) so that logits have a spread of a few units and greedy choices are not near ties.

Adding a model: add an entry to SPECS (architecture class, config keys). Configs are written in the installed
transformers' own layout (rope_parameters on transformers >= 5, rope_theta/rope_scaling before).

Usage:
  python3 tools/reference/make_fixtures.py --out tests/data/models --tokenizer tests/data/tokenizers/spbpe \
      [--only llama_mha mistral] [--seed 1234]
Needs: torch, transformers, safetensors.
"""
import argparse
import copy
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file

PROMPT_LENGTHS = (1, 7, 33)
GREEDY_STEPS = 12
VOCAB = 2048  # the spbpe tokenizer's size

COMMON = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2)

# name -> architecture class, config.json keys (rope given as "rope": {...} and written in the installed layout).
SPECS = {
    "llama_mha": dict(
        cls="LlamaForCausalLM",
        config=dict(model_type="llama", hidden_size=64, intermediate_size=176, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=4, head_dim=16, max_position_embeddings=256,
                    rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=None, **COMMON),
        rope=dict(rope_type="default", rope_theta=10000.0),
    ),
    "mistral": dict(
        cls="MistralForCausalLM",
        config=dict(model_type="mistral", hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                    num_attention_heads=8, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                    rms_norm_eps=1e-6, sliding_window=None, tie_word_embeddings=False, pad_token_id=None,
                    **COMMON),
        rope=dict(rope_type="default", rope_theta=10000.0),
    ),
    "opt": dict(
        cls="OPTForCausalLM",
        config=dict(model_type="opt", hidden_size=64, ffn_dim=256, num_hidden_layers=3, num_attention_heads=4,
                    max_position_embeddings=256, activation_function="relu", do_layer_norm_before=True,
                    enable_bias=True, word_embed_proj_dim=64, tie_word_embeddings=True, pad_token_id=0,
                    dropout=0.1, **COMMON),
    ),
    "bloom": dict(
        cls="BloomForCausalLM",
        config=dict(model_type="bloom", hidden_size=64, n_head=4, n_layer=3, layer_norm_epsilon=1e-5,
                    tie_word_embeddings=True, pad_token_id=None, **COMMON),
    ),
}


def transformers_major():
    return int(transformers.__version__.split(".")[0])


def make_config(spec):
    keys = dict(spec["config"])
    rope = spec.get("rope")
    if rope is not None:
        if transformers_major() >= 5:
            keys["rope_parameters"] = dict(rope)
        else:
            keys["rope_theta"] = rope["rope_theta"]
            scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
            keys["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    model_type = keys.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **keys)
    config.architectures = [spec["cls"]]
    # Eager attention: the plain softmax(QKᵀ)V reference, no fused-kernel differences.
    config._attn_implementation = "eager"
    return config


@torch.no_grad()
def redraw_parameters(model, generator):
    for name, p in model.named_parameters():
        if p.dim() == 1 and ("norm" in name or "ln" in name) and name.endswith("weight"):
            p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=generator))
        elif p.dim() == 1:
            p.copy_(0.05 * torch.randn(p.shape, generator=generator))
        else:
            p.copy_(0.08 * torch.randn(p.shape, generator=generator))
        # The checkpoint holds bfloat16: compute the reference from exactly those values.
        p.copy_(p.to(torch.bfloat16).float())


@torch.no_grad()
def greedy_reference(model, prompt):
    ids = prompt.clone()
    prefill = None
    tokens, rows = [], []
    for _ in range(GREEDY_STEPS):
        logits = model(input_ids=ids[None, :]).logits[0].float()  # [len, V], full recompute: no cache effects
        if prefill is None:
            prefill = logits.clone()
        row = logits[-1]
        tok = int(torch.argmax(row))
        tokens.append(tok)
        rows.append(row.clone())
        ids = torch.cat([ids, torch.tensor([tok], dtype=ids.dtype)])
    return prefill, torch.tensor(tokens, dtype=torch.int32), torch.stack(rows)


def top2_margin(rows):
    top = torch.topk(rows, 2, dim=-1).values
    return [round(float(m), 5) for m in (top[:, 0] - top[:, 1])]


def build(name, spec, out_root, tokenizer_dir, seed):
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = make_config(spec)
    model = getattr(transformers, spec["cls"])(config).float().eval()
    redraw_parameters(model, generator)
    if getattr(config, "tie_word_embeddings", False):
        assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()

    # The checkpoint: a bfloat16 copy (the float32 model keeps its float32 buffers for the reference).
    saved = copy.deepcopy(model).to(torch.bfloat16)
    saved.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, f), os.path.join(out, f))

    tensors, prompts, greedy, margins = {}, [], [], []
    for i, length in enumerate(PROMPT_LENGTHS):
        # Ordinary tokens only (ids 0..2 are <unk>, <s>, </s>).
        prompt = torch.randint(3, config.vocab_size, (length,), generator=generator, dtype=torch.int64)
        prefill, tokens, rows = greedy_reference(model, prompt)
        assert torch.equal(rows[0], prefill[-1])
        tensors[f"prompt_{i}"] = prompt.to(torch.int32).contiguous()
        tensors[f"prefill_logits_{i}"] = prefill.contiguous()
        tensors[f"greedy_{i}"] = tokens.contiguous()
        tensors[f"greedy_logits_{i}"] = rows.contiguous()
        prompts.append(prompt.tolist())
        greedy.append(tokens.tolist())
        margins.append(top2_margin(rows))
    save_file(tensors, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"prompts": prompts, "greedy": greedy, "top2_margin": margins,
                   "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
                   "seed": seed}, f)
    smallest = min(min(m) for m in margins)
    print(f"{name}: {spec['cls']}, {sum(p.numel() for p in model.parameters())} parameters, "
          f"smallest top-2 margin {smallest:.4f}", file=sys.stderr)
    if smallest < 1e-3:
        print(f"{name}: warning: a greedy step is a near tie; pick another --seed", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder that receives one sub-folder per model")
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--only", nargs="*", default=None, help="model names to build (default: all)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    names = args.only or list(SPECS)
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {list(SPECS)}")
    for n in names:
        build(n, SPECS[n], args.out, args.tokenizer, args.seed)


if __name__ == "__main__":
    main()
