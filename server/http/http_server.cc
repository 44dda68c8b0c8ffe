#include "server/http/http_server.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "server/config/config.h"

namespace zi::server::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr size_t kMaxHeaderBytes = 16 << 10;
constexpr size_t kMaxPipelinedBytes = 64 << 10;  // bytes of a next request buffered while one is answered

// What ~HttpServer closes: every live connection.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void close() = 0;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  Handler handler;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  uint16_t port = 0;
  std::vector<std::weak_ptr<SessionBase>> sessions;  // I/O thread only
  std::thread thread;

  void accept();
  std::pair<std::string, std::string> error_body(unsigned status, const std::string& message) const {
    if (options.error_body) return options.error_body(status, message);
    return {"text/plain; charset=utf-8", message + "\n"};
  }
};

namespace {

// One connection. Stream: tcp::socket, or asio::ssl::stream<tcp::socket>. Every member is touched on the
// connection's strand only (Reply calls are posted there).
template <typename Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream stream, HttpServer::Impl* server)
      : stream_(std::move(stream)), timer_(stream_.get_executor()), server_(server) {}

  void start();
  void close() override;

  // Reply, per exchange (a stale exchange's calls are ignored).
  class ExchangeReply;
  void send(uint64_t exchange, unsigned status, std::string content_type, std::string body, Headers headers);
  void start_stream(uint64_t exchange, std::string content_type, Headers headers);
  void write_piece(uint64_t exchange, std::string data);
  void end_stream(uint64_t exchange);
  void set_gone_hook(uint64_t exchange, std::function<void()> hook);
  bool gone() const { return gone_.load(); }

  template <typename F>
  void dispatch(F f) {
    asio::post(stream_.get_executor(), [self = this->shared_from_this(), f = std::move(f)]() mutable { f(*self); });
  }

 private:
  void read_head();
  void on_head(error_code ec);
  void on_body(error_code ec);
  // Keeps a read pending while a request is answered: it sees the client close, and buffers a pipelined request.
  void watch();
  void on_watch(error_code ec, size_t n);
  // The answer is complete: go on with the next request, or close.
  void finish_exchange();
  // The server's own error for the request being read (400, 413): the connection closes after it.
  void refuse(unsigned status, const std::string& message);
  // Closes after the last write without a reset: the sending side is shut and what the client still sends (the
  // rest of a refused body) is read and dropped for up to 2 s, so that its kernel does not discard our answer.
  void linger_close();
  void enqueue(std::string bytes);
  void do_write();
  void arm_timer();
  void mark_gone();
  bool current(uint64_t exchange) const { return exchange == exchange_ && answering_ && !closed_; }
  std::string head(unsigned status, const std::string& content_type, const Headers& headers, bool keep_alive,
                   std::optional<size_t> content_length, bool chunked);

  Stream stream_;
  asio::steady_timer timer_;
  HttpServer::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool reading_ = false;        // a read (head, body or watch) is pending
  bool answering_ = false;      // a handler holds the current exchange
  uint64_t exchange_ = 0;
  bool keep_alive_ = true;
  bool head_only_ = false;      // a HEAD request
  unsigned version_ = 11;
  bool streaming_ = false;
  std::deque<std::string> out_;
  bool writing_ = false;
  bool close_after_write_ = false;
  bool lingering_ = false;
  bool closed_ = false;
  std::atomic<bool> gone_{false};
  std::function<void()> gone_hook_;
};

template <typename Stream>
class Session<Stream>::ExchangeReply final : public Reply {
 public:
  ExchangeReply(std::shared_ptr<Session> session, uint64_t exchange) : s_(std::move(session)), id_(exchange) {}
  void send(unsigned status, std::string content_type, std::string body, Headers headers) override {
    s_->dispatch([id = id_, status, ct = std::move(content_type), b = std::move(body),
                  h = std::move(headers)](Session& s) mutable { s.send(id, status, std::move(ct), std::move(b), std::move(h)); });
  }
  void start_stream(std::string content_type, Headers headers) override {
    s_->dispatch([id = id_, ct = std::move(content_type), h = std::move(headers)](Session& s) mutable {
      s.start_stream(id, std::move(ct), std::move(h));
    });
  }
  void write(std::string data) override {
    s_->dispatch([id = id_, d = std::move(data)](Session& s) mutable { s.write_piece(id, std::move(d)); });
  }
  void end() override {
    s_->dispatch([id = id_](Session& s) { s.end_stream(id); });
  }
  bool gone() const override { return s_->gone(); }
  void on_gone(std::function<void()> hook) override {
    s_->dispatch([id = id_, h = std::move(hook)](Session& s) mutable { s.set_gone_hook(id, std::move(h)); });
  }

 private:
  std::shared_ptr<Session> s_;
  uint64_t id_;
};

template <typename Stream>
void Session<Stream>::start() {
  if constexpr (std::is_same_v<Stream, tcp::socket>) {
    read_head();
  } else {
    arm_timer();
    stream_.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](error_code ec) {
      if (ec) return self->close();
      self->read_head();
    });
  }
}

template <typename Stream>
void Session<Stream>::arm_timer() {
  timer_.expires_after(server_->options.idle_timeout);
  timer_.async_wait([weak = this->weak_from_this()](error_code ec) {
    if (ec) return;  // re-armed or cancelled
    if (auto self = weak.lock()) self->close();
  });
}

template <typename Stream>
void Session<Stream>::read_head() {
  if (closed_) return;
  parser_.emplace();
  parser_->header_limit(kMaxHeaderBytes);
  parser_->body_limit(server_->options.max_body_bytes);
  arm_timer();
  reading_ = true;
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = this->shared_from_this()](error_code ec, size_t) { self->on_head(ec); });
}

template <typename Stream>
void Session<Stream>::on_head(error_code ec) {
  reading_ = false;
  if (closed_) return;
  const uint64_t limit = server_->options.max_body_bytes;
  const std::string too_large = absl::StrCat("the request body is over the limit of ", limit, " bytes (",
                                             server_->options.max_body_key, ")");
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) return close();  // client went
  if (ec == bhttp::error::body_limit) return refuse(413, too_large);
  if (ec == bhttp::error::header_limit)
    return refuse(431, absl::StrCat("the request head is over the limit of ", kMaxHeaderBytes, " bytes"));
  if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
    return refuse(400, absl::StrCat("malformed HTTP request: ", ec.message()));
  if (ec) return close();
  auto& req = parser_->get();
  if (auto length = parser_->content_length(); length && *length > limit)
    return refuse(413, absl::StrCat("the request body of ", *length, " bytes is over the limit of ", limit, " bytes (",
                                    server_->options.max_body_key, ")"));
  if (beast::iequals(req[bhttp::field::expect], "100-continue") && !parser_->is_done())
    enqueue("HTTP/1.1 100 Continue\r\n\r\n");
  reading_ = true;
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = this->shared_from_this()](error_code ec, size_t) { self->on_body(ec); });
}

template <typename Stream>
void Session<Stream>::on_body(error_code ec) {
  reading_ = false;
  if (closed_) return;
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) return close();
  if (ec == bhttp::error::body_limit)
    return refuse(413, absl::StrCat("the request body is over the limit of ", server_->options.max_body_bytes,
                                    " bytes (", server_->options.max_body_key, ")"));
  if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
    return refuse(400, absl::StrCat("malformed HTTP request: ", ec.message()));
  if (ec) return close();
  timer_.cancel();  // answers may take long (streams): the connection is watched instead
  Request req = parser_->release();
  parser_.reset();
  ++exchange_;
  answering_ = true;
  streaming_ = false;
  keep_alive_ = req.keep_alive() && server_->options.keep_alive;
  head_only_ = req.method() == bhttp::verb::head;
  version_ = req.version();
  watch();
  server_->handler(std::move(req), std::make_shared<ExchangeReply>(this->shared_from_this(), exchange_));
}

template <typename Stream>
void Session<Stream>::watch() {
  if (lingering_) buffer_.clear();
  if (reading_ || closed_ || buffer_.size() >= kMaxPipelinedBytes) return;
  reading_ = true;
  stream_.async_read_some(buffer_.prepare(4096), [self = this->shared_from_this()](error_code ec, size_t n) {
    self->on_watch(ec, n);
  });
}

template <typename Stream>
void Session<Stream>::on_watch(error_code ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) return close();  // the client went (EOF, reset, TLS close): cancels what it asked for
  buffer_.commit(n);
  if (answering_ || lingering_) return watch();
  read_head();  // the next request has begun to arrive
}

template <typename Stream>
void Session<Stream>::mark_gone() {
  gone_.store(true);
  if (auto hook = std::exchange(gone_hook_, nullptr)) hook();
}

template <typename Stream>
void Session<Stream>::set_gone_hook(uint64_t exchange, std::function<void()> hook) {
  if (exchange != exchange_ || !answering_) return;
  if (gone_.load()) {
    hook();
    return;
  }
  gone_hook_ = std::move(hook);
}

template <typename Stream>
void Session<Stream>::close() {
  if (closed_) return;
  closed_ = true;
  mark_gone();
  timer_.cancel();
  error_code ignored;
  auto& socket = beast::get_lowest_layer(stream_);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

template <typename Stream>
void Session<Stream>::linger_close() {
  if (closed_ || lingering_) return;
  lingering_ = true;
  error_code ignored;
  beast::get_lowest_layer(stream_).shutdown(tcp::socket::shutdown_send, ignored);
  timer_.expires_after(std::chrono::seconds(2));
  timer_.async_wait([weak = this->weak_from_this()](error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->close();
  });
  watch();  // reads and drops until the client closes (EOF closes us)
}

template <typename Stream>
std::string Session<Stream>::head(unsigned status, const std::string& content_type, const Headers& headers,
                                  bool keep_alive, std::optional<size_t> content_length, bool chunked) {
  std::ostringstream os;
  os << "HTTP/" << (version_ == 10 ? "1.0" : "1.1") << ' ' << status << ' '
     << bhttp::obsolete_reason(bhttp::int_to_status(status)) << "\r\nServer: zeroinfer\r\n";
  if (!content_type.empty()) os << "Content-Type: " << content_type << "\r\n";
  for (const auto& [name, value] : headers) os << name << ": " << value << "\r\n";
  if (content_length) os << "Content-Length: " << *content_length << "\r\n";
  if (chunked) os << "Transfer-Encoding: chunked\r\n";
  if (!keep_alive) os << "Connection: close\r\n";
  else if (version_ == 10) os << "Connection: keep-alive\r\n";
  os << "\r\n";
  return os.str();
}

template <typename Stream>
void Session<Stream>::refuse(unsigned status, const std::string& message) {
  // The rest of the request is never read: the connection cannot carry another one.
  auto [content_type, body] = server_->error_body(status, message);
  ++exchange_;
  answering_ = false;
  enqueue(head(status, content_type, {}, /*keep_alive=*/false, body.size(), false) + body);
  close_after_write_ = true;
}

template <typename Stream>
void Session<Stream>::send(uint64_t exchange, unsigned status, std::string content_type, std::string body,
                           Headers headers) {
  if (!current(exchange) || streaming_) return;
  std::string bytes = head(status, content_type, headers, keep_alive_, body.size(), false);
  if (!head_only_) bytes += body;
  enqueue(std::move(bytes));
  finish_exchange();
}

template <typename Stream>
void Session<Stream>::start_stream(uint64_t exchange, std::string content_type, Headers headers) {
  if (!current(exchange) || streaming_) return;
  streaming_ = true;
  // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
  if (version_ == 10) keep_alive_ = false;
  enqueue(head(200, content_type, headers, keep_alive_, std::nullopt, version_ != 10));
}

template <typename Stream>
void Session<Stream>::write_piece(uint64_t exchange, std::string data) {
  if (!current(exchange) || !streaming_ || data.empty() || head_only_) return;
  if (version_ == 10) return enqueue(std::move(data));
  std::ostringstream chunk;
  chunk << std::hex << data.size() << "\r\n" << data << "\r\n";
  enqueue(chunk.str());
}

template <typename Stream>
void Session<Stream>::end_stream(uint64_t exchange) {
  if (!current(exchange) || !streaming_) return;
  if (version_ != 10 && !head_only_) enqueue("0\r\n\r\n");
  finish_exchange();
}

template <typename Stream>
void Session<Stream>::finish_exchange() {
  answering_ = false;
  streaming_ = false;
  gone_hook_ = nullptr;
  if (!keep_alive_) {
    close_after_write_ = true;
    if (!writing_) linger_close();
    return;
  }
  if (!reading_) read_head();  // a pipelined request may already be buffered
  else arm_timer();            // the watch read now waits for the next request
}

template <typename Stream>
void Session<Stream>::enqueue(std::string bytes) {
  if (closed_) return;
  out_.push_back(std::move(bytes));
  if (!writing_) do_write();
}

template <typename Stream>
void Session<Stream>::do_write() {
  writing_ = true;
  asio::async_write(stream_, asio::buffer(out_.front()), [self = this->shared_from_this()](error_code ec, size_t) {
    self->writing_ = false;
    self->out_.pop_front();
    if (ec) return self->close();
    if (!self->out_.empty()) return self->do_write();
    if (self->close_after_write_) self->linger_close();
  });
}

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [this](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      std::erase_if(sessions, [](const std::weak_ptr<SessionBase>& w) { return w.expired(); });
      std::shared_ptr<SessionBase> session;
      if (options.tls) {
        auto s = std::make_shared<Session<asio::ssl::stream<tcp::socket>>>(
            asio::ssl::stream<tcp::socket>(std::move(socket), *options.tls), this);
        s->start();
        session = s;
      } else {
        auto s = std::make_shared<Session<tcp::socket>>(std::move(socket), this);
        s->start();
        session = s;
      }
      sessions.push_back(session);
    }
    accept();
  });
}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options, Handler handler) {
  ZI_ASSIGN_OR_RETURN(HostPort hp, parse_host_port(options.listen));
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  impl->handler = std::move(handler);
  error_code ec;
  tcp::resolver resolver(impl->io);
  auto endpoints = resolver.resolve(hp.host, std::to_string(hp.port), tcp::resolver::passive, ec);
  if (ec || endpoints.empty())
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve '", hp.host, "': ", ec.message()));
  tcp::endpoint ep = endpoints.begin()->endpoint();
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", impl->options.listen, ": ", ec.message()));
  impl->port = impl->acceptor.local_endpoint().port();
  impl->accept();
  impl->thread = std::thread([p = impl.get()] { p->io.run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() {
  // On the I/O thread: stop accepting and close every connection; their pending reads and writes then end, and
  // io.run() returns once nothing is left to do.
  asio::post(impl_->io, [p = impl_.get()] {
    error_code ignored;
    p->acceptor.close(ignored);
    for (auto& weak : p->sessions)
      if (auto s = weak.lock()) s->close();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t HttpServer::port() const { return impl_->port; }

}  // namespace zi::server::http
