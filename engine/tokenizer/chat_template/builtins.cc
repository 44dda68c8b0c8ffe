// The name tables of builtins.h and argument binding; the implementations are in filters.cc, predicates.cc and
// methods.cc.
#include "engine/tokenizer/chat_template/builtins.h"

#include <algorithm>

#include "engine/tokenizer/chat_template/error.h"

namespace zi::tok::jinja {
namespace {

bool in(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

const Value* Args::get(size_t index, std::string_view name) const {
  if (index < pos.size()) return &pos[index];
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

void Args::check(std::string_view fn, size_t count, std::initializer_list<std::string_view> names) const {
  if (pos.size() > count) fail("TypeError: " + std::string(fn) + "() got too many positional arguments");
  for (const auto& [k, v] : kw) {
    auto it = std::find(names.begin(), names.end(), k);
    if (it == names.end()) fail("TypeError: " + std::string(fn) + "() got an unexpected keyword argument '" + k + "'");
    if (static_cast<size_t>(it - names.begin()) < pos.size())
      fail("TypeError: " + std::string(fn) + "() got multiple values for argument '" + k + "'");
  }
}

bool is_filter(std::string_view n) {
  return in(n, {"abs", "capitalize", "count", "d", "default", "first", "float", "indent", "int", "items", "join",
                "last", "length", "list", "lower", "map", "reject", "rejectattr", "replace", "reverse", "safe",
                "select", "selectattr", "string", "title", "tojson", "trim", "upper"});
}

bool is_test(std::string_view n) {
  return in(n, {"boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "filter", "float",
                "ge", "gt", "greaterthan", "in", "integer", "iterable", "le", "lower", "lessthan", "lt", "mapping",
                "ne", "none", "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper",
                "==", "!=", "<", "<=", ">", ">="});
}

bool is_method(std::string_view n) {
  return in(n, {"capitalize", "endswith", "find", "get", "items", "join", "keys", "lower", "lstrip", "replace",
                "rstrip", "split", "startswith", "strip", "title", "upper", "values"});
}

bool is_global_function(std::string_view n) {
  return in(n, {"dict", "namespace", "raise_exception", "range", "strftime_now"});
}

}  // namespace zi::tok::jinja
