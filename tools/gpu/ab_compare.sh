#!/usr/bin/env bash
# Before/after on the GPU machine in ONE device call (a ratio counts only when its baseline ran in the same call):
# each binary's gpu_all_tests, then the same bench command with the baseline (A) and the candidate (B), interleaved
# A B A B so that drift in the card or the host hits both alike.
# The carried bundle (tools/gpu/bundle.sh) holds zeroinfer-a, zeroinfer-b, gpu_all_tests-a, gpu_all_tests-b.
# From the repo root: tools/gpu/ab_compare.sh OUT_DIR ROUNDS BENCH_ARGS...
#   e.g. tools/gpu/ab_compare.sh $OUT 2 --model config/examples/models/llama-2-7b --dummy --cpu-offload \
#          --gpu-weights-budget 2GiB --batch-size 16 --prompt-len 512 --gen-len 32 --loops 3
set -u
out=$1; rounds=$2; shift 2
mkdir -p "$out"
tar -xJf .device/gpu.tar.xz -C /tmp
export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64
bin=/tmp/gpu/bin
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max --format=csv,noheader; nproc
  free -g | head -2; } > "$out/device.txt" 2>&1
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  for v in a b; do
    echo "== gpu_all_tests-$v"
    ZI_TEST_DATA=$PWD/tests/data timeout 240 "$bin/gpu_all_tests-$v" 2>&1 |
      grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|Failure|OK \]" | tail -60
    echo "rc=${PIPESTATUS[0]}"
  done > "$out/gputests.log" 2>&1
fi
for r in $(seq "$rounds"); do
  for v in a b; do
    echo "== round $r zeroinfer-$v bench $*" >> "$out/bench.log"
    timeout 240 "$bin/zeroinfer-$v" bench "$@" --json >> "$out/bench.log" 2>> "$out/bench-$v.stderr"
    echo "rc=$?" >> "$out/bench.log"
  done
done
