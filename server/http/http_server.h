// An HTTP/1.1 server on Boost.Beast over Asio, plain or TLS (asio::ssl), that hands each request to a handler and
// lets the handler answer later from any thread, at once or as a stream. Both HTTP ports of `serve` run on it:
// the OpenAI-compatible API (server.http_listen, openai_api.h) and Prometheus' /metrics (server.metrics_listen,
// server/metrics/metrics_http.h).
//
// Connections: keep-alive (HTTP/1.1 default, `Connection: close` honoured), one request at a time per connection
// (a pipelined request waits in the buffer until the answer before it is written). A request head must arrive
// within `idle_timeout`, and so must the next request on an idle connection. The body limit is checked on the head:
// a Content-Length over it is answered 413 at once and the connection closed without reading the body; a chunked
// body is cut off (413) as soon as it passes the limit. `Expect: 100-continue` is answered before the body is read.
//
// While a handler works on a request, the connection is watched: a client that closes it (or a TLS or TCP error)
// makes the reply gone(), and the reply's on_gone hook runs, so that the request can be cancelled.
//
// Threads: one I/O thread runs every connection. Handlers run on it and must not block (hand slow work to another
// pool); Reply methods may be called from any thread (they are posted to the I/O thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "engine/core/status.h"

namespace zi::server::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// The answer to one request. Use send() once, or start_stream(), write()..., end(). Calls after the answer is
// complete, or once the connection is gone, are ignored. Thread-safe.
class Reply {
 public:
  virtual ~Reply() = default;
  // A whole response; Content-Length is set from `body` (HEAD requests get the head only).
  virtual void send(unsigned status, std::string content_type, std::string body, Headers headers = {}) = 0;
  // A 200 response whose body follows in pieces (chunked transfer encoding; HTTP/1.0: until the connection
  // closes): server-sent events.
  virtual void start_stream(std::string content_type, Headers headers = {}) = 0;
  virtual void write(std::string data) = 0;
  virtual void end() = 0;
  // True once the client has closed the connection or it failed.
  virtual bool gone() const = 0;
  // `hook` runs once, on the I/O thread, when the connection goes before the answer is complete (at once, posted,
  // when it has gone already).
  virtual void on_gone(std::function<void()> hook) = 0;
};

using Handler = std::function<void(Request request, std::shared_ptr<Reply> reply)>;

struct HttpServerOptions {
  std::string listen;                            // HOST:PORT; port 0 = any free port
  uint64_t max_body_bytes = uint64_t{8} << 20;   // a longer body is refused with 413
  std::string max_body_key = "server.http_max_body_bytes";  // named in the 413's message
  std::shared_ptr<boost::asio::ssl::context> tls;  // null = plaintext
  std::chrono::seconds idle_timeout{30};
  bool keep_alive = true;  // false: one request per connection (Connection: close)
  // The body of the server's own errors (400 for a malformed request, 413): (status, message) → (content type,
  // body). Default: text/plain, the message.
  std::function<std::pair<std::string, std::string>(unsigned, const std::string&)> error_body;
};

class HttpServer {
 public:
  // Binds options.listen and starts serving; `handler` runs for every complete request.
  static StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options, Handler handler);
  // Stops accepting, drops every connection and joins the I/O thread. Replies still held elsewhere stay valid to
  // call (they are ignored) as long as they are released before the process ends.
  ~HttpServer();

  uint16_t port() const;

  struct Impl;  // the listener, the I/O thread and the connections (http_server.cc)

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace zi::server::http
