#include "engine/backend/cuda/lt_gemm.h"

#include <array>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernel_timing.h"

namespace zi::cuda {

// A cached GEMM: its operation descriptor (transposes, epilogue), the three matrix layouts (C and D share one) and
// the algorithm cuBLASLt's heuristic chose for them.
struct LtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool algo_ok = false;  // false: the heuristic returned nothing (matmul answers Unimplemented)
};

void LtGemm::PlanDeleter::operator()(Plan* p) const {
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->d) cublasLtMatrixLayoutDestroy(p->d);
  delete p;
}

namespace {

Status lt_status(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cublasGetStatusString(st)));
}

// log2 of the largest power of two ≤ 256 dividing the address (null: 256, it is not read).
uint8_t align_log2(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint8_t a = 0;
  while (a < 8 && (v & ((uintptr_t{1} << (a + 1)) - 1)) == 0) ++a;
  return a;
}

bool lt_type(DType t, cudaDataType_t* out) {
  switch (t) {
    case DType::kF32: *out = CUDA_R_32F; return true;
    case DType::kF16: *out = CUDA_R_16F; return true;
    case DType::kBF16: *out = CUDA_R_16BF; return true;
    default: return false;
  }
}

}  // namespace

size_t LtGemm::KeyHash::operator()(const Key& k) const {
  uint64_t h = static_cast<uint64_t>(k.tokens) * 0x9E3779B97F4A7C15ull;
  h ^= static_cast<uint64_t>(k.in) + 0x7F4A7C159E3779B9ull + (h << 6) + (h >> 2);
  h ^= static_cast<uint64_t>(k.out) + 0x94D049BB133111EBull + (h << 6) + (h >> 2);
  const uint64_t small = static_cast<uint64_t>(k.dtype) | (uint64_t{k.bias} << 8) | (uint64_t{k.align_x} << 16) |
                         (uint64_t{k.align_w} << 24) | (uint64_t{k.align_y} << 32) |
                         (uint64_t{k.align_bias} << 40);
  h ^= small + 0xBF58476D1CE4E5B9ull + (h << 6) + (h >> 2);
  return static_cast<size_t>(h);
}

StatusOr<std::unique_ptr<LtGemm>> LtGemm::create(int device, size_t workspace_bytes) {
  ZI_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  cublasLtHandle_t handle = nullptr;
  ZI_RETURN_IF_ERROR(lt_status(cublasLtCreate(&handle), "cublasLtCreate"));
  void* workspace = nullptr;
  if (workspace_bytes > 0) {
    if (Status st = cuda_status(cudaMalloc(&workspace, workspace_bytes), "cudaMalloc (cuBLASLt workspace)");
        !st.ok()) {
      cublasLtDestroy(handle);
      return st;
    }
  }
  return std::unique_ptr<LtGemm>(new LtGemm(device, handle, workspace, workspace_bytes));
}

namespace {
bool autotune_enabled() {
  const char* env = std::getenv("ZI_LT_AUTOTUNE");
  return env == nullptr || std::strcmp(env, "0") != 0;
}
}  // namespace

LtGemm::LtGemm(int device, cublasLtHandle_t handle, void* workspace, size_t workspace_bytes)
    : device_(device),
      handle_(handle),
      workspace_(workspace),
      workspace_bytes_(workspace_bytes),
      tune_(autotune_enabled()) {}

LtGemm::~LtGemm() {
  plans_.clear();
  int cur = -1;
  if (cudaGetDevice(&cur) == cudaSuccess && cur != device_) cudaSetDevice(device_);
  // cudaFree waits for the device: no matmul still reads the workspace.
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
  cudaGetLastError();
}

int LtGemm::fastest(Plan& p, const cublasLtMatmulHeuristicResult_t* cand, int n, const Operands& ops) {
  const float alpha = 1.0f, beta = 0.0f;
  std::vector<std::function<bool()>> runs;
  for (int c = 0; c < n; ++c) {
    runs.push_back([&, c] {
      return cand[c].state == CUBLAS_STATUS_SUCCESS &&
             cublasLtMatmul(handle_, p.op, &alpha, ops.w, p.a, ops.x, p.b, &beta, ops.y, p.d, ops.y, p.d,
                            &cand[c].algo, workspace_, workspace_bytes_, ops.stream) == CUBLAS_STATUS_SUCCESS;
    });
  }
  return fastest_candidate(ops.stream, runs);
}

StatusOr<LtGemm::Plan*> LtGemm::plan(const Key& k, const Operands& ops,
                                     std::unique_ptr<Plan, PlanDeleter>* uncached) {
  if (auto it = plans_.find(k); it != plans_.end()) return it->second.get();
  const bool capturing = stream_capturing(ops.stream);
  const bool tune = tune_ && !capturing && k.tokens <= kTuneMaxTokens;
  const void* bias = ops.bias;
  if (!capturing && plans_.size() >= kMaxPlans) plans_.clear();
  cudaDataType_t type = CUDA_R_32F;
  ZI_CHECK(lt_type(k.dtype, &type));
  std::unique_ptr<Plan, PlanDeleter> p(new Plan);
  ZI_RETURN_IF_ERROR(lt_status(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                               "cublasLtMatmulDescCreate"));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  ZI_RETURN_IF_ERROR(lt_status(
      cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)), "TRANSA"));
  ZI_RETURN_IF_ERROR(lt_status(
      cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)), "TRANSB"));
  if (k.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = type;  // the activation dtype (the default for fp32 output would be fp32 anyway)
    ZI_RETURN_IF_ERROR(lt_status(
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
        "EPILOGUE"));
    ZI_RETURN_IF_ERROR(lt_status(
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)),
        "BIAS_DATA_TYPE"));
    // The heuristic reads the pointer's alignment from here; matmul sets the real pointer on every call.
    ZI_RETURN_IF_ERROR(lt_status(
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
        "BIAS_POINTER"));
  }
  // Column-major views of the row-major tensors (lt_gemm.h): A = W as [in, out], B = xᵀ as [in, T], D = yᵀ.
  ZI_RETURN_IF_ERROR(lt_status(cublasLtMatrixLayoutCreate(&p->a, type, k.in, k.out, k.in), "layout A"));
  ZI_RETURN_IF_ERROR(lt_status(cublasLtMatrixLayoutCreate(&p->b, type, k.in, k.tokens, k.in), "layout B"));
  ZI_RETURN_IF_ERROR(lt_status(cublasLtMatrixLayoutCreate(&p->d, type, k.out, k.tokens, k.out), "layout D"));

  cublasLtMatmulPreference_t pref = nullptr;
  ZI_RETURN_IF_ERROR(lt_status(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate"));
  const uint64_t ws = workspace_bytes_;
  // Split-K partial sums reduced in fp32 in the workspace, never in the bf16/fp16 output (INPLACE, OUTPUT_TYPE).
  const uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  const uint32_t align_a = 1u << k.align_w, align_b = 1u << k.align_x, align_d = 1u << k.align_y;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                           sizeof(ws));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reduction,
                                              sizeof(reduction));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                              sizeof(align_a));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                              sizeof(align_b));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d,
                                              sizeof(align_d));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d,
                                              sizeof(align_d));
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatmulPreferenceDestroy(pref);
    return lt_status(st, "cublasLtMatmulPreferenceSetAttribute");
  }
  std::array<cublasLtMatmulHeuristicResult_t, kTuneCandidates> result{};
  int found = 0;
  ++heuristic_queries_;
  st = cublasLtMatmulAlgoGetHeuristic(handle_, p->op, p->a, p->b, p->d, p->d, pref, tune ? kTuneCandidates : 1,
                                      result.data(), &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // NOT_SUPPORTED (no algorithm) and an empty answer both mean: fall back, and remember it.
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && result[0].state == CUBLAS_STATUS_SUCCESS) {
    int pick = 0;
    if (tune && found > 1) {
      if (const int f = fastest(*p, result.data(), found, ops); f >= 0) pick = f;
      ++tuned_plans_;
    }
    p->algo = result[pick].algo;
    p->algo_ok = true;
  } else if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) {
    return lt_status(st, "cublasLtMatmulAlgoGetHeuristic");
  }
  Plan* raw = p.get();
  if (capturing && tune_ && k.tokens <= kTuneMaxTokens) {
    *uncached = std::move(p);  // untuned: the next eager call of this shape tunes it
  } else {
    plans_.emplace(k, std::move(p));
  }
  return raw;
}

Status LtGemm::matmul(DType dtype, const void* x, const void* w, const void* bias, void* y, int64_t tokens,
                      int64_t in, int64_t out, cudaStream_t stream) {
  cudaDataType_t type;
  if (!lt_type(dtype, &type))
    return absl::InvalidArgumentError(
        absl::StrCat("cuBLASLt GEMM: ", std::string(dtype_torch_name(dtype)), " is not a float dtype"));
  if (tokens < 1 || in < 1 || out < 1 || tokens > INT32_MAX || in > INT32_MAX || out > INT32_MAX)
    return absl::InvalidArgumentError(absl::StrCat("cuBLASLt GEMM: shape T ", tokens, " in ", in, " out ", out));
  const Key key{tokens, in, out, dtype, bias != nullptr, align_log2(x), align_log2(w), align_log2(y),
                align_log2(bias)};
  std::unique_ptr<Plan, PlanDeleter> uncached;
  ZI_ASSIGN_OR_RETURN(Plan* p, plan(key, Operands{x, w, bias, y, stream}, &uncached));
  if (!p->algo_ok) return absl::UnimplementedError("cuBLASLt offers no algorithm for this GEMM");
  if (bias) {
    ZI_RETURN_IF_ERROR(lt_status(
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
        "BIAS_POINTER"));
  }
  const float alpha = 1.0f, beta = 0.0f;
  return lt_status(cublasLtMatmul(handle_, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->d, y, p->d, &p->algo,
                                  workspace_, workspace_bytes_, stream),
                   "cublasLtMatmul");
}

}  // namespace zi::cuda
