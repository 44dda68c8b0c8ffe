// Dequantization of a group-wise quantized matrix into the activation dtype (the buffer the dense GEMM then reads).
// Each weight's fp32 value is fmaf(code, scale, min): code · scale is exact in fp32, so this is the CPU reference's
// min + code · scale bit for bit, rounded once to the output dtype.
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/quant_kernels.h"

namespace zi::cuda {
namespace {

__device__ __forceinline__ float half_bits_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// One 32-bit word of codes per thread (8 codes at 4 bits, 4 at 8), grid-stride. Requires row_bytes % 4 == 0,
// group_size a multiple of the codes per word (a word never straddles groups) and, at 4 bits, an even row width.
template <class T, int BITS>
__global__ void dequant_words_kernel(QuantArgs q, T* __restrict__ out) {
  constexpr int kCodes = 32 / BITS;
  const int64_t words_per_row = q.row_bytes() / 4, groups = q.groups(), n = q.rows * words_per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / words_per_row, w = i - r * words_per_row;
    const uint32_t word = __ldg(reinterpret_cast<const uint32_t*>(q.data + r * q.row_bytes()) + w);
    const int64_t c0 = w * kCodes, g = c0 / q.group_size;
    const float s = half_bits_to_f32(q.scales[r * groups + g]), m = half_bits_to_f32(q.mins[r * groups + g]);
    T* o = out + r * q.cols + c0;
#pragma unroll
    for (int k = 0; k < kCodes; ++k) {
      const uint32_t code = (word >> (k * BITS)) & ((1u << BITS) - 1);
      o[k] = from_f32<T>(fmaf(static_cast<float>(code), s, m));
    }
  }
}

// Any shape: one byte of codes per thread, grid-stride.
template <class T, int BITS>
__global__ void dequant_bytes_kernel(QuantArgs q, T* __restrict__ out) {
  const int64_t rb = q.row_bytes(), groups = q.groups(), n = q.rows * rb;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / rb, b = i - r * rb;
    const unsigned byte = q.data[i];
    const uint16_t* sr = q.scales + r * groups;
    const uint16_t* mr = q.mins + r * groups;
    T* o = out + r * q.cols;
    if (BITS == 8) {
      const int64_t g = b / q.group_size;
      o[b] = from_f32<T>(fmaf(static_cast<float>(byte), half_bits_to_f32(sr[g]), half_bits_to_f32(mr[g])));
    } else {
      const int64_t c0 = 2 * b, g0 = c0 / q.group_size;
      o[c0] = from_f32<T>(fmaf(static_cast<float>(byte & 0x0fu), half_bits_to_f32(sr[g0]), half_bits_to_f32(mr[g0])));
      if (c0 + 1 < q.cols) {
        const int64_t g1 = (c0 + 1) / q.group_size;
        o[c0 + 1] = from_f32<T>(fmaf(static_cast<float>(byte >> 4), half_bits_to_f32(sr[g1]), half_bits_to_f32(mr[g1])));
      }
    }
  }
}

int blocks_for(int64_t n) { return static_cast<int>(std::clamp<int64_t>((n + 255) / 256, 1, 65536)); }

}  // namespace

void launch_dequantize(const QuantArgs& q, DType out_type, void* out, cudaStream_t stream) {
  if (q.rows == 0 || q.cols == 0) return;
  const int64_t rb = q.row_bytes();
  const int codes_per_word = q.bits == 4 ? 8 : 4;
  const bool words = rb % 4 == 0 && q.group_size % codes_per_word == 0 && (q.bits == 8 || q.cols == 2 * rb) &&
                     reinterpret_cast<uintptr_t>(q.data) % 4 == 0;
  const int64_t n = words ? q.rows * (rb / 4) : q.rows * rb;
  ZI_DISPATCH_FLOAT(out_type, T, {
    T* o = static_cast<T*>(out);
    if (q.bits == 4) {
      if (words) dequant_words_kernel<T, 4><<<blocks_for(n), 256, 0, stream>>>(q, o);
      else dequant_bytes_kernel<T, 4><<<blocks_for(n), 256, 0, stream>>>(q, o);
    } else {
      if (words) dequant_words_kernel<T, 8><<<blocks_for(n), 256, 0, stream>>>(q, o);
      else dequant_bytes_kernel<T, 8><<<blocks_for(n), 256, 0, stream>>>(q, o);
    }
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
