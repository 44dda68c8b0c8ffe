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

// Elements [begin, end) of one tensor of `init`, written in `dtype` (F32/F16/BF16) at out + i × dtype_size.
void fill_dummy(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t begin, size_t end,
                void* out);

// All n elements, split over `threads` threads (≥ 64 Ki elements each).
void fill_dummy_parallel(const std::string& name, WeightInit init, uint64_t seed, DType dtype, size_t n, void* out,
                         int threads);

// Uploads every spec's random values onto `backend`, one tensor at a time (the host never holds more than the
// largest tensor): dense ones generated in `dtype` (the backend's weight dtype), quantized ones generated in fp32
// and uploaded packed. threads = 0: every core of this host.
void upload_dummy_weights(Backend& backend, std::vector<WeightSpec>& specs, uint64_t seed, DType dtype,
                          int threads = 0);

}  // namespace zi
