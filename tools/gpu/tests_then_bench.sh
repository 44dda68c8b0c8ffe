#!/usr/bin/env bash
# One device call: the candidate's gpu_all_tests (full log kept), then each bench line of BENCH_FILE run with the
# baseline (zeroinfer-a, when bundled) and the candidate (zeroinfer-b), interleaved A B per line so that a ratio's
# baseline ran in the same call on the same card. Bundle: tools/gpu/bundle.sh with binaries named *-a / *-b.
# From the repo root: tools/gpu/tests_then_bench.sh OUT_DIR BENCH_FILE [GTEST_FILTER]
set -u
out=$1; bench_file=$2; filter=${3:-*}
mkdir -p "$out"
tar -xJf .device/gpu.tar.xz -C /tmp
export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64
bin=/tmp/gpu/bin
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max --format=csv,noheader; nproc
  free -g | head -2; } > "$out/device.txt" 2>&1
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  ZI_TEST_DATA=$PWD/tests/data timeout "${TEST_TIMEOUT:-300}" "$bin/gpu_all_tests-b" --gtest_filter="$filter" \
    > "$out/gputests.log" 2>&1
  echo "rc=$?" >> "$out/gputests.log"
  grep -E "^\[  (PASSED|FAILED) |FAILED  \]|^rc=" "$out/gputests.log" | tail -40
fi
while IFS= read -r line; do
  [ -z "$line" ] && continue
  for v in ${VARIANTS:-a b}; do
    [ -x "$bin/zeroinfer-$v" ] || continue
    echo "== zeroinfer-$v bench $line" >> "$out/bench.log"
    timeout "${BENCH_TIMEOUT:-150}" "$bin/zeroinfer-$v" bench $line --json >> "$out/bench.log" 2>> "$out/bench-$v.stderr"
    echo "rc=$?" >> "$out/bench.log"
  done
done < "$bench_file"
