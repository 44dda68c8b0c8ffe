#include "engine/tokenizer/chat_template/text.h"

#include <unicode/uchar.h>
#include <unicode/ustring.h>

#include <cstdio>

#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok::jinja {

bool py_isspace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::u32string to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(next_code_point(s, i));
  return out;
}

std::string to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

size_t cp_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  std::u32string u = to_u32(s);
  std::u32string set = chars ? to_u32(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : py_isspace(c); };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return to_utf8(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep) {
    if (sep->empty()) fail("ValueError: empty separator");
    size_t pos = 0;
    while (static_cast<int64_t>(out.size()) < maxsplit) {
      size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  // Runs of whitespace separate; leading/trailing whitespace gives no empty strings.
  std::u32string u = to_u32(s);
  size_t i = 0, n = u.size();
  while (true) {
    while (i < n && py_isspace(u[i])) ++i;
    if (i == n) break;
    if (static_cast<int64_t>(out.size()) == maxsplit) {  // the remainder keeps its trailing whitespace
      out.push_back(to_utf8(std::u32string_view(u).substr(i)));
      break;
    }
    size_t j = i;
    while (j < n && !py_isspace(u[j])) ++j;
    out.push_back(to_utf8(std::u32string_view(u).substr(i, j - i)));
    i = j;
  }
  return out;
}

std::vector<std::string> py_splitlines(std::string_view s) {
  std::u32string u = to_u32(s);
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  while (i < u.size()) {
    char32_t c = u[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
               c == 0x2028 || c == 0x2029;
    if (!brk) {
      ++i;
      continue;
    }
    out.push_back(to_utf8(std::u32string_view(u).substr(start, i - start)));
    i += (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ? 2 : 1;
    start = i;
  }
  if (start < u.size()) out.push_back(to_utf8(std::u32string_view(u).substr(start)));
  return out;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
  if (count < 0) count = INT64_MAX;
  std::string out;
  if (old.empty()) {
    // Python inserts `repl` before every code point and at the end, up to `count` times.
    size_t i = 0;
    int64_t done = 0;
    while (done < count) {
      out.append(repl);
      ++done;
      if (i >= s.size()) break;
      size_t len = utf8_len(static_cast<unsigned char>(s[i]));
      out.append(s.substr(i, len));
      i += len;
    }
    out.append(s.substr(std::min(i, s.size())));
    return out;
  }
  size_t pos = 0;
  for (int64_t done = 0; done < count; ++done) {
    size_t hit = s.find(old, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(repl);
    pos = hit + old.size();
  }
  out.append(s.substr(pos));
  return out;
}

int64_t py_find(std::string_view s, std::string_view sub) {
  size_t hit = s.find(sub);
  return hit == std::string_view::npos ? -1 : static_cast<int64_t>(cp_length(s.substr(0, hit)));
}

namespace {

// Full (one-to-many) case mapping through ICU's root locale, as Python's str.upper/lower use SpecialCasing.
std::string icu_case(std::string_view s, bool upper) {
  std::u16string in;
  for (char32_t c : to_u32(s)) {
    if (c >= 0x10000) {
      in.push_back(static_cast<char16_t>(0xD800 + ((c - 0x10000) >> 10)));
      in.push_back(static_cast<char16_t>(0xDC00 + ((c - 0x10000) & 0x3FF)));
    } else {
      in.push_back(static_cast<char16_t>(c));
    }
  }
  std::u16string out(in.size() * 3 + 4, u'\0');
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = upper ? u_strToUpper(out.data(), static_cast<int32_t>(out.size()), in.data(),
                                   static_cast<int32_t>(in.size()), "", &err)
                    : u_strToLower(out.data(), static_cast<int32_t>(out.size()), in.data(),
                                   static_cast<int32_t>(in.size()), "", &err);
  if (U_FAILURE(err)) fail("case mapping failed");
  std::string r;
  for (int32_t i = 0; i < n; ++i) {
    char32_t c = out[i];
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < n) c = 0x10000 + ((c - 0xD800) << 10) + (out[++i] - 0xDC00);
    append_utf8(r, c);
  }
  return r;
}

std::string one(char32_t c) {
  std::string s;
  append_utf8(s, c);
  return s;
}

bool is_cased(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_CASED); }

// Title case of one code point (Python's full titlecase mapping; ICU's simple one covers the templates' text).
std::string title_of(char32_t c) { return one(static_cast<char32_t>(u_totitle(static_cast<UChar32>(c)))); }

}  // namespace

std::string py_upper(std::string_view s) { return icu_case(s, true); }
std::string py_lower(std::string_view s) { return icu_case(s, false); }

std::string py_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t c : to_u32(s)) {
    out += prev_cased ? py_lower(one(c)) : title_of(c);
    prev_cased = is_cased(c);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::u32string u = to_u32(s);
  if (u.empty()) return "";
  return title_of(u[0]) + py_lower(to_utf8(std::u32string_view(u).substr(1)));
}

std::string jinja_title(std::string_view s) {
  // "".join(item[0].upper() + item[1:].lower() for item in re.split(r"([-\s({\[<]+)", s) if item)
  std::u32string u = to_u32(s);
  auto is_sep = [](char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c); };
  std::string out;
  size_t i = 0;
  while (i < u.size()) {
    size_t j = i;
    bool sep = is_sep(u[i]);
    while (j < u.size() && is_sep(u[j]) == sep) ++j;
    std::u32string_view item = std::u32string_view(u).substr(i, j - i);
    out += py_upper(to_utf8(item.substr(0, 1))) + py_lower(to_utf8(item.substr(1)));
    i = j;
  }
  return out;
}

std::string py_repr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos, has_double = s.find('"') != std::string_view::npos;
  char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  char buf[16];
  for (char32_t c : to_u32(s)) {
    if (c == static_cast<char32_t>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else if (c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      // Python's str.isprintable: not Cc, Cf, Cs, Co, Cn, Zl, Zp, nor Zs other than the ASCII space.
      int8_t t = u_charType(static_cast<UChar32>(c));
      bool printable = !(t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_SURROGATE || t == U_PRIVATE_USE_CHAR ||
                         t == U_UNASSIGNED || t == U_LINE_SEPARATOR || t == U_PARAGRAPH_SEPARATOR ||
                         t == U_SPACE_SEPARATOR);
      if (printable) {
        append_utf8(out, c);
      } else {
        std::snprintf(buf, sizeof buf, c < 0x100 ? "\\x%02x" : c < 0x10000 ? "\\u%04x" : "\\U%08x",
                      static_cast<unsigned>(c));
        out += buf;
      }
    }
  }
  out += q;
  return out;
}

}  // namespace zi::tok::jinja
