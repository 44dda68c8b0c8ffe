#include "server/worker_pool/worker_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>

#include <openssl/crypto.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "engine/core/log.h"
#include "engine/worker/control_stream.h"
#include "engine/worker/convert.h"
#include "engine/worker/frame.h"
#include "engine/worker/frame_reader.h"
#include "server/config/config.h"

namespace zi::server {

namespace asio = boost::asio;
namespace pb = ::zeroinfer::v1::worker;
using Clock = std::chrono::steady_clock;
using Socket = asio::local::stream_protocol::socket;

struct WorkerPool::Conn {
  explicit Conn(std::unique_ptr<worker::ControlStream> s) : stream(std::move(s)) {}
  std::unique_ptr<worker::ControlStream> stream;  // Unix socket, or TLS over TCP
  worker::FrameReader reader;  // the frame being read (grown as its bytes arrive)
  int rank = -1;  // known after Hello
  bool closed = false;
};

struct WorkerPool::Rank {
  uint32_t index = 0;
  pid_t pid = -1;
  bool exited = false;  // reaped; `wait_status` holds how it ended
  int wait_status = 0;
  std::shared_ptr<Conn> conn;
  std::deque<std::string> writes;  // frames; front() is being written while `writing`
  bool writing = false;
  bool ready = false;
  uint64_t kv_num_blocks = 0;  // from its Ready
  bool lost = false;
  Clock::time_point last_seen;
  Clock::time_point last_sent;  // our last heartbeat to it
  std::string host;             // from its Hello
  uint32_t remote_pid = 0;      // from its Hello (joined workers: a process on `host`)
  std::atomic<bool> live{false};  // its channel is open (shutdown() waits for joined workers to close theirs)
};

namespace {

// Reaps `pid` without blocking; true when it has exited (status in *status).
bool try_reap(pid_t pid, int* status) {
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r == 0) return false;
    if (errno == EINTR) continue;
    *status = 0;  // ECHILD: already reaped elsewhere
    return true;
  }
}

std::string describe_wait_status(int st) {
  if (WIFEXITED(st)) return absl::StrCat("exited with code ", WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return absl::StrCat("was killed by signal ", WTERMSIG(st), " (", strsignal(WTERMSIG(st)), ")");
  return "ended";
}

}  // namespace

WorkerPool::WorkerPool(EngineOptions options, WorkerPoolOptions pool)
    : options_(std::move(options)), pool_(std::move(pool)), ticker_(io_) {}

StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Spawn(const EngineOptions& options, WorkerPoolOptions pool) {
  std::unique_ptr<WorkerPool> p(new WorkerPool(options, std::move(pool)));
  ZI_RETURN_IF_ERROR(p->start());
  return p;
}

Status WorkerPool::start() {
  const uint32_t world = std::max<uint32_t>(1, options_.world_size);
  if (pool_.external) {
    for (uint32_t r = 0; r < world; ++r) {
      ranks_.push_back(std::make_unique<Rank>());
      ranks_.back()->index = r;
    }
    ZI_RETURN_IF_ERROR(listen_tcp());
    spawned_at_ = Clock::now();
    accept_next_tcp();
    tick();
    io_thread_ = std::thread([this] {
      auto guard = asio::make_work_guard(io_);
      io_.run();
      OPENSSL_thread_stop();  // the TLS handshakes' per-thread error state, freed before the join, not at exit
    });
    return absl::OkStatus();
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/zeroinfer-XXXXXX");
  if (!mkdtemp(tmpl.data()))
    return absl::InternalError(absl::StrCat("worker pool: cannot create a private folder from ", tmpl, ": ",
                                            std::strerror(errno)));
  dir_ = tmpl;  // mode 0700: only this user can reach the control socket
  socket_path_ = dir_ + "/control.sock";
  if (socket_path_.size() >= sizeof(sockaddr_un{}.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("worker pool: control socket path '", socket_path_,
                                                   "' is too long for a Unix socket; set TMPDIR to a shorter folder"));
  boost::system::error_code ec;
  acceptor_ = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
  acceptor_->open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor_->bind(asio::local::stream_protocol::endpoint(socket_path_), ec);
  if (!ec) acceptor_->listen(static_cast<int>(world) + 4, ec);
  if (ec) return absl::InternalError(absl::StrCat("worker pool: cannot listen on ", socket_path_, ": ", ec.message()));
  fcntl(acceptor_->native_handle(), F_SETFD, FD_CLOEXEC);

  const pid_t parent = getpid();
  for (uint32_t r = 0; r < world; ++r) {
    auto rank = std::make_unique<Rank>();
    rank->index = r;
    std::vector<std::string> args = {pool_.executable, "worker", "--rank", std::to_string(r), "--socket",
                                     socket_path_, "--parent-pid", std::to_string(parent), "--log-level",
                                     pool_.log_level};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = fork();
    if (pid < 0) return absl::InternalError(absl::StrCat("worker pool: fork failed: ", std::strerror(errno)));
    if (pid == 0) {
      // Child: only async-signal-safe calls until exec. Die with the coordinator; if it is already gone,
      // getppid() has changed. Keep only stdin/stderr, with stdout pointing at stderr (stdout is for results).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      dup2(2, 1);
      close_range(3, ~0U, 0);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    rank->pid = pid;
    ZI_LOG(INFO) << "spawned worker rank " << r << " (pid " << pid << ")";
    ranks_.push_back(std::move(rank));
  }
  spawned_at_ = Clock::now();
  accept_next();
  tick();
  io_thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
  return absl::OkStatus();
}

WorkerPool::~WorkerPool() { shutdown(std::chrono::seconds(2)); }

Status WorkerPool::listen_tcp() {
  auto ctx = worker::make_control_tls_context(worker::TlsRole::kCoordinator, pool_.tls);
  if (!ctx.ok()) return Status(ctx.status().code(), absl::StrCat("parallel.workers external: ", ctx.status().message()));
  tls_ = std::make_unique<asio::ssl::context>(std::move(*ctx));
  auto hp = parse_host_port(pool_.worker_listen);
  if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat("parallel.worker_listen: ", hp.status().message()));
  boost::system::error_code ec;
  asio::ip::tcp::resolver resolver(io_);
  auto endpoints = resolver.resolve(hp->host, std::to_string(hp->port), asio::ip::tcp::resolver::passive, ec);
  if (ec || endpoints.empty())
    return absl::InvalidArgumentError(absl::StrCat("parallel.worker_listen: cannot resolve '", hp->host, "': ",
                                                   ec ? ec.message() : "no address"));
  const auto endpoint = endpoints.begin()->endpoint();
  tcp_acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(io_);
  tcp_acceptor_->open(endpoint.protocol(), ec);
  if (!ec) tcp_acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) tcp_acceptor_->bind(endpoint, ec);
  if (!ec) tcp_acceptor_->listen(static_cast<int>(ranks_.size()) + 4, ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("parallel.worker_listen: cannot listen on ", pool_.worker_listen,
                                               ": ", ec.message()));
  fcntl(tcp_acceptor_->native_handle(), F_SETFD, FD_CLOEXEC);
  worker_address_ = join_host_port(hp->host, tcp_acceptor_->local_endpoint().port());
  ZI_LOG(INFO) << "workers join on " << worker_address_ << " (mutual TLS): waiting for " << ranks_.size()
               << " rank" << (ranks_.size() == 1 ? "" : "s");
  return absl::OkStatus();
}

void WorkerPool::accept_next_tcp() {
  tcp_acceptor_->async_accept([this](const boost::system::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec) return;  // closed once every rank has joined, or at shutdown
    accept_next_tcp();
    // The handshake verifies the worker's certificate against server.tls.client_ca_file; a peer that does not
    // finish it within 10 s is dropped (it holds no rank yet).
    auto tls = std::make_shared<worker::TlsSocket>(std::move(socket), *tls_);
    auto deadline = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(10));
    deadline->async_wait([tls](const boost::system::error_code& e) {
      if (!e) {
        boost::system::error_code ignored;
        tls->lowest_layer().close(ignored);
      }
    });
    tls->async_handshake(asio::ssl::stream_base::server, [this, tls, deadline](const boost::system::error_code& e) {
      deadline->cancel();
      if (e) {
        boost::system::error_code ignored;
        auto peer = tls->lowest_layer().remote_endpoint(ignored);
        ZI_LOG(WARNING) << "refused a worker connection from " << (ignored ? "?" : peer.address().to_string())
                        << ": TLS handshake failed: " << e.message()
                        << " (its certificate must chain to server.tls.client_ca_file)";
        tls->lowest_layer().close(ignored);
        return;
      }
      auto conn = std::make_shared<Conn>(worker::make_control_stream(std::move(*tls)));
      read_next(conn);
    });
  });
}

std::string WorkerPool::describe(const Rank& rank) const {
  if (rank.pid > 0) return absl::StrCat("worker rank ", rank.index, " (pid ", rank.pid, ")");
  if (rank.remote_pid > 0) return absl::StrCat("worker rank ", rank.index, " (pid ", rank.remote_pid, " on ", rank.host, ")");
  return absl::StrCat("worker rank ", rank.index);
}

void WorkerPool::accept_next() {
  auto socket = std::make_shared<Socket>(io_);
  acceptor_->async_accept(*socket, [this, socket](const boost::system::error_code& ec) {
    if (ec) return;  // closed once every rank has connected, or at shutdown
    read_next(std::make_shared<Conn>(worker::make_control_stream(std::move(*socket))));
    accept_next();
  });
}

void WorkerPool::read_next(std::shared_ptr<Conn> conn) {
  // A piece at a time (at most 1 MiB): a frame's buffer grows with the bytes that arrive, not with its header.
  conn->stream->async_read_some(conn->reader.prepare(), [this, conn](const boost::system::error_code& ec, size_t n) {
    // A peer gone without TLS's close_notify (killed) reads as stream_truncated: the same end of the channel.
    if (ec) return on_conn_closed(conn, ec == asio::error::eof || ec == asio::ssl::error::stream_truncated
                                            ? "closed its control channel"
                                            : ec.message());
    if (Status st = conn->reader.commit(n); !st.ok()) return on_conn_closed(conn, std::string(st.message()));
    if (conn->reader.complete()) {
      on_frame(conn, conn->reader.payload());
      if (conn->closed) return;
      conn->reader.reset();
    }
    read_next(conn);
  });
}

void WorkerPool::on_frame(const std::shared_ptr<Conn>& conn, const std::string& payload) {
  pb::FromWorker msg;
  if (!msg.ParseFromString(payload)) return on_conn_closed(conn, "sent a malformed control frame");
  if (conn->rank < 0) {
    std::string refused;
    if (!msg.has_hello()) refused = "connected without a Hello";
    else if (msg.hello().rank() >= ranks_.size())
      refused = absl::StrFormat("says it is rank %d; this coordinator has ranks 0..%d (parallel.num_gpus %d)",
                                msg.hello().rank(), ranks_.size() - 1, ranks_.size());
    else if (msg.hello().world_size() != 0 && msg.hello().world_size() != ranks_.size())
      refused = absl::StrFormat("was started with --world %d; this coordinator runs parallel.num_gpus %d",
                                msg.hello().world_size(), ranks_.size());
    else if (ranks_[msg.hello().rank()]->conn)
      refused = absl::StrFormat("says it is rank %d, which has joined already", msg.hello().rank());
    if (!refused.empty()) {
      if (pool_.external) {
        ZI_LOG(WARNING) << "refused a worker from " << conn->stream->peer() << ": it " << refused;
      }
      return on_conn_closed(conn, refused);
    }
    Rank& rank = *ranks_[msg.hello().rank()];
    conn->rank = static_cast<int>(rank.index);
    rank.conn = conn;
    rank.live = true;
    rank.last_seen = rank.last_sent = Clock::now();
    rank.host = msg.hello().host();
    rank.remote_pid = msg.hello().pid();
    if (pool_.external) {
      ZI_LOG(INFO) << describe(rank) << " joined from " << conn->stream->peer();
    }
    bool all = std::all_of(ranks_.begin(), ranks_.end(), [](auto& r) { return r->conn != nullptr; });
    if (all) {  // nobody else may connect: close the door (and remove the socket file), then start every rank
      boost::system::error_code ec;
      if (acceptor_) acceptor_->close(ec);
      if (tcp_acceptor_) tcp_acceptor_->close(ec);
      remove_socket_files();
      send_init_all();
    }
    return;
  }
  Rank& rank = *ranks_[conn->rank];
  rank.last_seen = Clock::now();
  switch (msg.msg_case()) {
    case pb::FromWorker::kCommId: {
      // Rank 0's communicator id: every other rank joins the group with it (now, or once it says Hello).
      if (rank.index != 0 || !comm_id_.empty()) return on_conn_closed(conn, "sent an unexpected communicator id");
      comm_id_ = msg.comm_id().id();
      for (size_t r = 1; r < ranks_.size(); ++r)
        if (ranks_[r]->conn) send_comm_id(*ranks_[r]);
      break;
    }
    case pb::FromWorker::kReady: {
      if (rank.ready) break;
      rank.ready = true;
      rank.kv_num_blocks = msg.ready().summary().kv_num_blocks();
      if (rank.index == 0) {
        summary_ = worker::from_proto(msg.ready().summary());
        summary_.num_ranks = static_cast<uint32_t>(ranks_.size());
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (++ready_count_ == ranks_.size()) {
        // The scheduler counts every rank's KV blocks against summary().kv_num_blocks: the smallest cache (GPUs with
        // different free memory may size theirs differently).
        for (auto& r : ranks_) summary_.kv_num_blocks = std::min(summary_.kv_num_blocks, r->kv_num_blocks);
        if (!start_result_) start_result_ = absl::OkStatus();
      }
      cv_.notify_all();
      break;
    }
    case pb::FromWorker::kStepReply: {
      std::lock_guard<std::mutex> lock(mu_);
      if (msg.step_reply().step_id() == step_id_ && step_remaining_ > 0 && !step_replies_[rank.index]) {
        step_replies_[rank.index] = worker::from_proto(msg.step_reply());
        if (--step_remaining_ == 0) cv_.notify_all();
      }
      break;
    }
    case pb::FromWorker::kStore: {
      for (RendezvousStore::Reply& r : store_.handle(rank.index, msg.store())) {
        pb::ToWorker reply;
        *reply.mutable_store_reply() = std::move(r.reply);
        auto frame = worker::encode_frame(reply);
        if (frame.ok()) send(*ranks_[r.rank], std::move(*frame));
      }
      break;
    }
    case pb::FromWorker::kError: {
      Status st = worker::from_proto(msg.error());
      if (!rank.ready) {
        fail_start(Status(st.code(), absl::StrCat("worker rank ", rank.index, ": ", st.message())));
        break;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (msg.error().step_id() == step_id_ && step_remaining_ > 0 && !step_replies_[rank.index]) {
        // A failed step is not a lost worker: keep UNAVAILABLE for that.
        auto code = st.code() == absl::StatusCode::kUnavailable ? absl::StatusCode::kInternal : st.code();
        if (step_error_.ok()) step_error_ = Status(code, absl::StrCat("worker rank ", rank.index, ": ", st.message()));
        step_replies_[rank.index] = StepOutput{};
        if (--step_remaining_ == 0) cv_.notify_all();
      }
      break;
    }
    default:
      break;  // Heartbeat (last_seen is updated above), or a stray Hello
  }
}

void WorkerPool::send_init_all() {
  EngineOptions options = options_;
  if (options.cpu_communicator == CpuCommunicator::kAuto) {
    // Shared memory reaches only the ranks of one host: any other host among them means Gloo over TCP.
    const bool one_host = std::all_of(ranks_.begin(), ranks_.end(), [&](auto& r) { return r->host == ranks_[0]->host; });
    options.cpu_communicator = one_host ? CpuCommunicator::kShm : CpuCommunicator::kGloo;
  }
  if (ranks_.size() > 1 && pool_.external) {
    ZI_LOG(INFO) << "every rank has joined; CPU ranks gather with "
                 << enum_name(options.cpu_communicator, kCpuCommunicatorNames);
  }
  for (auto& rp : ranks_) {
    Rank& rank = *rp;
    pb::ToWorker init;
    worker::to_proto(options, init.mutable_init()->mutable_options());
    init.mutable_init()->mutable_options()->set_rank(rank.index);
    init.mutable_init()->mutable_options()->set_world_size(static_cast<uint32_t>(ranks_.size()));
    init.mutable_init()->set_heartbeat_interval_ms(static_cast<uint32_t>(pool_.heartbeat_interval.count()));
    init.mutable_init()->set_heartbeat_timeout_ms(static_cast<uint32_t>(pool_.heartbeat_timeout.count()));
    auto frame = worker::encode_frame(init);
    ZI_CHECK(frame.ok());
    send(rank, std::move(*frame));
  }
}

void WorkerPool::send_comm_id(Rank& rank) {
  pb::ToWorker msg;
  msg.mutable_comm_id()->set_id(comm_id_);
  auto frame = worker::encode_frame(msg);
  ZI_CHECK(frame.ok());
  send(rank, std::move(*frame));
}

void WorkerPool::send(Rank& rank, std::string frame) {
  if (!rank.conn || rank.conn->closed) return;
  rank.writes.push_back(std::move(frame));
  if (!rank.writing) write_next(rank);
}

void WorkerPool::write_next(Rank& rank) {
  rank.writing = true;
  std::shared_ptr<Conn> conn = rank.conn;
  conn->stream->async_write(asio::buffer(rank.writes.front()),
                    [this, &rank, conn](const boost::system::error_code& ec, size_t) {
                      rank.writes.pop_front();
                      rank.writing = false;
                      if (ec) {
                        rank.writes.clear();
                        return on_conn_closed(conn, absl::StrCat("control channel write failed: ", ec.message()));
                      }
                      if (!rank.writes.empty() && !conn->closed) write_next(rank);
                    });
}

void WorkerPool::on_conn_closed(const std::shared_ptr<Conn>& conn, const std::string& why) {
  if (conn->closed) return;
  conn->closed = true;
  conn->stream->close();
  if (conn->rank < 0) return;
  ranks_[conn->rank]->live = false;
  store_.drop(static_cast<uint32_t>(conn->rank));
  lose(static_cast<uint32_t>(conn->rank), why);
}

std::string WorkerPool::exit_description(Rank& rank, std::chrono::milliseconds wait) {
  auto until = Clock::now() + wait;
  std::unique_lock<std::mutex> lock(mu_);
  while (!rank.exited && rank.pid > 0) {
    int st = 0;
    if (try_reap(rank.pid, &st)) {
      rank.exited = true;
      rank.wait_status = st;
      break;
    }
    if (Clock::now() >= until) return "";
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    lock.lock();
  }
  return rank.exited ? describe_wait_status(rank.wait_status) : "";
}

void WorkerPool::lose(uint32_t index, const std::string& why) {
  Rank& rank = *ranks_[index];
  if (rank.lost) return;
  rank.lost = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return;
  }
  // A worker that closed its socket is usually exiting: give it a moment so the message can say how it ended.
  std::string how = exit_description(rank, std::chrono::milliseconds(500));
  Status st = absl::UnavailableError(absl::StrCat(describe(rank), " ", why,
                                                  how.empty() ? "" : absl::StrCat("; it ", how)));
  // ZeRO-3: the other ranks cannot finish a step without this one (they may sit in an all-gather): stop them
  // now, marked lost first so their exits add no second report. A joined worker is not ours to kill: closing its
  // channel makes it exit.
  if (ranks_.size() > 1) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& other : ranks_) {
      if (other->index == index || other->lost) continue;
      other->lost = true;
      if (other->pid > 0 && !other->exited) kill(other->pid, SIGKILL);
      if (other->pid <= 0 && other->conn && !other->conn->closed) {
        other->conn->closed = true;
        other->conn->stream->close();
        other->live = false;
      }
    }
  }
  std::function<void(const Status&)> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bool started = start_result_.has_value() && start_result_->ok();
    // A worker that failed to start has said why already (its Error is the start result): no second line.
    if (start_result_ && !started) ZI_LOG(DEBUG) << st.message();
    else ZI_LOG(ERROR) << st.message();
    if (!start_result_) start_result_ = st;
    if (lost_.ok()) lost_ = st;
    if (started) cb = on_lost_;
  }
  cv_.notify_all();
  if (cb) cb(st);
}

void WorkerPool::fail_start(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!start_result_) start_result_ = status;
  }
  cv_.notify_all();
}

void WorkerPool::tick() {
  const auto now = Clock::now();
  for (auto& rp : ranks_) {
    Rank& rank = *rp;
    bool exited;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!rank.exited && rank.pid > 0 && try_reap(rank.pid, &rank.wait_status)) rank.exited = true;
      exited = rank.exited;
    }
    if (rank.lost) continue;
    const auto timeout = pool_.external ? pool_.join_timeout : pool_.connect_timeout;
    const auto secs = [](std::chrono::milliseconds d) {
      return std::chrono::duration_cast<std::chrono::seconds>(d).count();
    };
    if (exited) {
      lose(rank.index, "stopped");
    } else if (!rank.conn && now - spawned_at_ > timeout) {
      if (rank.pid > 0) kill(rank.pid, SIGKILL);
      lose(rank.index, pool_.external
                           ? absl::StrFormat("did not join within %d s (parallel.join_timeout_seconds)", secs(timeout))
                           : absl::StrFormat("did not connect within %d s", secs(timeout)));
    } else if (rank.conn && now - rank.last_seen > pool_.heartbeat_timeout) {
      if (rank.pid > 0) kill(rank.pid, SIGKILL);
      on_conn_closed(rank.conn, absl::StrFormat("stopped responding (no heartbeat for %d s)",
                                                secs(pool_.heartbeat_timeout)));
    } else if (rank.conn && !rank.conn->closed && now - rank.last_sent >= pool_.heartbeat_interval) {
      // Ours: a joined worker whose coordinator falls silent exits (engine/worker/control_client.h).
      pb::ToWorker hb;
      hb.mutable_heartbeat()->set_seq(1);
      send(rank, *worker::encode_frame(hb));
      rank.last_sent = now;
    }
  }
  ticker_.expires_after(std::chrono::milliseconds(100));
  ticker_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

std::optional<Status> WorkerPool::wait_ready(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return start_result_.has_value(); });
  return start_result_;
}

void WorkerPool::set_on_lost(std::function<void(const Status&)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  on_lost_ = std::move(fn);
}

std::vector<pid_t> WorkerPool::worker_pids() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<pid_t> out;
  for (auto& r : ranks_) out.push_back(r->pid);
  return out;
}

StatusOr<StepOutput> WorkerPool::step(const StepInput& input) {
  const size_t world = ranks_.size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lost_.ok()) return lost_;
    if (shutting_down_) return absl::UnavailableError("worker pool is shutting down");
  }
  // Split the batch by the rank the scheduler placed each sequence on; each rank runs its part as its own rank 0
  // (convert.h: the rank does not travel).
  std::vector<StepInput> parts(world);
  std::vector<std::vector<size_t>> index(world);  // index[r][k]: position in `input` of rank r's k-th sequence
  for (const SeqRelease& rel : input.release) {
    if (rel.rank >= world)
      return absl::InvalidArgumentError(absl::StrFormat("release of sequence %d names rank %d; the pool has %d ranks",
                                                        rel.seq_id, rel.rank, world));
    parts[rel.rank].release.emplace_back(rel.seq_id, 0);
  }
  for (size_t i = 0; i < input.seqs.size(); ++i) {
    const SeqStep& s = input.seqs[i];
    if (s.rank >= world)
      return absl::InvalidArgumentError(absl::StrFormat("sequence %d: SeqStep.rank is %d; the pool has %d ranks",
                                                        s.seq_id, s.rank, world));
    parts[s.rank].seqs.push_back(s);
    parts[s.rank].seqs.back().rank = 0;
    index[s.rank].push_back(i);
  }
  std::vector<std::string> frames(world);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = ++step_id_;
    step_remaining_ = world;
    step_replies_.assign(world, std::nullopt);
    step_error_ = absl::OkStatus();
  }
  for (size_t r = 0; r < world; ++r) {
    pb::ToWorker msg;
    worker::to_proto(parts[r], msg.mutable_step());
    msg.mutable_step()->set_step_id(id);
    ZI_ASSIGN_OR_RETURN(frames[r], worker::encode_frame(msg));
  }
  asio::post(io_, [this, frames = std::move(frames)]() mutable {
    for (size_t r = 0; r < ranks_.size(); ++r) send(*ranks_[r], std::move(frames[r]));
  });

  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return step_remaining_ == 0 || !lost_.ok() || shutting_down_; });
  if (!lost_.ok()) return lost_;
  if (step_remaining_ != 0) return absl::UnavailableError("worker pool is shutting down");
  if (!step_error_.ok()) return step_error_;
  StepOutput out;
  out.results.resize(input.seqs.size());
  for (size_t r = 0; r < world; ++r) {
    StepOutput& part = *step_replies_[r];
    if (part.results.size() != index[r].size())
      return absl::InternalError(absl::StrFormat("worker rank %d returned %d results for %d sequences", r,
                                                 part.results.size(), index[r].size()));
    for (size_t k = 0; k < index[r].size(); ++k) out.results[index[r][k]] = std::move(part.results[k]);
    const StepStats& p = part.stats;
    StepStats& t = out.stats;
    t.seconds = std::max(t.seconds, p.seconds);
    t.prefill_tokens += p.prefill_tokens;
    t.decode_tokens += p.decode_tokens;
    t.fetch_bytes += p.fetch_bytes;
    t.nvme_bytes += p.nvme_bytes;
    t.copy_seconds = std::max(t.copy_seconds, p.copy_seconds);
    t.nvme_read_seconds = std::max(t.nvme_read_seconds, p.nvme_read_seconds);
    t.stall_seconds = std::max(t.stall_seconds, p.stall_seconds);
    t.allgather_bytes += p.allgather_bytes;
    t.allgather_seconds = std::max(t.allgather_seconds, p.allgather_seconds);
    t.device_memory_used_bytes += p.device_memory_used_bytes;
    t.kv_usage_ratio = std::max(t.kv_usage_ratio, p.kv_usage_ratio);
    out.rank_stats.push_back(p);
    out.rank_stats.back().rank = static_cast<uint32_t>(r);
  }
  return out;
}

void WorkerPool::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) return;
    shut_down_ = shutting_down_ = true;
  }
  cv_.notify_all();
  if (io_thread_.joinable()) {
    asio::post(io_, [this] {
      pb::ToWorker msg;
      msg.mutable_shutdown();
      auto frame = worker::encode_frame(msg);
      for (auto& r : ranks_) send(*r, *frame);
    });
  }
  auto all_exited = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    bool all = true;
    for (auto& r : ranks_) {
      if (!r->exited && r->pid > 0 && try_reap(r->pid, &r->wait_status)) r->exited = true;
      all = all && (r->pid > 0 ? r->exited : !r->live);
    }
    return all;
  };
  const auto until = Clock::now() + grace;
  while (!all_exited() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : ranks_) {
      if (r->exited || r->pid <= 0) continue;
      ZI_LOG(WARNING) << "worker rank " << r->index << " (pid " << r->pid << ") did not exit in time; killing it";
      kill(r->pid, SIGKILL);
      while (waitpid(r->pid, &r->wait_status, 0) < 0 && errno == EINTR) {
      }
      r->exited = true;
    }
    for (auto& r : ranks_)
      if (r->pid > 0 && !(WIFEXITED(r->wait_status) && WEXITSTATUS(r->wait_status) == 0)) {
        ZI_LOG(WARNING) << "worker rank " << r->index << " (pid " << r->pid << ") "
                        << describe_wait_status(r->wait_status);
      }
  }
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  // Joined workers still connected exit when their channel closes.
  for (auto& r : ranks_)
    if (r->conn && !r->conn->closed) r->conn->stream->close();
  remove_socket_files();
}

void WorkerPool::remove_socket_files() {
  // Once every rank is connected nobody needs the path: remove it and its folder at once, so that not even a
  // SIGKILLed coordinator leaves anything behind.
  if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
  if (!dir_.empty()) ::rmdir(dir_.c_str());
}

}  // namespace zi::server
