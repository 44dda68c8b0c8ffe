// CPU backend op timings (Google Benchmark; never pass/fail): linear at decode (T = 1, memory-bound) and prefill
// (T = 64) shapes, and decode attention over a cache. Threads: ZI_CPU_THREADS or all cores.
//   build-*/tests/cpu_ops_bench --benchmark_counters_tabular=true
#include <algorithm>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/host_decode_attention.h"
#include "engine/backend/cpu/thread_pool.h"

namespace zi {
namespace {

Backend& backend() {
  static std::unique_ptr<Backend> be = make_cpu_backend();
  return *be;
}

Tensor random_tensor(std::vector<int64_t> shape, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  for (auto& x : v) x = d(rng);
  return backend().from_host(DType::kF32, std::move(shape), v.data());
}

// args: T, in, out
void BM_Linear(benchmark::State& state) {
  const int64_t T = state.range(0), in = state.range(1), out = state.range(2);
  Tensor x = random_tensor({T, in}, 1);
  LinearWeight w{WeightFormat::kDense, random_tensor({out, in}, 2), Tensor()};
  for (auto _ : state) benchmark::DoNotOptimize(backend().linear(x, w).data());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * T * in * out, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] = benchmark::Counter(4.0 * in * out, benchmark::Counter::kIsIterationInvariantRate,
                                                     benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Linear)
    ->Args({1, 2048, 2048})
    ->Args({1, 4096, 4096})
    ->Args({1, 256, 4096})
    ->Args({64, 2048, 2048})
    ->Args({256, 1024, 1024})
    ->Unit(benchmark::kMicrosecond);

// args: context, heads, kv heads, head dim — one decode row per sequence, 4 sequences.
void BM_AttentionDecode(benchmark::State& state) {
  const int ctx = static_cast<int>(state.range(0)), nH = static_cast<int>(state.range(1));
  const int nKV = static_cast<int>(state.range(2)), D = static_cast<int>(state.range(3));
  const int S = 4, BS = 16, per_seq = (ctx + BS - 1) / BS;
  KvLayer cache{random_tensor({S * per_seq, BS, nKV, D}, 3), random_tensor({S * per_seq, BS, nKV, D}, 4)};
  std::vector<SeqSlice> seqs;
  std::vector<std::vector<int32_t>> tables(S);
  for (int s = 0; s < S; ++s) {
    seqs.push_back({s, s, 1, ctx - 1});
    for (int b = 0; b < per_seq; ++b) tables[s].push_back(s * per_seq + b);
  }
  AttentionBatch batch = make_attention_batch(backend(), seqs, BS, tables);
  Tensor q = random_tensor({S, static_cast<int64_t>(nH) * D}, 5);
  AttentionParams p{nH, nKV, D, 0.1f, 0, Tensor()};
  for (auto _ : state) benchmark::DoNotOptimize(backend().attention(q, cache, batch, p).data());
  state.counters["cache_GB/s"] =
      benchmark::Counter(2.0 * 4 * S * ctx * nKV * D, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_AttentionDecode)->Args({512, 32, 8, 128})->Args({2048, 8, 8, 32})->Unit(benchmark::kMicrosecond);

// The KV-offload decode kernel on one layer of an fp16 cache in its paged layout (blocks of 16, shuffled the way a
// busy cache hands them out). args: sequences, context, heads, kv heads, head dim. cache_GB/s counts K and V bytes
// read; the CUDA backend runs it beside its own kernel on offloaded caches (Llama-2-7B: 32/32/128).
void BM_HostDecodeAttention(benchmark::State& state) {
  const int S = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const int nH = static_cast<int>(state.range(2)), nKV = static_cast<int>(state.range(3));
  const int D = static_cast<int>(state.range(4)), BS = 16, per_seq = (ctx + BS - 1) / BS;
  const int64_t NB = int64_t{S} * per_seq;
  const size_t elems = static_cast<size_t>(NB) * BS * nKV * D;
  std::vector<uint16_t> k(elems), v(elems), q(static_cast<size_t>(S) * nH * D), out(q.size());
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> small(0, 0x3bff);  // fp16 values in [0, 1)
  for (auto* buf : {&k, &v, &q})
    for (uint16_t& x : *buf) x = static_cast<uint16_t>(small(rng));
  std::vector<int32_t> order(NB);
  for (int64_t b = 0; b < NB; ++b) order[b] = static_cast<int32_t>(b);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> tables(static_cast<size_t>(S) * per_seq);
  std::vector<SeqSlice> seqs;
  for (int s = 0; s < S; ++s) {
    seqs.push_back({s, s, 1, ctx - 1});
    for (int b = 0; b < per_seq; ++b) tables[s * per_seq + b] = order[s * per_seq + b];
  }
  cpu::HostDecodeAttention a;
  a.k_cache = k.data();
  a.v_cache = v.data();
  a.cache_dtype = DType::kF16;
  a.g = cpu::KvGeometry{NB, BS, nKV, D, tables.data(), per_seq};
  a.n_heads = nH;
  a.scale = 0.088f;
  cpu::ThreadPool pool(cpu::default_cpu_threads());
  for (auto _ : state) cpu::host_decode_attention(pool, a, seqs, 0, seqs.size(), DType::kF16, q.data(), out.data());
  state.counters["cache_GB/s"] = benchmark::Counter(2.0 * 2 * S * ctx * nKV * D,
                                                    benchmark::Counter::kIsIterationInvariantRate,
                                                    benchmark::Counter::kIs1000);
  state.counters["threads"] = pool.num_threads();
  state.SetLabel(cpu::host_decode_attention_isa());
}
BENCHMARK(BM_HostDecodeAttention)
    ->Args({16, 544, 32, 32, 128})
    ->Args({240, 544, 32, 32, 128})
    ->Args({64, 2048, 32, 8, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace zi
