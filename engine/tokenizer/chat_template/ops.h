// Python's operators on template values: arithmetic (+ - * / // % **, with int overflow refused rather than
// promoted to a big int), equality, ordering and `in`.
#pragma once

#include <string_view>

#include "engine/tokenizer/chat_template/value.h"

namespace zi::tok::jinja {

Value binary_op(std::string_view op, const Value& a, const Value& b);
Value negate(const Value& v, bool minus);
bool equals(const Value& a, const Value& b);
// op: == != < <= > >= in notin
bool compare(std::string_view op, const Value& a, const Value& b);

// Strings and lists built by * and + are capped (a template cannot make the renderer allocate without bound).
inline constexpr size_t kMaxBuiltSize = 64u << 20;

}  // namespace zi::tok::jinja
