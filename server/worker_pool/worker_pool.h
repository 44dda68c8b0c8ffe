// The coordinator's side of the worker processes: spawns `<exe> worker --rank R --socket PATH` for every rank and
// talks to them over one Unix socket each, or (parallel.workers: external) listens on parallel.worker_listen for
// `zeroinfer worker --coordinator` processes that join over TCP with mutual TLS, on this host or others. Either
// way: framed worker.proto messages, Boost.Asio on one I/O thread, Init once every rank has said Hello; and it
// presents them to the scheduler as one Executor of N ranks: step() splits the batch by the rank the caller put on
// each SeqStep and SeqRelease (the scheduler places sequences; the pool keeps no placement state), sends every rank
// its micro-batch (a rank with nothing to do still steps, with an empty one) and merges their replies.
// summary().kv_num_blocks is one rank's cache (the smallest, should they differ); num_ranks the number of workers.
//
// Spawned workers die with the coordinator (PR_SET_PDEATHSIG, set between fork and exec); joined ones when their
// channel closes or the coordinator's heartbeats stop (engine/worker/control_client.h). A worker that exits,
// closes its channel or stops sending heartbeats is "lost", spawned or joined alike: the step in flight and every
// later one fail with UNAVAILABLE naming the rank and why, the on_lost callback runs once, and the other ranks
// are stopped (killed when spawned, their channels closed when joined). The pool also keeps Gloo's rendezvous
// store for the ranks (rendezvous_store.h).
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

#include <atomic>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"
#include "engine/worker/control_tls.h"
#include "server/worker_pool/rendezvous_store.h"

namespace zi::server {

struct WorkerPoolOptions {
  std::string executable = "/proc/self/exe";  // the zeroinfer binary (tests may point elsewhere)
  std::string log_level = "info";             // passed to each worker
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{60000};  // generous: a loaded machine must not look like a hang
  std::chrono::milliseconds connect_timeout{60000};    // from spawn to the worker's Hello
  // parallel.workers: external. Nothing is spawned: each rank joins from `zeroinfer worker --coordinator`.
  bool external = false;
  std::string worker_listen;                        // parallel.worker_listen HOST:PORT (port 0 = any free port)
  worker::ControlTlsFiles tls;                      // server.tls: cert and key, and the CA of the workers' certs
  std::chrono::milliseconds join_timeout{300000};   // from start to the last rank's Hello
};

class WorkerPool final : public Executor {
 public:
  // Spawns options.world_size workers (or, external, listens for them to join) and sends each its Init once all
  // have said Hello; returns without waiting for the model (see wait_ready). Call it from a thread that lives as long as the workers should: Linux delivers
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

  // Process ids of the spawned workers (tests kill one to check the failure path); -1 for joined ones.
  std::vector<pid_t> worker_pids() const;
  // External: the HOST:PORT workers join on (the port chosen when parallel.worker_listen's is 0).
  std::string worker_address() const { return worker_address_; }

 private:
  struct Conn;
  struct Rank;
  WorkerPool(EngineOptions options, WorkerPoolOptions pool);

  Status start();                       // caller's thread: temp dir, acceptor, fork/exec, I/O thread
  Status listen_tcp();                  // external: the TLS acceptor on parallel.worker_listen
  void accept_next();                   // I/O thread from here on
  void accept_next_tcp();
  void send_init_all();                 // once every rank has said Hello
  std::string describe(const Rank& rank) const;  // "worker rank 1 (pid 42)", "... (pid 42 on host-b)"
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
  std::unique_ptr<boost::asio::ip::tcp::acceptor> tcp_acceptor_;  // external
  std::unique_ptr<boost::asio::ssl::context> tls_;                  // external
  std::string worker_address_;                                      // external
  RendezvousStore store_;                                           // I/O thread only
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
