// Warp-level tensor-core primitives (sm_80+ PTX) for 16-bit operands: 16-byte asynchronous copies into shared memory
// (cp.async), fragment loads from shared memory (ldmatrix) and mma.sync m16n8k16 with fp32 accumulation.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with g = lane / 4, t = lane % 4;
// each 32-bit register holds two consecutive-k (A, B) or consecutive-column (C) elements, the lower index in the low
// half:
//   A (16×16, row-major) a[0]: row g,     k 2t..2t+1     a[1]: row g + 8, k 2t..2t+1
//                        a[2]: row g,     k 2t+8..2t+9   a[3]: row g + 8, k 2t+8..2t+9
//   B (16×8, k × n)      b[0]: k 2t..2t+1, column g      b[1]: k 2t+8..2t+9, column g
//   C (16×8, fp32)       c[0], c[1]: row g, columns 2t, 2t+1;   c[2], c[3]: row g + 8, same columns
// ldmatrix.x4 loads four 8×8 matrices: lanes 8i..8i+7 give the row addresses of matrix i, and lane l receives, in
// register i, row l / 4, elements 2(l % 4), 2(l % 4) + 1 of matrix i (with .trans: column l / 4, rows 2(l % 4) and
// 2(l % 4) + 1, i.e. the matrix transposed).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace zi::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global → shared, asynchronous (both 16-byte aligned). Completes at cp_async_wait_all().
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(smem)), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits for every copy this thread issued; a __syncthreads() must follow before other threads read the data.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem_row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem_row)));
}

// c += A · B for one 16×8 tile (T = __nv_bfloat16 or __half).
template <class T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded (nearest even) to T and packed, `lo` in the low half; `lo_r` / `hi_r` get the rounded values
// back in fp32.
template <class T>
__device__ __forceinline__ uint32_t pack2_rn(float lo, float hi, float& lo_r, float& hi_r);
template <>
__device__ __forceinline__ uint32_t pack2_rn<__nv_bfloat16>(float lo, float hi, float& lo_r, float& hi_r) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  lo_r = __low2float(v);
  hi_r = __high2float(v);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2_rn<__half>(float lo, float hi, float& lo_r, float& hi_r) {
  const __half2 v = __floats2half2_rn(lo, hi);
  lo_r = __low2float(v);
  hi_r = __high2float(v);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace zi::cuda
