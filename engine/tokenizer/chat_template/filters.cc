// Jinja's builtin filters of the subset (jinja2/filters.py, 3.1), plus transformers' tojson override.
#include <cmath>
#include <cstdlib>

#include "engine/tokenizer/chat_template/access.h"
#include "engine/tokenizer/chat_template/builtins.h"
#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/json_dump.h"
#include "engine/tokenizer/chat_template/ops.h"
#include "engine/tokenizer/chat_template/text.h"

namespace zi::tok::jinja {
namespace {

std::string soft_str(const Value& v) { return to_str(v); }

bool flag(const Value* v, bool dflt) { return v ? truthy(*v) : dflt; }

// Jinja's make_attrgetter: "a.b.0" looks up a, then b, then item 0, each with getitem semantics.
Value attr_path(const Value& item, const std::string& path) {
  Value cur = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    cur = digits ? get_item(cur, Value::integer(std::strtoll(part.c_str(), nullptr, 10)))
                 : get_item(cur, Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// select / reject / selectattr / rejectattr: the test is args[k] (absent: truthiness), its arguments follow.
Value select(const Value& seq, const Args& a, bool by_attr, bool keep) {
  size_t k = 0;
  std::string attr;
  if (by_attr) {
    if (a.pos.empty() || !a.pos[0].is_string()) fail("TypeError: selectattr/rejectattr need an attribute name");
    attr = a.pos[0].str();
    k = 1;
  }
  std::string test;
  Args test_args;
  if (k < a.pos.size()) {
    if (!a.pos[k].is_string()) fail("TypeError: the test of select/reject must be a name");
    test = a.pos[k].str();
    if (!is_test(test)) fail("unsupported test '" + test + "'");
    test_args.pos.assign(a.pos.begin() + static_cast<long>(k) + 1, a.pos.end());
    test_args.kw = a.kw;
  }
  List out;
  for (const Value& item : iterate(seq)) {
    Value subject = by_attr ? attr_path(item, attr) : item;
    bool ok = test.empty() ? truthy(subject) : call_test(test, subject, test_args);
    if (ok == keep) out.push_back(item);
  }
  return Value::make_list(std::move(out), Seq::Generator);
}

Value map_filter(const Value& seq, const Args& a) {
  List out;
  if (a.pos.empty()) {
    const Value* attr = a.get(99, "attribute");
    if (!attr || !attr->is_string()) fail("TypeError: map needs a filter name or attribute=");
    const Value* dflt = a.get(99, "default");
    for (const Value& item : iterate(seq)) {
      Value v = attr_path(item, attr->str());
      out.push_back(v.is_undefined() && dflt ? *dflt : v);
    }
  } else {
    if (!a.pos[0].is_string() || !is_filter(a.pos[0].str())) fail("unsupported filter in map()");
    Args rest;
    rest.pos.assign(a.pos.begin() + 1, a.pos.end());
    rest.kw = a.kw;
    for (const Value& item : iterate(seq)) out.push_back(call_filter(a.pos[0].str(), item, rest));
  }
  return Value::make_list(std::move(out), Seq::Generator);
}

Value tojson(const Value& v, const Args& a) {
  a.check("tojson", 4, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions o;
  o.ensure_ascii = flag(a.get(0, "ensure_ascii"), false);
  if (const Value* ind = a.get(1, "indent"); ind && ind->kind != Kind::None) {
    if (ind->is_string()) {
      o.indent = ind->str();
    } else if (ind->kind == Kind::Int) {
      o.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(ind->i, 256))), ' ');
    } else {
      fail("TypeError: tojson indent must be an int or a string");
    }
  }
  if (const Value* sep = a.get(2, "separators"); sep && sep->kind != Kind::None) {
    if (sep->kind != Kind::List || sep->list->size() != 2 || !(*sep->list)[0].is_string() ||
        !(*sep->list)[1].is_string())
      fail("TypeError: tojson separators must be two strings");
    o.separators = std::make_pair((*sep->list)[0].str(), (*sep->list)[1].str());
  }
  o.sort_keys = flag(a.get(3, "sort_keys"), false);
  return Value::string(json_dumps(v, o));
}

Value indent(const Value& v, const Args& a) {
  a.check("indent", 3, {"width", "first", "blank"});
  std::string ind = "    ";
  if (const Value* w = a.get(0, "width")) {
    if (w->is_string()) {
      ind = w->str();
    } else if (w->kind == Kind::Int) {
      ind = std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(w->i, 256))), ' ');
    } else {
      fail("TypeError: indent width must be an int or a string");
    }
  }
  bool first = flag(a.get(1, "first"), false), blank = flag(a.get(2, "blank"), false);
  std::vector<std::string> lines = py_splitlines(soft_str(v) + "\n");
  std::string rv;
  if (blank) {
    for (size_t k = 0; k < lines.size(); ++k) {
      if (k) rv.append("\n").append(ind);
      rv += lines[k];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t k = 1; k < lines.size(); ++k) {
      rv += '\n';
      if (!lines[k].empty()) rv.append(ind).append(lines[k]);
    }
  }
  return Value::string(first ? ind + rv : rv);
}

Value to_int(const Value& v, const Args& a) {
  a.check("int", 2, {"default", "base"});
  Value dflt = a.get(0, "default") ? *a.get(0, "default") : Value::integer(0);
  if (v.kind == Kind::Int) return v;
  if (v.kind == Kind::Bool) return Value::integer(v.b);
  if (v.kind == Kind::Float) return std::isfinite(v.f) && std::fabs(v.f) < 9.2e18 ? Value::integer(static_cast<int64_t>(v.f)) : dflt;
  if (v.is_string()) {
    std::string s = py_strip(v.str(), std::nullopt, true, true);
    char* end = nullptr;
    errno = 0;
    long long r = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end && *end == '\0' && errno == 0) return Value::integer(r);
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18)
      return Value::integer(static_cast<int64_t>(d));
  }
  return dflt;
}

Value to_float(const Value& v, const Args& a) {
  a.check("float", 1, {"default"});
  Value dflt = a.get(0, "default") ? *a.get(0, "default") : Value::floating(0.0);
  if (v.kind == Kind::Float) return v;
  if (v.kind == Kind::Int || v.kind == Kind::Bool) return Value::floating(v.kind == Kind::Int ? v.i : v.b);
  if (v.is_string()) {
    std::string s = py_strip(v.str(), std::nullopt, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0') return Value::floating(d);
  }
  return dflt;
}

}  // namespace

Value call_filter(std::string_view name, const Value& v, const Args& a) {
  if (name == "tojson") return tojson(v, a);
  if (name == "trim") {
    a.check("trim", 1, {"chars"});
    const Value* chars = a.get(0, "chars");
    std::optional<std::string> set;
    if (chars && chars->kind != Kind::None) set = soft_str(*chars);
    return Value::string(py_strip(soft_str(v), set, true, true));
  }
  if (name == "length" || name == "count") return Value::integer(length(v));
  if (name == "default" || name == "d") {
    a.check("default", 2, {"default_value", "boolean"});
    const Value* dv = a.get(0, "default_value");
    bool use = v.is_undefined() || (flag(a.get(1, "boolean"), false) && !truthy(v));
    return use ? (dv ? *dv : Value::string("")) : v;
  }
  if (name == "join") {
    a.check("join", 2, {"d", "attribute"});
    std::string sep = a.get(0, "d") ? soft_str(*a.get(0, "d")) : "";
    const Value* attr = a.get(1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v)) {
      if (!first) out += sep;
      first = false;
      out += soft_str(attr ? attr_path(item, soft_str(*attr)) : item);
      if (out.size() > kMaxBuiltSize) fail("MemoryError: join result too large");
    }
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    List items = iterate(v);
    if (items.empty()) return Value::undefined("No " + std::string(name) + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "upper") return Value::string(py_upper(soft_str(v)));
  if (name == "lower") return Value::string(py_lower(soft_str(v)));
  if (name == "capitalize") return Value::string(py_capitalize(soft_str(v)));
  if (name == "title") return Value::string(jinja_title(soft_str(v)));
  if (name == "string") return v.is_string() ? v : Value::string(soft_str(v));
  if (name == "safe") return Value::string(soft_str(v));
  if (name == "list") return Value::make_list(iterate(v));
  if (name == "items") {
    if (v.is_undefined()) return Value::make_list({}, Seq::Generator);
    if (v.kind != Kind::Dict) fail("TypeError: Can only get item pairs from a mapping.");
    List out;
    for (const auto& [k, val] : *v.dict) out.push_back(Value::make_list({Value::string(k), val}, Seq::Tuple));
    return Value::make_list(std::move(out), Seq::Generator);
  }
  if (name == "select") return select(v, a, false, true);
  if (name == "reject") return select(v, a, false, false);
  if (name == "selectattr") return select(v, a, true, true);
  if (name == "rejectattr") return select(v, a, true, false);
  if (name == "map") return map_filter(v, a);
  if (name == "replace") {
    a.check("replace", 3, {"old", "new", "count"});
    const Value *o = a.get(0, "old"), *n = a.get(1, "new"), *c = a.get(2, "count");
    if (!o || !n) fail("TypeError: replace needs old and new");
    int64_t count = c && c->kind == Kind::Int ? c->i : -1;
    return Value::string(py_replace(soft_str(v), soft_str(*o), soft_str(*n), count));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = to_u32(v.str());
      return Value::string(to_utf8(std::u32string(u.rbegin(), u.rend())));
    }
    List items = iterate(v);
    return Value::make_list(List(items.rbegin(), items.rend()), Seq::Generator);
  }
  if (name == "abs") {
    if (v.kind == Kind::Float) return Value::floating(std::fabs(v.f));
    if (v.kind == Kind::Int || v.kind == Kind::Bool) {
      int64_t i = v.kind == Kind::Bool ? v.b : v.i;
      if (i == INT64_MIN) fail("OverflowError: integer result out of range");
      return Value::integer(i < 0 ? -i : i);
    }
    fail("TypeError: bad operand type for abs(): '" + type_name(v) + "'");
  }
  if (name == "indent") return indent(v, a);
  if (name == "int") return to_int(v, a);
  if (name == "float") return to_float(v, a);
  fail("unsupported filter '" + std::string(name) + "'");
}

}  // namespace zi::tok::jinja
