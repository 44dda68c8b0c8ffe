#include "engine/tokenizer/chat_template/lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/text.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok::jinja {
namespace {

// Jinja splits the source on \r\n, \r and \n, joins with \n, and drops one trailing newline.
std::string normalize_newlines(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      out += '\n';
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else {
      out += in[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;  // the previous match ended a line (or this is the template's start)
    const size_t n = src_.size();
    while (pos < n) {
      size_t open = find_open(pos);
      if (open == std::string::npos) {
        emit(Tok::Text, src_.substr(pos), pos);
        break;
      }
      char kind = src_[open + 1];
      size_t p = open + 2;
      char sign = 0;
      if (p < n && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      std::string_view text(src_.data() + pos, open - pos);
      if (sign == '-') {
        text = rstrip(text);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: a block or comment tag alone on its line drops the indentation before it.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string_view::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting) && all_space(text.substr(l_pos))) text = text.substr(0, l_pos);
      }
      if (!text.empty()) emit(Tok::Text, std::string(text), pos);
      if (kind == '#') {
        pos = skip_comment(open, p);
      } else {
        if (kind == '%') check_raw(p, open);
        emit(kind == '{' ? Tok::VarBegin : Tok::BlockBegin, "", open);
        pos = lex_tag(kind, p, open);
      }
      line_starting = src_[pos - 1] == '\n';
    }
    Token eof;
    eof.line = line_at(n);
    out_.push_back(eof);
    return std::move(out_);
  }

 private:
  size_t find_open(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  int line_at(size_t pos) {
    if (pos < line_pos_) return 1 + static_cast<int>(std::count(src_.begin(), src_.begin() + pos, '\n'));
    for (; line_pos_ < pos && line_pos_ < src_.size(); ++line_pos_) line_ += src_[line_pos_] == '\n';
    return line_;
  }

  void emit(Tok t, std::string value, size_t pos) {
    Token tok;
    tok.type = t;
    tok.value = std::move(value);
    tok.line = line_at(pos);
    out_.push_back(std::move(tok));
  }

  // Length of the whitespace code point at p, or 0.
  size_t space_at(size_t p) const {
    size_t i = p;
    char32_t c = next_code_point(src_, i);
    return py_isspace(c) ? i - p : 0;
  }

  static std::string_view rstrip(std::string_view t) {
    std::u32string u = to_u32(t);
    size_t e = u.size(), bytes = t.size();
    while (e > 0 && py_isspace(u[e - 1])) {
      std::string one;
      append_utf8(one, u[--e]);
      bytes -= one.size();
    }
    return t.substr(0, bytes);
  }

  static bool all_space(std::string_view t) {
    if (t.empty()) return false;
    for (char32_t c : to_u32(t))
      if (!py_isspace(c)) return false;
    return true;
  }

  size_t skip_ws(size_t p) const {
    while (p < src_.size()) {
      size_t k = space_at(p);
      if (!k) break;
      p += k;
    }
    return p;
  }

  size_t skip_comment(size_t open, size_t p) {
    size_t end = src_.find("#}", p);
    if (end == std::string::npos) fail("missing end of comment tag", line_at(open));
    if (end > p && src_[end - 1] == '-') return skip_ws(end + 2);
    if (end > p && src_[end - 1] == '+') return end + 2;
    size_t q = end + 2;
    return q < src_.size() && src_[q] == '\n' ? q + 1 : q;  // trim_blocks
  }

  // {% raw %} would need its own lexing mode; it is outside the subset.
  void check_raw(size_t p, size_t open) {
    p = skip_ws(p);
    if (src_.compare(p, 3, "raw") == 0 && (p + 3 >= src_.size() || !is_name_char(src_[p + 3])))
      fail("unsupported tag 'raw'", line_at(open));
  }

  bool starts(size_t p, std::string_view s) const { return src_.compare(p, s.size(), s) == 0; }

  size_t lex_tag(char kind, size_t p, size_t open) {
    std::string balance;
    const size_t n = src_.size();
    while (true) {
      if (p >= n) fail(kind == '{' ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'",
                       line_at(open));
      if (balance.empty()) {
        if (kind == '%') {
          if (starts(p, "-%}")) return end_tag(Tok::BlockEnd, p, skip_ws(p + 3));
          if (starts(p, "+%}")) return end_tag(Tok::BlockEnd, p, p + 3);
          if (starts(p, "%}")) return end_tag(Tok::BlockEnd, p, p + 2 < n && src_[p + 2] == '\n' ? p + 3 : p + 2);
        } else {
          if (starts(p, "-}}")) return end_tag(Tok::VarEnd, p, skip_ws(p + 3));
          if (starts(p, "}}")) return end_tag(Tok::VarEnd, p, p + 2);
        }
      }
      if (size_t k = space_at(p)) {
        p += k;
        continue;
      }
      char c = src_[p];
      if (is_digit(c)) {
        p = lex_number(p);
      } else if (is_name_start(c)) {
        size_t e = p;
        while (e < n && is_name_char(src_[e])) ++e;
        emit(Tok::Name, src_.substr(p, e - p), p);
        p = e;
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        p = lex_operator(p, balance);
      }
    }
  }

  size_t end_tag(Tok t, size_t at, size_t next) {
    emit(t, "", at);
    return next;
  }

  // Digits with single underscores between them ((\d+_)*\d+); returns the end, or `p` when none.
  size_t digits(size_t p) const {
    size_t e = p;
    while (e < src_.size() && is_digit(src_[e])) {
      ++e;
      if (e + 1 < src_.size() && src_[e] == '_' && is_digit(src_[e + 1])) ++e;
    }
    return e;
  }

  size_t lex_number(size_t p) {
    const size_t n = src_.size();
    // Float (not right after a '.', so `x.0.1` is two subscripts): digits, then a fraction and/or an exponent.
    if (p == 0 || src_[p - 1] != '.') {
      size_t e = digits(p), f = e;
      if (f + 1 < n && src_[f] == '.' && is_digit(src_[f + 1])) f = digits(f + 1);
      size_t x = f;
      if (x < n && (src_[x] == 'e' || src_[x] == 'E')) {
        size_t y = x + 1;
        if (y < n && (src_[y] == '+' || src_[y] == '-')) ++y;
        size_t z = digits(y);
        if (z > y) x = z;
      }
      if (x > e) {
        std::string text;
        for (size_t k = p; k < x; ++k)
          if (src_[k] != '_') text += src_[k];
        Token t;
        t.type = Tok::Float;
        t.value = src_.substr(p, x - p);
        t.float_value = std::strtod(text.c_str(), nullptr);
        t.line = line_at(p);
        out_.push_back(std::move(t));
        return x;
      }
    }
    int base = 10;
    size_t s = p, e;
    if (src_[p] == '0' && p + 1 < n && (src_[p + 1] == 'x' || src_[p + 1] == 'X' || src_[p + 1] == 'o' ||
                                        src_[p + 1] == 'O' || src_[p + 1] == 'b' || src_[p + 1] == 'B')) {
      char b = static_cast<char>(src_[p + 1] | 0x20);
      base = b == 'x' ? 16 : b == 'o' ? 8 : 2;
      auto ok = [&](char c) {
        c = static_cast<char>(c | 0x20);
        return base == 16 ? (is_digit(c) || (c >= 'a' && c <= 'f')) : (c >= '0' && c < '0' + base);
      };
      e = p + 2;
      while (e < n && (ok(src_[e]) || (src_[e] == '_' && e + 1 < n && ok(src_[e + 1])))) ++e;
      if (e == p + 2) fail("invalid number literal", line_at(p));
      s = p + 2;
    } else if (src_[p] == '0') {
      e = p + 1;  // 0(_?0)*
      while (e < n && (src_[e] == '0' || (src_[e] == '_' && e + 1 < n && src_[e + 1] == '0'))) ++e;
    } else {
      e = digits(p);
    }
    std::string text;
    for (size_t k = s; k < e; ++k)
      if (src_[k] != '_') text += src_[k];
    errno = 0;
    long long v = std::strtoll(text.c_str(), nullptr, base);
    if (errno == ERANGE) fail("integer literal out of range", line_at(p));
    Token t;
    t.type = Tok::Int;
    t.value = src_.substr(p, e - p);
    t.int_value = v;
    t.line = line_at(p);
    out_.push_back(std::move(t));
    return e;
  }

  static int hexval(char c) {
    if (is_digit(c)) return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  }

  // A string literal, decoded as Jinja does: Python's unicode-escape codec over the literal's text.
  size_t lex_string(size_t p) {
    const char q = src_[p];
    const size_t n = src_.size();
    const int line = line_at(p);
    std::string out;
    size_t i = p + 1;
    while (true) {
      if (i >= n) fail("unterminated string literal", line);
      char c = src_[i];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++i;
        continue;
      }
      if (i + 1 >= n) fail("unterminated string literal", line);
      char e = src_[i + 1];
      i += 2;
      auto hex = [&](int count) {
        uint32_t v = 0;
        for (int k = 0; k < count; ++k) {
          int h = i < n ? hexval(src_[i]) : -1;
          if (h < 0) fail("invalid \\x, \\u or \\U escape in a string literal", line);
          v = v * 16 + static_cast<uint32_t>(h);
          ++i;
        }
        return v;
      };
      auto put = [&](uint32_t cp) {
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) fail("string escape outside Unicode scalar values", line);
        append_utf8(out, cp);
      };
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': put(hex(2)); break;
        case 'u': put(hex(4)); break;
        case 'U': put(hex(8)); break;
        case 'N': fail("\\N{...} escapes are not supported", line);
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i < n && src_[i] >= '0' && src_[i] <= '7'; ++k) v = v * 8 + (src_[i++] - '0');
            put(v);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            // Jinja encodes the literal with backslashreplace before decoding, so "\é" reads as "\\xe9".
            size_t j = i - 1;
            char32_t cp = next_code_point(src_, j);
            char buf[16];
            std::snprintf(buf, sizeof buf, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x",
                          static_cast<unsigned>(cp));
            out += buf;
            i = j;
          } else {
            out += '\\';  // an unknown escape stays as written
            out += e;
          }
      }
    }
    Token t;
    t.type = Tok::String;
    t.value = std::move(out);
    t.line = line;
    out_.push_back(std::move(t));
    return i + 1;
  }

  size_t lex_operator(size_t p, std::string& balance) {
    static const char* const kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwo) {
      if (starts(p, op)) {
        emit(Tok::Op, op, p);
        return p + 2;
      }
    }
    char c = src_[p];
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
      size_t j = p;
      char32_t cp = next_code_point(src_, j);
      std::string shown;
      append_utf8(shown, cp);
      fail("unexpected char '" + shown + "'", line_at(p));
    }
    if (c == '(' || c == '[' || c == '{') {
      balance += c == '(' ? ')' : c == '[' ? ']' : '}';
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty() || balance.back() != c) fail(std::string("unexpected '") + c + "'", line_at(p));
      balance.pop_back();
    }
    emit(Tok::Op, std::string(1, c), p);
    return p + 1;
  }

  std::string src_;
  std::vector<Token> out_;
  size_t line_pos_ = 0;
  int line_ = 1;
};

}  // namespace

std::vector<Token> lex(std::string_view source) { return Lexer(normalize_newlines(source)).run(); }

}  // namespace zi::tok::jinja
