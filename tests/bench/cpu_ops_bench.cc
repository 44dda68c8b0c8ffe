// CPU backend op timings (Google Benchmark; never pass/fail): linear at decode (T = 1, memory-bound) and prefill
// (T = 64) shapes, and decode attention over a cache. Threads: ZI_CPU_THREADS or all cores.
//   build-*/tests/cpu_ops_bench --benchmark_counters_tabular=true
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "engine/backend/backend.h"

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

}  // namespace
}  // namespace zi
