#include "engine/runtime/gpu_memory_watch.h"

#if defined(ZI_WITH_CUDA)
#include "engine/backend/cuda/gpu_balloon.h"
#include "engine/backend/cuda/nvml_sampler.h"
#endif

namespace zi {

struct GpuMemoryWatch::Impl {
  std::string unavailable;  // why there is no peak; empty when sampled
#if defined(ZI_WITH_CUDA)
  std::unique_ptr<cuda::GpuBalloon> balloon;
  std::unique_ptr<cuda::NvmlPeakSampler> sampler;
#endif
};

GpuMemoryWatch::GpuMemoryWatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GpuMemoryWatch::~GpuMemoryWatch() {
  stop_sampling();
#if defined(ZI_WITH_CUDA)
  impl_->balloon.reset();
#endif
}

StatusOr<std::unique_ptr<GpuMemoryWatch>> GpuMemoryWatch::start(const GpuMemoryWatchOptions& o) {
  if (o.enforce && o.limit_bytes == 0)
    return absl::InvalidArgumentError("enforcing memory.gpu_limit needs a limit > 0");
  auto impl = std::make_unique<Impl>();
#if defined(ZI_WITH_CUDA)
  if (o.enforce) {
    ZI_ASSIGN_OR_RETURN(impl->balloon, cuda::GpuBalloon::inflate(o.device, o.limit_bytes));
  }
  StatusOr<std::unique_ptr<cuda::NvmlPeakSampler>> s = cuda::NvmlPeakSampler::start(o.device, o.period);
  if (s.ok()) impl->sampler = std::move(*s);
  else impl->unavailable = std::string(s.status().message());
#else
  if (o.enforce)
    return absl::UnimplementedError(
        "enforcing memory.gpu_limit needs a GPU: this zeroinfer was built without CUDA (ZEROINFER_CUDA=OFF)");
  impl->unavailable = "built without CUDA";
#endif
  return std::unique_ptr<GpuMemoryWatch>(new GpuMemoryWatch(std::move(impl)));
}

void GpuMemoryWatch::stop_sampling() {
#if defined(ZI_WITH_CUDA)
  if (impl_->sampler) impl_->sampler->stop();
#endif
}

uint64_t GpuMemoryWatch::balloon_bytes() const {
#if defined(ZI_WITH_CUDA)
  return impl_->balloon ? impl_->balloon->bytes() : 0;
#else
  return 0;
#endif
}

std::optional<uint64_t> GpuMemoryWatch::peak_bytes() const {
#if defined(ZI_WITH_CUDA)
  if (!impl_->sampler) return std::nullopt;
  // NVML counts the balloon as the process's own; every sample was taken with it inflated.
  const uint64_t peak = impl_->sampler->peak_bytes(), b = balloon_bytes();
  return peak > b ? peak - b : 0;
#else
  return std::nullopt;
#endif
}

const std::string& GpuMemoryWatch::unavailable_reason() const { return impl_->unavailable; }

uint64_t GpuMemoryWatch::samples() const {
#if defined(ZI_WITH_CUDA)
  return impl_->sampler ? impl_->sampler->samples() : 0;
#else
  return 0;
#endif
}

double GpuMemoryWatch::mean_interval_seconds() const {
#if defined(ZI_WITH_CUDA)
  return impl_->sampler ? impl_->sampler->mean_interval_seconds() : 0;
#else
  return 0;
#endif
}

}  // namespace zi
