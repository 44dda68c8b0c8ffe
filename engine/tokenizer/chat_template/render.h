// Runs a parsed template (ast.h) over a context with Jinja's semantics: loop scopes (a `set` inside a for body
// lasts one iteration; namespace() objects carry values out), loop.*, break/continue, undefined values.
// Bounded: evaluation steps and output size are capped so a hostile template cannot run without end.
#pragma once

#include <string>

#include "engine/tokenizer/chat_template/ast.h"
#include "engine/tokenizer/chat_template/builtins.h"

namespace zi::tok::jinja {

inline constexpr size_t kMaxOutput = 64u << 20;

// Throws TemplateError, with the line of the expression that failed. `max_steps` bounds the statements,
// expressions and loop iterations evaluated.
std::string render(const Body& body, Dict context, const Clock& now, uint64_t max_steps);

}  // namespace zi::tok::jinja
