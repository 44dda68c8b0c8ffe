#include "engine/backend/cuda/op_timer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_check.h"

namespace zi::cuda {

OpTimes::OpTimes() {
  const char* env = std::getenv("ZI_OP_TIMING");
  enabled_ = env != nullptr && std::strcmp(env, "1") == 0;
}

OpTimes::~OpTimes() {
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  for (cudaEvent_t e : open_)
    if (e != nullptr) cudaEventDestroy(e);
  cudaGetLastError();
}

cudaEvent_t OpTimes::take_event() {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  ZI_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

int OpTimes::begin(cudaStream_t stream) {
  cudaEvent_t e = take_event();
  ZI_CUDA_CHECK(cudaEventRecord(e, stream));
  open_.push_back(e);
  return static_cast<int>(open_.size()) - 1;
}

void OpTimes::end(int token, std::string name, cudaStream_t stream) {
  ZI_CHECK(token >= 0 && token < static_cast<int>(open_.size()) && open_[token] != nullptr);
  cudaEvent_t stop = take_event();
  ZI_CUDA_CHECK(cudaEventRecord(stop, stream));
  pending_.push_back({open_[token], stop, std::move(name)});
  open_[token] = nullptr;
  while (!open_.empty() && open_.back() == nullptr) open_.pop_back();  // ops nest (linear inside nothing else)
}

void OpTimes::collect() {
  for (Pending& p : pending_) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) {
      Total& t = totals_[p.name];
      ++t.calls;
      t.ms += ms;
    }
    cudaGetLastError();
    free_.push_back(p.start);
    free_.push_back(p.stop);
  }
  pending_.clear();
}

std::string OpTimes::table() const {
  double sum = 0;
  for (const auto& [name, t] : totals_) sum += t.ms;
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  std::string out = absl::StrFormat("GPU time by op (ZI_OP_TIMING=1), %.1f ms in all:\n", sum);
  out += absl::StrFormat("  %-36s %10s %12s %10s %7s\n", "op", "calls", "total ms", "us/call", "share");
  for (const auto& [name, t] : rows)
    out += absl::StrFormat("  %-36s %10d %12.3f %10.2f %6.1f%%\n", name, t.calls, t.ms,
                           t.calls ? 1000.0 * t.ms / static_cast<double>(t.calls) : 0.0,
                           sum > 0 ? 100.0 * t.ms / sum : 0.0);
  return out;
}

}  // namespace zi::cuda
