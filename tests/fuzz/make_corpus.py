#!/usr/bin/env python3
"""Regenerates the seed corpora of tests/fuzz/corpus/<target>/ from the project's fixtures (tests/data).

Seeds are small on purpose (libFuzzer mutates them and sizes -max_len from them): real fixtures trimmed to a few
entries, plus hand-made edge cases. Files named seed-* are rewritten by this script; regression inputs (crash-*,
found by fuzzing) are never touched. Run from anywhere: python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data")
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clean_seeds():
    for target in os.listdir(CORPUS) if os.path.isdir(CORPUS) else []:
        d = os.path.join(CORPUS, target)
        for f in os.listdir(d):
            if f.startswith("seed-"):
                os.remove(os.path.join(d, f))


def load(path):
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------- safetensors
DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I32": 4, "I64": 8, "U8": 1, "I8": 1, "BOOL": 1}


def safetensors(entries, metadata=None, extra=b"", header_override=None):
    """entries: [(name, dtype, shape)] laid out back to back."""
    header, off, data = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in entries:
        n = DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        data += bytes((off + i) % 251 for i in range(n))
        off += n
    text = header_override if header_override is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(text)) + text + data + extra


def safetensors_seeds():
    t = "safetensors"
    # The llama_mha fixture's header, every tensor shrunk to at most 2 x 3 elements.
    raw = load(os.path.join(DATA, "models", "llama_mha", "model.safetensors"))
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    entries = [(k, v["dtype"], [min(d, 3 - i) for i, d in enumerate(v["shape"])])
               for k, v in header.items() if k != "__metadata__"][:6]
    write(t, "llama-trimmed.safetensors", safetensors(entries, header.get("__metadata__")))
    write(t, "dtypes.safetensors", safetensors([(f"t.{d}", d, [2, 2]) for d in DTYPE_SIZE], {"format": "pt"}))
    write(t, "scalar-and-empty.safetensors", safetensors([("s", "F32", []), ("e", "BF16", [0, 7]), ("v", "I64", [1])]))
    write(t, "empty-header.safetensors", safetensors([]))
    write(t, "empty-file", b"")
    write(t, "seven-bytes", b"\x02\x00\x00\x00\x00\x00\x00")
    write(t, "huge-header-len", struct.pack("<Q", 0xFFFFFFFFFFFFFFF0) + b"{}")
    write(t, "header-past-end", struct.pack("<Q", 64) + b"{}")
    write(t, "not-object", safetensors([], header_override="[1,2]"))
    write(t, "dup-key", safetensors([], header_override='{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
                                                         '"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'))
    write(t, "overlap", safetensors([], extra=b"\0" * 4, header_override=(
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}')))
    write(t, "gap", safetensors([], extra=b"\0" * 6, header_override=(
        '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}')))
    write(t, "trailing", safetensors([("a", "U8", [2])], extra=b"xyz"))
    write(t, "shape-overflow", safetensors([], header_override=(
        '{"a":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}')))
    write(t, "negative-shape", safetensors([], header_override='{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'))
    write(t, "float-offsets", safetensors([], header_override='{"a":{"dtype":"U8","shape":[1],"data_offsets":[0.0,1e0]}}',
                                          extra=b"\0"))
    write(t, "unknown-dtype", safetensors([], header_override='{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}',
                                          extra=b"\0"))
    write(t, "deep-metadata", safetensors([], header_override='{"__metadata__":' + "[" * 200 + "]" * 200 + "}"))
    write(t, "unicode-name", safetensors([("v\u00e9ctor.\u2603", "U8", [3])], {"k\u00e9y": "\u00fc"}))


# ---------------------------------------------------------------------------------------------- tokenizers
KEEP_BYTES = set(range(0x20, 0x80)) | {0x0A, 0x80, 0x82, 0xA9, 0xAC, 0xBF, 0xC3, 0xE2, 0xF0, 0x9F, 0xFF}


def trim_tokenizer(tj, n_merges):
    """Keeps the first n_merges merges and the tokens they use, the special tokens (<...> below id 3) and, of the
    byte tokens (GPT-2's first 256 ids, SentencePiece's <0xNN>), those of KEEP_BYTES. Ids keep their original values
    (so the kept vocabulary is sparse, which the loader must accept too)."""
    model = tj["model"]
    full = model["vocab"]
    keep = {}
    for k, v in full.items():
        if v < 3 or (k.startswith("<0x") and len(k) == 6 and int(k[3:5], 16) in KEEP_BYTES):
            keep[k] = v
    if not any(k.startswith("<0x") for k in full):  # byte-level: the first 256 ids are the byte alphabet
        for k, v in full.items():
            if v < 256:
                keep[k] = v
    merges = []
    for m in model["merges"]:
        if len(merges) >= n_merges:
            break
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in full and b in full and a + b in full:
            merges.append(m)
            for piece in (a, b, a + b):
                keep[piece] = full[piece]
    model["vocab"], model["merges"] = keep, merges
    kept_ids = set(keep.values())
    tj["added_tokens"] = [t for t in tj.get("added_tokens", []) if t["id"] in kept_ids or t["id"] >= len(full)]
    return tj


def variant(name, n_merges):
    spec = json.loads(load(os.path.join(DATA, "tokenizers", "variants", name + ".json")))
    tj = json.loads(load(os.path.join(DATA, "tokenizers", spec["base"], "tokenizer.json")))
    for k, v in spec.get("replace", {}).items():
        tj[k] = v
    for k, v in spec.get("model", {}).items():
        tj["model"][k] = v
    tj = trim_tokenizer(tj, n_merges)
    if spec.get("merges_as_pairs"):
        tj["model"]["merges"] = [m.split(" ", 1) for m in tj["model"]["merges"]]
    tj.setdefault("added_tokens", [])
    tj["added_tokens"] += spec.get("added_tokens_append", [])
    return tj, spec.get("tokenizer_config")


def tokenizer_json_seeds():
    t = "tokenizer_json"
    sep = "\n#tokenizer_config\n"
    for base in ("gpt2", "spbpe"):
        tj = trim_tokenizer(json.loads(load(os.path.join(DATA, "tokenizers", base, "tokenizer.json"))), 60)
        cfg = json.loads(load(os.path.join(DATA, "tokenizers", base, "tokenizer_config.json")))
        write(t, base + "-trimmed.json", json.dumps(tj, ensure_ascii=False))
        write(t, base + "-trimmed-with-config.json", json.dumps(tj, ensure_ascii=False) + sep + json.dumps(cfg))
    for name in ("gpt2_norm", "llama3ish", "qwen2_class", "sp_meta_split", "sp_norm_added", "llama_class_legacy",
                 "gpt2_nfkc_lower"):
        tj, cfg = variant(name, 60)
        write(t, name + "-trimmed.json", json.dumps(tj, ensure_ascii=False) + (sep + json.dumps(cfg) if cfg else ""))
    write(t, "empty-object.json", "{}")
    write(t, "not-object.json", "[]")
    write(t, "wordpiece.json", '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}')
    write(t, "empty-bpe.json", '{"model": {"type": "BPE", "vocab": {}, "merges": []}}')
    write(t, "merge-unknown.json", '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b", "ab c"]}}')
    write(t, "added-id-far.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": '
                                  '[{"id": 2000000000, "content": "<x>", "special": true}]}')
    write(t, "added-empty-content.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": '
                                         '[{"id": 1, "content": "", "special": false}]}')
    write(t, "dup-ids.json", '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}}')
    write(t, "negative-id.json", '{"model": {"type": "BPE", "vocab": {"a": -5}, "merges": []}}')
    write(t, "unknown-normalizer.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, '
                                        '"normalizer": {"type": "Bogus"}}')
    write(t, "bad-regex.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": '
                               '{"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated", "invert": false}}')
    write(t, "config-not-object.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}' + sep + "7")
    write(t, "config-class.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}' + sep +
          '{"tokenizer_class": "LlamaTokenizer", "bos_token": {"content": "<s>"}, "extra_special_tokens": {"x": "<x>"}}')


def tokenizer_bytes_seeds():
    t = "tokenizer_bytes"
    names = ["gpt2", "spbpe", "gpt2_norm", "llama3ish", "qwen2_class", "sp_meta_split", "sp_norm_added"]
    texts = ["Hello world", "  leading and trailing  ", "caf\u00e9 \u20ac \U0001F600", "<|endoftext|>a<s>b</s>",
             "line\nbreak\ttab", "don't", "\u00c5\u0301 \ufb01 \u2460", "1234567890" * 3, "", "\u3053\u3093\u306b\u3061\u306f"]
    for i, name in enumerate(names):
        for j, text in enumerate(texts):
            flags = j % 4  # add_special, skip_special in turn
            write(t, f"{name}-text{j}", bytes([i, flags]) + text.encode("utf-8"))
        write(t, f"{name}-invalid-utf8", bytes([i, 1]) + b"ab\xff\xc3(\xe2\x82")
        # ids mode (flag 4): each id x is written as x + 4 (little-endian u16), see the target.
        ids = [0, 1, 2, 3, 100, 255, 256, 300, 1000, 2047, 2048, 2049, 50256]
        write(t, f"{name}-ids", bytes([i, 4 | 2]) + b"".join(struct.pack("<H", (x + 4) & 0xFFFF) for x in ids))
    # SentencePiece byte fallback: "<0xE2>" "<0x82>" (half a euro sign) then "<0xAC>", and a run left unfinished.
    def sp_byte(b):
        return 3 + b  # <0x00> is id 3 in spbpe
    for tag, run in (("euro", [0xE2, 0x82, 0xAC]), ("half", [0xE2, 0x82]), ("stray", [0x80, 0x41, 0xFF])):
        write(t, f"spbpe-bytes-{tag}", bytes([1, 4]) + b"".join(struct.pack("<H", sp_byte(b) + 4) for b in run))
    write(t, "gpt2-out-of-range-ids", bytes([0, 4]) + struct.pack("<HHHH", 0, 1, 2, 3))


# ---------------------------------------------------------------------------------------------- config.json
def model_config_seeds():
    t = "model_config"
    sep = "\n#generation_config\n"
    seen = set()
    models = os.path.join(DATA, "models")
    for m in sorted(os.listdir(models)):
        cfg = load(os.path.join(models, m, "config.json"))
        if cfg in seen:
            continue
        seen.add(cfg)
        write(t, m + ".json", cfg)
        gen = os.path.join(models, m, "generation_config.json")
        if os.path.exists(gen):
            write(t, m + "-with-generation.json", cfg + sep.encode() + load(gen))
    llama = json.loads(load(os.path.join(models, "llama_mha", "config.json")))

    def edit(name, **kv):
        c = dict(llama)
        for k, v in kv.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        write(t, name, json.dumps(c))
    edit("float-sizes.json", hidden_size=64.0, num_attention_heads=4.0)
    edit("huge-float.json", hidden_size=1e30)
    edit("huge-int.json", intermediate_size=18446744073709551615)
    edit("zero-heads.json", num_attention_heads=0)
    edit("gqa-mismatch.json", num_key_value_heads=3)
    edit("odd-head-dim.json", head_dim=7)
    edit("rope-llama3.json", rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    edit("rope-dynamic.json", rope_scaling={"type": "dynamic", "factor": 2.0})
    edit("rope-yarn.json", rope_scaling={"rope_type": "yarn", "factor": 4.0})
    edit("rope-params-v5.json", rope_parameters={"rope_type": "linear", "rope_theta": 500000.0, "factor": 0.0})
    edit("eos-list.json", eos_token_id=[1, 2, 3])
    edit("eos-negative.json", eos_token_id=-1)
    edit("no-architectures.json", architectures=None)
    edit("unsupported-arch.json", architectures=["GPTNeoXForCausalLM"])
    edit("strings.json", vocab_size="2048")
    write(t, "not-object.json", "[]")
    write(t, "generation-not-object.json", json.dumps(llama) + sep + "[1]")


# ---------------------------------------------------------------------------------------------- YAML
def serve_config_seeds():
    t = "serve_config"
    write(t, "default.yaml", load(os.path.join(ROOT, "config", "default.yaml")))
    ex = os.path.join(ROOT, "config", "examples")
    for f in sorted(os.listdir(ex)):
        if f.endswith(".yaml"):
            write(t, f, load(os.path.join(ex, f)))
    write(t, "minimal.yaml", "model: {path: m}\n")
    write(t, "full-block.yaml", """model:
  path: /models/llama
  name: llama
  dtype: bfloat16
  max_context: 4096
device: cuda
server:
  listen: "[::1]:0"
  metrics_listen: "localhost:9400"
  max_queue: 1
  max_batch_size: 1024
  max_new_tokens_default: 16777216
  max_prompt_tokens: 0
  shutdown_grace_seconds: 0.5
parallel: {num_gpus: 64}
offload:
  tier: nvme
  dir: ./offload
  pin_memory: off
  gpu_weights_budget: 1.5GiB
  prefetch_depth: 0
  aio: {block_size: 4 KiB, queue_depth: 1024}
quantization: {bits: 4, group_size: 1048576}
kv_cache: {offload: yes}
logging: {level: debug}
debug: {step_delay_ms: 60000}
""")
    write(t, "unknown-key.yaml", "model: {path: m, colour: red}\n")
    write(t, "bad-values.yaml", "model: {path: m}\nserver: {max_batch_size: 0, listen: nope}\n")
    write(t, "sizes.yaml", "model: {path: m}\noffload: {gpu_weights_budget: 18446744073709551616, aio: {block_size: 1.5KiB}}\n")
    write(t, "not-map.yaml", "- a\n- b\n")
    write(t, "anchors.yaml", "base: &b {path: m}\nmodel: *b\n")
    write(t, "syntax-error.yaml", "model: {path: [\n")
    write(t, "tabs-and-unicode.yaml", "model:\n  path: \"m\u00f6del\"\n  name: '\u2603'\n")
    write(t, "nested-deep.yaml", "model: {path: m}\nserver: " + "[" * 300 + "]" * 300 + "\n")
    write(t, "size-line.txt", "512 KiB\nmodel: {path: m}\n")
    write(t, "hostport-line.txt", "[fe80::1]:65535\n")


# ---------------------------------------------------------------------------------------------- offload store
def manifest(shards, **identity):
    m = {"format": "zeroinfer-offload-store", "version": 1, "architecture": "LlamaForCausalLM",
         "config_digest": "1c2e5a7b", "dtype": "BF16", "quant_bits": 16, "quant_group_size": 64, "num_ranks": 2,
         "shards": shards}
    m.update(identity)
    return json.dumps(m, indent=1)


def shard(name, nbytes, part, offsets, tensors=None):
    tensors = tensors if tensors is not None else [
        {"name": f"model.{name}.w", "dtype": "BF16", "shape": [nbytes // 2], "offset": 0, "nbytes": nbytes}]
    return {"name": name, "bytes": nbytes, "partition_bytes": part, "tensors": tensors,
            "file_offsets": offsets, "crc32c": [0x1234, 0xabcd]}


def offload_manifest_seeds():
    t = "offload_manifest"
    # Rank files: rank 0 has 3 x 4096 bytes, rank 1 has 2 x 4096 (see offload_manifest_fuzz.cc).
    two = [shard("layer.0", 6144, 4096, [0, 0], [
               {"name": "model.layers.0.self_attn.q_proj.weight", "dtype": "BF16", "shape": [32, 64], "offset": 0,
                "nbytes": 4096},
               {"name": "model.layers.0.input_layernorm.weight", "dtype": "F32", "shape": [64], "offset": 4096,
                "nbytes": 256}]),
           shard("layer.1", 8192, 4096, [4096, 4096])]
    write(t, "two-shards.json", manifest(two))
    write(t, "empty-store.json", manifest([]))
    write(t, "one-rank.json", manifest([], num_ranks=1))
    write(t, "other-digest.json", manifest(two, config_digest="00000000"))
    write(t, "quantized.json", manifest([], quant_bits=4, quant_group_size=32))
    write(t, "other-format.json", manifest([], format="something-else"))
    write(t, "truncated-rank1.json", manifest([shard("layer.0", 8192, 4096, [8192, 8192])]))
    write(t, "unaligned.json", manifest([shard("layer.0", 100, 4096, [100, 0])]))
    write(t, "partition-too-small.json", manifest([shard("layer.0", 10000, 4096, [0, 0])]))
    write(t, "tensor-outside.json", manifest([shard("layer.0", 4096, 4096, [0, 0], [
        {"name": "w", "dtype": "U8", "shape": [8], "offset": 4090, "nbytes": 8}])]))
    write(t, "offset-wraps.json", manifest([shard("layer.0", 4096, 4096, [18446744073709547520, 0])]))
    write(t, "wrong-types.json", manifest([{"name": 7, "bytes": "x"}]))
    write(t, "missing-shards.json", json.dumps({"format": "zeroinfer-offload-store", "version": 1}))
    write(t, "not-json", "manifest")
    write(t, "empty", "")


# ---------------------------------------------------------------------------------------------- worker frames
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload  # wire 2


def frame(msg):
    return struct.pack("<I", len(msg)) + msg


def worker_frame_seeds():
    t = "worker_frame"
    FROM, TO = b"\x00", b"\x01"
    hello = field(1, 2, field(1, 0, 0) + field(2, 0, 2) + field(3, 0, 4242))
    ready = field(2, 2, field(1, 2, field(1, 2, b"llama_mha") + field(2, 2, b"LlamaForCausalLM") + field(4, 0, 2048)
                              + field(9, 0, 2)))
    result = field(1, 0, 7) + field(2, 0, 42)
    reply = field(3, 2, field(1, 0, 1) + field(2, 2, result) + field(3, 2, field(2, 0, 5)))
    heartbeat = field(4, 2, field(1, 0, 9))
    error = field(5, 2, field(1, 0, 1) + field(2, 0, 14) + field(3, 2, b"rank 0: out of memory"))
    error_ok_code = field(5, 2, field(2, 0, 0) + field(3, 2, b"code zero"))
    error_odd_code = field(5, 2, field(2, 0, 999))
    write(t, "from-hello-ready", FROM + frame(hello) + frame(ready))
    write(t, "from-step-reply", FROM + frame(reply) + frame(heartbeat))
    write(t, "from-errors", FROM + frame(error) + frame(error_ok_code) + frame(error_odd_code))
    options = field(1, 2, b"/models/llama_mha") + field(3, 2, b"cpu") + field(6, 0, 16) + field(19, 0, 0) + \
        field(20, 0, 1) + field(9, 0, 7)
    init = field(1, 2, field(1, 2, options) + field(2, 0, 1000))
    seq = field(1, 0, 1) + field(2, 2, varint(1) + varint(15043) + varint(2**32 - 1)) + \
        field(3, 2, field(2, 0, 40) + field(5, 0, 7)) + field(4, 0, 1) + field(5, 0, 1)
    step = field(2, 2, field(1, 0, 3) + field(2, 2, seq) + field(3, 2, varint(1) + varint(2)))
    shutdown = field(3, 2, b"")
    write(t, "to-init-step-shutdown", TO + frame(init) + frame(step) + frame(shutdown))
    write(t, "to-truncated-payload", TO + struct.pack("<I", 100) + step[:10])
    write(t, "to-truncated-header", TO + b"\x05\x00")
    write(t, "from-oversized-length", FROM + struct.pack("<I", (256 << 20) + 1))
    write(t, "from-malformed", FROM + frame(b"\xff\xff\xff\xff\xff"))
    write(t, "from-empty-frames", FROM + frame(b"") * 4)
    write(t, "empty", b"")


# ------------------------------------------------------------------------------------------ chat templates
def chat_template_seeds():
    t = "chat_template"
    d = os.path.join(DATA, "chat_templates")
    sep = "\n#messages\n"
    for f in sorted(os.listdir(d)):
        if f.endswith(".jinja"):
            write(t, f, load(os.path.join(d, f)))
    with open(os.path.join(d, "constructs.json"), encoding="utf-8") as f:
        for i, c in enumerate(json.load(f)["constructs"]):
            write(t, f"construct-{i:02d}", c["template"])
    tool_call = json.dumps([{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": None, "tool_calls": [
                                {"id": "call12345", "function": {"name": "f", "arguments": {"x": 1}}}]},
                            {"role": "tool", "tool_call_id": "call12345", "content": "{}"}])
    write(t, "qwen-tool-call", load(os.path.join(d, "qwen2.5-instruct.jinja")) + sep.encode() + tool_call.encode())
    write(t, "messages-not-array", "{{ messages }}" + sep + '{"role": "user"}')
    write(t, "unclosed", "{% for m in messages %}{{ m.content ")
    write(t, "refused-macro", "{% macro f() %}x{% endmacro %}{{ f() }}")
    write(t, "empty", b"")


if __name__ == "__main__":
    clean_seeds()
    chat_template_seeds()
    safetensors_seeds()
    tokenizer_json_seeds()
    tokenizer_bytes_seeds()
    model_config_seeds()
    serve_config_seeds()
    offload_manifest_seeds()
    worker_frame_seeds()
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target}: {len(files)} files, {size} bytes")
