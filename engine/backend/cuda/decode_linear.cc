#include "engine/backend/cuda/decode_linear.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/backend/cuda/kernel_timing.h"
#include "engine/core/log.h"
#include "engine/core/status.h"

namespace zi::cuda {

namespace {

constexpr DecodeKernel kAll[] = {DecodeKernel::kLt, DecodeKernel::kGemv, DecodeKernel::kMma};

std::optional<DecodeKernel> from_env() {
  const char* env = std::getenv("ZI_DECODE_GEMM");
  if (env == nullptr || *env == '\0') return DecodeKernel::kLt;  // until auto is validated on a GPU (header)
  if (std::string_view(env) == "auto") return std::nullopt;
  for (DecodeKernel k : kAll)
    if (decode_kernel_name(k) == env) return k;
  ZI_LOG(WARNING) << "ZI_DECODE_GEMM=" << env << " is not one of auto, lt, gemv, mma: using lt";
  return DecodeKernel::kLt;
}

std::optional<DecodeKernel>& forced() {
  static std::optional<DecodeKernel> f = from_env();
  return f;
}

}  // namespace

std::string_view decode_kernel_name(DecodeKernel k) {
  switch (k) {
    case DecodeKernel::kLt: return "lt";
    case DecodeKernel::kGemv: return "gemv";
    case DecodeKernel::kMma: return "mma";
  }
  return "?";
}

void force_decode_kernel(std::optional<DecodeKernel> k) { forced() = k; }
std::optional<DecodeKernel> forced_decode_kernel() { return forced(); }

size_t DecodeLinearChoice::ShapeHash::operator()(const Shape& s) const {
  uint64_t h = static_cast<uint64_t>(s.tokens) * 0x9E3779B97F4A7C15ull;
  h ^= static_cast<uint64_t>(s.in) + 0x7F4A7C159E3779B9ull + (h << 6) + (h >> 2);
  h ^= static_cast<uint64_t>(s.out) + 0x94D049BB133111EBull + (h << 6) + (h >> 2);
  h ^= (static_cast<uint64_t>(s.bits) << 16 | static_cast<uint64_t>(s.dtype) << 1 | uint64_t{s.bias}) + (h << 6) +
       (h >> 2);
  return static_cast<size_t>(h);
}

DecodeKernel DecodeLinearChoice::run(const Shape& shape, const std::function<bool(DecodeKernel)>& run,
                                     cudaStream_t stream) {
  // A forced kernel that cannot take these operands, or a timed choice that cannot take this call's (another
  // alignment), gives way to cuBLASLt: never a fresh timing, which would mix kernels in an A/B run or re-time on
  // every call whose alignment alternates.
  if (const std::optional<DecodeKernel> f = forced()) {
    if (run(*f)) return *f;
    ZI_CHECK(run(DecodeKernel::kLt));
    return DecodeKernel::kLt;
  }
  if (auto it = chosen_.find(shape); it != chosen_.end()) {
    if (run(it->second)) return it->second;
    ZI_CHECK(run(DecodeKernel::kLt));
    return DecodeKernel::kLt;
  }
  if (!stream_capturing(stream)) {
    std::vector<std::function<bool()>> candidates;
    for (DecodeKernel k : kAll) candidates.push_back([&run, k] { return run(k); });
    const int best = fastest_candidate(stream, candidates);
    if (best >= 0) {
      chosen_[shape] = kAll[best];
      ZI_CHECK(run(kAll[best]));  // the call's own output, by the kernel chosen (it ran in the timing)
      return kAll[best];
    }
  }
  ZI_CHECK(run(DecodeKernel::kLt));
  return DecodeKernel::kLt;
}

}  // namespace zi::cuda
