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
the logits that chose greedy_i[k], so greedy_logits_i[0] == prefill_logits_i[-1]. By default every step recomputes
the whole sequence (no cache effects). Specs with greedy="cache" decode with transformers' KV cache instead, one
token per forward as generate() does, on a fresh copy of the model per prompt: dynamic NTK RoPE recomputes its
frequencies from the current length, and cached keys keep the rotation they were written with, so only the cached
loop is what a serving engine (and transformers' generate) computes.

When a greedy step is a near tie (top-2 margin < MIN_MARGIN) the next seed is tried, so fixtures never hinge on
float noise; the seed used is recorded in reference.json. A spec's "config_json" keys are merged into the saved
config.json (keys transformers' modeling ignores but checkpoints carry, e.g. BLOOM's seq_length).

Parameters are re-drawn after construction (N(0, 0.08) for matrices, 1 + N(0, 0.05) for norm weights, N(0, 0.05)
for biases) so that logits have a spread of a few units and greedy choices are not near ties.

Adding a model: add an entry to SPECS (architecture class, config keys). Configs are written in the installed
transformers' own layout (rope_parameters on transformers >= 5, rope_theta/rope_scaling before).

Usage:
  python3 tools/reference/make_fixtures.py --out tests/data/models --tokenizer tests/data/tokenizers/spbpe \
      [--only llama_mha mistral] [--seed 1234]
  python3 tools/reference/make_fixtures.py --list
Needs: torch, transformers, safetensors.
"""
import argparse
import copy
import json
import os
import shutil
import sys

# torch / transformers / safetensors are imported in main() so that --list and a syntax check run anywhere.
torch = None
transformers = None
save_file = None

PROMPT_LENGTHS = (1, 7, 33)
GREEDY_STEPS = 12
MIN_MARGIN = 2e-3  # smallest acceptable top-2 logit gap of a greedy step
SEED_TRIES = 8
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
    # --- the project's own fixtures (issue 5) ---
    # Qwen2: the Llama forward with q/k/v biases (o_proj without), GQA, RoPE θ = 1e6, untied head.
    "qwen2": dict(
        cls="Qwen2ForCausalLM",
        config=dict(model_type="qwen2", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
                    use_sliding_window=False, tie_word_embeddings=False, pad_token_id=None, **COMMON),
        rope=dict(rope_type="default", rope_theta=1000000.0),
    ),
    # Llama-3.1/3.2 style: rope_type llama3 (original context 64, so with head_dim 16 and θ = 5e5 one frequency
    # is kept, one interpolated in the smooth band and six divided by the factor), GQA 4/2, tied head.
    "llama3": dict(
        cls="LlamaForCausalLM",
        config=dict(model_type="llama", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, pad_token_id=None, **COMMON),
        rope=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                  original_max_position_embeddings=64),
    ),
    # Dynamic NTK RoPE past max_position_embeddings = 16 (prompts of 1, 7, 33 tokens + 12 generated), decoded
    # with the KV cache as generate() does (see the top of this file).
    "llama_dynamic": dict(
        cls="LlamaForCausalLM",
        config=dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, head_dim=16, max_position_embeddings=16,
                    rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=None, **COMMON),
        rope=dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0),
        greedy="cache",
    ),
    # Linear RoPE scaling, and Llama's optional attention / MLP biases.
    "llama_linear": dict(
        cls="LlamaForCausalLM",
        config=dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, head_dim=16, max_position_embeddings=256,
                    rms_norm_eps=1e-5, attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
                    pad_token_id=None, **COMMON),
        rope=dict(rope_type="linear", rope_theta=10000.0, factor=4.0),
    ),
    # OPT-350M style: post-LayerNorm (no final LayerNorm), word_embed_proj_dim 32 != hidden 64 (project_in/out).
    "opt_post_ln": dict(
        cls="OPTForCausalLM",
        config=dict(model_type="opt", hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=256, activation_function="relu", do_layer_norm_before=False,
                    enable_bias=True, word_embed_proj_dim=32, tie_word_embeddings=True, pad_token_id=0,
                    dropout=0.1, **COMMON),
    ),
    # OPT without biases, LayerNorms without weight/bias, erf GELU, untied head, 8 heads of 8.
    "opt_variant": dict(
        cls="OPTForCausalLM",
        config=dict(model_type="opt", hidden_size=64, ffn_dim=192, num_hidden_layers=2, num_attention_heads=8,
                    max_position_embeddings=256, activation_function="gelu", do_layer_norm_before=True,
                    enable_bias=False, layer_norm_elementwise_affine=False, word_embed_proj_dim=64,
                    tie_word_embeddings=False, pad_token_id=0, dropout=0.1, **COMMON),
    ),
    # BLOOM with 6 heads (not a power of two: ALiBi's interleaved extra slopes), residual taken after the
    # LayerNorms, and a seq_length in config.json (the engine's default context).
    "bloom_6h": dict(
        cls="BloomForCausalLM",
        config=dict(model_type="bloom", hidden_size=48, n_head=6, n_layer=2, layer_norm_epsilon=1e-5,
                    apply_residual_connection_post_layernorm=True, tie_word_embeddings=True, pad_token_id=None,
                    **COMMON),
        config_json=dict(seq_length=64),
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
    try:
        config._attn_implementation = "eager"
    except (AttributeError, ValueError) as e:
        print(f"note: cannot select eager attention on the config ({e}); using the default", file=sys.stderr)
    return config


def redraw_parameters(model, generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or "ln" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=generator))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=generator))
            # The checkpoint holds bfloat16: compute the reference from exactly those values.
            p.copy_(p.to(torch.bfloat16).float())


def greedy_recompute(model, prompt):
    """Every step runs the whole sequence again: no cache effects."""
    ids = prompt.clone()
    prefill = None
    tokens, rows = [], []
    with torch.no_grad():
        for _ in range(GREEDY_STEPS):
            logits = model(input_ids=ids[None, :]).logits[0].float()  # [len, V]
            if prefill is None:
                prefill = logits.clone()
            row = logits[-1]
            tok = int(torch.argmax(row))
            tokens.append(tok)
            rows.append(row.clone())
            ids = torch.cat([ids, torch.tensor([tok], dtype=ids.dtype)])
    return prefill, torch.tensor(tokens, dtype=torch.int32), torch.stack(rows)


def greedy_cached(model, prompt):
    """Prefill once, then one token per forward through the KV cache (what generate() does), on a fresh copy of the
    model so that state kept by modules between calls (dynamic RoPE's cached length) starts from scratch."""
    model = copy.deepcopy(model)
    tokens, rows = [], []
    with torch.no_grad():
        out = model(input_ids=prompt[None, :], use_cache=True)
        prefill = out.logits[0].float().clone()  # [len, V]
        past = out.past_key_values
        row = prefill[-1]
        for step in range(GREEDY_STEPS):
            tok = int(torch.argmax(row))
            tokens.append(tok)
            rows.append(row.clone())
            if step + 1 == GREEDY_STEPS:
                break
            out = model(input_ids=torch.tensor([[tok]], dtype=prompt.dtype), past_key_values=past, use_cache=True)
            past = out.past_key_values
            row = out.logits[0, -1].float()
    return prefill, torch.tensor(tokens, dtype=torch.int32), torch.stack(rows)


def top2_margin(rows):
    top = torch.topk(rows, 2, dim=-1).values
    return [round(float(m), 5) for m in (top[:, 0] - top[:, 1])]


def make_model(spec, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = make_config(spec)
    model = getattr(transformers, spec["cls"])(config).float().eval()
    redraw_parameters(model, generator)
    if getattr(config, "tie_word_embeddings", False):
        assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    return config, model, generator


def compute_reference(spec, config, model, generator):
    greedy_fn = greedy_cached if spec.get("greedy", "recompute") == "cache" else greedy_recompute
    tensors, prompts, greedy, margins = {}, [], [], []
    for i, length in enumerate(PROMPT_LENGTHS):
        # Ordinary tokens only (ids 0..2 are <unk>, <s>, </s>).
        prompt = torch.randint(3, config.vocab_size, (length,), generator=generator, dtype=torch.int64)
        prefill, tokens, rows = greedy_fn(model, prompt)
        assert torch.equal(rows[0], prefill[-1])
        tensors[f"prompt_{i}"] = prompt.to(torch.int32).contiguous()
        tensors[f"prefill_logits_{i}"] = prefill.contiguous()
        tensors[f"greedy_{i}"] = tokens.contiguous()
        tensors[f"greedy_logits_{i}"] = rows.contiguous()
        prompts.append(prompt.tolist())
        greedy.append(tokens.tolist())
        margins.append(top2_margin(rows))
    return tensors, prompts, greedy, margins


def save_checkpoint(model, out):
    # A bfloat16 copy (the float32 model keeps its float32 buffers for the reference).
    saved = copy.deepcopy(model).to(torch.bfloat16)
    try:
        saved.save_pretrained(out, safe_serialization=True)
    except TypeError:  # transformers versions that always write safetensors and dropped the flag
        saved.save_pretrained(out)
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        raise RuntimeError(f"{out}: save_pretrained wrote no model.safetensors: {sorted(os.listdir(out))}")


def reload_check(name, spec, out, tensors):
    """The saved folder, loaded back in float32, must give the reference logits (catches tensors or config keys
    that did not make it into the checkpoint)."""
    cls = getattr(transformers, spec["cls"])
    try:
        loaded = cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        loaded = cls.from_pretrained(out, torch_dtype=torch.float32, attn_implementation="eager")
    loaded.eval()
    i = len(PROMPT_LENGTHS) - 1
    with torch.no_grad():
        logits = loaded(input_ids=tensors[f"prompt_{i}"].long()[None, :]).logits[0].float()
    ref = tensors[f"prefill_logits_{i}"]
    rel = float((logits - ref).abs().max() / ref.abs().max())
    print(f"{name}: reloaded checkpoint, prompt {i} prefill rel. error {rel:.3g}", file=sys.stderr)
    if rel > 1e-5:
        raise RuntimeError(f"{name}: the saved checkpoint does not reproduce the reference ({rel:.3g}); "
                           f"delete {out}")


def build(name, spec, out_root, tokenizer_dir, seed):
    out = os.path.join(out_root, name)
    if os.path.isdir(out):
        shutil.rmtree(out)  # never mix files of two runs
    os.makedirs(out)
    smallest, tries = -1.0, 0
    for tries in range(1, SEED_TRIES + 1):
        config, model, generator = make_model(spec, seed)
        tensors, prompts, greedy, margins = compute_reference(spec, config, model, generator)
        smallest = min(min(m) for m in margins)
        if smallest >= MIN_MARGIN:
            break
        print(f"{name}: seed {seed}: a greedy step is a near tie ({smallest:.2g}); trying seed {seed + 1}",
              file=sys.stderr)
        seed += 1
    if smallest < MIN_MARGIN:
        print(f"{name}: warning: still a near tie after {tries} seeds", file=sys.stderr)

    save_checkpoint(model, out)
    extra = spec.get("config_json")
    if extra:
        path = os.path.join(out, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg.update(extra)
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, f), os.path.join(out, f))

    save_file(tensors, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"prompts": prompts, "greedy": greedy, "top2_margin": margins,
                   "greedy_mode": spec.get("greedy", "recompute"),
                   "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
                   "seed": seed}, f)
    reload_check(name, spec, out, tensors)
    print(f"{name}: {spec['cls']}, {sum(p.numel() for p in model.parameters())} parameters, seed {seed}, "
          f"smallest top-2 margin {smallest:.4f}", file=sys.stderr)


def main():
    global torch, transformers, save_file
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="folder that receives one sub-folder per model")
    ap.add_argument("--tokenizer", help="folder with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--only", nargs="*", default=None, help="model names to build (default: all)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--list", action="store_true", help="print the known model names and exit")
    args = ap.parse_args()
    if args.list:
        for n, spec in SPECS.items():
            print(n, spec["cls"])
        return
    if not args.out or not args.tokenizer:
        ap.error("--out and --tokenizer are required")
    names = args.only or list(SPECS)
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {list(SPECS)}")
    import torch as _torch
    import transformers as _transformers
    from safetensors.torch import save_file as _save_file
    torch, transformers, save_file = _torch, _transformers, _save_file
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    failed = []
    for n in names:
        try:
            build(n, SPECS[n], args.out, args.tokenizer, args.seed)
        except Exception as e:  # report and go on: one bad spec must not cost the others
            import traceback
            traceback.print_exc()
            failed.append(n)
            print(f"{n}: FAILED: {e}", file=sys.stderr)
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main()
