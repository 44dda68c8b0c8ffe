#!/usr/bin/env python3
"""Writes a JSONL workload for `zeroinfer bench --workload FILE`: one request a line,
{"prompt_tokens": N, "output_tokens": M}, N uniform in [--prompt-min, --prompt-max] and M uniform in
[--output-min, --output-max] (inclusive), from a fixed seed. Defaults: issue 10's mixed workload, prompts 128-1024,
outputs 16-256.

    tools/make_workload.py --requests 512 --seed 0 > /tmp/mixed.jsonl
"""
import argparse
import json
import random
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--prompt-min", type=int, default=128)
    ap.add_argument("--prompt-max", type=int, default=1024)
    ap.add_argument("--output-min", type=int, default=16)
    ap.add_argument("--output-max", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="-", help="file to write (default: stdout)")
    a = ap.parse_args()
    if not (0 < a.prompt_min <= a.prompt_max and 0 < a.output_min <= a.output_max and a.requests > 0):
        ap.error("need 0 < min <= max for prompts and outputs, and --requests > 0")
    rng = random.Random(a.seed)
    out = sys.stdout if a.out == "-" else open(a.out, "w")
    for _ in range(a.requests):
        out.write(json.dumps({"prompt_tokens": rng.randint(a.prompt_min, a.prompt_max),
                              "output_tokens": rng.randint(a.output_min, a.output_max)}) + "\n")
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
