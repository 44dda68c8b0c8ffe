#include "server/http/openai_errors.h"

#include <nlohmann/json.hpp>

namespace zi::server::http {
namespace {

// "stop[0]: must not be empty" → "stop[0]"; messages that do not start with a field name give "".
std::string field_of(std::string_view message) {
  size_t colon = message.find(": ");
  if (colon == std::string_view::npos || colon == 0) return "";
  std::string_view field = message.substr(0, colon);
  for (char c : field)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '[' || c == ']')) return "";
  return std::string(field);
}

}  // namespace

ApiError api_error(unsigned http_status, const std::string& message) {
  ApiError e;
  e.status = http_status;
  e.message = message;
  switch (http_status) {
    case 400: e.type = "invalid_request_error"; break;
    case 401: e.type = "authentication_error"; e.code = "invalid_api_key"; break;
    case 404: e.type = "invalid_request_error"; e.code = "not_found"; break;
    case 405: e.type = "invalid_request_error"; e.code = "method_not_allowed"; break;
    case 413: e.type = "invalid_request_error"; e.code = "request_too_large"; break;
    case 429: e.type = "rate_limit_error"; e.code = "rate_limit_exceeded"; break;
    case 431: e.type = "invalid_request_error"; e.code = "request_header_too_large"; break;
    case 503: e.type = "server_error"; e.code = "service_unavailable"; break;
    case 504: e.type = "server_error"; e.code = "timeout"; break;
    default: e.type = http_status < 500 ? "invalid_request_error" : "server_error"; break;
  }
  return e;
}

ApiError api_error(const Status& status) {
  unsigned code = 500;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: code = 400; break;
    case absl::StatusCode::kUnauthenticated: code = 401; break;
    case absl::StatusCode::kPermissionDenied: code = 403; break;
    case absl::StatusCode::kNotFound: code = 404; break;
    case absl::StatusCode::kResourceExhausted: code = 429; break;
    case absl::StatusCode::kUnavailable: code = 503; break;
    case absl::StatusCode::kDeadlineExceeded: code = 504; break;
    case absl::StatusCode::kCancelled: code = 499; break;  // nginx's "client closed request": never seen by it
    default: break;
  }
  ApiError e = api_error(code, std::string(status.message()));
  if (code == 400 || code == 404) e.param = field_of(std::string(status.message()));
  return e;
}

std::string error_json(const ApiError& e) {
  nlohmann::json j = {{"error",
                       {{"message", e.message},
                        {"type", e.type},
                        {"param", e.param.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.param)},
                        {"code", e.code.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.code)}}}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void send_error(Reply& reply, const ApiError& e) {
  Headers headers;
  if (e.status == 429 || e.status == 503) headers.emplace_back("Retry-After", "1");
  reply.send(e.status, "application/json", error_json(e), std::move(headers));
}

}  // namespace zi::server::http
