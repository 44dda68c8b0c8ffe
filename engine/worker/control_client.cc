#include "engine/worker/control_client.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>

#include "engine/core/log.h"
#include "engine/worker/control_stream.h"
#include "engine/worker/frame.h"
#include "engine/worker/frame_reader.h"

namespace zi::worker {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class Client final : public ControlClient {
 public:
  Client(std::unique_ptr<asio::io_context> io, std::optional<asio::ssl::context> tls,
         std::unique_ptr<ControlStream> stream)
      : io_(std::move(io)), tls_(std::move(tls)), stream_(std::move(stream)), ticker_(*io_) {
    last_heard_ = last_sent_ = Clock::now();
    read_next();
    tick();
    thread_ = std::thread([this] { io_->run(); });
  }

  ~Client() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    // Queued writes (an Error frame, a last reply) go out first, for at most 2 s; then the channel closes and run()
    // returns once nothing is left to do.
    asio::post(*io_, [this] {
      finishing_ = true;
      if (io_closed_) return;
      ticker_.expires_after(std::chrono::seconds(2));
      ticker_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) io_->stop();
      });
      if (!writing_) close("the worker is exiting", 0);
    });
    thread_.join();
  }

  Status send(const pb::FromWorker& msg) override {
    ZI_ASSIGN_OR_RETURN(std::string frame, encode_frame(msg));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return absl::UnavailableError(why_);
    }
    asio::post(*io_, [this, frame = std::move(frame)]() mutable { enqueue(std::move(frame)); });
    return absl::OkStatus();
  }

  Status receive(pb::ToWorker* msg) override {
    std::unique_lock<std::mutex> lock(mu_);
    receiving_ = true;
    cv_.wait(lock, [this] { return !inbox_.empty() || closed_; });
    receiving_ = false;
    if (inbox_.empty()) return absl::UnavailableError(why_);
    *msg = std::move(inbox_.front());
    inbox_.pop_front();
    return absl::OkStatus();
  }

  StatusOr<pb::StoreReply> call_store(pb::StoreRequest request, milliseconds timeout) override {
    uint64_t id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = ++next_store_id_;
      store_replies_[id];  // pending
    }
    request.set_request_id(id);
    pb::FromWorker msg;
    *msg.mutable_store() = std::move(request);
    Status sent = send(msg);
    std::unique_lock<std::mutex> lock(mu_);
    const bool answered = sent.ok() && cv_.wait_for(lock, timeout, [&] { return store_replies_[id].has_value() || closed_; });
    std::optional<pb::StoreReply> reply = std::move(store_replies_[id]);
    store_replies_.erase(id);
    if (reply) return *reply;
    if (!sent.ok() || closed_) return absl::UnavailableError(absl::StrCat("rendezvous store: ", why_));
    (void)answered;
    return absl::DeadlineExceededError(absl::StrCat("rendezvous store: no answer within ", timeout.count(), " ms"));
  }

  void set_heartbeat(milliseconds interval, milliseconds timeout) override {
    interval_ms_ = interval.count() > 0 ? interval.count() : 1000;
    timeout_ms_ = timeout.count() > 0 ? timeout.count() : 60000;
  }

  void exit_when_unheard() override {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = true;
  }

  std::string local_address() const override { return local_address_; }
  void set_local_address(std::string a) { local_address_ = std::move(a); }

 private:
  // I/O thread from here on.
  void read_next() {
    stream_->async_read_some(reader_.prepare(), [this](const boost::system::error_code& ec, size_t n) {
      // Over TLS a peer gone without close_notify reads as stream_truncated: the channel ended all the same.
      if (ec) return close(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated
                               ? "the coordinator closed the control channel"
                               : absl::StrCat("control channel: ", ec.message()), 0);
      if (Status st = reader_.commit(n); !st.ok()) return close(std::string(st.message()), 1);
      if (reader_.complete()) {
        pb::ToWorker msg;
        if (!msg.ParseFromString(reader_.payload())) return close("control frame: malformed protobuf payload", 1);
        reader_.reset();
        on_message(std::move(msg));
      }
      read_next();
    });
  }

  void on_message(pb::ToWorker msg) {
    last_heard_ = Clock::now();
    if (msg.has_heartbeat()) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (msg.has_store_reply()) {
      auto it = store_replies_.find(msg.store_reply().request_id());
      if (it != store_replies_.end()) it->second = std::move(*msg.mutable_store_reply());
    } else {
      if (msg.has_shutdown()) shutdown_seen_ = true;
      inbox_.push_back(std::move(msg));
    }
    cv_.notify_all();
  }

  void tick() {
    if (finishing_) return;
    const auto now = Clock::now();
    if (now - last_heard_ > milliseconds(timeout_ms_.load()))
      return close(absl::StrCat("no heartbeat from the coordinator for ", timeout_ms_.load() / 1000, " s"), 1);
    if (now - last_sent_ >= milliseconds(interval_ms_.load())) {
      pb::FromWorker hb;
      hb.mutable_heartbeat()->set_seq(++heartbeat_seq_);
      enqueue(*encode_frame(hb));
      last_sent_ = now;
    }
    ticker_.expires_after(milliseconds(100));
    ticker_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) tick();
    });
  }

  void enqueue(std::string frame) {
    if (io_closed_) return;
    writes_.push_back(std::move(frame));
    if (!writing_) write_next();
  }

  void write_next() {
    writing_ = true;
    stream_->async_write(asio::buffer(writes_.front()), [this](const boost::system::error_code& ec, size_t) {
      writes_.pop_front();
      writing_ = false;
      if (ec) return close(absl::StrCat("control channel write: ", ec.message()), 0);
      if (!writes_.empty()) write_next();
      else if (finishing_) close("the worker is exiting", 0);
    });
  }

  // The channel is over. `exit_code`: the process's, should the main thread be unable to hear it (see the header).
  void close(const std::string& why, int exit_code) {
    if (io_closed_) return;
    io_closed_ = true;
    stream_->close();
    ticker_.cancel();
    bool exit_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      why_ = why;
      exit_now = armed_ && !receiving_ && !shutdown_seen_ && !stopping_;
    }
    cv_.notify_all();
    if (exit_now) {
      ZI_LOG(WARNING) << "worker (pid " << getpid() << "): " << why << "; exiting";
      std::fflush(stderr);
      _exit(exit_code);
    }
  }

  std::unique_ptr<asio::io_context> io_;
  std::optional<asio::ssl::context> tls_;  // outlives the stream that uses it
  std::unique_ptr<ControlStream> stream_;
  asio::steady_timer ticker_;
  std::string local_address_;
  // I/O thread only.
  FrameReader reader_;
  std::deque<std::string> writes_;
  bool writing_ = false;
  bool io_closed_ = false;
  bool finishing_ = false;  // the destructor runs: close once the writes are out
  Clock::time_point last_heard_, last_sent_;
  uint64_t heartbeat_seq_ = 0;
  std::atomic<int64_t> interval_ms_{1000}, timeout_ms_{60000};
  // Shared with the caller's threads.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<pb::ToWorker> inbox_;                                // guarded by mu_
  std::map<uint64_t, std::optional<pb::StoreReply>> store_replies_;  // guarded by mu_: pending until set
  uint64_t next_store_id_ = 0;                                    // guarded by mu_
  bool closed_ = false, receiving_ = false, shutdown_seen_ = false, stopping_ = false;  // guarded by mu_
  bool armed_ = false;                                            // guarded by mu_: exit_when_unheard()
  std::string why_;                                               // guarded by mu_
  std::thread thread_;                                            // last: started once the members above exist
};

}  // namespace

StatusOr<std::unique_ptr<ControlClient>> ControlClient::ConnectUnix(const std::string& path) {
  auto io = std::make_unique<asio::io_context>();
  asio::local::stream_protocol::socket socket(*io);
  boost::system::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(path), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot connect to ", path, ": ", ec.message()));
  auto stream = make_control_stream(std::move(socket));
  return std::unique_ptr<ControlClient>(new Client(std::move(io), std::nullopt, std::move(stream)));
}

StatusOr<std::unique_ptr<ControlClient>> ControlClient::ConnectTls(const std::string& host, uint16_t port,
                                                                   const ControlTlsFiles& files,
                                                                   milliseconds retry_for) {
  ZI_ASSIGN_OR_RETURN(asio::ssl::context ctx, make_control_tls_context(TlsRole::kWorker, files));
  auto io = std::make_unique<asio::io_context>();
  const std::string where = absl::StrCat(host, ":", port);
  asio::ip::tcp::resolver resolver(*io);
  boost::system::error_code ec;
  const auto until = Clock::now() + retry_for;
  TlsSocket socket(*io, ctx);
  for (;;) {
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (!ec) asio::connect(socket.lowest_layer(), endpoints, ec);
    if (!ec) break;
    if (Clock::now() >= until)
      return absl::UnavailableError(absl::StrCat("cannot reach the coordinator at ", where, ": ", ec.message()));
    ZI_LOG(DEBUG) << "coordinator at " << where << ": " << ec.message() << "; retrying";
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  socket.set_verify_callback(asio::ssl::host_name_verification(host));
  socket.handshake(asio::ssl::stream_base::client, ec);
  if (ec)
    return absl::UnauthenticatedError(absl::StrCat("TLS handshake with the coordinator at ", where, " failed: ",
                                                   ec.message(), " (--tls-ca must hold the CA of its server.tls "
                                                   "certificate, and its server.tls.client_ca_file this worker's)"));
  auto stream = make_control_stream(std::move(socket));
  const std::string local = stream->local_address();
  auto client = std::make_unique<Client>(std::move(io), std::move(ctx), std::move(stream));
  client->set_local_address(local);
  return std::unique_ptr<ControlClient>(std::move(client));
}

}  // namespace zi::worker
