// Row-wise and elementwise CPU kernels: RMSNorm, LayerNorm, RoPE, SwiGLU and activations (fp32; reductions in
// double where it costs nothing, so the reference is at least as accurate as torch's fp32).
#include <algorithm>
#include <cmath>

#include "engine/backend/cpu/kernels.h"

namespace zi::cpu {

namespace {
// Rows per chunk so that a chunk is ~16K elements: small tensors run inline.
int64_t rows_per_chunk(int64_t row_len) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_len)); }

// SwiGLU's product, one formula for silu_mul_f32 and gate_up_silu_f32 so the two agree bit for bit.
inline float silu_times(float g, float u) { return (g / (1.0f + std::exp(-g))) * u; }
}  // namespace

void rms_norm_f32(ThreadPool& pool, const float* x, int64_t T, int64_t H, const float* weight, float eps, float* y) {
  pool.parallel_for(T, rows_per_chunk(H), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * H;
      float* yr = y + t * H;
      double ss = 0.0;
      for (int64_t i = 0; i < H; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      // As transformers: x · rsqrt(mean + eps) in fp32, then × weight.
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(H) + eps));
      for (int64_t i = 0; i < H; ++i) yr[i] = weight[i] * (xr[i] * inv);
    }
  });
}

void layer_norm_f32(ThreadPool& pool, const float* x, int64_t T, int64_t H, const float* weight, const float* bias,
                    float eps, float* y) {
  pool.parallel_for(T, rows_per_chunk(H), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * H;
      float* yr = y + t * H;
      double sum = 0.0;
      for (int64_t i = 0; i < H; ++i) sum += xr[i];
      const double mean = sum / static_cast<double>(H);
      double var = 0.0;
      for (int64_t i = 0; i < H; ++i) var += (xr[i] - mean) * (xr[i] - mean);
      var /= static_cast<double>(H);
      const double inv = 1.0 / std::sqrt(var + eps);
      for (int64_t i = 0; i < H; ++i) {
        float v = static_cast<float>((xr[i] - mean) * inv) * weight[i];
        yr[i] = bias ? v + bias[i] : v;
      }
    }
  });
}

void rope_f32(ThreadPool& pool, float* x, int64_t T, int n_heads, int head_dim, const int32_t* positions,
              const float* inv_freq) {
  const int half = head_dim / 2;
  pool.parallel_for(T, rows_per_chunk(static_cast<int64_t>(n_heads) * head_dim), [&](int64_t t0, int64_t t1) {
    std::vector<float> cos_t(half), sin_t(half);
    for (int64_t t = t0; t < t1; ++t) {
      for (int i = 0; i < half; ++i) {
        // The angle is rounded to fp32 as transformers computes it (inv_freq · position in fp32).
        const float angle = static_cast<float>(positions[t]) * inv_freq[i];
        cos_t[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
        sin_t[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
      }
      float* row = x + t * static_cast<int64_t>(n_heads) * head_dim;
      for (int h = 0; h < n_heads; ++h) {
        float* xh = row + static_cast<int64_t>(h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const float a = xh[i], b = xh[i + half];
          xh[i] = a * cos_t[i] - b * sin_t[i];
          xh[i + half] = b * cos_t[i] + a * sin_t[i];
        }
      }
    }
  });
}

void silu_mul_f32(ThreadPool& pool, const float* gate, const float* up, int64_t n, float* y) {
  pool.parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = silu_times(gate[i], up[i]);
  });
}

void gate_up_silu_f32(ThreadPool& pool, const float* gate_up, int64_t T, int64_t F, float* y) {
  pool.parallel_for(T, rows_per_chunk(F), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* gate = gate_up + t * 2 * F;
      const float* up = gate + F;
      float* yr = y + t * F;
      for (int64_t i = 0; i < F; ++i) yr[i] = silu_times(gate[i], up[i]);
    }
  });
}

void activation_f32(ThreadPool& pool, const float* x, int64_t n, Activation kind, float* y) {
  pool.parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float v = x[i];
      switch (kind) {
        case Activation::kRelu:
          y[i] = v > 0.0f ? v : 0.0f;
          break;
        case Activation::kGeluTanh:
          y[i] = 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
          break;
        case Activation::kGelu:
          y[i] = 0.5f * v * (1.0f + std::erf(v * 0.7071067811865476f));
          break;
        case Activation::kSilu:
          y[i] = v / (1.0f + std::exp(-v));
          break;
      }
    }
  });
}

}  // namespace zi::cpu
