// Methods of str and dict values the subset supports (`content.strip()`, `d.items()`, ...) and the global
// functions: Jinja's range/namespace/dict and transformers' raise_exception/strftime_now.
#include <ctime>

#include "engine/tokenizer/chat_template/access.h"
#include "engine/tokenizer/chat_template/builtins.h"
#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/ops.h"
#include "engine/tokenizer/chat_template/text.h"

namespace zi::tok::jinja {
namespace {

std::optional<std::string> opt_str(const Value* v, std::string_view what) {
  if (!v || v->kind == Kind::None) return std::nullopt;
  if (!v->is_string()) fail("TypeError: " + std::string(what) + " arg must be None or str");
  return v->str();
}

int64_t opt_int(const Value* v, int64_t dflt) {
  if (!v) return dflt;
  if (v->kind == Kind::Int) return v->i;
  if (v->kind == Kind::Bool) return v->b;
  fail("TypeError: an integer is required, not " + type_name(*v));
}

// startswith / endswith take a string or a tuple of strings.
bool affix(const std::string& s, const Value& which, bool start) {
  auto one = [&](const Value& p) {
    if (!p.is_string()) fail("TypeError: startswith/endswith first arg must be str or a tuple of str");
    const std::string& x = p.str();
    return x.size() <= s.size() && (start ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0);
  };
  if (which.kind == Kind::List && which.seq == Seq::Tuple) {
    for (const Value& p : *which.list)
      if (one(p)) return true;
    return false;
  }
  return one(which);
}

Value str_method(const std::string& s, std::string_view m, const Args& a) {
  if (m == "strip" || m == "lstrip" || m == "rstrip") {
    a.check(m, 1, {});
    return Value::string(py_strip(s, opt_str(a.get(0, ""), m), m != "rstrip", m != "lstrip"));
  }
  if (m == "split") {
    a.check(m, 2, {"sep", "maxsplit"});
    List out;
    for (auto& part : py_split(s, opt_str(a.get(0, "sep"), m), opt_int(a.get(1, "maxsplit"), -1)))
      out.push_back(Value::string(std::move(part)));
    return Value::make_list(std::move(out));
  }
  if (m == "startswith" || m == "endswith") {
    a.check(m, 1, {});
    if (a.pos.empty()) fail("TypeError: " + std::string(m) + "() takes at least 1 argument");
    return Value::boolean(affix(s, a.pos[0], m == "startswith"));
  }
  if (m == "upper" || m == "lower" || m == "title" || m == "capitalize") {
    a.check(m, 0, {});
    return Value::string(m == "upper" ? py_upper(s) : m == "lower" ? py_lower(s) : m == "title" ? py_title(s) : py_capitalize(s));
  }
  if (m == "replace") {
    a.check(m, 3, {"count"});
    if (a.pos.size() < 2 || !a.pos[0].is_string() || !a.pos[1].is_string())
      fail("TypeError: replace() needs two str arguments");
    return Value::string(py_replace(s, a.pos[0].str(), a.pos[1].str(), opt_int(a.get(2, "count"), -1)));
  }
  if (m == "find") {
    a.check(m, 1, {});
    if (a.pos.empty() || !a.pos[0].is_string()) fail("TypeError: find() needs a str argument");
    return Value::integer(py_find(s, a.pos[0].str()));
  }
  if (m == "join") {
    a.check(m, 1, {});
    if (a.pos.empty()) fail("TypeError: join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(a.pos[0])) {
      if (!item.is_string()) fail("TypeError: sequence item: expected str instance, " + type_name(item) + " found");
      if (!first) out += s;
      first = false;
      out += item.str();
      if (out.size() > kMaxBuiltSize) fail("MemoryError: join result too large");
    }
    return Value::string(std::move(out));
  }
  fail("unsupported method 'str." + std::string(m) + "()'");
}

Value dict_method(const Value& d, std::string_view m, const Args& a) {
  if (m == "get") {
    a.check(m, 2, {});
    if (a.pos.empty()) fail("TypeError: get expected at least 1 argument");
    const Value* v = a.pos[0].is_string() ? d.find(a.pos[0].str()) : nullptr;
    if (v) return *v;
    return a.pos.size() > 1 ? a.pos[1] : Value::none();
  }
  a.check(m, 0, {});
  List out;
  for (const auto& [k, v] : *d.dict) {
    if (m == "items") out.push_back(Value::make_list({Value::string(k), v}, Seq::Tuple));
    else if (m == "keys") out.push_back(Value::string(k));
    else if (m == "values") out.push_back(v);
    else fail("unsupported method 'dict." + std::string(m) + "()'");
  }
  return Value::make_list(std::move(out));  // dict views iterate, index and measure as a list does here
}

Value range(const Args& a) {
  a.check("range", 3, {});
  if (a.pos.empty()) fail("TypeError: range expected at least 1 argument");
  int64_t start = 0, stop, step = 1;
  if (a.pos.size() == 1) {
    stop = opt_int(&a.pos[0], 0);
  } else {
    start = opt_int(&a.pos[0], 0);
    stop = opt_int(&a.pos[1], 0);
    if (a.pos.size() > 2) step = opt_int(&a.pos[2], 1);
  }
  if (step == 0) fail("ValueError: range() arg 3 must not be zero");
  List out;
  for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
    // Jinja's sandbox refuses ranges over MAX_RANGE (100000) items.
    if (out.size() >= 100000) fail("OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    out.push_back(Value::integer(k));
  }
  return Value::make_list(std::move(out));
}

}  // namespace

Value call_method(const Value& self, std::string_view name, const Args& a) {
  if (self.is_string()) return str_method(self.str(), name, a);
  if (self.kind == Kind::Dict) return dict_method(self, name, a);
  fail("unsupported method '" + type_name(self) + "." + std::string(name) + "()'");
}

Value call_global(std::string_view name, const Args& a, const Clock& now) {
  if (name == "range") return range(a);
  if (name == "namespace" || name == "dict") {
    Dict d;
    if (!a.pos.empty()) {
      if (a.pos.size() > 1 || a.pos[0].kind != Kind::Dict)
        fail("TypeError: " + std::string(name) + "() takes keyword arguments or one dict");
      d = *a.pos[0].dict;
    }
    for (const auto& [k, v] : a.kw) {
      bool replaced = false;
      for (auto& kv : d)
        if (kv.first == k) kv.second = v, replaced = true;
      if (!replaced) d.emplace_back(k, v);
    }
    return name == "dict" ? Value::make_dict(std::move(d)) : Value::make_namespace(std::move(d));
  }
  if (name == "raise_exception") {
    const Value* msg = a.get(0, "message");
    throw TemplateError{msg ? to_str(*msg) : "", 0, true};
  }
  if (name == "strftime_now") {
    a.check(name, 1, {"format"});
    const Value* fmt = a.get(0, "format");
    if (!fmt || !fmt->is_string()) fail("TypeError: strftime_now() needs a format string");
    std::tm tm = now();
    std::string out(256 + fmt->str().size() * 8, '\0');
    size_t n = fmt->str().empty() ? 0 : std::strftime(out.data(), out.size(), fmt->str().c_str(), &tm);
    out.resize(n);
    return Value::string(std::move(out));
  }
  fail("unsupported function '" + std::string(name) + "()'");
}

}  // namespace zi::tok::jinja
