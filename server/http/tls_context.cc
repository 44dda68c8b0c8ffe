#include "server/http/tls_context.h"

#include <boost/asio/buffer.hpp>

namespace zi::server::http {

namespace ssl = boost::asio::ssl;

StatusOr<std::shared_ptr<ssl::context>> make_ssl_context(const TlsMaterial& tls) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  auto failed = [&](const char* key) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": the HTTP API's TLS cannot use it: ", ec.message()));
  };
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  if (ec) return failed("server.tls");
  ctx->use_certificate_chain(boost::asio::buffer(tls.cert_chain), ec);
  if (ec) return failed("server.tls.cert_file");
  ctx->use_private_key(boost::asio::buffer(tls.private_key), ssl::context::pem, ec);
  if (ec) return failed("server.tls.key_file");
  if (!tls.client_ca.empty()) {
    ctx->add_certificate_authority(boost::asio::buffer(tls.client_ca), ec);
    if (ec) return failed("server.tls.client_ca_file");
    ctx->set_verify_mode(ssl::verify_peer | (tls.require_client_cert ? ssl::verify_fail_if_no_peer_cert : 0), ec);
    if (ec) return failed("server.tls.client_ca_file");
  }
  return ctx;
}

}  // namespace zi::server::http
