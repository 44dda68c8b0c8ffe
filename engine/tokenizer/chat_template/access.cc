#include "engine/tokenizer/chat_template/access.h"

#include <algorithm>
#include <string_view>

#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/text.h"

namespace zi::tok::jinja {
namespace {

// Python's attribute names of str, dict and list: getattr finds these before any dict key of the same name.
bool has_attr(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool str_attr(std::string_view n) {
  return has_attr(n, {"capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
                      "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
                      "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join",
                      "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix", "removesuffix",
                      "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
                      "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill"});
}
bool dict_attr(std::string_view n) {
  return has_attr(n, {"clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem", "setdefault", "update",
                      "values"});
}
bool list_attr(std::string_view n) {
  return has_attr(n, {"append", "clear", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse",
                      "sort"});
}

std::string obj_desc(const Value& v) {
  std::string s(1, '\'');
  s += type_name(v);
  s += " object'";
  return s;
}

Value missing_attr(const Value& obj, const std::string& name) {
  return Value::undefined(obj_desc(obj) + " has no attribute '" + name + "'");
}

// Python's PySlice_AdjustIndices + the indices a slice selects.
// False when a bound is not an integer or None (Python's TypeError, which Jinja turns into undefined).
bool slice_indices(int64_t len, const Value* start, const Value* stop, const Value* step, std::vector<int64_t>* out) {
  auto as_int = [](const Value* v, int64_t dflt, bool* ok) -> int64_t {
    if (!v || v->kind == Kind::None) return dflt;
    if (v->kind == Kind::Int) return v->i;
    if (v->kind == Kind::Bool) return v->b;
    *ok = false;
    return 0;
  };
  bool ok = true;
  int64_t st = as_int(step, 1, &ok);
  if (!ok) return false;
  if (st == 0) fail("ValueError: slice step cannot be zero");
  int64_t lo_default = st > 0 ? 0 : len - 1, hi_default = st > 0 ? len : -1;
  bool has_start = start && start->kind != Kind::None, has_stop = stop && stop->kind != Kind::None;
  int64_t a = as_int(start, 0, &ok), b = as_int(stop, 0, &ok);
  if (!ok) return false;
  auto adjust = [&](int64_t x) {
    if (x < 0) {
      x += len;
      if (x < 0) x = st < 0 ? -1 : 0;
    } else if (x >= len) {
      x = st < 0 ? len - 1 : len;
    }
    return x;
  };
  a = has_start ? adjust(a) : lo_default;
  b = has_stop ? adjust(b) : hi_default;
  if (st > 0) {
    for (int64_t k = a; k < b; k += st) out->push_back(k);
  } else {
    for (int64_t k = a; k > b; k += st) out->push_back(k);
  }
  return true;
}

Value bad_slice(const Value& obj) { return Value::undefined(obj_desc(obj) + " cannot be sliced that way"); }

}  // namespace

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (name.rfind("__", 0) == 0) fail("SecurityError: access to attribute '" + name + "' is unsafe");
  switch (obj.kind) {
    case Kind::String:
      if (str_attr(name)) return Value::callable(name, &obj);
      return missing_attr(obj, name);
    case Kind::Dict:
      if (dict_attr(name)) return Value::callable(name, &obj);
      if (const Value* v = obj.find(name)) return *v;
      return missing_attr(obj, name);
    case Kind::List:
      if (obj.seq != Seq::Generator && list_attr(name)) return Value::callable(name, &obj);
      return missing_attr(obj, name);
    case Kind::Namespace:
      if (const Value* v = obj.find(name)) return *v;
      return missing_attr(obj, name);
    default: return missing_attr(obj, name);
  }
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  if ((obj.kind == Kind::String || (obj.kind == Kind::List && obj.seq != Seq::Generator)) &&
      (key.kind == Kind::Int || key.kind == Kind::Bool)) {
    int64_t idx = key.kind == Kind::Bool ? key.b : key.i;
    if (obj.kind == Kind::String) {
      std::u32string u = to_u32(obj.str());
      int64_t n = static_cast<int64_t>(u.size());
      if (idx < 0) idx += n;
      if (idx >= 0 && idx < n) return Value::string(to_utf8(std::u32string_view(u).substr(idx, 1)));
    } else {
      int64_t n = static_cast<int64_t>(obj.list->size());
      if (idx < 0) idx += n;
      if (idx >= 0 && idx < n) return (*obj.list)[idx];
    }
    return Value::undefined(type_name(obj) + " object has no element " + std::to_string(key.kind == Kind::Bool ? key.b : key.i));
  }
  if (obj.kind == Kind::Dict && key.is_string()) {
    if (const Value* v = obj.find(key.str())) return *v;
  }
  if (key.is_string()) return get_attr(obj, key.str());
  return Value::undefined(type_name(obj) + " object has no element " + repr(key));
}

Value get_slice(const Value& obj, const Value* start, const Value* stop, const Value* step) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.kind == Kind::String) {
    std::u32string u = to_u32(obj.str());
    std::vector<int64_t> idx;
    if (!slice_indices(static_cast<int64_t>(u.size()), start, stop, step, &idx)) return bad_slice(obj);
    std::u32string out;
    for (int64_t k : idx) out.push_back(u[k]);
    return Value::string(to_utf8(out));
  }
  if (obj.kind == Kind::List && obj.seq != Seq::Generator) {
    std::vector<int64_t> idx;
    if (!slice_indices(static_cast<int64_t>(obj.list->size()), start, stop, step, &idx)) return bad_slice(obj);
    List out;
    for (int64_t k : idx) out.push_back((*obj.list)[k]);
    return Value::make_list(std::move(out), obj.seq);
  }
  return bad_slice(obj);
}

List iterate(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return {};
    case Kind::List: return *v.list;
    case Kind::String: {
      List out;
      for (char32_t c : to_u32(v.str())) out.push_back(Value::string(to_utf8(std::u32string(1, c))));
      return out;
    }
    case Kind::Dict: {
      List out;
      for (const auto& kv : *v.dict) out.push_back(Value::string(kv.first));
      return out;
    }
    default: fail("TypeError: '" + type_name(v) + "' object is not iterable");
  }
}

int64_t length(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined: return 0;
    case Kind::String: return static_cast<int64_t>(cp_length(v.str()));
    case Kind::List:
      if (v.seq == Seq::Generator) break;
      return static_cast<int64_t>(v.list->size());
    case Kind::Dict: return static_cast<int64_t>(v.dict->size());
    default: break;
  }
  fail("TypeError: object of type '" + type_name(v) + "' has no len()");
}

}  // namespace zi::tok::jinja
