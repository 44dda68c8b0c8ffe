#include "engine/model/dummy_weights.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "engine/core/log.h"
#include "engine/model/quantized_weights.h"

namespace zi {
namespace {

// splitmix64's finaliser: a bijection with full avalanche, so consecutive counters give independent-looking bits.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t name_hash(const std::string& s) {  // FNV-1a
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

template <typename Store>
void fill_range(WeightInit init, uint64_t key, size_t begin, size_t end, Store store) {
  if (init != WeightInit::kNormal) {
    const float v = init == WeightInit::kOnes ? 1.0f : 0.0f;
    for (size_t i = begin; i < end; ++i) store(i, v);
    return;
  }
  constexpr float a = 0.02f * 1.7320508f;  // uniform on (−a, a) has std a/√3 = 0.02
  for (size_t i = begin; i < end; ++i) {
    const uint64_t r = mix(key + 0x9e3779b97f4a7c15ull * (i + 1));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
    store(i, (2.0f * u - 1.0f) * a);
  }
}

}  // namespace

void fill_dummy(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t begin, size_t end,
                void* out) {
  const uint64_t key = seed ^ name_hash(name);
  switch (dtype) {
    case DType::kF32:
      fill_range(init, key, begin, end, [p = static_cast<float*>(out)](size_t i, float v) { p[i] = v; });
      break;
    case DType::kBF16:
      fill_range(init, key, begin, end, [p = static_cast<uint16_t*>(out)](size_t i, float v) { p[i] = f32_to_bf16(v); });
      break;
    case DType::kF16:
      fill_range(init, key, begin, end, [p = static_cast<uint16_t*>(out)](size_t i, float v) { p[i] = f32_to_f16(v); });
      break;
    default:
      ZI_CHECK(false && "dummy weights are F32, F16 or BF16");
  }
}

void fill_dummy_parallel(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t n, void* out,
                         int threads) {
  const int t = std::max(1, std::min<int>(threads, static_cast<int>(n / 65536) + 1));
  if (t == 1) return fill_dummy(name, init, seed, dtype, 0, n, out);
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(t));
  for (int k = 0; k < t; ++k)
    pool.emplace_back([&, k] { fill_dummy(name, init, seed, dtype, n * k / t, n * (k + 1) / t, out); });
  for (auto& th : pool) th.join();
}

void upload_dummy_weights(Backend& backend, std::vector<WeightSpec>& specs, uint64_t seed, DType dtype, int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<char> host;
  for (WeightSpec& s : specs) {
    size_t n = 1;
    for (int64_t d : s.shape) n *= static_cast<size_t>(d);
    const DType gen = s.quantized ? DType::kF32 : dtype;  // quantized from the fp32 values
    host.resize(n * dtype_size(gen));
    fill_dummy_parallel(s.name, s.init, seed, gen, n, host.data(), threads);
    if (s.quantized) {
      const Status st = upload_quantized(backend, s, reinterpret_cast<const float*>(host.data()), "dummy weights");
      ZI_CHECK(st.ok());  // finite values of magnitude < 1
      continue;
    }
    *s.slot = backend.upload_weight(gen, s.shape, host.data());
  }
}

}  // namespace zi
