// Group-wise asymmetric weight quantization (ZeRO-Inference / DeepSpeed style): the host quantizer and the
// reference dequantizer every backend must match.
//
// A weight matrix W [rows = out, cols = in] is cut, row by row, into groups of `group_size` consecutive weights
// along the input dimension (the last group of a row is shorter when cols % group_size != 0). Each group g of row r
// has an fp16 minimum m and an fp16 scale s (the quantization step), and each weight an unsigned code q in
// [0, 2^bits − 1]:
//
//     W[r, c] ≈ m[r, g] + q[r, c] · s[r, g]      with g = c / group_size, computed in fp32
//
// q · s is exact in fp32 (≤ 8 + 11 significant bits), so the fp32 value has a single rounding (the add) and a fused
// multiply-add gives the same bits: the CPU reference and the GPU kernels dequantize bit-identically.
//
// Choosing m and s: m is the group's minimum rounded *down* to fp16 and s the smallest fp16 value with
// m + (2^bits − 1) · s ≥ the group's maximum, so every weight lies inside the grid; each weight then takes the
// code whose dequantized value is nearest. The error of every weight is therefore at most s / 2 (up to the one fp32
// rounding of the add). A constant group whose value is an fp16 number gets s = 0 and is exact.
//
// Packed layout (the bytes a layer shard carries):
//   data    U8  [rows, row_bytes]: 8 bits: one code a byte, row_bytes = cols;
//                                  4 bits: two codes a byte, row_bytes = ceil(cols / 2); code of column 2j in the
//                                  LOW nibble (bits 0-3), column 2j + 1 in the HIGH nibble (bits 4-7); an odd row
//                                  ends with a zero high nibble. Every row starts on a byte boundary.
//   scales  F16 [rows, groups]   (groups = ceil(cols / group_size)), raw IEEE half bits
//   mins    F16 [rows, groups]
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace zi {

struct QuantParams {
  int bits = 16;            // 8 | 4; 16 = not quantized
  int64_t group_size = 64;  // weights per group along the input dimension, ≥ 1
  bool enabled() const { return bits != 16; }
};

// The model-level choice (EngineOptions quant_bits / quant_group_size / quant_embeddings): the linear weights of
// every decoder layer (attention and MLP projections) are quantized; norms, biases and the input embedding table
// never; the LM head only with `embeddings` (a tied head then gets its own quantized copy; the embedding lookup keeps
// reading the 16-bit table, whose T rows a step cost nothing worth quantizing).
struct QuantConfig {
  QuantParams params;  // bits 16 = off
  bool embeddings = false;
  bool enabled() const { return params.enabled(); }
};

// OK for bits 4, 8 (and 16 = off) and group_size ≥ 1; errors name the value.
Status check_quant_params(const QuantParams& p);

inline int64_t quant_row_bytes(int64_t cols, int bits) { return bits == 4 ? (cols + 1) / 2 : cols; }
inline int64_t quant_groups(int64_t cols, int64_t group_size) { return (cols + group_size - 1) / group_size; }
inline int quant_max_code(int bits) { return (1 << bits) - 1; }

// Read-only view of one quantized matrix in host memory (the layout above).
struct QuantView {
  const uint8_t* data = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* mins = nullptr;
  int64_t rows = 0, cols = 0;
  QuantParams params;
  int64_t row_bytes() const { return quant_row_bytes(cols, params.bits); }
  int64_t groups() const { return quant_groups(cols, params.group_size); }
};

// An owned quantized matrix (host).
struct QuantizedMatrix {
  int64_t rows = 0, cols = 0;
  QuantParams params;
  std::vector<uint8_t> data;     // [rows, row_bytes]
  std::vector<uint16_t> scales;  // [rows, groups]
  std::vector<uint16_t> mins;    // [rows, groups]
  QuantView view() const { return {data.data(), scales.data(), mins.data(), rows, cols, params}; }
};

// Quantizes w [rows, cols] (fp32, row-major) into caller buffers sized as the layout above (data may be written
// straight into a layer shard). NaN, ±Inf and weights beyond fp16's range (|w| > 65504) are refused: the error names
// `tensor`, the element's [row, col] and its value. Deterministic; does not depend on threads.
Status quantize_rows(const float* w, int64_t rows, int64_t cols, const QuantParams& p, const std::string& tensor,
                     uint8_t* data, uint16_t* scales, uint16_t* mins);
// The same, owning the result; rows are split over `threads` threads (0 = the machine's cores) for large
// matrices. The result and the error (the first bad element in row order) do not depend on the thread count.
StatusOr<QuantizedMatrix> quantize_matrix(const float* w, int64_t rows, int64_t cols, const QuantParams& p,
                                          const std::string& tensor, int threads = 0);

// Rows [row_begin, row_end) of q dequantized to fp32 into out [(row_end − row_begin), cols]: the reference every
// backend's dequantization equals bit for bit.
void dequantize_rows(const QuantView& q, int64_t row_begin, int64_t row_end, float* out);

// Bytes of the packed form of a [rows, cols] matrix (data + scales + mins, each as its own tensor).
uint64_t quantized_bytes(int64_t rows, int64_t cols, const QuantParams& p);

// fp16 rounding toward −∞ / +∞ of a finite float inside fp16's range (raw half bits): the quantizer's bounds.
uint16_t f32_to_f16_down(float x);
uint16_t f32_to_f16_up(float x);

}  // namespace zi
