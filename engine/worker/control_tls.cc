#include "engine/worker/control_tls.h"

namespace zi::worker {

namespace ssl = boost::asio::ssl;

StatusOr<ssl::context> make_control_tls_context(TlsRole role, const ControlTlsFiles& files) {
  const bool server = role == TlsRole::kCoordinator;
  for (const auto& [file, name] : {std::pair{files.cert_file, files.cert_name}, std::pair{files.key_file, files.key_name},
                                   std::pair{files.ca_file, files.ca_name}})
    if (file.empty())
      return absl::InvalidArgumentError(absl::StrCat(name, ": required: the control channel is mutual TLS"));
  ssl::context ctx(server ? ssl::context::tls_server : ssl::context::tls_client);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  auto fail = [&](const std::string& name, const std::string& file) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": cannot use '", file, "': ", ec.message()));
  };
  if (ctx.use_certificate_chain_file(files.cert_file, ec); ec) return fail(files.cert_name, files.cert_file);
  if (ctx.use_private_key_file(files.key_file, ssl::context::pem, ec); ec) return fail(files.key_name, files.key_file);
  if (ctx.load_verify_file(files.ca_file, ec); ec) return fail(files.ca_name, files.ca_file);
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return fail(files.ca_name, files.ca_file);
  return ctx;
}

}  // namespace zi::worker
