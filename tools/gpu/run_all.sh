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
if has gputests; then
  # Every gpu-labelled test, from the one binary that holds them all (gpu_all_tests) or separate ones
  # (ctest files hold the build machine's paths).
  for t in /tmp/gpu/bin/*_test /tmp/gpu/bin/*_tests; do
    [ -x "$t" ] || continue
    echo "== $t"; ZI_TEST_DATA=$PWD/tests/data timeout 240 "$t" 2>&1 | grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|Failure|error|OK \]" | tail -40
    echo "rc=${PIPESTATUS[0]}"
  done > "$out/gputests.log" 2>&1
fi
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
if has nvme2; then
  {
    # The store from an earlier stage, or written now; then each read setting against the store's own O_DIRECT probe.
    for a in "1MiB 8" "4MiB 8" "8MiB 16"; do
      set -- $a
      echo "== $zi bench --model $m7 --dummy --disk-offload --offload-dir /tmp/zi-store-7b --gpu-weights-budget 2GiB --batch-size 1 --prompt-len 512 --gen-len 3 --loops 1 --probe-disk --aio-block-size $1 --aio-queue-depth $2"
      timeout 150 $zi bench --model $m7 --dummy --disk-offload --offload-dir /tmp/zi-store-7b --gpu-weights-budget 2GiB \
        --batch-size 1 --prompt-len 512 --gen-len 3 --loops 1 --probe-disk --aio-block-size $1 --aio-queue-depth $2 --json
    done
  } > "$out/nvme2.log" 2>&1
fi
if has quant; then
  {
    echo "== 4-bit batch 16 with the fused GEMV off (ZI_QUANT_GEMV_MAX_ROWS=0: dequantize + GEMM, the path before T ≤ 16)"
    ZI_QUANT_GEMV_MAX_ROWS=0 timeout 120 $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 1 --batch-size 16 \
      --prompt-len 512 --gen-len 16 --loops 2 --quant_bits 4 --quant_group_size 64 --json 2>&1 | grep -v "^I "
    for b in 1 16; do for q in 16 8 4; do
      echo "== $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 1 --batch-size $b --prompt-len 512 --gen-len 16 --loops 2 --quant_bits $q --quant_group_size 64"
      timeout 120 $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 1 --batch-size $b --prompt-len 512 \
        --gen-len 16 --loops 2 --quant_bits $q --quant_group_size 64 --json 2>&1 | grep -v "^I "
    done; done
  } > "$out/quant.log" 2>&1
fi
if has serve; then
  {
    echo "== serve --config config/default.yaml --device cuda --cpu-offload --gpu-weights-budget 1 --listen 127.0.0.1:0"
    $zi serve --config config/default.yaml --device cuda --cpu-offload --gpu-weights-budget 1 --listen 127.0.0.1:0 \
      --metrics-listen 127.0.0.1:0 > /tmp/serve.out 2> /tmp/serve.err &
    pid=$!
    for i in $(seq 60); do grep -q "listening on" /tmp/serve.err && break; sleep 0.5; done
    addr=$(grep -o "listening on [0-9.:]*" /tmp/serve.err | head -1 | awk '{print $3}')
    echo "server at $addr"
    timeout 60 $zi client --server "$addr" --max-new-tokens 40 "In the beginning"; echo " [client rc=$?]"
    maddr=$(grep -o "metrics on http://[0-9.:]*" /tmp/serve.err | head -1 | sed 's|metrics on http://||')
    echo "== /metrics engine rows ($maddr)"
    python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://$maddr/metrics').read().decode())" \
      | grep -E "^zeroinfer_(weight_fetch|pcie|prefetch_stall|step_duration_seconds_(count|sum)|gpu_memory|kv_cache|allgather)"
    kill -TERM $pid; wait $pid; echo "serve exit $?"
    grep -E "placement|streaming|listening|loaded" /tmp/serve.err | head
  } > "$out/serve.log" 2>&1
fi
if has zero3; then
  # Issue 9: ZeRO-3 over N GPUs of this host, Llama-2-13B shape, every layer streamed from pinned CPU memory,
  # batch 16 per rank; N = 1 on the same machine as the baseline.
  m13=config/examples/models/llama-2-13b
  for n in 1 2; do
    echo "== $zi bench --model $m13 --dummy --cpu-offload --gpu-weights-budget 1 --num-gpus $n --batch-size 16 --prompt-len 512 --gen-len 32 --loops 2"
    NCCL_NVLS_ENABLE=0 timeout 280 $zi bench --model $m13 --dummy --cpu-offload --gpu-weights-budget 1 --num-gpus $n \
      --batch-size 16 --prompt-len 512 --gen-len 32 --loops 2 --json 2>&1 | grep -v "^I "
  done > "$out/zero3.log" 2>&1
fi
if has kill; then
  {
    # A worker SIGKILLed while streams run: the clients get an error, health goes NOT_SERVING, SIGTERM exits 0.
    # Steps slowed to 20 ms (debug.step_delay_ms) so the stream is still running when the worker dies.
    { cat config/default.yaml; echo "debug: {step_delay_ms: 20}"; } > config/kill-run.yaml
    echo "== serve --config config/kill-run.yaml (default.yaml + debug.step_delay_ms 20) --device cuda --num-gpus 2 --cpu-offload --gpu-weights-budget 1"
    NCCL_NVLS_ENABLE=0 $zi serve --config config/kill-run.yaml --device cuda --num-gpus 2 --cpu-offload --gpu-weights-budget 1 \
      --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 > /tmp/k.out 2> /tmp/k.err &
    pid=$!
    for i in $(seq 120); do grep -q "listening on" /tmp/k.err && break; sleep 0.5; done
    addr=$(grep -o "listening on [0-9.:]*" /tmp/k.err | head -1 | awk '{print $3}')
    for i in $(seq 120); do timeout 30 $zi client --server "$addr" --max-new-tokens 8 "In the beginning" > /dev/null 2>&1 && break; sleep 0.5; done
    echo "serving after $i tries"
    (timeout 60 $zi client --server "$addr" --max-new-tokens 150 --ignore-eos "And God said"; echo " [client rc=$?]") > /tmp/k.client 2>&1 &
    cpid=$!
    sleep 1
    w=$(pgrep -f "worker --rank 1 " | head -1); echo "killing worker rank 1 pid $w"; t0=$(date +%s%N)
    kill -KILL $w; wait $cpid; t1=$(date +%s%N); cat /tmp/k.client; echo "client ended $(( (t1 - t0) / 1000000 )) ms after the kill"
    timeout 10 $zi client --server "$addr" --max-new-tokens 4 "after"; echo " [client after the kill rc=$?]"
    kill -TERM $pid; wait $pid; echo "serve exit $?"
    grep -E "worker rank|NOT_SERVING|lost|placement|NCCL|communicator" /tmp/k.err | head -20
  } > "$out/kill.log" 2>&1
fi
if has batching; then
  # Issue 10: mixed workload (prompts uniform 128-1024, outputs 16-256) through the scheduler, Llama-2-7B shape, CPU
  # tier, 2 GiB of resident weights, the same 8 GiB GPU KV cache for both policies (the KV cache, not max_batch_size,
  # bounds the batch). POLICIES="continuous" or "static" runs one (each takes minutes); REQUESTS sizes the file.
  python3 tools/make_workload.py --requests "${REQUESTS:-128}" --seed 0 --out /tmp/mixed.jsonl
  for p in ${POLICIES:-continuous static}; do
    echo "== $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --prefetch-depth 4 --kv-cache-bytes 8GiB --batch-size 128 --max-num-batched-tokens 8192 --workload mixed(${REQUESTS:-128}, seed 0) --policy $p"
    timeout ${BENCH_TIMEOUT:-540} $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --prefetch-depth 4 \
      --kv-cache-bytes 8GiB --batch-size 128 --max-num-batched-tokens 8192 --workload /tmp/mixed.jsonl --policy "$p" \
      --json 2>&1 | grep -v "^I "; echo "rc=${PIPESTATUS[0]}"
  done > "$out/batching-${POLICIES:-all}.log" 2>&1
fi
if has kvoffload; then
  # Issue 10: KV offload. One batch of B requests (prompt 512, output 32; static policy: all admitted together),
  # Llama-2-7B shape, CPU tier, 2 GiB resident weights. GPU KV 8 GiB holds 30 such sequences (8 GiB / (543 tokens x
  # 512 KiB)); 64 GiB of pinned host KV holds 241. GPU_BATCHES / HOST_BATCHES choose the batches (set empty: none), MODES who computes
  # offloaded decode attention (kv_cache.offload_attention). Each run's per-step log goes to OUT/steps-*.jsonl
  # (only the last GPU and the last host run are kept: at most 8 files come back).
  {
    for b in ${GPU_BATCHES-16 30}; do
      python3 tools/make_workload.py --requests "$b" --prompt-min 512 --prompt-max 512 --output-min 32 --output-max 32 --out /tmp/fixed-$b.jsonl
      echo "== GPU KV: $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --prefetch-depth 4 --kv-cache-bytes 8GiB --batch-size $b --workload fixed($b x 512/32) --policy static"
      timeout 200 $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --prefetch-depth 4 \
        --kv-cache-bytes 8GiB --batch-size "$b" --workload /tmp/fixed-$b.jsonl --policy static --json \
        --step-log "$out/steps-gpu-kv.jsonl" 2>&1 | grep -v "^I "
    done
    for mode in ${MODES:-auto}; do
      for b in ${HOST_BATCHES-120 240}; do
        python3 tools/make_workload.py --requests "$b" --prompt-min 512 --prompt-max 512 --output-min 32 --output-max 32 --out /tmp/fixed-$b.jsonl
        echo "== host KV: $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --prefetch-depth 4 --kv-offload --kv-offload-attention $mode --kv-cache-bytes 64GiB --batch-size $b --workload fixed($b x 512/32) --policy static"
        timeout 280 $zi bench --model $m7 --dummy --cpu-offload --gpu-weights-budget 2GiB --prefetch-depth 4 \
          --kv-offload --kv-offload-attention "$mode" --kv-cache-bytes 64GiB --batch-size "$b" \
          --workload /tmp/fixed-$b.jsonl --policy static --json --step-log "$out/steps-host-kv-$mode.jsonl" 2>&1 \
          | grep -v "^I " | grep -v "^W "
      done
    done
  } > "$out/kvoffload.log" 2>&1
fi
if has cpubench; then
  # The host's side of KV offload: the CPU decode-attention kernel and its memory bandwidth on this machine.
  [ -x /tmp/gpu/bin/cpu_ops_bench ] && timeout 120 /tmp/gpu/bin/cpu_ops_bench --benchmark_filter=HostDecodeAttention \
    --benchmark_counters_tabular=true > "$out/cpubench.log" 2>&1
fi
ls -la "$out"
