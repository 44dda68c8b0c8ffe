#!/usr/bin/env python3
"""Trains zeroinfer's bundled demo model: a small Llama on the King James Bible.

Run on a GPU machine (PyTorch, transformers >= 5, tokenizers); see tools/demo_model/README.md.

  python3 train.py --corpus corpus.txt --out OUT/kjv-llama

The corpus comes from extract_corpus.sh: one verse a line, a blank line between chapters. Each chapter is one
document. The last 5% of the text (by characters, cut at a chapter boundary) is held out; the tokenizer, the unigram
baseline and the model see only the first 95%.

Writes into --out exactly these files (no others, so that they all come back from the GPU machine):
  config.json, model.safetensors (bfloat16), generation_config.json   -- LlamaForCausalLM.save_pretrained
  tokenizer.json, tokenizer_config.json                                -- byte-level BPE with a BOS template
  demo_reference.json  -- greedy reference continuations, losses, training facts and sample text

Reference numbers are computed the way a correct runtime sees the shipped folder: transformers loads
model.safetensors (bf16) with dtype=float32, so the weights are exactly the bf16 values and the RoPE buffers are
computed in float32; prompts are encoded with the folder's tokenizer (add_special_tokens=True, so BOS is prepended).
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

BOS = "<|endoftext|>"  # also EOS: it separates chapters in the training stream
PROMPTS = ["In the beginning", "And the LORD said unto Moses", "Blessed are the"]
REFERENCE_NEW_TOKENS = 24
MODEL_FILES = ["config.json", "model.safetensors", "generation_config.json"]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Corpus and tokenizer
# ----------------------------------------------------------------------------------------------------------------

def read_chapters(path):
    """Returns the chapters as strings 'verse\\nverse\\n...verse\\n' (each verse line keeps its newline)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    chapters = [c.strip("\n") + "\n" for c in text.split("\n\n") if c.strip()]
    if len(chapters) < 20:
        sys.exit(f"train.py: {path}: expected chapters separated by blank lines, found {len(chapters)}")
    return chapters


def split_chapters(chapters, heldout_fraction):
    """First chapters up to (1 - heldout_fraction) of the characters train; the tail is held out."""
    total = sum(len(c) for c in chapters)
    acc = 0
    for i, c in enumerate(chapters):
        if acc >= (1.0 - heldout_fraction) * total:
            return chapters[:i], chapters[i:]
        acc += len(c)
    sys.exit("train.py: held-out split is empty")


def train_tokenizer(train_chapters, vocab_size):
    """GPT-2 style byte-level BPE (ByteLevel pre-tokenizer with the GPT-2 regex, ByteLevel decoder), trained on the
    training split only. <|endoftext|> is id 0 and the post-processor prepends it to every encoded text."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train_chapters, trainer=trainer, length=len(train_chapters))
    bos_id = tok.token_to_id(BOS)
    assert bos_id == 0, bos_id
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
    )
    return tok


def save_tokenizer(tok, out_dir, max_len):
    """Saves tokenizer.json + tokenizer_config.json through transformers so that AutoTokenizer reads them back as
    written. add_bos_token is stated explicitly: transformers 5 then rebuilds the same BOS template on load."""
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=max_len,
        clean_up_tokenization_spaces=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        hf_tok.save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(tmp, name), os.path.join(out_dir, name))
        log(f"tokenizer save_pretrained wrote {sorted(os.listdir(tmp))}; kept {TOKENIZER_FILES}")


def encode_stream(tok, chapters):
    """Concatenates the chapters' encodings: [BOS, chapter 1 ..., BOS, chapter 2 ...] as one int64 tensor."""
    ids = []
    for enc in tok.encode_batch(chapters):
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


def check_tokenizer_roundtrip(out_dir, chapters):
    """The shipped tokenizer files, read by transformers and by tokenizers alone, must encode identically and
    decode losslessly; returns the raw tokenizers.Tokenizer read from tokenizer.json."""
    raw = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(out_dir)
    for text in PROMPTS + chapters[:3] + chapters[-2:]:
        a = raw.encode(text).ids
        b = hf(text)["input_ids"]
        if a != b:
            sys.exit(f"train.py: tokenizer mismatch on {text[:40]!r}: tokenizers {a[:12]} vs transformers {b[:12]}")
        if a[0] != 0:
            sys.exit(f"train.py: BOS was not prepended to {text[:40]!r}: {a[:8]}")
        back = hf.decode(b, skip_special_tokens=True)
        if back != text:
            sys.exit(f"train.py: decode(encode(x)) != x for {text[:40]!r}: {back[:60]!r}")
    log(f"tokenizer check ok: {type(hf).__name__}, vocab {raw.get_vocab_size()}, BOS id 0 prepended")
    return raw


# ----------------------------------------------------------------------------------------------------------------
# Model, evaluation
# ----------------------------------------------------------------------------------------------------------------

def make_config(args, vocab_size):
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=args.context,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
        use_cache=True,
    )


def add_dropout_hooks(model, p):
    """Training-only dropout on the embeddings and on each attention / MLP output before the residual add.
    Llama has no hidden dropout; hooks keep the architecture (and the saved config) stock. Returns the handles."""
    def hook(module, inputs, output):
        if not module.training or p == 0.0:
            return None
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True),) + tuple(output[1:])
        return F.dropout(output, p, True)

    handles = [model.model.embed_tokens.register_forward_hook(hook)]
    for layer in model.model.layers:
        handles.append(layer.self_attn.register_forward_hook(hook))
        handles.append(layer.mlp.register_forward_hook(hook))
    return handles


def eval_blocks(stream, context):
    """Cuts a token stream into consecutive blocks: inputs [n, context], targets [n, context] (next tokens, -100 as
    padding in the last block), so that every token but the first is a target exactly once."""
    n_targets = stream.numel() - 1
    n_blocks = math.ceil(n_targets / context)
    inputs = torch.zeros(n_blocks, context, dtype=torch.long)
    targets = torch.full((n_blocks, context), -100, dtype=torch.long)
    for b in range(n_blocks):
        s = b * context
        e = min(s + context, n_targets)
        inputs[b, : e - s] = stream[s:e]
        targets[b, : e - s] = stream[s + 1 : e + 1]
    return inputs, targets


@torch.no_grad()
def mean_loss(model, blocks, device, autocast, batch=64):
    """Mean next-token cross-entropy (nats/token) over all non-padding targets."""
    inputs, targets = blocks
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, inputs.shape[0], batch):
        x = inputs[i : i + batch].to(device)
        y = targets[i : i + batch].to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=x, use_cache=False).logits
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum").item()
        count += (y != -100).sum().item()
    model.train(was_training)
    return total / count


def unigram_loss(train_stream, heldout_targets, vocab_size):
    """Cross-entropy of held-out targets under training-split token frequencies (add-one smoothing)."""
    counts = torch.bincount(train_stream, minlength=vocab_size).double() + 1.0
    logp = torch.log(counts / counts.sum())
    t = heldout_targets[heldout_targets != -100]
    return float(-logp[t].mean())


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------

def train(args, model, train_stream, heldout_blocks, device):
    """AdamW, bf16 autocast, warmup-stable-decay schedule: linear warm-up, constant LR until the held-out loss
    (checked every --eval-every steps) stops improving for --patience checks, --max-steps is reached or 70% of
    --time-budget is spent; then the weights and optimizer state of the best check are restored and the LR decays
    linearly to 0 (over a quarter of the steps so far, as far as the time budget allows). The weights of the
    check with the lowest held-out loss are kept. The KJV is small (~1M tokens), so overfitting, not compute,
    decides when to stop. Returns a dict of training facts."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=(device.type == "cuda"),
    )
    hooks = add_dropout_hooks(model, args.dropout)

    stream = train_stream.to(device)
    n = stream.numel()
    bos_pos = (stream == 0).nonzero().flatten()
    win = args.context + 1
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    offsets = torch.arange(win, device=device)
    use_autocast = device.type == "cuda"

    def clone(sd):
        if isinstance(sd, torch.Tensor):
            return sd.detach().clone()
        if isinstance(sd, dict):
            return {k: clone(v) for k, v in sd.items()}
        if isinstance(sd, list):
            return [clone(v) for v in sd]
        return sd

    best = {"loss": float("inf"), "step": -1, "model": None, "opt": None}
    curve = []
    ema = None
    phase, decay_start, decay_len, stable_steps, restored_step = "stable", None, None, None, None
    no_improve = 0
    t0 = time.time()
    step = 0
    while True:
        if step < args.warmup:
            factor = (step + 1) / args.warmup
        elif phase == "stable":
            factor = 1.0
        else:
            factor = max(0.0, 1.0 - (step - decay_start) / decay_len)
        for g in opt.param_groups:
            g["lr"] = args.lr * factor

        # Random windows; a quarter start at a chapter's BOS, as prompts at inference do.
        starts = torch.randint(0, n - win, (args.batch,), device=device, generator=gen)
        snap = torch.rand(args.batch, device=device, generator=gen) < 0.25
        prev_bos = bos_pos[(torch.searchsorted(bos_pos, starts, right=True) - 1).clamp(min=0)]
        starts = torch.where(snap & (prev_bos <= starts), prev_bos, starts)
        chunk = stream[starts[:, None] + offsets]
        x, y = chunk[:, :-1], chunk[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
            logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1

        last = phase == "decay" and step >= decay_start + decay_len
        if step % 10 == 0 or step % args.eval_every == 0 or last:
            v = loss.item()
            ema = v if ema is None else 0.8 * ema + 0.2 * v
        if step % args.eval_every != 0 and not last:
            continue
        held = mean_loss(model, heldout_blocks, device, autocast=use_autocast)
        elapsed = time.time() - t0
        curve.append({"step": step, "phase": phase, "lr": round(args.lr * factor, 6),
                      "train_loss_ema_dropout": round(ema, 4), "heldout_loss": round(held, 4)})
        mark = ""
        if held < best["loss"]:
            best = {"loss": held, "step": step, "model": clone(model.state_dict()), "opt": clone(opt.state_dict())}
            no_improve, mark = 0, " *"
        else:
            no_improve += 1
        log(f"step {step} [{phase}] epoch {step * args.batch * args.context / n:.1f} lr {args.lr * factor:.2e} "
            f"train(ema, dropout) {ema:.4f} heldout {held:.4f}{mark} ({elapsed:.0f}s)")
        if last:
            break
        if phase == "stable" and (no_improve >= args.patience or step >= args.max_steps
                                  or elapsed > 0.7 * args.time_budget):
            rate = step / elapsed
            stable_steps, restored_step = step, best["step"]
            model.load_state_dict(best["model"])
            opt.load_state_dict(best["opt"])
            decay_len = max(args.eval_every, int(0.25 * best["step"]))
            decay_len = max(args.eval_every, min(decay_len, int(rate * (args.time_budget - elapsed) * 0.9)))
            decay_start = step
            phase, no_improve = "decay", 0
            log(f"decay: restored the weights of step {best['step']}; LR to 0 over {decay_len} steps "
                f"({rate:.1f} steps/s)")
    for h in hooks:
        h.remove()
    model.load_state_dict(best["model"])
    model.eval()
    # Updates on the path to the kept weights (the steps discarded by the restore are not counted).
    eff = best["step"] if decay_start is None or best["step"] <= decay_start else \
        restored_step + (best["step"] - decay_start)
    return {
        "optimizer_steps": step,
        "stable_phase_steps": stable_steps,
        "decay_phase_steps": decay_len,
        "restored_step_before_decay": restored_step,
        "effective_steps_of_kept_weights": eff,
        "selected_step": best["step"],
        "selected_heldout_loss_bf16_autocast": round(best["loss"], 4),
        "train_seconds": round(time.time() - t0, 1),
        "tokens_seen": step * args.batch * args.context,
        "curve": curve,
    }


def save_model(model, out_dir):
    """Rounds the float32 parameters to bfloat16 in place (buffers untouched), then writes a bfloat16 copy."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=0)
    bf16 = LlamaForCausalLM(model.config)
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    bf16.config.dtype = torch.bfloat16
    bf16.generation_config = model.generation_config
    with tempfile.TemporaryDirectory() as tmp:
        bf16.save_pretrained(tmp)
        for name in MODEL_FILES:
            shutil.copy(os.path.join(tmp, name), os.path.join(out_dir, name))
        log(f"model save_pretrained wrote {sorted(os.listdir(tmp))}; kept {MODEL_FILES}")


# ----------------------------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def greedy_references(out_dir, model):
    """Greedy continuations of PROMPTS. Prompt ids come from tokenizer.json (what zeroinfer reads); transformers'
    AutoTokenizer must give the same ids (checked and recorded, not fatal here: training is already paid for)."""
    raw = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    hf_tok = AutoTokenizer.from_pretrained(out_dir)
    cases = []
    for prompt in PROMPTS:
        ids = raw.encode(prompt, add_special_tokens=True).ids
        hf_ids = hf_tok(prompt, add_special_tokens=True)["input_ids"]
        if hf_ids != ids:
            log(f"WARNING: AutoTokenizer ({type(hf_tok).__name__}) encodes {prompt!r} as {hf_ids}, "
                f"tokenizer.json as {ids}")
        x = torch.tensor([ids])
        out = model.generate(
            input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=REFERENCE_NEW_TOKENS,
            do_sample=False, eos_token_id=0, pad_token_id=0,
            output_logits=True, return_dict_in_generate=True,
        )
        new = out.sequences[0, len(ids):].tolist()
        finish = "length"
        if new and new[-1] == 0 and len(new) <= REFERENCE_NEW_TOKENS:
            new, finish = new[:-1], "eos"  # as zeroinfer: the EOS that ends generation is not returned
        margins = []
        for step_logits in out.logits:
            top2 = torch.topk(step_logits[0].float(), 2).values
            margins.append(round(float(top2[0] - top2[1]), 5))
        # The same tokens by a plain argmax loop without the KV cache: a second witness for the reference.
        seq = list(ids)
        for _ in range(len(new)):
            logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1]
            seq.append(int(logits.argmax()))
        if seq[len(ids):] != new:
            log(f"WARNING: generate() and the argmax loop disagree for {prompt!r}: {new} vs {seq[len(ids):]}")
        cases.append({
            "prompt": prompt,
            "prompt_ids": ids,
            "prompt_tokens": raw.encode(prompt, add_special_tokens=True).tokens,
            "greedy_ids": new,
            "finish_reason": finish,
            "text": raw.decode(new, skip_special_tokens=False),
            "top2_logit_margin": margins,
            "transformers_tokenizer_agrees": hf_ids == ids,
            "argmax_loop_agrees": seq[len(ids):] == new,
        })
        log(f"reference {prompt!r} {ids} -> {new} {cases[-1]['text']!r} (min top-2 margin {min(margins):.4f})")
    return cases


@torch.no_grad()
def samples(out_dir, model):
    """Longer continuations for a human to judge legibility: greedy and sampled (temperature 0.8, top-k 40)."""
    hf_tok = AutoTokenizer.from_pretrained(out_dir)
    res = []
    for i, prompt in enumerate(PROMPTS):
        x = torch.tensor([hf_tok(prompt)["input_ids"]])
        g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=80, do_sample=False,
                           eos_token_id=0, pad_token_id=0)
        torch.manual_seed(i)
        s = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=80, do_sample=True,
                           temperature=0.8, top_k=40, eos_token_id=0, pad_token_id=0)
        res.append({"prompt": prompt,
                    "greedy_80": hf_tok.decode(g[0, x.shape[1]:], skip_special_tokens=True),
                    "sampled_80_t0.8_k40_seed%d" % i: hf_tok.decode(s[0, x.shape[1]:], skip_special_tokens=True)})
        log(f"sample {prompt!r}:\n  greedy : {res[-1]['greedy_80']!r}\n  sampled: "
            f"{res[-1]['sampled_80_t0.8_k40_seed%d' % i]!r}")
    return res


# ----------------------------------------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="text from extract_corpus.sh")
    ap.add_argument("--out", required=True, help="output model folder (created)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=688)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--context", type=int, default=512, help="training window and max_position_embeddings")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.3,
                    help="training-only dropout (the shipped model used 0.3; 0.1 and 0.2 ended worse held-out)")
    ap.add_argument("--max-steps", type=int, default=4000)
    ap.add_argument("--time-budget", type=float, default=240.0, help="seconds for the training loop")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--patience", type=int, default=4, help="evaluations without held-out improvement")
    ap.add_argument("--heldout", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--smoke", action="store_true", help="a few steps, to test the script end to end")
    ap.add_argument("--reference-only", action="store_true",
                    help="no training: recompute losses, references and samples for the folder at --out")
    return ap.parse_args()


def main():
    args = parse_args()
    if args.smoke:
        args.max_steps, args.eval_every, args.batch, args.warmup, args.time_budget = 30, 10, 8, 5, 60.0
    torch.manual_seed(args.seed)
    torch.set_float32_matmul_precision("highest")  # float32 evaluations below must be true float32 (no TF32)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device "
        f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    os.makedirs(args.out, exist_ok=True)

    chapters = read_chapters(args.corpus)
    train_ch, held_ch = split_chapters(chapters, args.heldout)
    log(f"corpus: {len(chapters)} chapters; training {len(train_ch)} ({sum(map(len, train_ch))} chars), "
        f"held out {len(held_ch)} ({sum(map(len, held_ch))} chars), first held-out: {held_ch[0][:50]!r}")

    if not args.reference_only:
        save_tokenizer(train_tokenizer(train_ch, args.vocab), args.out, args.context)
    tok = check_tokenizer_roundtrip(args.out, chapters)
    for p in PROMPTS:
        enc = tok.encode(p)
        log(f"  {p!r} -> {enc.ids} {enc.tokens}")
    vocab = tok.get_vocab_size()
    train_stream = encode_stream(tok, train_ch)
    held_stream = encode_stream(tok, held_ch)
    held_blocks = eval_blocks(held_stream, args.context)
    uni = unigram_loss(train_stream, held_blocks[1], vocab)
    log(f"tokens: train {train_stream.numel()}, held-out {held_stream.numel()}; unigram held-out loss {uni:.4f}")

    if args.reference_only:
        facts = {"note": "--reference-only: evaluated an existing folder, no training in this run"}
    else:
        model = LlamaForCausalLM(make_config(args, vocab)).to(device).float()
        log(f"model: {sum(p.numel() for p in model.parameters())} parameters")
        facts = train(args, model, train_stream, held_blocks, device)
        save_model(model, args.out)
        del model

    # Everything below uses the folder as shipped, read back by transformers in float32.
    shipped = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32).to(device).eval()
    n_params = sum(p.numel() for p in shipped.parameters())
    cfg = shipped.config
    held = mean_loss(shipped, held_blocks, device, autocast=False)
    train_blocks = eval_blocks(train_stream if not args.smoke else train_stream[:20000], args.context)
    train_loss = mean_loss(shipped, train_blocks, device, autocast=False)
    log(f"shipped model, float32: train loss {train_loss:.4f}, held-out loss {held:.4f}, unigram {uni:.4f}")
    shipped = shipped.to("cpu")
    cases = greedy_references(args.out, shipped)
    sample_text = samples(args.out, shipped)

    ref = {
        "description": "Greedy continuations of tools/demo_model/kjv-llama by Hugging Face transformers, "
                       "written by tools/demo_model/train.py.",
        "model_dir": "tools/demo_model/kjv-llama",
        "tokenization": "prompt_ids = tokenizers.Tokenizer.from_file(model_dir/tokenizer.json).encode(prompt, "
                        "add_special_tokens=True).ids: the TemplateProcessing post-processor prepends "
                        "<|endoftext|> (id 0, BOS) to the byte-level BPE ids; transformers_tokenizer_agrees says "
                        "whether AutoTokenizer.from_pretrained(model_dir)(prompt)['input_ids'] is the same. "
                        "These exact ids were fed to generate().",
        "compute": "AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32) on CPU (weights = the "
                   "bfloat16 values in model.safetensors, RoPE in float32); generate(do_sample=False, "
                   f"max_new_tokens={REFERENCE_NEW_TOKENS}, eos_token_id=0); greedy_ids are the new tokens only "
                   "(fewer than max_new_tokens only if EOS ended generation; EOS not included). "
                   "top2_logit_margin[i] = top-1 minus top-2 logit at generation step i (an EOS step included).",
        "max_new_tokens": REFERENCE_NEW_TOKENS,
        "cases": cases,
        "losses_nats_per_token": {
            "heldout": round(held, 4),
            "unigram_heldout": round(uni, 4),
            "train": round(train_loss, 4),
            "note": "float32 on the shipped bf16 weights. heldout: the last 5% of the text (chapters "
                    f"{len(train_ch) + 1}-{len(chapters)} of {len(chapters)}), {held_stream.numel()} tokens, "
                    f"{args.context}-token blocks; unigram: training-split token frequencies (add-one smoothing) "
                    "on the same held-out targets; train: all training tokens, same blocking. The weights kept are "
                    "those of the evaluation step with the lowest held-out loss.",
        },
        "model": {"parameters": n_params, "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
                  "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
                  "num_attention_heads": cfg.num_attention_heads, "context": cfg.max_position_embeddings,
                  "model_safetensors_bytes": os.path.getsize(os.path.join(args.out, "model.safetensors"))},
        "training": dict(facts, batch_sequences=args.batch, lr=args.lr, warmup=args.warmup,
                         weight_decay=args.weight_decay, dropout=args.dropout, seed=args.seed,
                         train_tokens=train_stream.numel(), heldout_tokens=held_stream.numel(),
                         device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                         torch=torch.__version__, transformers=transformers.__version__, smoke=args.smoke),
        "samples": sample_text,
    }
    with open(os.path.join(args.out, "demo_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    log(f"wrote {sorted(os.listdir(args.out))}")


if __name__ == "__main__":
    main()
