// One end of a control channel (frame.h's framing on top) behind one small interface, so that the worker pool and
// the worker drive a Unix socket (spawned workers) and TLS over TCP (workers that join over the network) with the
// same code. Asynchronous, Boost.Asio: every call is made on the io_context's one thread; one read and one write
// may be outstanding at a time (what ssl::stream allows).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

namespace zi::worker {

using ControlHandler = std::function<void(const boost::system::error_code&, size_t)>;
using TlsSocket = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

class ControlStream {
 public:
  virtual ~ControlStream() = default;
  virtual void async_read_some(boost::asio::mutable_buffer buffer, ControlHandler done) = 0;
  // Writes all of `buffer` (it must stay valid until `done` runs).
  virtual void async_write(boost::asio::const_buffer buffer, ControlHandler done) = 0;
  // Closes the connection at once (no TLS close_notify: a peer reads it as the channel ending either way).
  virtual void close() = 0;
  // Who is at the other end, for messages: "10.0.0.7:41234", or "unix socket".
  virtual std::string peer() const = 0;
  // The address this host uses on the connection ("" for a Unix socket): what a peer on another host can reach.
  virtual std::string local_address() const = 0;
};

namespace detail {

template <typename Stream>
class AsioControlStream final : public ControlStream {
 public:
  explicit AsioControlStream(Stream stream) : stream_(std::move(stream)) {}
  void async_read_some(boost::asio::mutable_buffer buffer, ControlHandler done) override {
    stream_.async_read_some(buffer, std::move(done));
  }
  void async_write(boost::asio::const_buffer buffer, ControlHandler done) override {
    boost::asio::async_write(stream_, buffer, std::move(done));
  }
  void close() override {
    boost::system::error_code ec;
    lowest().close(ec);
  }
  std::string peer() const override {
    if constexpr (kTcp) {
      boost::system::error_code ec;
      auto ep = lowest().remote_endpoint(ec);
      return ec ? "unknown peer" : ep.address().to_string() + ":" + std::to_string(ep.port());
    }
    return "unix socket";
  }
  std::string local_address() const override {
    if constexpr (kTcp) {
      boost::system::error_code ec;
      auto ep = lowest().local_endpoint(ec);
      return ec ? "" : ep.address().to_string();
    }
    return "";
  }

 private:
  static constexpr bool kTcp = std::is_same_v<Stream, TlsSocket>;
  auto& lowest() const {
    if constexpr (kTcp) return const_cast<Stream&>(stream_).lowest_layer();
    else return const_cast<Stream&>(stream_);
  }
  Stream stream_;
};

}  // namespace detail

inline std::unique_ptr<ControlStream> make_control_stream(boost::asio::local::stream_protocol::socket socket) {
  return std::make_unique<detail::AsioControlStream<boost::asio::local::stream_protocol::socket>>(std::move(socket));
}
// `socket` has completed its TLS handshake.
inline std::unique_ptr<ControlStream> make_control_stream(TlsSocket socket) {
  return std::make_unique<detail::AsioControlStream<TlsSocket>>(std::move(socket));
}

}  // namespace zi::worker
