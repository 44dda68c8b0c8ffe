// Expressions: Jinja's precedence climbing (condexpr < or < and < not < compare < + - < ~ < * / // % < ** <
// unary/postfix/filters/tests), and the load-time refusal of calls, filters and tests outside the subset.
#include "engine/tokenizer/chat_template/builtins.h"
#include "engine/tokenizer/chat_template/parser_impl.h"

namespace zi::tok::jinja {

ExprPtr Parser::node(ExprKind k, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = k;
  e->line = line;
  return e;
}

bool Parser::is_tuple_end(const std::set<std::string>& extra_end) const {
  if (cur().type == Tok::VarEnd || cur().type == Tok::BlockEnd || cur().type == Tok::Eof) return true;
  if (cur().type == Tok::Op && cur().value == ")") return true;
  return cur().type == Tok::Name && extra_end.count(cur().value);
}

// Expressions separated by commas make a tuple (`{{ a, b }}`, `{% set x, y = 1, 2 %}`).
ExprPtr Parser::parse_tuple(bool with_condexpr, const std::set<std::string>& extra_end, bool explicit_parens) {
  const int line = cur().line;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) expect_op(",");
    if (is_tuple_end(extra_end)) break;
    items.push_back(parse_expression(with_condexpr));
    if (is_op(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens) unexpected("an expression");
  }
  auto e = node(ExprKind::Tuple, line);
  e->args = std::move(items);
  return e;
}

ExprPtr Parser::parse_expression(bool with_condexpr) {
  DepthGuard g(this);
  return with_condexpr ? parse_condexpr() : parse_or();
}

ExprPtr Parser::parse_condexpr() {
  ExprPtr expr = parse_or();
  while (is_name("if")) {
    const int line = next().line;
    auto e = node(ExprKind::CondExpr, line);
    e->args.push_back(parse_or());
    e->args.push_back(std::move(expr));
    e->args.push_back(skip_name("else") ? parse_condexpr() : nullptr);
    expr = std::move(e);
  }
  return expr;
}

ExprPtr Parser::binary(ExprKind k, int line, ExprPtr a, ExprPtr b, std::string name) {
  auto e = node(k, line);
  e->name = std::move(name);
  e->args.push_back(std::move(a));
  e->args.push_back(std::move(b));
  return e;
}

ExprPtr Parser::parse_or() {
  ExprPtr l = parse_and();
  while (is_name("or")) {
    int line = next().line;
    l = binary(ExprKind::Or, line, std::move(l), parse_and());
  }
  return l;
}

ExprPtr Parser::parse_and() {
  ExprPtr l = parse_not();
  while (is_name("and")) {
    int line = next().line;
    l = binary(ExprKind::And, line, std::move(l), parse_not());
  }
  return l;
}

ExprPtr Parser::parse_not() {
  if (is_name("not")) {
    DepthGuard g(this);
    auto e = node(ExprKind::Not, next().line);
    e->args.push_back(parse_not());
    return e;
  }
  return parse_compare();
}

ExprPtr Parser::parse_compare() {
  const int line = cur().line;
  ExprPtr first = parse_math1();
  std::vector<std::string> ops;
  std::vector<ExprPtr> rest;
  while (true) {
    if (cur().type == Tok::Op &&
        (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == "<=" ||
         cur().value == ">" || cur().value == ">=")) {
      ops.push_back(next().value);
    } else if (skip_name("in")) {
      ops.push_back("in");
    } else if (is_name("not") && peek().type == Tok::Name && peek().value == "in") {
      next();
      next();
      ops.push_back("notin");
    } else {
      break;
    }
    rest.push_back(parse_math1());
  }
  if (ops.empty()) return first;
  auto e = node(ExprKind::Compare, line);
  e->args.push_back(std::move(first));
  for (auto& r : rest) e->args.push_back(std::move(r));
  e->ops = std::move(ops);
  return e;
}

ExprPtr Parser::parse_math1() {
  ExprPtr l = parse_concat();
  while (is_op("+") || is_op("-")) {
    Token op = next();
    l = binary(ExprKind::Binary, op.line, std::move(l), parse_concat(), op.value);
  }
  return l;
}

ExprPtr Parser::parse_concat() {
  const int line = cur().line;
  ExprPtr first = parse_math2();
  if (!is_op("~")) return first;
  auto e = node(ExprKind::Concat, line);
  e->args.push_back(std::move(first));
  while (skip_op("~")) e->args.push_back(parse_math2());
  return e;
}

ExprPtr Parser::parse_math2() {
  ExprPtr l = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    Token op = next();
    l = binary(ExprKind::Binary, op.line, std::move(l), parse_pow(), op.value);
  }
  return l;
}

ExprPtr Parser::parse_pow() {
  ExprPtr l = parse_unary(true);
  while (is_op("**")) {
    Token op = next();
    l = binary(ExprKind::Binary, op.line, std::move(l), parse_unary(true), op.value);
  }
  return l;
}

ExprPtr Parser::parse_unary(bool with_filter) {
  DepthGuard g(this);
  ExprPtr n;
  if (is_op("-") || is_op("+")) {
    Token op = next();
    n = node(op.value == "-" ? ExprKind::Neg : ExprKind::Pos, op.line);
    n->args.push_back(parse_unary(false));
  } else {
    n = parse_primary();
  }
  n = parse_postfix(std::move(n));
  if (with_filter) n = parse_filter_expr(std::move(n));
  return n;
}

ExprPtr Parser::parse_primary() {
  const Token& t = cur();
  const int line = t.line;
  if (t.type == Tok::Name) {
    std::string v = next().value;
    if (v == "true" || v == "True" || v == "false" || v == "False") {
      auto e = node(ExprKind::Const, line);
      e->constant = Value::boolean(v == "true" || v == "True");
      return e;
    }
    if (v == "none" || v == "None") {
      auto e = node(ExprKind::Const, line);
      e->constant = Value::none();
      return e;
    }
    auto e = node(ExprKind::Name, line);
    e->name = v;
    return e;
  }
  if (t.type == Tok::String) {
    std::string s;
    while (cur().type == Tok::String) s += next().value;  // adjacent literals concatenate
    auto e = node(ExprKind::Const, line);
    e->constant = Value::string(std::move(s));
    return e;
  }
  if (t.type == Tok::Int || t.type == Tok::Float) {
    Token n = next();
    auto e = node(ExprKind::Const, line);
    e->constant = n.type == Tok::Int ? Value::integer(n.int_value) : Value::floating(n.float_value);
    return e;
  }
  if (skip_op("(")) {
    ExprPtr e = parse_tuple(true, {}, true);
    expect_op(")");
    return e;
  }
  if (is_op("[")) return parse_list();
  if (is_op("{")) return parse_dict();
  unexpected("an expression");
}

ExprPtr Parser::parse_list() {
  auto e = node(ExprKind::List, next().line);
  while (!is_op("]")) {
    if (!e->args.empty()) expect_op(",");
    if (is_op("]")) break;
    e->args.push_back(parse_expression(true));
  }
  expect_op("]");
  return e;
}

ExprPtr Parser::parse_dict() {
  auto e = node(ExprKind::Dict, next().line);
  while (!is_op("}")) {
    if (!e->args.empty()) expect_op(",");
    if (is_op("}")) break;
    e->args.push_back(parse_expression(true));
    expect_op(":");
    e->args.push_back(parse_expression(true));
  }
  expect_op("}");
  return e;
}

ExprPtr Parser::parse_postfix(ExprPtr n) {
  while (true) {
    if (is_op(".") || is_op("[")) {
      n = parse_subscript(std::move(n));
    } else if (is_op("(")) {
      n = parse_call(std::move(n));
    } else {
      return n;
    }
  }
}

ExprPtr Parser::parse_subscript(ExprPtr obj) {
  Token t = next();
  if (t.value == ".") {
    if (cur().type == Tok::Name) {
      auto e = node(ExprKind::Getattr, t.line);
      e->name = next().value;
      e->args.push_back(std::move(obj));
      return e;
    }
    if (cur().type != Tok::Int) unexpected("a name or number");
    auto e = node(ExprKind::Getitem, t.line);
    auto k = node(ExprKind::Const, t.line);
    k->constant = Value::integer(next().int_value);
    e->args.push_back(std::move(obj));
    e->args.push_back(std::move(k));
    return e;
  }
  ExprPtr sub = parse_subscribed();
  if (is_op(",")) fail("unsupported tuple subscript", cur().line);
  expect_op("]");
  if (sub->kind == ExprKind::Slice) {
    sub->args[0] = std::move(obj);
    return sub;
  }
  auto e = node(ExprKind::Getitem, t.line);
  e->args.push_back(std::move(obj));
  e->args.push_back(std::move(sub));
  return e;
}

// An index, or a slice a:b:c whose bounds may each be left out (the Slice's args[0] is filled in by the caller).
ExprPtr Parser::parse_subscribed() {
  const int line = cur().line;
  ExprPtr start;
  if (!is_op(":")) {
    start = parse_expression(true);
    if (!is_op(":")) return start;
  }
  next();  // ':'
  auto s = node(ExprKind::Slice, line);
  s->args.push_back(nullptr);
  s->args.push_back(std::move(start));
  s->args.push_back(is_op(":") || is_op("]") || is_op(",") ? nullptr : parse_expression(true));
  if (skip_op(":")) {
    s->args.push_back(is_op("]") || is_op(",") ? nullptr : parse_expression(true));
  } else {
    s->args.push_back(nullptr);
  }
  return s;
}

void Parser::parse_call_args(Expr& e) {
  expect_op("(");
  bool first = true;
  while (!is_op(")")) {
    if (!first) expect_op(",");
    first = false;
    if (is_op(")")) break;
    if (is_op("*") || is_op("**")) fail("unsupported *args / **kwargs in a call", cur().line);
    if (cur().type == Tok::Name && peek().type == Tok::Op && peek().value == "=") {
      std::string key = next().value;
      next();
      e.kwargs.emplace_back(key, parse_expression(true));
    } else {
      if (!e.kwargs.empty()) fail("positional argument after a keyword argument", cur().line);
      e.args.push_back(parse_expression(true));
    }
  }
  expect_op(")");
}

ExprPtr Parser::parse_call(ExprPtr callee) {
  const int line = cur().line;
  // Only methods of str/dict values and the global functions are callable: the data a chat template gets holds
  // no functions, so anything else cannot work and is refused now rather than at render.
  if (callee->kind == ExprKind::Getattr) {
    if (!is_method(callee->name)) fail("unsupported method '." + callee->name + "()'", line);
  } else if (callee->kind == ExprKind::Name) {
    if (!is_global_function(callee->name)) fail("unsupported function '" + callee->name + "()'", line);
  } else {
    fail("unsupported call of an expression", line);
  }
  auto e = node(ExprKind::Call, line);
  e->args.push_back(std::move(callee));
  parse_call_args(*e);
  return e;
}

ExprPtr Parser::parse_filter_expr(ExprPtr n) {
  while (true) {
    if (is_op("|")) {
      n = parse_filter(std::move(n));
    } else if (is_name("is")) {
      n = parse_test(std::move(n));
    } else if (is_op("(")) {
      n = parse_call(std::move(n));
    } else {
      return n;
    }
  }
}

ExprPtr Parser::parse_filter(ExprPtr n) {
  while (skip_op("|")) {
    const int line = cur().line;
    std::string name = expect_name();
    if (is_op(".")) fail("unsupported dotted filter name", line);
    if (!is_filter(name)) fail("unsupported filter '" + name + "'", line);
    auto e = node(ExprKind::Filter, line);
    e->name = name;
    e->args.push_back(std::move(n));
    if (is_op("(")) parse_call_args(*e);
    n = std::move(e);
  }
  return n;
}

ExprPtr Parser::parse_test(ExprPtr n) {
  const int line = next().line;  // 'is'
  bool negated = skip_name("not");
  std::string name = expect_name();
  if (is_op(".")) fail("unsupported dotted test name", line);
  if (!is_test(name)) fail("unsupported test 'is " + name + "'", line);
  auto e = node(ExprKind::Test, line);
  e->name = name;
  e->args.push_back(std::move(n));
  if (is_op("(")) {
    parse_call_args(*e);
  } else if ((cur().type == Tok::Name || cur().type == Tok::String || cur().type == Tok::Int ||
              cur().type == Tok::Float || is_op("(") || is_op("[") || is_op("{")) &&
             !is_name("else") && !is_name("or") && !is_name("and")) {
    if (is_name("is")) fail("you cannot chain multiple tests with is", cur().line);
    e->args.push_back(parse_postfix(parse_primary()));  // `x is divisibleby 3`, `x is sameas none`
  }
  if (!negated) return e;
  auto no = node(ExprKind::Not, line);
  no->args.push_back(std::move(e));
  return no;
}

}  // namespace zi::tok::jinja
