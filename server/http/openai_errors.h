// OpenAI's error shape, {"error": {"message", "type", "param", "code"}}, and the HTTP status of each failure:
//   400 bad field or malformed JSON (param names the field), 401 bad or missing token, 404 unknown model or path,
//   413 body over server.http_max_body_bytes, 429 queue full (Retry-After), 503 loading or draining (Retry-After),
//   504 deadline, 500 anything else.
#pragma once

#include <string>

#include "engine/core/status.h"
#include "server/http/http_server.h"

namespace zi::server::http {

struct ApiError {
  unsigned status = 500;
  std::string message;
  std::string type;   // invalid_request_error, authentication_error, rate_limit_error, server_error, ...
  std::string param;  // the field; "" = null
  std::string code;   // "" = null
};

// A zeroinfer Status as OpenAI's error. Messages of the form "field: why" (validation) give `param` = field.
ApiError api_error(const Status& status);
// The server's own refusals (malformed HTTP 400, 413, 431): by status code.
ApiError api_error(unsigned http_status, const std::string& message);

std::string error_json(const ApiError& error);
// Sends `error` (with Retry-After on 429 and 503).
void send_error(Reply& reply, const ApiError& error);

}  // namespace zi::server::http
