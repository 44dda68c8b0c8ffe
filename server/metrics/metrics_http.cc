#include "server/metrics/metrics_http.h"

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <prometheus/text_serializer.h>

#include "server/config/config.h"

namespace zi::server {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr size_t kMaxRequestBytes = 16 << 10;

std::string http_response(int code, const char* reason, const std::string& content_type, const std::string& body,
                          bool head_only) {
  std::string out = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                                 "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n");
  if (!head_only) out += body;
  return out;
}

// One request → one response → close.
struct Connection : std::enable_shared_from_this<Connection> {
  Connection(asio::io_context& io) : socket(io), timer(io), buffer(kMaxRequestBytes) {}
  tcp::socket socket;
  asio::steady_timer timer;
  asio::streambuf buffer;
  std::string response;
};

}  // namespace

MetricsHttpServer::MetricsHttpServer(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)), acceptor_(io_) {}

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& host_port,
                                                                      std::shared_ptr<prometheus::Registry> registry) {
  ZI_ASSIGN_OR_RETURN(HostPort hp, parse_host_port(host_port));
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer(std::move(registry)));
  boost::system::error_code ec;
  tcp::resolver resolver(s->io_);
  auto endpoints = resolver.resolve(hp.host, std::to_string(hp.port), tcp::resolver::passive, ec);
  if (ec || endpoints.empty())
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve '", hp.host, "': ", ec.message()));
  tcp::endpoint ep = endpoints.begin()->endpoint();
  s->acceptor_.open(ep.protocol(), ec);
  if (!ec) s->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) s->acceptor_.bind(ep, ec);
  if (!ec) s->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", host_port, ": ", ec.message()));
  s->port_ = s->acceptor_.local_endpoint().port();
  s->accept_next();
  s->thread_ = std::thread([p = s.get()] { p->io_.run(); });
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  io_.stop();  // the acceptor closes with this object; pending connections are dropped with their handlers
  if (thread_.joinable()) thread_.join();
}

void MetricsHttpServer::accept_next() {
  auto conn = std::make_shared<Connection>(io_);
  acceptor_.async_accept(conn->socket, [this, conn](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      // A client that never finishes its request is dropped after 10 s.
      conn->timer.expires_after(std::chrono::seconds(10));
      conn->timer.async_wait([conn](const boost::system::error_code& tec) {
        if (!tec) {
          boost::system::error_code ignored;
          conn->socket.close(ignored);
        }
      });
      asio::async_read_until(conn->socket, conn->buffer, "\r\n\r\n",
                             [this, conn](const boost::system::error_code& rec, size_t n) {
                               conn->timer.cancel();
                               if (rec) return;  // closed, timed out, or over kMaxRequestBytes
                               std::string request(asio::buffers_begin(conn->buffer.data()),
                                                   asio::buffers_begin(conn->buffer.data()) + n);
                               conn->response = respond(request);
                               asio::async_write(conn->socket, asio::buffer(conn->response),
                                                 [conn](const boost::system::error_code&, size_t) {
                                                   boost::system::error_code ignored;
                                                   conn->socket.shutdown(tcp::socket::shutdown_both, ignored);
                                                   conn->socket.close(ignored);
                                                 });
                             });
    }
    accept_next();
  });
}

std::string MetricsHttpServer::respond(const std::string& request) const {
  // Request line: METHOD SP TARGET SP VERSION.
  size_t eol = request.find("\r\n");
  std::string line = request.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos)
    return http_response(400, "Bad Request", "text/plain", "bad request line\n", false);
  std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (size_t q = target.find('?'); q != std::string::npos) target.resize(q);
  if (method != "GET" && method != "HEAD")
    return http_response(405, "Method Not Allowed", "text/plain", "only GET /metrics\n", false);
  if (target != "/metrics")
    return http_response(404, "Not Found", "text/plain", "only /metrics is served here\n", method == "HEAD");
  std::string body = prometheus::TextSerializer().Serialize(registry_->Collect());
  return http_response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, method == "HEAD");
}

}  // namespace zi::server
