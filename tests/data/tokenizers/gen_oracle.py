#!/usr/bin/env python3
"""Regenerates the tokenizer oracle files that tests/unit/tokenizer_*_test.cc compare against.

Needs `transformers` (5.x) and `tokenizers`; no network. Run from the repository root:
    python3 tests/data/tokenizers/gen_oracle.py [OUT_DIR]
OUT_DIR defaults to tests/data/tokenizers. For every tokenizer below it writes OUT_DIR/oracle_<name>.json:
    {"encode": [{"text", "ids", "ids_plain", "decoded", "decoded_skip"}],
     "decode": [{"ids", "decoded", "decoded_skip"}],
     "source": "transformers <version>" }
where ids = encode(text, add_special_tokens=True), ids_plain = encode(text, add_special_tokens=False),
decoded = decode(ids, skip_special_tokens=False), decoded_skip = decode(ids, skip_special_tokens=True).

Tokenizers: the two fixtures (gpt2, spbpe) and variants/<name>.json, each a patch applied to a fixture's
tokenizer.json (the C++ tests apply the same patch, see tokenizer_test_util.h):
    {"base": "gpt2", "replace": {top-level key: value}, "model": {model key: value},
     "merges_as_pairs": bool, "added_tokens_append": [...], "tokenizer_config": {...}}
"""
import json
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def build_json(spec):
    with open(os.path.join(HERE, spec["base"], "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    for k, v in spec.get("replace", {}).items():
        tj[k] = v
    for k, v in spec.get("model", {}).items():
        tj["model"][k] = v
    if spec.get("merges_as_pairs"):
        tj["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in tj["model"]["merges"]]
    tj["added_tokens"] = tj["added_tokens"] + spec.get("added_tokens_append", [])
    return tj


CURATED = [
    "Hello world", "  leading", "trailing  ", "a\n\nb\r\n\tc", "\n", "\t\t", " \n ", "x \n y",
    "It'S tHe 'LL 'Re 've 'd", "don't", "'s", "''", "O'Neil's", "3.14 15926 535897 9", "١٢٣ ٤٥٦ Ⅻ ½",
    "naïve café", "e\u0301 combining", "ǅ ǈ ﬁ ß", "Ωμέγα", "Ελληνικά και ρωσικά: Привет",
    "日本語のテキスト", "中文 汉字 测试", "한국어 텍스트", "ไทย ภาษา", "हिन्दी भाषा", "עברית", "مرحبا",
    "👍🏽👨\u200d👩\u200d👧🚀✨🇫🇷", "😀😀😀", "x😀y", "\u00a0nbsp\u00a0", "\u3000ideo\u3000space",
    "line\u2028sep\u2029para", "zero\u200bwidth\u200cjoin\u200dx", "mongol\u180evowel", "\u0085nel",
    "tab\u000bvt\u000cff", "<|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ", "<|endoftext|><|endoftext|>",
    "<|endoftext", "<s>", "</s>", "<s>hi</s>", "text <s> more </s>", "<unk>", "<0x41>", "<0x41><0xC3>",
    "<|begin_of_text|>x", "<|eot_id|>", "pre <mask> post", "pre<mask>post", "  <mask>  ", "[L]  x",
    "[L]x", "word zebra Zebra zebras", "zebra", "azebra zebra_ zebra.", "<|fim|> <|fim|>x",
    "def f(x):\n    return x ** 2  # square", "if (a && b) { c++; }", "    indented", "a" * 300,
    " " * 40, "!!!???...", "----====", "https://example.com/path?q=1&b=2", "user@example.com",
    "12345678901234567890", "0.000001", "¿Qué? ¡Sí!", "\u2581already\u2581meta", "▁ ▁▁", "~`^",
    "", " ", "  ", "x",
    "İstanbul ΣΑΣ ﬃ ① ㎏ Ⅻ ｆｕｌｌ", "Å Å Å", "ΌΣΟΣ σ ς", "Ǆemal ǅ", "ＡＢＣ１２３", "한글 \u1112\u1161\u11ab\u1100\u1173\u11af", "<|im_start|>user\nHi<|im_end|>",
]

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\n", "\t", "\r\n",
    ".,;:!?'\"()[]{}<>/-_=+*&^%$#@~`|\\", "àéîõüçñÆØÅß", "日本語中文字符测试漢字", "ひらがなカタカナ",
    "Привет мир", "مرحبا بالعالم", "😀👍🏽🚀✨🇯🇵", "\u200d\u200b\u00a0\u3000\u2028\u0301\u180e",
    "'s 'll 're 'S", "<s></s><unk><|endoftext|><mask>[L]", "▁",
]


def random_texts(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            alpha = rng.choice(ALPHABETS)
            if alpha.startswith("<s>") or alpha.startswith("'s"):
                parts.append(alpha[rng.randrange(len(alpha)) // 4 * 4:][: rng.randint(1, 14)])
            else:
                parts.append("".join(rng.choice(alpha) for _ in range(rng.randint(1, 8))))
        out.append("".join(parts))
    return out


def random_id_seqs(tok_vocab_size, special_ids, byte_ids, n, seed):
    rng = random.Random(seed)
    seqs = []
    for _ in range(n):
        seq = []
        for _ in range(rng.randint(1, 16)):
            r = rng.random()
            if r < 0.45 and byte_ids:
                seq.append(rng.choice(byte_ids))
            elif r < 0.55 and special_ids:
                seq.append(rng.choice(special_ids))
            else:
                seq.append(rng.randrange(tok_vocab_size))
        seqs.append(seq)
    return seqs


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else HERE
    import tokenizers
    import transformers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    specs = {"gpt2": {"base": "gpt2"}, "spbpe": {"base": "spbpe"}}
    vdir = os.path.join(HERE, "variants")
    for fn in sorted(os.listdir(vdir)):
        if fn.endswith(".json"):
            with open(os.path.join(vdir, fn), encoding="utf-8") as f:
                specs[fn[:-5]] = json.load(f)

    # A few long texts (several KiB, one word for SentencePiece layouts without a pre-tokenizer).
    long_texts = [" ".join(random_texts(n, seed)) for n, seed in ((40, 7), (120, 8), (300, 9))]
    texts = CURATED + random_texts(150, 1234) + long_texts
    report = []
    for name, spec in specs.items():
        tj = build_json(spec)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(tj, f, ensure_ascii=False)
            cfg = spec.get("tokenizer_config")
            if cfg is None:
                with open(os.path.join(HERE, spec["base"], "tokenizer_config.json"), encoding="utf-8") as f:
                    cfg = json.load(f)
            with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(cfg, f, ensure_ascii=False)
            try:
                tf = AutoTokenizer.from_pretrained(d)
                how = "AutoTokenizer"
            except Exception as e:  # noqa: BLE001 - report and fall back
                print(f"{name}: AutoTokenizer failed ({e}); using PreTrainedTokenizerFast", file=sys.stderr)
                tf = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
                how = "PreTrainedTokenizerFast"
            tk = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            if type(tf).__name__ != "TokenizersBackend":
                # A model-specific class rebuilt the pipeline: record what it built (without the vocabulary).
                built = json.loads(tf.backend_tokenizer.to_str())
                built["model"] = {k: v for k, v in built["model"].items() if k not in ("vocab", "merges")}
                with open(os.path.join(out_dir, f"backend_{name}.json"), "w", encoding="utf-8") as f:
                    json.dump(built, f, ensure_ascii=False, indent=1)
        enc, mism = [], 0
        for t in texts:
            ids = tf.encode(t, add_special_tokens=True)
            plain = tf.encode(t, add_special_tokens=False)
            if ids != tk.encode(t, add_special_tokens=True).ids or plain != tk.encode(t, add_special_tokens=False).ids:
                mism += 1
            enc.append({"text": t, "ids": ids, "ids_plain": plain,
                        "decoded": tf.decode(ids, skip_special_tokens=False),
                        "decoded_skip": tf.decode(ids, skip_special_tokens=True)})
        vocab_size = len(tf)
        added = tk.get_added_tokens_decoder()
        special_ids = sorted(i for i, t in added.items() if t.special)
        byte_ids = [i for i in range(vocab_size) if (tk.id_to_token(i) or "").startswith("<0x")] or list(range(256))
        dec = []
        for seq in random_id_seqs(vocab_size, special_ids, byte_ids, 120, 99):
            d1 = tf.decode(seq, skip_special_tokens=False)
            d2 = tf.decode(seq, skip_special_tokens=True)
            if d1 != tk.decode(seq, skip_special_tokens=False):
                mism += 1
            dec.append({"ids": seq, "decoded": d1, "decoded_skip": d2})
        with open(os.path.join(out_dir, f"oracle_{name}.json"), "w", encoding="utf-8") as f:
            json.dump({"source": f"transformers {transformers.__version__} ({how}, {type(tf).__name__}), "
                                 f"tokenizers {tokenizers.__version__}",
                       "encode": enc, "decode": dec}, f, ensure_ascii=True, indent=0)
        report.append(f"{name}: {len(enc)} encode, {len(dec)} decode cases; {mism} differ between "
                      f"transformers and tokenizers ({how}, {type(tf).__name__})")
    print("\n".join(report))


if __name__ == "__main__":
    main()
