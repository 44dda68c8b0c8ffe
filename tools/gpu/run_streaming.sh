#!/usr/bin/env bash
# One device call: streaming correctness on the fixtures, then the Llama-2-7B-shape CPU-tier benchmarks.
# Run from the repo root on the GPU machine with the bundle carried: tools/gpu/run_streaming.sh OUT_DIR
set -u
out=${1:-/tmp/out}
mkdir -p "$out"
tar -xJf .device/gpu.tar.xz -C /tmp
export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64
zi=/tmp/gpu/bin/zeroinfer
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 tools/gpu/streaming_check.py "$zi" tests/data 2>&1 | tee "$out/streaming_check.log"
for b in ${BATCHES:-1 16 64}; do
  $zi bench --model config/examples/models/llama-2-7b --dummy --cpu-offload --gpu-weights-budget 2GiB \
    --batch-size "$b" --prompt-len 512 --gen-len ${GEN:-32} --loops ${LOOPS:-3} --json \
    >> "$out/bench.jsonl" 2>> "$out/bench.log"
  tail -1 "$out/bench.jsonl"
done
