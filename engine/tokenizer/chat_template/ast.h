// The parsed template: statements and expressions, one node type each with a kind tag. The layout of `args`
// per kind is fixed by parser.cc (see the comment on each ExprKind).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/chat_template/value.h"

namespace zi::tok::jinja {

enum class ExprKind : uint8_t {
  Const,     // constant
  Name,      // name
  List,      // args: items
  Tuple,     // args: items
  Dict,      // args: key0, value0, key1, value1, ...
  Getattr,   // args[0].name
  Getitem,   // args[0][args[1]]
  Slice,     // args[0][args[1]:args[2]:args[3]], each bound may be null
  Call,      // args[0](args[1..], kwargs)
  Filter,    // args[0] | name(args[1..], kwargs)
  Test,      // args[0] is name(args[1..], kwargs)
  Neg,       // -args[0]
  Pos,       // +args[0]
  Not,       // not args[0]
  Binary,    // args[0] name args[1], name one of + - * / // % **
  Compare,   // args[0] ops[0] args[1] ops[1] args[2] ..., ops: == != < <= > >= in notin
  And,       // args[0] and args[1]
  Or,        // args[0] or args[1]
  CondExpr,  // args[1] if args[0] else args[2] (args[2] may be null)
  Concat,    // args[0] ~ args[1] ~ ...
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::Const;
  int line = 0;
  Value constant;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

enum class StmtKind : uint8_t {
  Text,      // text
  Output,    // {{ expr }}
  If,        // branches: (condition, body)..., the else branch has a null condition
  For,       // for targets in expr [if cond]: body [else: else_body]
  Set,       // set targets = expr (several targets: unpacking)
  SetBlock,  // set targets[0] %}body{% endset
  SetAttr,   // set targets[0].targets[1] = expr (a namespace attribute)
  Break,
  Continue,
  Block,     // body run in place ({% generation %}, which transformers renders as its body)
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind = StmtKind::Text;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
};

}  // namespace zi::tok::jinja
