#include "server/grpc/security.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <grpcpp/security/server_credentials.h>

namespace zi::server {
namespace {

// Reads a whole file; errors name the key that gave its path.
StatusOr<std::string> read_key_file(const ServeConfig& c, const char* key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrCat(c.source, ": ", key, ": cannot read '", path, "': ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A PEM file must hold at least one block of the expected kind (gRPC's own error for a bad file comes much
// later, as a port it cannot add, without the file's name).
StatusOr<std::string> read_pem(const ServeConfig& c, const char* key, const std::string& path,
                               std::string_view block, const char* what) {
  ZI_ASSIGN_OR_RETURN(std::string pem, read_key_file(c, key, path));
  if (pem.find("-----BEGIN ") == std::string::npos || pem.find(block) == std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat(c.source, ": ", key, ": '", path, "' holds no PEM ", what, " (no '-----BEGIN ...", std::string(block),
                     "' line)"));
  return pem;
}

Status check_token(const std::string& token, const std::string& where) {
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": the token is empty"));
  for (unsigned char ch : token)
    if (ch < 0x21 || ch > 0x7e)
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the token must be printable ASCII without spaces (it is sent as gRPC metadata)"));
  return absl::OkStatus();
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

StatusOr<std::optional<TlsMaterial>> load_tls_material(const ServeConfig& c) {
  if (!c.tls.enabled()) return std::optional<TlsMaterial>();
  TlsMaterial m;
  ZI_ASSIGN_OR_RETURN(m.cert_chain,
                      read_pem(c, "server.tls.cert_file", c.tls.cert_file, "CERTIFICATE-----", "certificate"));
  ZI_ASSIGN_OR_RETURN(m.private_key,
                      read_pem(c, "server.tls.key_file", c.tls.key_file, "PRIVATE KEY-----", "private key"));
  if (!c.tls.client_ca_file.empty()) {
    ZI_ASSIGN_OR_RETURN(m.client_ca, read_pem(c, "server.tls.client_ca_file", c.tls.client_ca_file,
                                              "CERTIFICATE-----", "CA certificate"));
  }
  m.require_client_cert = c.tls.require_client_cert;
  return std::optional<TlsMaterial>(std::move(m));
}

std::shared_ptr<grpc::ServerCredentials> make_server_credentials(const std::optional<TlsMaterial>& tls) {
  if (!tls) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions opts;
  opts.pem_key_cert_pairs.push_back({tls->private_key, tls->cert_chain});
  if (!tls->client_ca.empty()) {
    opts.pem_root_certs = tls->client_ca;
    opts.client_certificate_request = tls->require_client_cert
                                          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    opts.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  return grpc::SslServerCredentials(opts);
}

StatusOr<std::shared_ptr<grpc::ServerCredentials>> make_server_credentials(const ServeConfig& c) {
  ZI_ASSIGN_OR_RETURN(std::optional<TlsMaterial> tls, load_tls_material(c));
  return make_server_credentials(tls);
}

StatusOr<std::optional<std::string>> load_auth_token(const ServeConfig& c) {
  if (!c.auth_token_file.empty()) {
    ZI_ASSIGN_OR_RETURN(std::string raw, read_key_file(c, "server.auth_token_file", c.auth_token_file));
    std::string token = trim(std::move(raw));
    ZI_RETURN_IF_ERROR(
        check_token(token, absl::StrCat(c.source, ": server.auth_token_file: '", c.auth_token_file, "'")));
    return std::optional<std::string>(std::move(token));
  }
  const char* env = std::getenv(kAuthTokenEnv);
  if (env == nullptr || *env == '\0') return std::optional<std::string>();
  std::string token = trim(env);
  ZI_RETURN_IF_ERROR(check_token(token, absl::StrCat("$", kAuthTokenEnv)));
  return std::optional<std::string>(std::move(token));
}

bool token_equals(std::string_view presented, std::string_view expected) {
  // Every byte of `expected` is visited whatever `presented` holds; a length mismatch only sets a bit.
  volatile unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    diff = static_cast<unsigned char>(diff | (p ^ static_cast<unsigned char>(expected[i])));
  }
  return diff == 0;
}

Status check_bearer_value(std::optional<std::string_view> authorization, const std::string* expected) {
  if (expected == nullptr) return absl::OkStatus();
  if (!authorization)
    return absl::UnauthenticatedError("missing bearer token: send the header 'authorization: Bearer <token>'");
  const Status invalid = absl::UnauthenticatedError("invalid bearer token");
  std::string_view value = *authorization;
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() < kScheme.size()) return invalid;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(value[i])) != kScheme[i]) return invalid;
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return token_equals(value, *expected) ? absl::OkStatus() : invalid;
}

grpc::Status check_bearer(const std::multimap<grpc::string_ref, grpc::string_ref>& md, const std::string* expected) {
  std::optional<std::string_view> authorization;
  if (auto it = md.find("authorization"); it != md.end())
    authorization = std::string_view(it->second.data(), it->second.size());
  Status st = check_bearer_value(authorization, expected);
  if (st.ok()) return grpc::Status::OK;
  // gRPC clients send metadata, not headers: say so.
  std::string msg(st.message());
  if (!authorization) msg = "missing bearer token: send metadata 'authorization: Bearer <token>'";
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, msg);
}

}  // namespace zi::server
