// The kernels behind the bench's device probes (probes.h): a read-only sweep that measures how fast the GPU reads
// its own memory (HBM), and a fill with test values for the GEMM probe's operands.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engine/core/dtype.h"

namespace zi::cuda {

constexpr int kHbmReadThreads = 512;  // threads per block of the read kernel

// Grid size for the read kernel: SMs × the kernel's resident blocks per SM, so every SM stays busy.
cudaError_t hbm_read_blocks(int device, int* blocks);

// Enqueues one read of `bytes` at `src` (16-byte aligned, a multiple of 16 bytes): each thread loads 16-byte
// vectors in a grid-stride loop and XORs them into a 32-bit value; each block writes its fold to sink[block], so
// the loads cannot be elided. sink holds `blocks` uint32.
cudaError_t launch_hbm_read(const void* src, size_t bytes, uint32_t* sink, int blocks, cudaStream_t stream);

// Fills n elements of `dtype` (F32, F16, BF16) at dst with values in [-1, 1) hashed from (index, seed): GEMM
// operands that toggle bits like real weights (zeros would draw less power and flatter the clock).
cudaError_t launch_fill_uniform(DType dtype, void* dst, size_t n, uint32_t seed, cudaStream_t stream);

}  // namespace zi::cuda
