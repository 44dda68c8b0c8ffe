#!/usr/bin/env bash
# One row of the ZeRO-Inference headline table (issue 20, docs/BENCHMARKS.md) on the GPU machine, in one device
# call: the planner's rates for the model's shapes, its plan under the limit, then bench at the planned batch B
# and one step either side (B ∓ step, the rest planned for that batch), with the limit enforced by a balloon and
# NVML's per-process peak sampled. Optional: both KV places at B (KV_BOTH=1), the whole card (CARD=1).
# Bundle: tools/gpu/bundle.sh with zeroinfer-b. From the repo root, on the device:
#   tools/gpu/headline_row.sh OUT_DIR MODEL [GPU_LIMIT]      e.g. $OUT opt-30b 48GiB
# Env: LIMIT_S (seconds this call may use, default 570), LOOPS (default 1: the big rows' loop is minutes long).
set -u
out=$1; m=$2; lim=${3:-48GiB}
T0=$(date +%s)
left() { echo $(( ${LIMIT_S:-570} - ($(date +%s) - T0) )); }
mkdir -p "$out"
[ -x /tmp/gpu/bin/zeroinfer-b ] || tar -xJf .device/gpu.tar.xz -C /tmp
export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64
Z=/tmp/gpu/bin/zeroinfer-b
MD=config/examples/models/$m
Q=(--quant-bits 4 --quant-group-size 64)
W=(--prompt-len 512 --gen-len 32)
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max --format=csv,noheader; nproc
  free -g | head -2; df -h /tmp | tail -1; } > "$out/device-$m.txt" 2>&1
rates=$out/rates-h100-$m.json
if [ ! -s "$rates" ]; then
  timeout 120 $Z bench --model $MD "${Q[@]}" --prompt-len 512 --offload-dir /tmp/zi-offload --probe-rates "$rates" \
    > "$out/probe-$m.log" 2>&1
  echo "rc=$?" >> "$out/probe-$m.log"
fi
timeout 30 $Z plan --model $MD "${Q[@]}" --optimize throughput --rates "$rates" --gpu-memory-limit $lim "${W[@]}" \
  > "$out/plan-$m.txt" 2>&1
timeout 30 $Z plan --model $MD "${Q[@]}" --optimize throughput --rates "$rates" --gpu-memory-limit $lim "${W[@]}" \
  --json > "$out/plan-$m.json" 2>> "$out/plan-$m.txt"
B=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['plan_batch_size'])" "$out/plan-$m.json" 2>/dev/null)
echo "plan for $m under $lim: batch ${B:-?} ($(( $(date +%s) - T0 )) s)"
[ -n "$B" ] || exit 1
step=$(( B <= 32 ? 4 : B <= 128 ? 8 : 16 ))
bench() {  # tag, bench args...
  local tag=$1; shift
  [ "$(left)" -lt 60 ] && { echo "skip $tag: $(left) s left"; return; }
  echo "== $tag bench $*" >> "$out/bench-$m.log"
  timeout $(( $(left) - 10 )) $Z bench --model $MD --dummy "${Q[@]}" "${W[@]}" --loops ${LOOPS:-1} --rates "$rates" \
    "$@" --json >> "$out/bench-$m.log" 2>> "$out/bench-$m-$tag.stderr"
  echo "rc=$? at $(( $(date +%s) - T0 )) s" >> "$out/bench-$m.log"
  tail -1 "$out/bench-$m.log"
}
L=(--gpu-memory-limit $lim --gpu-memory-limit-enforce)
bench planned --batch-size auto "${L[@]}"
bench minus --batch-size auto --planned-batch $(( B > step ? B - step : 1 )) "${L[@]}"
bench plus --batch-size auto --planned-batch $(( B + step )) "${L[@]}"
if [ "${KV_BOTH:-0}" = 1 ]; then
  bench kv-host --batch-size auto --planned-batch $B --kv-offload=true "${L[@]}"
  bench kv-gpu --batch-size auto --planned-batch $B --kv-offload=false "${L[@]}"
fi
[ "${CARD:-0}" = 1 ] && bench card --batch-size auto
echo "done at $(( $(date +%s) - T0 )) s"
