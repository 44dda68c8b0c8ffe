#include "engine/tokenizer/chat_template/parser.h"

#include "engine/tokenizer/chat_template/parser_impl.h"

namespace zi::tok::jinja {
namespace {

// Tags Jinja knows that the subset leaves out, with why (the refusal message names them).
const char* refused_tag_reason(const std::string& name) {
  static const std::pair<const char*, const char*> kTags[] = {
      {"macro", "macros"},       {"call", "call blocks"},         {"filter", "filter blocks"},
      {"block", "blocks"},       {"extends", "template inheritance"}, {"include", "includes"},
      {"import", "imports"},     {"from", "imports"},             {"with", "with blocks"},
      {"autoescape", "autoescape blocks"}, {"do", "the do extension (not enabled by transformers)"},
      {"print", "print statements"}, {"trans", "i18n"},
  };
  for (const auto& [tag, why] : kTags)
    if (name == tag) return why;
  return nullptr;
}

}  // namespace

// Statements until a block tag whose name is in `end` (left as the current token, after its '{%').
Body Parser::subparse(const std::set<std::string>& end) {
  DepthGuard g(this);
  Body body;
  while (cur().type != Tok::Eof) {
    if (cur().type == Tok::Text) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::Text;
      s->line = cur().line;
      s->text = next().value;
      body.push_back(std::move(s));
    } else if (cur().type == Tok::VarBegin) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::Output;
      s->line = next().line;
      s->expr = parse_tuple(true, {});
      expect(Tok::VarEnd, "'}}'");
      body.push_back(std::move(s));
    } else if (cur().type == Tok::BlockBegin) {
      next();
      if (cur().type == Tok::Name && end.count(cur().value)) return body;
      body.push_back(parse_statement());
      expect(Tok::BlockEnd, "'%}'");
    } else {
      unexpected("template data or a tag");
    }
  }
  if (!end.empty()) {
    std::string names;
    for (const auto& e : end) names += (names.empty() ? "'" : " or '") + e + "'";
    fail("unexpected end of template, expected " + names, cur().line);
  }
  return body;
}

StmtPtr Parser::parse_statement() {
  if (cur().type != Tok::Name) unexpected("a tag name");
  const std::string tag = cur().value;
  const int line = cur().line;
  if (tag == "for") return parse_for();
  if (tag == "if") return parse_if();
  if (tag == "set") return parse_set();
  if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) fail("'" + tag + "' outside a for loop", line);
    next();
    auto s = std::make_unique<Stmt>();
    s->kind = tag == "break" ? StmtKind::Break : StmtKind::Continue;
    s->line = line;
    return s;
  }
  if (tag == "generation") {
    next();
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::Block;
    s->line = line;
    expect(Tok::BlockEnd, "'%}'");
    s->body = subparse({"endgeneration"});
    next();
    return s;
  }
  if (const char* why = refused_tag_reason(tag))
    fail("unsupported tag '" + tag + "' (" + why + " are outside the chat-template subset)", line);
  fail("unknown tag '" + tag + "'", line);
}

StmtPtr Parser::parse_for() {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::For;
  s->line = next().line;
  s->targets = parse_assign_targets();
  if (!skip_name("in")) unexpected("'in'");
  s->expr = parse_tuple(false, {"recursive"});
  if (skip_name("if")) s->cond = parse_expression(true);
  if (is_name("recursive")) fail("unsupported recursive for loop", cur().line);
  expect(Tok::BlockEnd, "'%}'");
  ++loop_depth_;
  s->body = subparse({"endfor", "else"});
  --loop_depth_;
  if (next().value == "else") {
    expect(Tok::BlockEnd, "'%}'");
    s->else_body = subparse({"endfor"});
    next();
  }
  return s;
}

StmtPtr Parser::parse_if() {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::If;
  s->line = next().line;
  while (true) {
    ExprPtr cond = parse_tuple(false, {});
    expect(Tok::BlockEnd, "'%}'");
    Body body = subparse({"elif", "else", "endif"});
    s->branches.emplace_back(std::move(cond), std::move(body));
    std::string tag = next().value;
    if (tag == "elif") continue;
    if (tag == "else") {
      expect(Tok::BlockEnd, "'%}'");
      s->branches.emplace_back(nullptr, subparse({"endif"}));
      next();
    }
    break;
  }
  return s;
}

StmtPtr Parser::parse_set() {
  auto s = std::make_unique<Stmt>();
  s->line = next().line;
  if (cur().type == Tok::Name && peek().type == Tok::Op && peek().value == ".") {
    s->kind = StmtKind::SetAttr;
    s->targets.push_back(next().value);
    next();
    s->targets.push_back(expect_name());
    expect_op("=");
    s->expr = parse_tuple(true, {});
    return s;
  }
  s->targets = parse_assign_targets();
  if (skip_op("=")) {
    s->kind = StmtKind::Set;
    s->expr = parse_tuple(true, {});
    return s;
  }
  if (is_op("|")) fail("unsupported filtered block set", cur().line);
  if (s->targets.size() != 1) unexpected("'='");
  s->kind = StmtKind::SetBlock;
  expect(Tok::BlockEnd, "'%}'");
  s->body = subparse({"endset"});
  next();
  return s;
}

// name | name, name, ... | (name, ...): what `for` and `set` assign to.
std::vector<std::string> Parser::parse_assign_targets() {
  std::vector<std::string> names;
  bool paren = skip_op("(");
  do {
    if (paren && is_op(")")) break;
    int line = cur().line;
    std::string n = expect_name();
    if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" || n == "None")
      fail("cannot assign to '" + n + "'", line);
    names.push_back(n);
  } while (skip_op(","));
  if (paren) expect_op(")");
  if (names.empty()) unexpected("a name");
  return names;
}

Body parse(std::vector<Token> tokens) { return Parser(std::move(tokens)).parse_template(); }

}  // namespace zi::tok::jinja
