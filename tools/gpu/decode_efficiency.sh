#!/usr/bin/env bash
# Issue 19 in one device call: gpu_all_tests; resident decode A/B of the decode-linear
# choice (default = cuBLASLt tuned per shape; auto = timed among cuBLASLt, GEMV, MMA; old = cuBLASLt heuristic
# only, the 10228cc default; forced mma / gemv) and split attention; op timing; offloaded decode at 2 GiB;
# compute-sanitizer over the kernel tests. Bundle: tools/gpu/bundle.sh with zeroinfer-b and gpu_all_tests-b.
# On the device, from the repo root: OUT=$OUT tools/gpu/decode_efficiency.sh   (env LIMIT: seconds, default 570)
set -u
OUT=${OUT:?}
T0=$(date +%s)
left() { echo $(( ${LIMIT:-570} - ($(date +%s) - T0) )); }
[ -x /tmp/gpu/bin/zeroinfer-b ] || tar -xJf .device/gpu.tar.xz -C /tmp
export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64
B=/tmp/gpu/bin
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max --format=csv,noheader; nproc
  free -g | head -2; df -h /tmp | tail -1; } > $OUT/device.txt 2>&1
ZI_TEST_DATA=$PWD/tests/data timeout 170 $B/gpu_all_tests-b --gtest_filter='-GpuMemoryLimit*' > $OUT/gputests.log 2>&1
echo "rc=$?" >> $OUT/gputests.log
# Apart: an allocation past the limit under the balloon aborts the whole process (the backend's out-of-memory).
ZI_TEST_DATA=$PWD/tests/data timeout 60 $B/gpu_all_tests-b --gtest_filter='GpuMemoryLimit*' > $OUT/gputests-memlimit.log 2>&1
echo "rc=$?" >> $OUT/gputests-memlimit.log
grep -E "^\[  (PASSED|FAILED) |FAILED  \]|^rc=" $OUT/gputests-memlimit.log | tail -6
grep -E "^\[  (PASSED|FAILED) |FAILED  \]|^rc=" $OUT/gputests.log | tail -20
echo "tests done at $(( $(date +%s) - T0 )) s"
M=config/examples/models/llama-2-7b
run() {  # tag, env..., -- bench args
  local tag=$1; shift; local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  [ "$(left)" -lt 20 ] && { echo "skip $tag"; return; }
  echo "== $tag ${envs[*]} bench $*" >> $OUT/bench.log
  env "${envs[@]}" timeout 60 $B/zeroinfer-b bench "$@" --json >> $OUT/bench.log 2>> $OUT/bench-$tag.stderr
  echo "rc=$?" >> $OUT/bench.log
}
for b in 1 16 64; do
  A=(--model $M --dummy --batch-size $b --prompt-len 512 --gen-len 32 --loops 2)
  run res-b$b-default X=1 -- "${A[@]}"
  run res-b$b-old ZI_DECODE_GEMM=lt ZI_LT_AUTOTUNE=0 -- "${A[@]}"
  run res-b$b-split ZI_ATTENTION_DECODE=split -- "${A[@]}"
  run res-b$b-auto ZI_DECODE_GEMM=auto -- "${A[@]}"
  run res-b$b-mma ZI_DECODE_GEMM=mma -- "${A[@]}"
  [ $b = 1 ] && run res-b$b-gemv ZI_DECODE_GEMM=gemv -- "${A[@]}"
done
echo "A/B done at $(( $(date +%s) - T0 )) s"
for b in 1 16 64; do
  run optime-b$b ZI_OP_TIMING=1 -- --model $M --dummy --batch-size $b --prompt-len 512 --gen-len 32 --loops 1
done
for b in 1 16 64; do
  run off-b$b-default X=1 -- --model $M --dummy --cpu-offload --gpu-weights-budget 2GiB --batch-size $b --prompt-len 512 --gen-len 32 --loops 2
done
echo "optime/offload done at $(( $(date +%s) - T0 )) s"
if [ "$(left)" -gt 130 ] && { command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; }; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  ZI_TEST_DATA=$PWD/tests/data timeout 120 $CS --tool memcheck --print-limit 20 $B/gpu_all_tests-b \
    --gtest_filter='Dtypes/CudaOps.DenseDecode*:Dtypes/CudaAttention.Decode*:LtGemm.*:Dtypes/CudaOps.Dummy*:Dtypes/CudaFused.*:Dtypes/QuantCuda.Linear*' \
    > $OUT/memcheck.log 2>&1; echo "rc=$?" >> $OUT/memcheck.log
  tail -5 $OUT/memcheck.log
fi
echo "memcheck done at $(( $(date +%s) - T0 )) s"
echo "all done at $(( $(date +%s) - T0 )) s"
