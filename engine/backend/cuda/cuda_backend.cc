// CudaBackend: creation, memory and host transfers. The ops are in cuda_ops.cc, linear in gemm.cc.
#include "engine/backend/cuda/cuda_backend_impl.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/gpu_balloon.h"
#include "engine/backend/cuda/lt_gemm.h"
#include "engine/backend/cuda/nvml.h"
#include "engine/backend/cuda/offload_attention.h"
#include "engine/core/log.h"

namespace zi {

StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options) {
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaBackend> b, cuda::CudaBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

namespace cuda {

namespace {
// cuBLAS's own workspace (cublasSetWorkspace): without one it allocates per call, which a CUDA graph capture
// cannot hold. 32 MiB is its recommendation on Hopper.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    ZI_CHECK(d >= 0);
    n *= d;
  }
  return n;
}
}  // namespace

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::create(const CudaBackendOptions& options) {
  if (options.activation_dtype != DType::kBF16 && options.activation_dtype != DType::kF16 &&
      options.activation_dtype != DType::kF32)
    return absl::InvalidArgumentError(absl::StrCat("CUDA backend: activation dtype ",
                                                   std::string(dtype_torch_name(options.activation_dtype)),
                                                   " is not bfloat16, float16 or float32"));
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    const std::string why = err != cudaSuccess ? std::string(cuda_status(err, "cudaGetDeviceCount").message())
                                               : std::string("the driver reports 0 devices");
    return absl::FailedPreconditionError(absl::StrCat("no usable CUDA device: ", why));
  }
  if (options.device < 0 || options.device >= count)
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", count, " visible)"));
  ZI_RETURN_IF_ERROR(cuda_status(cudaSetDevice(options.device), "cudaSetDevice"));
  ZI_ASSIGN_OR_RETURN(CudaStream stream, CudaStream::create(options.device, /*high_priority=*/true));
  cublasHandle_t handle = nullptr;
  if (cublasStatus_t st = cublasCreate(&handle); st != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError(absl::StrCat("cublasCreate: ", cublasGetStatusString(st)));
  // Keep split-K reductions in fp32 too (the default may reduce in the output precision).
  if (cublasSetStream(handle, stream.get()) != CUBLAS_STATUS_SUCCESS ||
      cublasSetMathMode(handle, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                                          CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) !=
          CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle);
    return absl::InternalError("cublasSetStream / cublasSetMathMode failed");
  }
  void* cublas_workspace = nullptr;
  if (Status st = cuda_status(cudaMalloc(&cublas_workspace, kCublasWorkspaceBytes), "cudaMalloc (cuBLAS workspace)");
      !st.ok()) {
    cublasDestroy(handle);
    return st;
  }
  if (cublasStatus_t st = cublasSetWorkspace(handle, cublas_workspace, kCublasWorkspaceBytes);
      st != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle);
    cudaFree(cublas_workspace);
    return absl::InternalError(absl::StrCat("cublasSetWorkspace: ", cublasGetStatusString(st)));
  }
  StatusOr<std::unique_ptr<LtGemm>> lt = LtGemm::create(options.device);
  if (!lt.ok()) {
    cublasDestroy(handle);
    cudaFree(cublas_workspace);
    return lt.status();
  }
  cudaDeviceProp prop{};
  ZI_RETURN_IF_ERROR(cuda_status(cudaGetDeviceProperties(&prop, options.device), "cudaGetDeviceProperties"));
  ZI_LOG(INFO) << "CUDA backend on device " << options.device << " (" << prop.name << ", sm_" << prop.major
               << prop.minor << ", " << (prop.totalGlobalMem >> 20) << " MiB), activations "
               << dtype_torch_name(options.activation_dtype);
  return std::unique_ptr<CudaBackend>(
      new CudaBackend(options, std::move(stream), handle, cublas_workspace, *std::move(lt),
                      DeviceAllocator::create(options.device)));
}

CudaBackend::CudaBackend(const CudaBackendOptions& options, CudaStream compute, cublasHandle_t cublas,
                         void* cublas_workspace, std::unique_ptr<LtGemm> lt,
                         std::shared_ptr<DeviceAllocator> allocator)
    : device_(options.device),
      act_(options.activation_dtype),
      compute_(std::move(compute)),
      cublas_(cublas),
      cublas_workspace_(cublas_workspace),
      lt_(std::move(lt)),
      allocator_(std::move(allocator)),
      offload_mode_(options.offload_attention),
      host_threads_(options.host_threads) {}

CudaBackend::~CudaBackend() {
  make_current();
  cudaStreamSynchronize(compute_.get());
  if (times_.enabled()) {
    times_.collect();
    ZI_LOG(INFO) << times_.table();
  }
  if (cublas_) cublasDestroy(cublas_);
  if (cublas_workspace_) cudaFree(cublas_workspace_);
  lt_.reset();
  cudaGetLastError();
}

void CudaBackend::make_current() const {
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess || cur != device_) ZI_CUDA_CHECK(cudaSetDevice(device_));
}

StatusOr<Tensor> CudaBackend::try_alloc(DType dtype, std::vector<int64_t> shape) {
  make_current();
  const size_t bytes = static_cast<size_t>(numel_of(shape)) * dtype_size(dtype);
  ZI_ASSIGN_OR_RETURN(std::shared_ptr<void> block, allocator_->allocate(bytes));
  void* data = block.get();
  return Tensor(dtype, std::move(shape), data, std::move(block));
}

StatusOr<Tensor> CudaBackend::alloc_kv(DType dtype, std::vector<int64_t> shape, bool host) {
  if (!host) return try_alloc(dtype, std::move(shape));
  make_current();
  const size_t bytes = std::max<size_t>(1, static_cast<size_t>(numel_of(shape)) * dtype_size(dtype));
  void* ptr = nullptr;
  const cudaError_t err = cudaHostAlloc(&ptr, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrCat("cannot pin ", bytes, " bytes of host memory for the KV cache (",
                                                     cudaGetErrorString(err), "); lower kv_cache.max_bytes"));
  }
  void* dev = nullptr;
  ZI_CUDA_CHECK(cudaHostGetDevicePointer(&dev, ptr, 0));
  if (!offload_) offload_ = std::make_unique<OffloadAttention>(*this, offload_mode_, host_threads_);
  offload_->add_range(dev, ptr, bytes);
  std::shared_ptr<void> storage(ptr, [](void* p) { cudaFreeHost(p); });
  return Tensor(dtype, std::move(shape), dev, std::move(storage));
}

void CudaBackend::observe_weight_stream(uint64_t bytes, double copy_seconds, int layers) {
  if (offload_ && layers > 0) offload_->set_weight_stream(static_cast<double>(bytes) / layers, bytes, copy_seconds);
}

int64_t CudaBackend::device_free_bytes() const {
  make_current();
  allocator_->release_cached();
  return static_cast<int64_t>(memory_info().device_free);
}

int64_t CudaBackend::process_device_bytes() const {
  make_current();
  allocator_->release_cached();
  // A GPU balloon (bench --gpu-memory-limit-enforce) is in NVML's figure and the device's used bytes, but it is
  // there to keep memory from the engine, not memory the engine holds.
  const uint64_t balloon = balloon_bytes(device_);
  StatusOr<uint64_t> held = nvml_process_used_bytes(device_);
  if (held.ok()) return static_cast<int64_t>(*held > balloon ? *held - balloon : 0);
  static bool logged = false;
  if (!logged) {
    logged = true;
    ZI_LOG(WARNING) << "NVML per-process memory unavailable (" << held.status()
                    << "); memory.gpu_limit counts the whole device's used memory";
  }
  const MemoryInfo mi = memory_info();
  const uint64_t used = mi.device_total > mi.device_free ? mi.device_total - mi.device_free : 0;
  return static_cast<int64_t>(used > balloon ? used - balloon : 0);
}

Tensor CudaBackend::output(DType dtype, std::vector<int64_t> shape) {
  StatusOr<Tensor> t = try_alloc(dtype, std::move(shape));
  if (!t.ok()) {
    // The Backend interface has no error channel for ops: running out of device memory mid-step is fatal. Load
    // code reserves its memory with try_alloc first so that this does not happen in service.
    std::fprintf(stderr, "zeroinfer: CUDA backend out of memory: %s\n", std::string(t.status().message()).c_str());
    std::abort();
  }
  return *std::move(t);
}

Tensor CudaBackend::alloc(DType dtype, std::vector<int64_t> shape) { return output(dtype, std::move(shape)); }

Tensor CudaBackend::from_host(DType dtype, std::vector<int64_t> shape, const void* src) {
  Tensor t = output(dtype, std::move(shape));
  upload(t, src);
  return t;
}

void CudaBackend::upload(Tensor& dst, const void* src) {
  if (dst.nbytes() == 0) return;
  make_current();
  // From pageable memory the runtime copies `src` into a staging buffer before cudaMemcpyAsync returns, so the
  // caller may free it at once while the DMA stays ordered on the compute stream. From pinned memory the copy is
  // truly asynchronous: wait for it, since the interface lets the caller reuse `src` on return.
  ZI_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src, dst.nbytes(), cudaMemcpyHostToDevice, compute_.get()));
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, src) != cudaSuccess) {
    cudaGetLastError();
  } else if (attr.type == cudaMemoryTypeHost) {
    ZI_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  }
}

Tensor CudaBackend::upload_weight(DType src_dtype, std::vector<int64_t> shape, const void* src) {
  ZI_CHECK(is_float_weight_dtype(src_dtype));
  if (src_dtype == act_) return from_host(act_, std::move(shape), src);
  // Upload as stored, convert on the device (the staging tensor returns to the cache when this returns).
  Tensor raw = from_host(src_dtype, shape, src);
  Tensor t = output(act_, std::move(shape));
  launch_convert(src_dtype, raw.data(), act_, t.data(), t.numel(), compute_.get());
  return t;
}

std::optional<Tensor> CudaBackend::uniform_weight(DType dtype, std::vector<int64_t> shape, uint64_t key,
                                                  float amplitude) {
  ZI_CHECK(is_float_weight_dtype(dtype));
  make_current();
  // Rounded to `dtype` first, as the host generator would write them, then to the activation dtype as upload_weight
  // converts them: the same values whichever side made them.
  Tensor made = output(dtype, shape);
  launch_dummy_uniform(dtype, made.data(), made.numel(), key, amplitude, compute_.get());
  if (dtype == act_) return made;
  Tensor t = output(act_, std::move(shape));
  launch_convert(dtype, made.data(), act_, t.data(), t.numel(), compute_.get());
  return t;
}

void CudaBackend::copy_to_host(const Tensor& t, void* dst) {
  make_current();
  if (t.nbytes() > 0)
    // cudaMemcpyDefault: the tensor may be mapped pinned host memory (a KV-offloaded cache) as well as device memory.
    ZI_CUDA_CHECK(cudaMemcpyAsync(dst, t.data(), t.nbytes(), cudaMemcpyDefault, compute_.get()));
  ZI_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  if (times_.enabled()) times_.collect();
}

std::vector<float> CudaBackend::to_host_f32(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::kF32) {
    copy_to_host(t, out.data());
    return out;
  }
  std::vector<uint8_t> raw(t.nbytes());
  copy_to_host(t, raw.data());
  if (t.dtype() == DType::kI32) {
    for (size_t i = 0; i < out.size(); ++i) {
      int32_t v;
      std::memcpy(&v, raw.data() + 4 * i, 4);
      out[i] = static_cast<float>(v);
    }
    return out;
  }
  convert_to_f32(t.dtype(), raw.data(), out.data(), out.size());
  return out;
}

void CudaBackend::fill_zero(Tensor& t) {
  make_current();
  if (t.nbytes() > 0) ZI_CUDA_CHECK(cudaMemsetAsync(t.data(), 0, t.nbytes(), compute_.get()));
}

void CudaBackend::synchronize() {
  make_current();
  ZI_CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  if (times_.enabled()) times_.collect();
}

MemoryInfo CudaBackend::memory_info() const {
  make_current();
  MemoryInfo m;
  ZI_CUDA_CHECK(cudaMemGetInfo(&m.device_free, &m.device_total));
  m.allocator = allocator_->stats();
  return m;
}

}  // namespace cuda
}  // namespace zi
