// The parser's state and token-stream helpers, shared by parser.cc (statements and the entry point) and
// parse_expression.cc (expressions): a recursive-descent copy of jinja2/parser.py (3.1).
#pragma once

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/chat_template/ast.h"
#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/lexer.h"

namespace zi::tok::jinja {

inline constexpr int kMaxDepth = 200;  // nesting of expressions and blocks: bounds the parser's recursion

class Parser {
 public:
  explicit Parser(std::vector<Token> t) : t_(std::move(t)) {}

  Body parse_template() {
    Body body = subparse({});
    if (cur().type != Tok::Eof) fail("unexpected tag", cur().line);
    return body;
  }

 private:
  const Token& cur() const { return t_[pos_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  Token next() {
    Token t = t_[pos_];
    if (pos_ + 1 < t_.size()) ++pos_;
    return t;
  }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().value == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().value == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  [[noreturn]] void unexpected(const char* expected) const {
    std::string got = cur().type == Tok::Eof        ? "end of template"
                      : cur().type == Tok::BlockEnd ? "end of statement block"
                      : cur().type == Tok::VarEnd   ? "end of print statement"
                                                    : "'" + cur().value + "'";
    fail(std::string("expected ") + expected + ", got " + got, cur().line);
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) unexpected((std::string("'") + op + "'").c_str());
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) unexpected("a name");
    return next().value;
  }
  void expect(Tok type, const char* what) {
    if (cur().type != type) unexpected(what);
    next();
  }

  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) {
      if (++p->depth_ > kMaxDepth) fail("template nested too deeply", p->cur().line);
    }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };

  // Statements (parser.cc).
  Body subparse(const std::set<std::string>& end);
  StmtPtr parse_statement();
  StmtPtr parse_for();
  StmtPtr parse_if();
  StmtPtr parse_set();
  std::vector<std::string> parse_assign_targets();

  // Expressions (parse_expression.cc), lowest precedence first as in Jinja.
  ExprPtr node(ExprKind k, int line);
  bool is_tuple_end(const std::set<std::string>& extra_end) const;
  ExprPtr parse_tuple(bool with_condexpr, const std::set<std::string>& extra_end, bool explicit_parens = false);
  ExprPtr parse_expression(bool with_condexpr);
  ExprPtr parse_condexpr();
  ExprPtr binary(ExprKind k, int line, ExprPtr a, ExprPtr b, std::string name = "");
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr parse_list();
  ExprPtr parse_dict();
  ExprPtr parse_postfix(ExprPtr n);
  ExprPtr parse_subscript(ExprPtr obj);
  ExprPtr parse_subscribed();
  void parse_call_args(Expr& e);
  ExprPtr parse_call(ExprPtr callee);
  ExprPtr parse_filter_expr(ExprPtr n);
  ExprPtr parse_filter(ExprPtr n);
  ExprPtr parse_test(ExprPtr n);

  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace zi::tok::jinja
