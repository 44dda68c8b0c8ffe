// The one error type of the chat-template interpreter. Lexer, parser and renderer throw it from deep recursion
// (every expression step can fail the way Python would raise); ChatTemplate's public calls catch it and return a
// Status naming the template's source and line, so no exception crosses the library's boundary.
#pragma once

#include <string>
#include <utility>

namespace zi::tok::jinja {

struct TemplateError {
  std::string message;
  int line = 0;  // 0: not known where it was raised; the renderer fills in the expression being evaluated
  bool raised = false;  // true for the template's own raise_exception(msg)
};

[[noreturn]] inline void fail(std::string message, int line = 0) { throw TemplateError{std::move(message), line}; }

}  // namespace zi::tok::jinja
