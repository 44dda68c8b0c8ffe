#include "engine/tokenizer/chat_template/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/text.h"

namespace zi::tok::jinja {

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.s = std::make_shared<const std::string>(std::move(hint));
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind = Kind::Bool;
  v.b = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind = Kind::Int;
  v.i = i;
  return v;
}
Value Value::floating(double f) {
  Value v;
  v.kind = Kind::Float;
  v.f = f;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.s = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::make_list(List l, Seq seq) {
  Value v;
  v.kind = Kind::List;
  v.seq = seq;
  v.list = std::make_shared<const List>(std::move(l));
  return v;
}
Value Value::make_dict(Dict d) {
  Value v;
  v.kind = Kind::Dict;
  v.dict = std::make_shared<const Dict>(std::move(d));
  return v;
}
Value Value::make_namespace(Dict d) {
  Value v;
  v.kind = Kind::Namespace;
  v.ns = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::callable(std::string name, const Value* self) {
  Value v;
  v.kind = Kind::Callable;
  v.s = std::make_shared<const std::string>(std::move(name));
  if (self) v.self = std::make_shared<const Value>(*self);
  return v;
}

const Value* Value::find(std::string_view key) const {
  const Dict* d = kind == Kind::Dict ? dict.get() : kind == Kind::Namespace ? ns.get() : nullptr;
  if (!d) return nullptr;
  for (const auto& [k, v] : *d)
    if (k == key) return &v;
  return nullptr;
}

std::string type_name(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return v.seq == Seq::Tuple ? "tuple" : v.seq == Seq::Generator ? "generator" : "list";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Callable: return "builtin_function_or_method";
  }
  return "object";
}

std::string undefined_message(const Value& v) { return v.s ? *v.s : "value is undefined"; }
void fail_undefined(const Value& v) { fail("UndefinedError: " + undefined_message(v)); }

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  // Shortest round-trip digits (what Python's repr picks), laid out by repr's rule: positional notation for
  // decimal exponents -4..15, else d.ddde+XX.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp = std::atoi(sci.c_str() + e + 1);
  bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  std::snprintf(buf, sizeof buf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return out + buf;
}

namespace {

std::string seq_str(const Value& v) {
  if (v.seq == Seq::Generator) fail("TypeError: a generator (the result of select/map/items) cannot be printed");
  std::string out = v.seq == Seq::Tuple ? "(" : "[";
  for (size_t k = 0; k < v.list->size(); ++k) {
    if (k) out += ", ";
    out += repr((*v.list)[k]);
  }
  if (v.seq == Seq::Tuple && v.list->size() == 1) out += ",";
  return out + (v.seq == Seq::Tuple ? ")" : "]");
}

std::string dict_str(const Dict& d) {
  std::string out = "{";
  for (size_t k = 0; k < d.size(); ++k) {
    if (k) out += ", ";
    out += py_repr(d[k].first) + ": " + repr(d[k].second);
  }
  return out + "}";
}

}  // namespace

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return v.b ? "True" : "False";
    case Kind::Int: return std::to_string(v.i);
    case Kind::Float: return format_float(v.f);
    case Kind::String: return *v.s;
    case Kind::List: return seq_str(v);
    case Kind::Dict: return dict_str(*v.dict);
    case Kind::Namespace: return "<Namespace " + dict_str(*v.ns) + ">";
    case Kind::Callable: fail("TypeError: the function or method '" + *v.s + "' cannot be printed");
  }
  return "";
}

std::string repr(const Value& v) {
  if (v.kind == Kind::String) return py_repr(*v.s);
  if (v.kind == Kind::Undefined) return "Undefined";
  return to_str(v);
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return v.b;
    case Kind::Int: return v.i != 0;
    case Kind::Float: return v.f != 0;
    case Kind::String: return !v.s->empty();
    case Kind::List: return v.seq == Seq::Generator || !v.list->empty();  // a generator object is always true
    case Kind::Dict: return !v.dict->empty();
    case Kind::Namespace:
    case Kind::Callable: return true;
  }
  return false;
}

Value from_json(const nlohmann::ordered_json& j) {
  using T = nlohmann::ordered_json::value_t;
  switch (j.type()) {
    case T::null: return Value::none();
    case T::boolean: return Value::boolean(j.get<bool>());
    case T::number_integer: return Value::integer(j.get<int64_t>());
    case T::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) fail("integer " + std::to_string(u) + " is too large");
      return Value::integer(static_cast<int64_t>(u));
    }
    case T::number_float: return Value::floating(j.get<double>());
    case T::string: return Value::string(j.get<std::string>());
    case T::array: {
      List l;
      l.reserve(j.size());
      for (const auto& e : j) l.push_back(from_json(e));
      return Value::make_list(std::move(l));
    }
    case T::object: {
      Dict d;
      d.reserve(j.size());
      for (const auto& [k, e] : j.items()) d.emplace_back(k, from_json(e));
      return Value::make_dict(std::move(d));
    }
    default: fail("unsupported JSON value (binary or discarded)");
  }
}

}  // namespace zi::tok::jinja
