// linear on the GPU: y[T, out] = x[T, in] · W[out, in]ᵀ (+ b), inputs and output in the activation dtype, fp32
// accumulation. bf16 / fp16 go through cuBLASLt (lt_gemm.h) with the bias fused in the GEMM's epilogue when it is
// in the activation dtype; fp32 activations, and shapes cuBLASLt has no algorithm for, take cublasGemmEx.
// Both are column-major: a row-major [r, c] matrix is a column-major [c, r] one, so we ask for yᵀ[out, T] =
// op(A) · B with A = W seen as [in, out] (transposed, lda = in) and B = xᵀ seen as [in, T] (ldb = in); C = yᵀ
// [out, T] (ldc = out). An unfused bias is added by a second kernel. Neither path allocates or synchronizes.
// Decode-sized T (≤ 64) of unquantized bf16/fp16 weights take whichever of cuBLASLt, the dense GEMV and the dense
// tensor-core kernel (dense_gemv.h) was fastest for the shape when first timed (decode_linear.h).
// Quantized weights (engine/quant) go through a fused GEMV for decode-sized T, else are dequantized into the
// activation dtype first and take the same GEMM.
#include <climits>

#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/decode_linear.h"
#include "engine/backend/cuda/dense_gemv.h"
#include "engine/backend/cuda/lt_gemm.h"
#include "engine/backend/cuda/quant_kernels.h"

namespace zi::cuda {

namespace {
cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    default: ZI_CHECK(false && "linear: not a float dtype");
  }
  return CUDA_R_32F;
}

// The quantized format's tensors as the kernels read them (shapes checked against the layout).
QuantArgs quant_args(const LinearWeight& w) {
  ZI_CHECK(w.bits == 4 || w.bits == 8);
  ZI_CHECK(w.group_size >= 1 && w.quant_in_features >= 0);
  QuantArgs q;
  q.rows = w.qdata.dim(0);
  q.cols = w.quant_in_features;
  q.bits = w.bits;
  q.group_size = w.group_size;
  ZI_CHECK(w.qdata.dtype() == DType::kU8 && w.qdata.rank() == 2 && w.qdata.dim(1) == q.row_bytes());
  const std::vector<int64_t> gshape = {q.rows, q.groups()};
  ZI_CHECK(w.scales.dtype() == DType::kF16 && w.scales.shape() == gshape);
  ZI_CHECK(w.mins.dtype() == DType::kF16 && w.mins.shape() == gshape);
  q.data = w.qdata.data_as<const uint8_t>();
  q.scales = w.scales.data_as<const uint16_t>();
  q.mins = w.mins.data_as<const uint16_t>();
  return q;
}

}  // namespace

Tensor CudaBackend::linear(const Tensor& x, const LinearWeight& w) {
  OpTimer timer(times_, compute_.get(), "linear");
  if (times_.enabled()) {
    // Rows bucketed so that decode (T ≤ 64) and prefill calls of the same weight get their own lines.
    const int64_t rows = x.numel() / std::max<int64_t>(w.in_features(), 1);
    timer.detail(absl::StrCat(" ", w.out_features(), "x", w.in_features(),
                              w.format == WeightFormat::kQuantized ? absl::StrCat(" q", w.bits) : std::string(),
                              rows <= 64 ? absl::StrCat(" T=", rows) : std::string(" T>64")));
  }
  const bool quantized = w.format == WeightFormat::kQuantized;
  ZI_CHECK(quantized || (w.format == WeightFormat::kDense && w.weight.rank() == 2 && w.weight.dtype() == act_));
  const int64_t in = w.in_features(), out_f = w.out_features();
  ZI_CHECK(x.dtype() == act_ && x.rank() >= 1 && x.dim(-1) == in);
  ZI_CHECK(!w.bias.defined() || (is_float_weight_dtype(w.bias.dtype()) && w.bias.numel() == out_f));
  make_current();
  const int64_t T = x.numel() / std::max<int64_t>(in, 1);
  std::vector<int64_t> shape = x.shape();
  shape.back() = out_f;
  Tensor y = output(act_, std::move(shape));
  if (T == 0 || out_f == 0) return y;
  bool bias_fused = false;  // set by gemm when the epilogue added w.bias
  auto gemm = [&](const void* weight) {
    ZI_CHECK(T <= INT_MAX && in <= INT_MAX && out_f <= INT_MAX);
    if (act_ != DType::kF32) {
      const bool fuse = w.bias.defined() && w.bias.dtype() == act_;
      const Status st = lt_->matmul(act_, x.data(), weight, fuse ? w.bias.data() : nullptr, y.data(), T, in, out_f,
                                    compute_.get());
      if (st.ok()) {
        bias_fused = fuse;
        return;
      }
      if (!absl::IsUnimplemented(st))
        cuda_fail("cuBLASLt linear", std::string(st.message()).c_str(), __FILE__, __LINE__);
      // No cuBLASLt algorithm for this shape and alignment: cublasGemmEx below.
    }
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t type = cuda_type(act_);
    ZI_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_f), static_cast<int>(T),
                                 static_cast<int>(in), &alpha, weight, type, static_cast<int>(in), x.data(), type,
                                 static_cast<int>(in), &beta, y.data(), type, static_cast<int>(out_f),
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  if (in == 0) {
    fill_zero(y);
  } else if (!quantized) {
    if (act_ != DType::kF32 && T <= kDenseMmaMaxRows) {
      const bool bias_in_act = w.bias.defined() && w.bias.dtype() == act_;
      const void* b = bias_in_act ? w.bias.data() : nullptr;
      auto run = [&](DecodeKernel k) {
        bias_fused = false;
        switch (k) {
          case DecodeKernel::kLt: gemm(w.weight.data()); return true;  // never refuses (cublasGemmEx fallback)
          case DecodeKernel::kGemv:
            if (T > kDenseGemvMaxRows || !dense_gemv_supported(act_, x.data(), w.weight.data(), y.data(), in, out_f))
              return false;
            launch_dense_gemv(act_, x.data(), T, w.weight.data(), b, y.data(), in, out_f, compute_.get());
            break;
          case DecodeKernel::kMma:
            if (!dense_mma_supported(act_, x.data(), w.weight.data(), in, out_f)) return false;
            launch_dense_mma(act_, x.data(), T, w.weight.data(), b, y.data(), in, out_f, compute_.get());
            break;
        }
        bias_fused = bias_in_act;
        return true;
      };
      decode_linear_.run({T, in, out_f, act_, w.bias.defined()}, run, compute_.get());
    } else {
      gemm(w.weight.data());
    }
  } else {
    // Quantized (quant_kernels.h): the fused GEMV for decode-sized T, else dequantize into a temporary buffer in
    // the activation dtype (stream-ordered: recycled once the GEMM that reads it has run) and the same GEMM.
    // 64 < T ≤ kQuantMmaMaxRows: the fused tensor-core kernel against dequantize + GEMM, chosen as dense decode
    // linears are (decode_linear.h; lt = dequantize + GEMM, the default until run on a GPU).
    const QuantArgs q = quant_args(w);
    const bool fused_ok = quant_gemv_supported(q, x.data());
    auto dequantize_gemm = [&] {
      Tensor dense = output(act_, {out_f, in});
      launch_dequantize(q, act_, dense.data(), compute_.get());
      gemm(dense.data());
    };
    if (fused_ok && T <= quant_gemv_max_rows()) {
      launch_quant_gemv(q, act_, x.data(), T, y.data(), compute_.get());
    } else if (fused_ok && act_ != DType::kF32 && T <= kQuantMmaMaxRows && quant_gemv_max_rows() > 0) {
      auto run = [&](DecodeKernel k) {
        bias_fused = false;
        if (k == DecodeKernel::kGemv) return false;
        if (k == DecodeKernel::kMma)
          launch_quant_mma(q, act_, x.data(), T, y.data(), compute_.get());
        else
          dequantize_gemm();  // sets bias_fused when the GEMM's epilogue added the bias
        return true;
      };
      decode_linear_.run({T, in, out_f, act_, w.bias.defined(), w.bits}, run, compute_.get());
    } else {
      dequantize_gemm();
    }
  }
  if (w.bias.defined() && !bias_fused)
    launch_bias_add(act_, y.data(), T, out_f, w.bias.dtype(), w.bias.data(), compute_.get());
  return y;
}

}  // namespace zi::cuda
