// Transport security of the gRPC port: TLS / mTLS server credentials from server.tls, and the optional bearer
// token (server.auth_token_file, or the ZEROINFER_AUTH_TOKEN environment variable) that every RPC but health must
// carry as `authorization: Bearer <token>` metadata.
//
// Files are read when called (start-up; the token again on SIGHUP); errors name the YAML key and the file.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/status.h>
#include <grpcpp/support/string_ref.h>

#include "engine/core/status.h"
#include "server/config/config.h"

namespace zi::server {

inline constexpr const char* kAuthTokenEnv = "ZEROINFER_AUTH_TOKEN";

// server.tls read once for both ports (gRPC and the HTTP API): the PEM texts, each checked to hold a block of
// its kind, errors naming the key and the file.
struct TlsMaterial {
  std::string cert_chain;          // server.tls.cert_file
  std::string private_key;         // server.tls.key_file
  std::string client_ca;           // server.tls.client_ca_file; empty = client certificates not requested
  bool require_client_cert = false;
};
// nullopt without server.tls.
StatusOr<std::optional<TlsMaterial>> load_tls_material(const ServeConfig& config);

// Insecure credentials without TLS; otherwise SSL credentials from the PEM texts (client certificates requested
// and verified against client_ca when it is set, and required with require_client_cert).
std::shared_ptr<grpc::ServerCredentials> make_server_credentials(const std::optional<TlsMaterial>& tls);
// Both steps: load_tls_material, then the credentials.
StatusOr<std::shared_ptr<grpc::ServerCredentials>> make_server_credentials(const ServeConfig& config);

// The token from server.auth_token_file (surrounding whitespace and the final newline dropped), else from
// $ZEROINFER_AUTH_TOKEN when set and not empty, else nullopt (no authentication). A token must be printable
// ASCII without spaces (it travels in HTTP/2 metadata).
StatusOr<std::optional<std::string>> load_auth_token(const ServeConfig& config);

// Compares in time that depends only on expected.size(), never on where the two first differ.
bool token_equals(std::string_view presented, std::string_view expected);

// OK when `expected` is null, or when `authorization` (the header's value; nullopt = absent) is
// `Bearer <expected>` (the scheme is case-insensitive); UNAUTHENTICATED otherwise, never repeating what was
// presented. The HTTP API and gRPC both check through this.
Status check_bearer_value(std::optional<std::string_view> authorization, const std::string* expected);

// OK when `expected` is null, or when the metadata carries `authorization: Bearer <expected>` (the scheme is
// case-insensitive); UNAUTHENTICATED otherwise (the message never repeats what was presented).
grpc::Status check_bearer(const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata,
                          const std::string* expected);

}  // namespace zi::server
