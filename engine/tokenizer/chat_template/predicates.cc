// Jinja's tests (`x is defined`, `x is string`, ...), as jinja2/tests.py defines them.
#include <cmath>

#include "engine/tokenizer/chat_template/access.h"
#include "engine/tokenizer/chat_template/builtins.h"
#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/ops.h"
#include "engine/tokenizer/chat_template/text.h"

namespace zi::tok::jinja {
namespace {

const Value& arg(const Args& a, std::string_view test) {
  const Value* v = a.get(0, "other");
  if (!v) fail("TypeError: test '" + std::string(test) + "' needs an argument");
  return *v;
}

int64_t int_of(const Value& v, std::string_view test) {
  if (v.kind == Kind::Int) return v.i;
  if (v.kind == Kind::Bool) return v.b;
  if (v.is_undefined()) fail_undefined(v);
  fail("TypeError: test '" + std::string(test) + "' needs a number");
}

}  // namespace

bool call_test(std::string_view name, const Value& v, const Args& a) {
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.kind == Kind::None;
  if (name == "boolean") return v.kind == Kind::Bool;
  if (name == "true") return v.kind == Kind::Bool && v.b;
  if (name == "false") return v.kind == Kind::Bool && !v.b;
  if (name == "integer") return v.kind == Kind::Int;  // bool is excluded, as Jinja's test_integer does
  if (name == "float") return v.kind == Kind::Float;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.kind == Kind::Dict;
  if (name == "iterable") return v.kind == Kind::String || v.kind == Kind::List || v.kind == Kind::Dict || v.is_undefined();
  if (name == "sequence")
    return v.kind == Kind::String || v.kind == Kind::Dict || (v.kind == Kind::List && v.seq != Seq::Generator) ||
           v.is_undefined();
  if (name == "callable") return v.kind == Kind::Callable;
  if (name == "lower") return v.is_string() ? py_lower(v.str()) == v.str() && py_upper(v.str()) != v.str() : false;
  if (name == "upper") return v.is_string() ? py_upper(v.str()) == v.str() && py_lower(v.str()) != v.str() : false;
  if (name == "odd") return std::abs(int_of(v, name) % 2) == 1;
  if (name == "even") return int_of(v, name) % 2 == 0;
  if (name == "divisibleby") {
    int64_t d = int_of(arg(a, name), name);
    if (d == 0) fail("ZeroDivisionError: integer division or modulo by zero");
    return int_of(v, name) % d == 0;
  }
  if (name == "sameas") {
    const Value& o = arg(a, name);
    if (v.kind != o.kind) return false;
    switch (v.kind) {
      case Kind::None:
      case Kind::Undefined: return true;
      case Kind::Bool: return v.b == o.b;
      case Kind::List: return v.list == o.list;
      case Kind::Dict: return v.dict == o.dict;
      case Kind::Namespace: return v.ns == o.ns;
      default: return equals(v, o) && (v.kind != Kind::String || v.s == o.s);
    }
  }
  if (name == "eq" || name == "equalto" || name == "==") return compare("==", v, arg(a, name));
  if (name == "ne" || name == "!=") return compare("!=", v, arg(a, name));
  if (name == "lt" || name == "lessthan" || name == "<") return compare("<", v, arg(a, name));
  if (name == "le" || name == "<=") return compare("<=", v, arg(a, name));
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(">", v, arg(a, name));
  if (name == "ge" || name == ">=") return compare(">=", v, arg(a, name));
  if (name == "in") return compare("in", v, arg(a, name));
  if (name == "filter") return v.is_string() && is_filter(v.str());
  if (name == "test") return v.is_string() && is_test(v.str());
  fail("unsupported test '" + std::string(name) + "'");
}

}  // namespace zi::tok::jinja
