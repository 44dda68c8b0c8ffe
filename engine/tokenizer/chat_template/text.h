// Python str semantics over UTF-8 (Jinja templates run on Python strings): whitespace as str.isspace, strip,
// split, case mapping, title/capitalize, repr. Lengths and indices count code points, as Python's do. Inputs are
// valid UTF-8 (ChatTemplate checks templates and messages once, up front).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zi::tok::jinja {

// str.isspace() / the `\s` of Python's re on str patterns.
bool py_isspace(char32_t cp);

std::u32string to_u32(std::string_view s);
std::string to_utf8(std::u32string_view s);
size_t cp_length(std::string_view s);

// str.strip / lstrip / rstrip; `chars` absent: whitespace.
std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split(sep=None, maxsplit=-1); sep empty: ValueError.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
// str.splitlines() (no keepends), as Jinja's indent filter uses it.
std::vector<std::string> py_splitlines(std::string_view s);
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
// str.find: index in code points, -1 when absent.
int64_t py_find(std::string_view s, std::string_view sub);

std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
std::string jinja_title(std::string_view s);    // Jinja's `title` filter (not str.title: words split at -\s({[<)

// repr(str): quotes as Python picks them, escapes for the non-printable.
std::string py_repr(std::string_view s);

}  // namespace zi::tok::jinja
