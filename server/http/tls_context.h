// The HTTP API's TLS: an asio::ssl context built from the same PEM texts as the gRPC port's credentials
// (server/grpc/security.h load_tls_material), so both ports present one certificate and verify client
// certificates against one CA bundle (required when server.tls.require_client_cert).
#pragma once

#include <memory>

#include <boost/asio/ssl/context.hpp>

#include "engine/core/status.h"
#include "server/grpc/security.h"

namespace zi::server::http {

// TLS 1.2 and later. Errors (a key that does not match the certificate, a PEM OpenSSL cannot read) name the key.
StatusOr<std::shared_ptr<boost::asio::ssl::context>> make_ssl_context(const TlsMaterial& tls);

}  // namespace zi::server::http
