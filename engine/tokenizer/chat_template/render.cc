#include "engine/tokenizer/chat_template/render.h"

#include "engine/tokenizer/chat_template/access.h"
#include "engine/tokenizer/chat_template/error.h"
#include "engine/tokenizer/chat_template/ops.h"

namespace zi::tok::jinja {
namespace {

enum class Flow { Normal, Break, Continue };

class Renderer {
 public:
  Renderer(Dict context, const Clock& now, uint64_t max_steps) : now_(now), max_steps_(max_steps) {
    frames_.push_back(std::move(context));  // the variables the caller passed
    frames_.emplace_back();                 // the template's own top-level `set`s
  }

  std::string run(const Body& body) {
    try {
      exec(body);
    } catch (TemplateError& e) {
      if (e.line == 0) e.line = line_;
      throw;
    }
    return std::move(out_);
  }

 private:
  void step() {
    if (++steps_ > max_steps_) fail("template too expensive to render (over " + std::to_string(max_steps_) + " steps)");
  }

  Value lookup(const std::string& name) const {
    for (auto f = frames_.rbegin(); f != frames_.rend(); ++f)
      for (const auto& [k, v] : *f)
        if (k == name) return v;
    if (is_global_function(name)) return Value::callable(name);
    return Value::undefined("'" + name + "' is undefined");
  }

  void assign(const std::string& name, Value v) {
    Dict& f = frames_.back();
    for (auto& kv : f)
      if (kv.first == name) {
        kv.second = std::move(v);
        return;
      }
    f.emplace_back(name, std::move(v));
  }

  // Binds for/set targets: one name takes the value, several unpack it.
  void bind(Dict& frame, const std::vector<std::string>& targets, const Value& v) {
    auto put = [&](const std::string& k, Value x) {
      for (auto& kv : frame)
        if (kv.first == k) {
          kv.second = std::move(x);
          return;
        }
      frame.emplace_back(k, std::move(x));
    };
    if (targets.size() == 1) {
      put(targets[0], v);
      return;
    }
    List items = iterate(v);
    if (items.size() != targets.size())
      fail("ValueError: cannot unpack " + std::to_string(items.size()) + " values into " +
           std::to_string(targets.size()) + " names");
    for (size_t k = 0; k < targets.size(); ++k) put(targets[k], items[k]);
  }

  Flow exec(const Body& body) {
    for (const StmtPtr& s : body) {
      Flow f = exec(*s);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  void emit(const std::string& s) {
    out_ += s;
    if (out_.size() > kMaxOutput) fail("rendered prompt over " + std::to_string(kMaxOutput) + " bytes");
  }

  Flow exec(const Stmt& s) {
    step();
    line_ = s.line;
    switch (s.kind) {
      case StmtKind::Text: emit(s.text); break;
      case StmtKind::Output: {
        Value v = eval(*s.expr);
        line_ = s.line;
        emit(to_str(v));
        break;
      }
      case StmtKind::If:
        for (const auto& [cond, body] : s.branches)
          if (!cond || truthy(eval(*cond))) return exec(body);
        break;
      case StmtKind::For: exec_for(s); break;
      case StmtKind::Set: {
        Value v = eval(*s.expr);
        line_ = s.line;
        bind(frames_.back(), s.targets, v);
        break;
      }
      case StmtKind::SetBlock: {
        std::string saved = std::move(out_);
        out_.clear();
        exec(s.body);
        std::string captured = std::move(out_);
        out_ = std::move(saved);
        assign(s.targets[0], Value::string(std::move(captured)));
        break;
      }
      case StmtKind::SetAttr: {
        Value obj = lookup(s.targets[0]);
        Value v = eval(*s.expr);
        line_ = s.line;
        if (obj.kind != Kind::Namespace) fail("TemplateRuntimeError: cannot assign attribute on non-namespace object");
        for (auto& kv : *obj.ns)
          if (kv.first == s.targets[1]) {
            kv.second = std::move(v);
            return Flow::Normal;
          }
        obj.ns->emplace_back(s.targets[1], std::move(v));
        break;
      }
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
      case StmtKind::Block: return exec(s.body);
    }
    return Flow::Normal;
  }

  void exec_for(const Stmt& s) {
    List items = iterate(eval(*s.expr));
    line_ = s.line;
    if (s.cond) {  // `for x in xs if cond`: loop.* counts only the items that pass
      List kept;
      for (const Value& item : items) {
        step();
        Dict frame;
        bind(frame, s.targets, item);
        frames_.push_back(std::move(frame));
        bool ok = truthy(eval(*s.cond));
        frames_.pop_back();
        if (ok) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec(s.else_body);
      return;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < n; ++k) {
      step();  // an iteration costs a step even when its body is empty
      Dict loop = {{"index", Value::integer(k + 1)},      {"index0", Value::integer(k)},
                   {"revindex", Value::integer(n - k)},   {"revindex0", Value::integer(n - k - 1)},
                   {"first", Value::boolean(k == 0)},     {"last", Value::boolean(k == n - 1)},
                   {"length", Value::integer(n)},         {"depth", Value::integer(1)},
                   {"depth0", Value::integer(0)}};
      if (k > 0) loop.emplace_back("previtem", items[k - 1]);
      if (k + 1 < n) loop.emplace_back("nextitem", items[k + 1]);
      Dict frame;
      bind(frame, s.targets, items[k]);
      frame.emplace_back("loop", Value::make_dict(std::move(loop)));
      frames_.push_back(std::move(frame));
      Flow f = exec(s.body);
      frames_.pop_back();
      if (f == Flow::Break) break;
    }
  }

  Args eval_args(const Expr& e, size_t first) {
    Args a;
    for (size_t k = first; k < e.args.size(); ++k) a.pos.push_back(eval(*e.args[k]));
    for (const auto& [name, x] : e.kwargs) a.kw.emplace_back(name, eval(*x));
    return a;
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.args[0];
    Value f = callee.kind == ExprKind::Getattr ? get_attr(eval(*callee.args[0]), callee.name) : lookup(callee.name);
    Args a = eval_args(e, 1);
    line_ = e.line;
    if (f.is_undefined()) fail_undefined(f);
    if (f.kind != Kind::Callable) fail("TypeError: '" + type_name(f) + "' object is not callable");
    return f.self ? call_method(*f.self, *f.s, a) : call_global(*f.s, a, now_);
  }

  Value eval(const Expr& e) {
    step();
    switch (e.kind) {
      case ExprKind::Const: return e.constant;
      case ExprKind::Name: return lookup(e.name);
      case ExprKind::List:
      case ExprKind::Tuple: {
        List items;
        for (const ExprPtr& x : e.args) items.push_back(eval(*x));
        return Value::make_list(std::move(items), e.kind == ExprKind::Tuple ? Seq::Tuple : Seq::List);
      }
      case ExprKind::Dict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          Value key = eval(*e.args[k]);
          Value v = eval(*e.args[k + 1]);
          line_ = e.line;
          if (!key.is_string()) fail("unsupported dict key of type " + type_name(key) + " (only str keys)");
          bool replaced = false;
          for (auto& kv : d)
            if (kv.first == key.str()) kv.second = v, replaced = true;
          if (!replaced) d.emplace_back(key.str(), std::move(v));
        }
        return Value::make_dict(std::move(d));
      }
      case ExprKind::Getattr: {
        Value o = eval(*e.args[0]);
        line_ = e.line;
        return get_attr(o, e.name);
      }
      case ExprKind::Getitem: {
        Value o = eval(*e.args[0]);
        Value k = eval(*e.args[1]);
        line_ = e.line;
        return get_item(o, k);
      }
      case ExprKind::Slice: {
        Value o = eval(*e.args[0]);
        Value b[3];
        for (int k = 0; k < 3; ++k)
          if (e.args[k + 1]) b[k] = eval(*e.args[k + 1]);
        line_ = e.line;
        return get_slice(o, e.args[1] ? &b[0] : nullptr, e.args[2] ? &b[1] : nullptr, e.args[3] ? &b[2] : nullptr);
      }
      case ExprKind::Call: return call(e);
      case ExprKind::Filter: {
        Value v = eval(*e.args[0]);
        Args a = eval_args(e, 1);
        line_ = e.line;
        return call_filter(e.name, v, a);
      }
      case ExprKind::Test: {
        Value v = eval(*e.args[0]);
        Args a = eval_args(e, 1);
        line_ = e.line;
        return Value::boolean(call_test(e.name, v, a));
      }
      case ExprKind::Neg:
      case ExprKind::Pos: {
        Value v = eval(*e.args[0]);
        line_ = e.line;
        return negate(v, e.kind == ExprKind::Neg);
      }
      case ExprKind::Not: return Value::boolean(!truthy(eval(*e.args[0])));
      case ExprKind::Binary: {
        Value a = eval(*e.args[0]);
        Value b = eval(*e.args[1]);
        line_ = e.line;
        return binary_op(e.name, a, b);
      }
      case ExprKind::Compare: {
        Value left = eval(*e.args[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k + 1]);
          line_ = e.line;
          if (!compare(e.ops[k], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case ExprKind::And: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? eval(*e.args[1]) : l;
      }
      case ExprKind::Or: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? l : eval(*e.args[1]);
      }
      case ExprKind::CondExpr:
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        if (e.args[2]) return eval(*e.args[2]);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      case ExprKind::Concat: {
        std::string s;
        for (const ExprPtr& x : e.args) {
          s += to_str(eval(*x));
          if (s.size() > kMaxBuiltSize) fail("MemoryError: string too large");
        }
        return Value::string(std::move(s));
      }
    }
    fail("unknown expression");
  }

  const Clock& now_;
  const uint64_t max_steps_;
  std::vector<Dict> frames_;
  std::string out_;
  int line_ = 0;
  uint64_t steps_ = 0;
};

}  // namespace

std::string render(const Body& body, Dict context, const Clock& now, uint64_t max_steps) {
  return Renderer(std::move(context), now, max_steps).run(body);
}

}  // namespace zi::tok::jinja
