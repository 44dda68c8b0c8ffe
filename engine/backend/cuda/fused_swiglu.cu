// SwiGLU on a fused gate/up projection's output: gate_up [T, 2F] (columns [gate | up]) → y [T, F] = silu(gate) × up,
// so the two halves need no column copies before silu_mul. fp32 math as activation.cu's silu_mul (accurate expf),
// one rounding on store; 16-byte packs when F and the pointers allow.
#include <algorithm>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_types.cuh"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/vec_pack.cuh"

namespace zi::cuda {
namespace {

// One item = V consecutive outputs of one row.
template <class T, int V>
__global__ void gate_up_silu_kernel(const T* __restrict__ gate_up, int64_t rows, int64_t F, T* __restrict__ y) {
  using P = VecPack<T, V>;
  const int64_t per_row = F / V, n = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / per_row, c = (i % per_row) * V;
    float g[V], u[V], o[V];
    P::load(gate_up + t * 2 * F + c, g);
    P::load(gate_up + t * 2 * F + F + c, u);
#pragma unroll
    for (int e = 0; e < V; ++e) o[e] = (g[e] / (1.0f + expf(-g[e]))) * u[e];
    P::store(y + t * F + c, o);
  }
}

int blocks_for(int64_t items) { return static_cast<int>(std::clamp<int64_t>((items + 255) / 256, 1, 65536)); }

}  // namespace

void launch_gate_up_silu(DType type, const void* gate_up, int64_t T, int64_t F, void* y, cudaStream_t stream) {
  if (T * F == 0) return;
  ZI_DISPATCH_FLOAT(type, X, {
    constexpr int N = Vec16<X>::N;
    const X* in = static_cast<const X*>(gate_up);
    X* out = static_cast<X*>(y);
    if (F % N == 0 && aligned16(gate_up) && aligned16(y)) {
      gate_up_silu_kernel<X, N><<<blocks_for(T * F / N), 256, 0, stream>>>(in, T, F, out);
    } else {
      gate_up_silu_kernel<X, 1><<<blocks_for(T * F), 256, 0, stream>>>(in, T, F, out);
    }
  });
  ZI_CUDA_CHECK_LAUNCH();
}

}  // namespace zi::cuda
