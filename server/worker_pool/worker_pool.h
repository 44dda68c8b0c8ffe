// The coordinator's side of the worker processes: spawns `<exe> worker --rank R --socket PATH` for every rank,
// talks to them over one Unix socket each (framed worker.proto messages, Boost.Asio on one I/O thread), and
// presents them to the scheduler as one Executor of N ranks: step() splits the batch by the rank the caller put on
// each SeqStep and SeqRelease (the scheduler places sequences; the pool keeps no placement state), sends every rank
// its micro-batch (a rank with nothing to do still steps, with an empty one) and merges their replies.
// summary().kv_num_blocks is one rank's cache (the smallest, should they differ); num_ranks the number of workers.
//
// Workers die with the coordinator (PR_SET_PDEATHSIG, set between fork and exec). A worker that exits, closes
// its socket or stops sending heartbeats is "lost": the step in flight and every later one fail with UNAVAILABLE
// naming the rank and why, and the on_lost callback runs once.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"

namespace zi::server {

struct WorkerPoolOptions {
  std::string executable = "/proc/self/exe";  // the zeroinfer binary (tests may point elsewhere)
  std::string log_level = "info";             // passed to each worker
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{60000};  // generous: a loaded machine must not look like a hang
  std::chrono::milliseconds connect_timeout{60000};    // from spawn to the worker's Hello
};

class WorkerPool final : public Executor {
 public:
  // Spawns options.world_size workers and sends each its Init; returns without waiting for the model (see
  // wait_ready). Call it from a thread that lives as long as the workers should: Linux delivers
  // PR_SET_PDEATHSIG when the *thread* that forked exits.
  static StatusOr<std::unique_ptr<WorkerPool>> Spawn(const EngineOptions& options, WorkerPoolOptions pool);
  ~WorkerPool() override;

  // Waits up to `timeout` for every rank to be Ready. nullopt: still loading; OK: ready; otherwise why the start
  // failed (the worker's own error when it sent one).
  std::optional<Status> wait_ready(std::chrono::milliseconds timeout);

  // Executor. step(): one caller at a time (the scheduler thread). summary(): valid once ready.
  StatusOr<StepOutput> step(const StepInput& input) override;
  const ModelSummary& summary() const override { return summary_; }

  // Runs on the I/O thread, once, when a worker is lost after start-up (not during shutdown()).
  void set_on_lost(std::function<void(const Status&)> fn);
  // Tells every worker to exit, waits up to `grace` for them, then SIGKILLs what is left and reaps it.
  // Idempotent; the destructor calls it with a short grace.
  void shutdown(std::chrono::milliseconds grace);

  // Process ids of the workers (tests kill one to check the failure path).
  std::vector<pid_t> worker_pids() const;

 private:
  struct Conn;
  struct Rank;
  WorkerPool(EngineOptions options, WorkerPoolOptions pool);

  Status start();                       // caller's thread: temp dir, acceptor, fork/exec, I/O thread
  void accept_next();                   // I/O thread from here on
  void read_next(std::shared_ptr<Conn> conn);  // the next piece of the next frame
  void on_frame(const std::shared_ptr<Conn>& conn, const std::string& payload);
  void send(Rank& rank, std::string frame);
  void send_comm_id(Rank& rank);
  void write_next(Rank& rank);
  void on_conn_closed(const std::shared_ptr<Conn>& conn, const std::string& why);
  void tick();                          // every 100 ms: reap exits, heartbeat and connect deadlines
  void lose(uint32_t rank, const std::string& why);
  void fail_start(const Status& status);
  std::string exit_description(Rank& rank, std::chrono::milliseconds wait);
  void remove_socket_files();

  EngineOptions options_;
  WorkerPoolOptions pool_;
  ModelSummary summary_;

  boost::asio::io_context io_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
  boost::asio::steady_timer ticker_;
  std::string dir_, socket_path_;
  std::string comm_id_;  // rank 0's communicator id (N > 1), relayed to the others; I/O thread only
  std::chrono::steady_clock::time_point spawned_at_;
  std::vector<std::unique_ptr<Rank>> ranks_;  // index = rank; members touched on the I/O thread only
                                              // (pid and exit fields also under mu_)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t ready_count_ = 0;                    // guarded by mu_
  std::optional<Status> start_result_;        // guarded by mu_
  Status lost_;                               // guarded by mu_
  bool shutting_down_ = false;                // guarded by mu_
  bool shut_down_ = false;                    // guarded by mu_
  std::function<void(const Status&)> on_lost_;  // guarded by mu_
  // The step in flight (one at a time).
  uint64_t step_id_ = 0;                      // guarded by mu_
  size_t step_remaining_ = 0;                 // guarded by mu_
  std::vector<std::optional<StepOutput>> step_replies_;  // per rank; guarded by mu_
  Status step_error_;                         // guarded by mu_

  std::thread io_thread_;
};

}  // namespace zi::server
