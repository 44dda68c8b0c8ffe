// Jinja's lexer with the environment transformers builds (trim_blocks=True, lstrip_blocks=True, default
// delimiters): template text, {{ }} / {% %} tags and the tokens inside them. Whitespace control ({%- -%} {{- -}}
// {%+ +%}), comments, newline normalisation and the dropped final newline (keep_trailing_newline=False) are
// applied here, so the parser sees only text that is printed as it is.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zi::tok::jinja {

enum class Tok : uint8_t { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type = Tok::Eof;
  std::string value;  // Text: the text; Name; String: decoded; Op: the operator; Int/Float: the source spelling
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

// Throws TemplateError (with the line) on malformed input.
std::vector<Token> lex(std::string_view source);

}  // namespace zi::tok::jinja
