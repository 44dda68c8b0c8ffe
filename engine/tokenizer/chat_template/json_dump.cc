#include "engine/tokenizer/chat_template/json_dump.h"

#include <algorithm>
#include <cstdio>

#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/text.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok::jinja {
namespace {

void dump_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  char buf[16];
  for (char32_t c : to_u32(s)) {
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        char32_t v = c - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      std::string one;
      append_utf8(one, c);
      out += one;
    }
  }
  out += '"';
}

struct Dumper {
  const JsonDumpOptions& opt;
  std::string item_sep, key_sep;
  std::string out;
  int depth = 0;

  void newline() {
    out += '\n';
    for (int k = 0; k < depth; ++k) out += *opt.indent;
  }

  void dump(const Value& v) {
    if (depth > 512) fail("ValueError: value nested too deeply for tojson");
    switch (v.kind) {
      case Kind::None: out += "null"; return;
      case Kind::Bool: out += v.b ? "true" : "false"; return;
      case Kind::Int: out += std::to_string(v.i); return;
      case Kind::Float: {
        std::string f = format_float(v.f);
        out += f == "nan" ? "NaN" : f == "inf" ? "Infinity" : f == "-inf" ? "-Infinity" : f;
        return;
      }
      case Kind::String: dump_string(out, v.str(), opt.ensure_ascii); return;
      case Kind::List:
        if (v.seq == Seq::Generator) break;
        dump_seq(*v.list);
        return;
      case Kind::Dict: dump_dict(*v.dict); return;
      default: break;
    }
    fail("TypeError: Object of type " + type_name(v) + " is not JSON serializable");
  }

  void dump_seq(const List& l) {
    if (l.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    ++depth;
    for (size_t k = 0; k < l.size(); ++k) {
      if (k) out += item_sep;
      if (opt.indent) newline();
      dump(l[k]);
    }
    --depth;
    if (opt.indent) newline();
    out += ']';
  }

  void dump_dict(const Dict& d) {
    if (d.empty()) {
      out += "{}";
      return;
    }
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& kv : d) items.push_back(&kv);
    if (opt.sort_keys)
      std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return to_u32(a->first) < to_u32(b->first); });
    out += '{';
    ++depth;
    for (size_t k = 0; k < items.size(); ++k) {
      if (k) out += item_sep;
      if (opt.indent) newline();
      dump_string(out, items[k]->first, opt.ensure_ascii);
      out += key_sep;
      dump(items[k]->second);
    }
    --depth;
    if (opt.indent) newline();
    out += '}';
  }
};

}  // namespace

std::string json_dumps(const Value& v, const JsonDumpOptions& opt) {
  Dumper d{opt, ", ", ": "};
  if (opt.indent) d.item_sep = ",";  // Python's default separators with an indent
  if (opt.separators) {
    d.item_sep = opt.separators->first;
    d.key_sep = opt.separators->second;
  }
  d.dump(v);
  return std::move(d.out);
}

}  // namespace zi::tok::jinja
