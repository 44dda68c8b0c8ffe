#!/usr/bin/env bash
# The consolidated GPU-machine run (one device call, < 10 minutes): streaming correctness on the fixtures, the
# Llama-2-7B-shape CPU-tier benchmarks, the accelerate comparison, a cold start from real files and the NVMe tier.
# From the repo root with .device/gpu.tar.xz carried (tools/gpu/bundle.sh): tools/gpu/run_all.sh OUT_DIR [STAGES]
set -u
out=${1:-/tmp/out}; stages=${2:-"check bench compare startup nvme"}
mkdir -p "$out"
tar -xJf .device/gpu.tar.xz -C /tmp
export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64 PYTHONUNBUFFERED=1
zi=/tmp/gpu/bin/zeroinfer
m7=config/examples/models/llama-2-7b
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max --format=csv,noheader; nproc; free -g | head -2; } > "$out/device.txt" 2>&1
has() { [[ " $stages " == *" $1 "* ]]; }
if has check; then
  timeout 150 python3 tools/gpu/streaming_check.py "$zi" tests/data > "$out/check.log" 2>&1; echo "check rc=$?" >> "$out/check.log"
fi
if has bench; then
  for b in ${BATCHES:-1 16 64}; do
    echo "== $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --batch-size $b --prompt-len 512 --gen-len 32 --loops 3" >> "$out/bench.log"
    timeout 200 $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --batch-size "$b" \
      --prompt-len 512 --gen-len 32 --loops 3 --json >> "$out/bench.log" 2>&1
  done
fi
if has depth; then
  for d in 3 4; do
    echo "== $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --batch-size 64 --prompt-len 512 --gen-len 32 --loops 2 --prefetch-depth $d" >> "$out/depth.log"
    timeout 150 $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --batch-size 64 \
      --prompt-len 512 --gen-len 32 --loops 2 --prefetch-depth $d --json >> "$out/depth.log" 2>&1
  done
fi
if has compare; then
  timeout 240 python3 tools/gpu/compare_accelerate.py --zeroinfer "$zi" --model $m7 --batches 1,16 \
    --prompt-len 512 --gen-len 8 > "$out/compare.log" 2>&1; echo "compare rc=$?" >> "$out/compare.log"
fi
if has startup; then
  {
    python3 tools/gpu/make_model.py --config $m7 --out /tmp/llama-2-7b-files
    sync; echo 3 > /proc/sys/vm/drop_caches
    echo "== cold start: $zi bench --model /tmp/llama-2-7b-files --cpu-offload --gpu-weights-budget 2GiB --batch-size 1 --prompt-len 512 --gen-len 4 --loops 1 --probe-disk"
    timeout 150 $zi bench --model /tmp/llama-2-7b-files --cpu-offload --gpu-weights-budget 2GiB --batch-size 1 \
      --prompt-len 512 --gen-len 4 --loops 1 --json
    echo "== probes after load (cache dropped again)"; sync; echo 3 > /proc/sys/vm/drop_caches
    timeout 100 $zi bench --model /tmp/llama-2-7b-files --probe-disk --batch-size 1 --prompt-len 8 --gen-len 2 --loops 1 --json --device cuda
  } > "$out/startup.log" 2>&1
fi
if has nvme; then
  {
    echo "== $zi bench --model $m7 --dummy --disk-offload --offload-dir /tmp/zi-store-7b --gpu-weights-budget 2GiB --batch-size 1 --prompt-len 512 --gen-len 4 --loops 1"
    timeout 200 $zi bench --model $m7 --dummy --disk-offload --offload-dir /tmp/zi-store-7b --gpu-weights-budget 2GiB \
      --batch-size 1 --prompt-len 512 --gen-len 4 --loops 1 --json
    echo "== O_DIRECT read probe of the store"
    sync; echo 3 > /proc/sys/vm/drop_caches
    python3 - <<'PY'
import os, time, mmap
path = "/tmp/zi-store-7b/rank-0-of-1.bin"
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 64 << 20)
t0, n = time.perf_counter(), 0
while n < (4 << 30):
    r = os.readv(fd, [buf])
    if r <= 0: break
    n += r
print(f"O_DIRECT sequential read {n / (time.perf_counter() - t0) / 1e9:.2f} GB/s over {n / 2**30:.1f} GiB")
PY
  } > "$out/nvme.log" 2>&1
fi
ls -la "$out"
