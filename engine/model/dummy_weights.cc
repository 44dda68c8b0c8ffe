#include "engine/model/dummy_weights.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>

#include "engine/core/dummy_random.h"
#include "engine/core/log.h"
#include "engine/model/quantized_weights.h"
#include "engine/quant/quantize.h"

namespace zi {
namespace {


// store(k, v) writes element begin + k.
template <typename Store>
void fill_range(WeightInit init, uint64_t key, size_t begin, size_t end, Store store) {
  if (init != WeightInit::kNormal) {
    const float v = init == WeightInit::kOnes ? 1.0f : 0.0f;
    for (size_t i = begin; i < end; ++i) store(i - begin, v);
    return;
  }
  for (size_t i = begin; i < end; ++i) store(i - begin, dummy_uniform(key, i, kDummyAmplitude));
}

}  // namespace

uint64_t dummy_key(const std::string& name, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return seed ^ h;
}

void fill_dummy(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t begin, size_t end,
                void* out) {
  const uint64_t key = dummy_key(name, seed);
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
    pool.emplace_back([&, k] {
      const size_t begin = n * k / t;
      fill_dummy(name, init, seed, dtype, begin, n * (k + 1) / t, static_cast<char*>(out) + begin * dtype_size(dtype));
    });
  for (auto& th : pool) th.join();
}

void pack_dummy_quantized(const WeightSpec& spec, uint64_t seed, uint8_t* codes, uint16_t* scales, uint16_t* mins,
                          int threads) {
  ZI_CHECK(spec.shape.size() == 2);
  const int64_t rows = spec.shape[0], cols = spec.shape[1];
  const int64_t row_bytes = quant_row_bytes(cols, spec.quant.bits), groups = quant_groups(cols, spec.quant.group_size);
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(cols, 1));  // ~4 MiB of fp32
  // Rows [lo, hi), a block at a time through one fp32 buffer.
  auto pack = [&](int64_t lo, int64_t hi) {
    std::vector<float> values(static_cast<size_t>(std::min(block, std::max<int64_t>(hi - lo, 1)) * cols));
    for (int64_t r0 = lo; r0 < hi; r0 += block) {
      const int64_t n = std::min(block, hi - r0);
      fill_dummy(spec.name, spec.init, seed, DType::kF32, static_cast<size_t>(r0 * cols),
                 static_cast<size_t>((r0 + n) * cols), values.data());
      const Status st = quantize_rows(values.data(), n, cols, spec.quant, spec.name, codes + r0 * row_bytes,
                                      scales + r0 * groups, mins + r0 * groups);
      ZI_CHECK(st.ok());  // finite values of magnitude < 1
    }
  };
  const int t = static_cast<int>(std::clamp<int64_t>(rows / std::max<int64_t>(block, 1), 1, std::max(threads, 1)));
  if (t == 1) return pack(0, rows);
  std::vector<std::thread> pool;
  for (int k = 0; k < t; ++k) pool.emplace_back(pack, rows * k / t, rows * (k + 1) / t);
  for (auto& th : pool) th.join();
}

void upload_dummy_weights(Backend& backend, std::vector<WeightSpec>& specs, uint64_t seed, DType dtype, int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<char> host;
  for (WeightSpec& s : specs) {
    size_t n = 1;
    for (int64_t d : s.shape) n *= static_cast<size_t>(d);
    if (s.quantized) {
      const int64_t out = s.shape[0], in = s.shape[1];
      const int64_t row_bytes = quant_row_bytes(in, s.quant.bits), groups = quant_groups(in, s.quant.group_size);
      std::vector<uint8_t> codes(static_cast<size_t>(out * row_bytes));
      std::vector<uint16_t> scales(static_cast<size_t>(out * groups)), mins(scales.size());
      pack_dummy_quantized(s, seed, codes.data(), scales.data(), mins.data(), threads);
      set_quantized(*s.quantized, s.quant, in, backend.from_host(DType::kU8, {out, row_bytes}, codes.data()),
                    backend.from_host(DType::kF16, {out, groups}, scales.data()),
                    backend.from_host(DType::kF16, {out, groups}, mins.data()));
      continue;
    }
    if (s.init == WeightInit::kNormal) {
      // Made where they live when the backend can (a GPU writes 13 GB of a 7B model in well under a second).
      std::optional<Tensor> t = backend.uniform_weight(dtype, s.shape, dummy_key(s.name, seed), kDummyAmplitude);
      if (t) {
        *s.slot = *std::move(t);
        continue;
      }
    }
    host.resize(n * dtype_size(dtype));
    fill_dummy_parallel(s.name, s.init, seed, dtype, n, host.data(), threads);
    *s.slot = backend.upload_weight(dtype, s.shape, host.data());
  }
}

}  // namespace zi
