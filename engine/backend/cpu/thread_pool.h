// A small fork-join pool for the CPU ops: parallel_for splits [0, n) into contiguous chunks, runs them on the pool's
// threads and the caller, and returns when all are done. One caller at a time (the backend's driving thread).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace zi::cpu {

class ThreadPool {
 public:
  // num_threads counts the caller: 1 = everything inline.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }
  // Calls fn(begin, end) over chunks covering [0, n); chunks hold at least `min_chunk` items (so tiny loops run
  // inline instead of paying for a wake-up). fn must be safe to call concurrently on disjoint ranges.
  void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  // The job in flight.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 0;
  std::atomic<int64_t> next_{0};
  int busy_ = 0;  // workers still inside the current job
};

// Threads for a new backend: ZI_CPU_THREADS when set, else the cores this process may use.
int default_cpu_threads();

}  // namespace zi::cpu
