// Jinja's parser for the subset real chat templates use: the grammar and operator precedence of jinja2/parser.py
// (3.1), producing ast.h. Tags, filters, tests, methods and functions outside the subset are refused here, at load,
// naming the construct and its line.
#pragma once

#include <vector>

#include "engine/tokenizer/chat_template/ast.h"
#include "engine/tokenizer/chat_template/lexer.h"

namespace zi::tok::jinja {

// Throws TemplateError.
Body parse(std::vector<Token> tokens);

}  // namespace zi::tok::jinja
