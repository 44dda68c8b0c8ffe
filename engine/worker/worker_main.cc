#include "engine/worker/worker_main.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "engine/core/log.h"
#include "engine/runtime/engine_options.h"
#include "engine/worker/convert.h"
#include "engine/worker/frame.h"

namespace zi::worker {
namespace {

namespace asio = boost::asio;
using Socket = asio::local::stream_protocol::socket;

// Writes from the main thread (replies) and the heartbeat thread go through one mutex; reads happen on the main
// thread only, on a separate socket object (a dup of the same descriptor) so no Asio object is shared.
class Channel {
 public:
  Channel(Socket reader, Socket writer) : reader_(std::move(reader)), writer_(std::move(writer)) {}
  Status send(const pb::FromWorker& msg) {
    std::lock_guard<std::mutex> lock(write_mu_);
    return write_frame(writer_, msg);
  }
  Status receive(pb::ToWorker* msg) { return read_frame(reader_, msg); }

 private:
  Socket reader_;
  std::mutex write_mu_;
  Socket writer_;
};

// Sends Heartbeat every `period` until stopped or a write fails (the coordinator is gone).
class HeartbeatThread {
 public:
  HeartbeatThread(Channel* channel, std::chrono::milliseconds period)
      : thread_([this, channel, period] { run(channel, period); }) {}
  ~HeartbeatThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void run(Channel* channel, std::chrono::milliseconds period) {
    uint64_t seq = 0;
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
      pb::FromWorker msg;
      msg.mutable_heartbeat()->set_seq(++seq);
      lock.unlock();
      Status s = channel->send(msg);
      lock.lock();
      if (!s.ok()) return;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: started once the members above exist
};

void send_error(Channel& channel, uint64_t step_id, const Status& status) {
  pb::FromWorker msg;
  to_proto(status, msg.mutable_error());
  msg.mutable_error()->set_step_id(step_id);
  (void)channel.send(msg);  // the coordinator may be gone already; the log line below still tells
}

}  // namespace

int run_worker(const WorkerArgs& args) {
  // Die with the coordinator. The coordinator also sets this between fork and exec; repeating it here covers a
  // worker started by hand. If the parent died before this line, getppid() has already changed.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (args.parent_pid > 0 && getppid() != static_cast<pid_t>(args.parent_pid)) {
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": coordinator (pid " << args.parent_pid << ") is gone";
    return 1;
  }
  // The coordinator handles SIGINT/SIGTERM for the whole process group (Ctrl-C in a terminal reaches both):
  // a worker ignores them and exits when told to, or when its socket closes.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  asio::io_context io;
  Socket reader(io);
  boost::system::error_code ec;
  reader.connect(asio::local::stream_protocol::endpoint(args.socket_path), ec);
  if (ec) {
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": cannot connect to " << args.socket_path << ": "
                  << ec.message();
    return 1;
  }
  int wfd = dup(reader.native_handle());
  if (wfd < 0) {
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": dup of the control socket failed";
    return 1;
  }
  Socket writer(io, asio::local::stream_protocol(), wfd);
  Channel channel(std::move(reader), std::move(writer));

  pb::FromWorker hello;
  hello.mutable_hello()->set_rank(args.rank);
  hello.mutable_hello()->set_pid(static_cast<uint32_t>(getpid()));
  if (Status s = channel.send(hello); !s.ok()) {
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": " << s.message();
    return 1;
  }

  pb::ToWorker init;
  if (Status s = channel.receive(&init); !s.ok() || !init.has_init()) {
    ZI_LOG(ERROR) << "worker rank " << args.rank << ": expected Init from the coordinator"
                  << (s.ok() ? "" : absl::StrCat(": ", s.message()));
    return 1;
  }
  uint32_t hb_ms = init.init().heartbeat_interval_ms();
  HeartbeatThread heartbeat(&channel, std::chrono::milliseconds(hb_ms > 0 ? hb_ms : 1000));

  EngineOptions options = from_proto(init.init().options());
  options.rank = args.rank;
  if (options.world_size > 1) {
    // Form the ZeRO-3 group: rank 0 makes the id, the coordinator relays it, everyone joins in create_executor.
    if (options.rank == 0) {
      auto id = create_comm_id(options);
      if (!id.ok()) {
        send_error(channel, 0, id.status());
        return 1;
      }
      options.comm_id = *id;
      pb::FromWorker up;
      up.mutable_comm_id()->set_id(*id);
      if (!channel.send(up).ok()) return 0;
    } else {
      pb::ToWorker down;
      if (Status s = channel.receive(&down); !s.ok() || !down.has_comm_id()) {
        ZI_LOG(ERROR) << "worker rank " << args.rank << ": expected the communicator id from the coordinator"
                      << (s.ok() ? "" : absl::StrCat(": ", s.message()));
        return s.ok() || s.code() != absl::StatusCode::kUnavailable ? 1 : 0;
      }
      options.comm_id = down.comm_id().id();
    }
  }
  auto executor_or = create_executor(options);
  if (!executor_or.ok()) {
    // The coordinator reports it (one line); log here only at debug level.
    ZI_LOG(DEBUG) << "worker rank " << args.rank << ": " << executor_or.status().message();
    send_error(channel, 0, executor_or.status());
    return 1;
  }
  std::unique_ptr<Executor> executor = std::move(executor_or).value();
  pb::FromWorker ready;
  to_proto(executor->summary(), ready.mutable_ready()->mutable_summary());
  if (!channel.send(ready).ok()) return 0;  // coordinator gone while we loaded: nothing to serve
  ZI_LOG(DEBUG) << "worker rank " << args.rank << ": ready";

  for (;;) {
    pb::ToWorker msg;
    Status s = channel.receive(&msg);
    if (!s.ok()) {
      if (s.code() == absl::StatusCode::kUnavailable) return 0;  // coordinator closed the socket
      ZI_LOG(ERROR) << "worker rank " << args.rank << ": " << s.message();
      return 1;
    }
    if (msg.has_shutdown()) return 0;
    if (!msg.has_step()) {
      ZI_LOG(ERROR) << "worker rank " << args.rank << ": unexpected control message";
      send_error(channel, 0, absl::InternalError("worker: unexpected control message"));
      return 1;
    }
    const uint64_t step_id = msg.step().step_id();
    auto out = executor->step(from_proto(msg.step()));
    pb::FromWorker reply;
    if (!out.ok()) {
      send_error(channel, step_id, out.status());
      continue;  // the step failed as a whole; the coordinator decides what to do with its sequences
    }
    reply.mutable_step_reply()->set_step_id(step_id);
    to_proto(*out, reply.mutable_step_reply());
    if (Status ws = channel.send(reply); !ws.ok()) return 0;
  }
}

}  // namespace zi::worker
