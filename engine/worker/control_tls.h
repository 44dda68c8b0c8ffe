// TLS for control channels that cross the network (`parallel.workers: external`): both ends present a
// certificate and verify the other's against a CA (mutual TLS), TLS 1.2 at least. The coordinator uses server.tls
// (cert_file, key_file, and client_ca_file for the workers' certificates); a worker its --tls-cert, --tls-key and
// --tls-ca (the CA of the coordinator's certificate, whose name or IP must match the address it dials).
#pragma once

#include <string>

#include <boost/asio/ssl/context.hpp>

#include "engine/core/status.h"

namespace zi::worker {

struct ControlTlsFiles {
  std::string cert_file, key_file, ca_file;  // PEM
  // How each file is named in errors (the YAML key or the flag that gave it).
  std::string cert_name = "--tls-cert", key_name = "--tls-key", ca_name = "--tls-ca";
};

enum class TlsRole { kCoordinator, kWorker };

// A context that requires and verifies the peer's certificate. Errors name the file and its key or flag.
StatusOr<boost::asio::ssl::context> make_control_tls_context(TlsRole role, const ControlTlsFiles& files);

}  // namespace zi::worker
