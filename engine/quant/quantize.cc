#include "engine/quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "engine/core/dtype.h"

namespace zi {
namespace {

constexpr float kF16Max = 65504.0f;

// Neighbours of a half value (raw bits) toward +∞ / −∞; ±0 step to the smallest subnormal of the direction.
uint16_t f16_next_up(uint16_t h) {
  if (h == 0x8000u) return 0x0001u;
  return (h & 0x8000u) ? static_cast<uint16_t>(h - 1) : static_cast<uint16_t>(h + 1);
}
uint16_t f16_next_down(uint16_t h) {
  if (h == 0x0000u) return 0x8001u;
  return (h & 0x8000u) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h - 1);
}

// The group's code for w: the q in [0, qmax] whose dequantized fp32 value is nearest (ties: the smaller q).
inline int nearest_code(float w, float mn, float sc, int qmax) {
  if (sc == 0.0f) return 0;
  int q = static_cast<int>(std::nearbyint((w - mn) / sc));
  q = q < 0 ? 0 : (q > qmax ? qmax : q);
  // (w − mn) / sc is itself rounded: the neighbours may be nearer once dequantized as the backends do.
  float best = std::fabs(mn + static_cast<float>(q) * sc - w);
  if (q > 0) {
    const float e = std::fabs(mn + static_cast<float>(q - 1) * sc - w);
    if (e <= best) best = e, --q;
  }
  if (q < qmax) {
    const float e = std::fabs(mn + static_cast<float>(q + 1) * sc - w);
    if (e < best) ++q;
  }
  return q;
}

}  // namespace

uint16_t f32_to_f16_down(float x) {
  uint16_t h = f32_to_f16(x);
  if (f16_to_f32(h) > x) h = f16_next_down(h);
  return h;
}

uint16_t f32_to_f16_up(float x) {
  uint16_t h = f32_to_f16(x);
  if (f16_to_f32(h) < x) h = f16_next_up(h);
  return h;
}

Status check_quant_params(const QuantParams& p) {
  if (p.bits != 4 && p.bits != 8 && p.bits != 16)
    return absl::InvalidArgumentError(absl::StrCat("quant_bits must be 4, 8 or 16, got ", p.bits));
  if (p.group_size < 1 || p.group_size > (int64_t{1} << 20))
    return absl::InvalidArgumentError(
        absl::StrCat("quant_group_size must be in 1..1048576, got ", p.group_size));
  return absl::OkStatus();
}

uint64_t quantized_bytes(int64_t rows, int64_t cols, const QuantParams& p) {
  const uint64_t r = static_cast<uint64_t>(rows);
  return r * static_cast<uint64_t>(quant_row_bytes(cols, p.bits)) +
         2 * r * static_cast<uint64_t>(quant_groups(cols, p.group_size)) * sizeof(uint16_t);
}

namespace {

// quantize_rows for rows that start at row `row0` of the tensor (errors name the tensor's row).
Status quantize_rows_from(const float* w, int64_t rows, int64_t cols, const QuantParams& p, const std::string& tensor,
                          int64_t row0, uint8_t* data, uint16_t* scales, uint16_t* mins) {
  ZI_CHECK(p.bits == 4 || p.bits == 8);
  ZI_CHECK(p.group_size >= 1 && rows >= 0 && cols >= 0);
  const int qmax = quant_max_code(p.bits);
  const int64_t row_bytes = quant_row_bytes(cols, p.bits), groups = quant_groups(cols, p.group_size);
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    uint8_t* dr = data + r * row_bytes;
    if (p.bits == 4 && (cols & 1)) dr[row_bytes - 1] = 0;  // the unused high nibble of an odd row
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * p.group_size, c1 = std::min(cols, c0 + p.group_size);
      float lo = wr[c0], hi = wr[c0];
      for (int64_t c = c0; c < c1; ++c) {
        const float v = wr[c];
        if (!std::isfinite(v) || std::fabs(v) > kF16Max)
          return absl::InvalidArgumentError(absl::StrCat(
              "tensor '", tensor, "': weight [", row0 + r, ", ", c, "] is ", std::isnan(v) ? "NaN" : absl::StrCat(v),
              std::isfinite(v) ? ", outside fp16's range (|w| <= 65504) that quantization scales need"
                               : "; quantization needs finite weights"));
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      // The grid: m ≤ lo rounded down to fp16; the smallest fp16 step s with m + qmax·s ≥ hi (as the backends
      // compute it in fp32), so every weight of the group is inside [m, m + qmax·s].
      const uint16_t m_h = f32_to_f16_down(lo);
      const float m = f16_to_f32(m_h);
      uint16_t s_h = 0;
      if (hi > m) {
        s_h = f32_to_f16_up((hi - m) / static_cast<float>(qmax));
        while (m + static_cast<float>(qmax) * f16_to_f32(s_h) < hi) s_h = f16_next_up(s_h);
      }
      const float s = f16_to_f32(s_h);
      mins[r * groups + g] = m_h;
      scales[r * groups + g] = s_h;
      for (int64_t c = c0; c < c1; ++c) {
        const int q = nearest_code(wr[c], m, s, qmax);
        if (p.bits == 8) {
          dr[c] = static_cast<uint8_t>(q);
        } else if ((c & 1) == 0) {
          dr[c >> 1] = static_cast<uint8_t>((dr[c >> 1] & 0xf0u) | q);
        } else {
          dr[c >> 1] = static_cast<uint8_t>((dr[c >> 1] & 0x0fu) | (q << 4));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

Status quantize_rows(const float* w, int64_t rows, int64_t cols, const QuantParams& p, const std::string& tensor,
                     uint8_t* data, uint16_t* scales, uint16_t* mins) {
  return quantize_rows_from(w, rows, cols, p, tensor, 0, data, scales, mins);
}

StatusOr<QuantizedMatrix> quantize_matrix(const float* w, int64_t rows, int64_t cols, const QuantParams& p,
                                          const std::string& tensor, int threads) {
  QuantizedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.params = p;
  const int64_t rb = quant_row_bytes(cols, p.bits), groups = quant_groups(cols, p.group_size);
  m.data.assign(static_cast<size_t>(rows * rb), 0);
  m.scales.assign(static_cast<size_t>(rows * groups), 0);
  m.mins.assign(m.scales.size(), 0);
  // Chunks of rows of at least ~1M weights each; chunk k's status goes to errors[k], the lowest failing one wins.
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t chunks = std::clamp<int64_t>(rows * cols / (int64_t{1} << 20), 1, std::min<int64_t>(threads, rows));
  std::vector<Status> errors(static_cast<size_t>(std::max<int64_t>(chunks, 1)));
  auto run = [&](int64_t k) {
    const int64_t r0 = rows * k / chunks, r1 = rows * (k + 1) / chunks;
    errors[k] = quantize_rows_from(w + r0 * cols, r1 - r0, cols, p, tensor, r0, m.data.data() + r0 * rb,
                                   m.scales.data() + r0 * groups, m.mins.data() + r0 * groups);
  };
  if (chunks <= 1) {
    if (rows > 0) run(0);
  } else {
    std::vector<std::thread> pool;
    for (int64_t k = 0; k < chunks; ++k) pool.emplace_back(run, k);
    for (auto& t : pool) t.join();
  }
  for (const Status& s : errors) ZI_RETURN_IF_ERROR(s);
  return m;
}

void dequantize_rows(const QuantView& q, int64_t row_begin, int64_t row_end, float* out) {
  ZI_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= q.rows);
  const int64_t cols = q.cols, G = q.params.group_size, row_bytes = q.row_bytes(), groups = q.groups();
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* dr = q.data + r * row_bytes;
    float* o = out + (r - row_begin) * cols;
    for (int64_t g = 0; g < groups; ++g) {
      const float m = f16_to_f32(q.mins[r * groups + g]);
      const float s = f16_to_f32(q.scales[r * groups + g]);
      const int64_t c0 = g * G, c1 = std::min(cols, c0 + G);
      if (q.params.bits == 8) {
        for (int64_t c = c0; c < c1; ++c) o[c] = m + static_cast<float>(dr[c]) * s;
      } else {
        for (int64_t c = c0; c < c1; ++c) {
          const unsigned code = (dr[c >> 1] >> ((c & 1) * 4)) & 0x0fu;
          o[c] = m + static_cast<float>(code) * s;
        }
      }
    }
  }
}

}  // namespace zi
