// Random weights for benchmarks (`--dummy`, made from config.json alone): the one generator every tier uses, so a
// dummy model computes the same whether its layers are resident, streamed from pinned memory or read from NVMe.
// Matrices are uniform on (−a, a) with a = 0.02·√3 (std 0.02, transformers' init scale), norms are ones, biases
// zeros. Element i of tensor `name` depends only on (seed, name, i) — a counter-based hash, no sequential state —
// so any range of any tensor is generated independently, on as many threads as the host has.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/dtype.h"
#include "engine/model/weights.h"

namespace zi {

// The key of tensor `name`'s values (engine/core/dummy_random.h): seed ^ FNV-1a(name).
uint64_t dummy_key(const std::string& name, uint64_t seed);

// Elements [begin, end) of one tensor of `init`, written in `dtype` (F32/F16/BF16): element i at
// out + (i − begin) × dtype_size, so `out` may be a buffer for just that range.
void fill_dummy(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t begin, size_t end,
                void* out);

// All n elements, split over `threads` threads (≥ 64 Ki elements each).
void fill_dummy_parallel(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t n, void* out,
                         int threads);

// A quantized tensor's random values [rows, cols], quantized as `spec.quant` into packed codes [rows, row bytes]
// and fp16 scales and minimums [rows, groups], a block of rows at a time: the fp32 values of the whole tensor
// (3.3 GB for one of BLOOM-176B's MLP matrices) are never held. Rows are split over `threads` threads.
void pack_dummy_quantized(const WeightSpec& spec, uint64_t seed, uint8_t* codes, uint16_t* scales, uint16_t* mins,
                          int threads = 1);

// Uploads every spec's random values onto `backend`, one tensor at a time (the host never holds more than the
// largest tensor as stored): dense random ones made on the backend itself where it can (Backend::uniform_weight:
// the GPU), else generated in `dtype` (the backend's weight dtype) on the host; quantized ones packed as above.
// threads = 0: every core of this host.
void upload_dummy_weights(Backend& backend, std::vector<WeightSpec>& specs, uint64_t seed, DType dtype,
                          int threads = 0);

}  // namespace zi
