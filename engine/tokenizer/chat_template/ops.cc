#include "engine/tokenizer/chat_template/ops.h"

#include <cmath>
#include <string>

#include "engine/tokenizer/chat_template/access.h"
#include "engine/tokenizer/chat_template/error.h"

namespace zi::tok::jinja {
namespace {

bool is_int(const Value& v) { return v.kind == Kind::Int || v.kind == Kind::Bool; }
int64_t as_int(const Value& v) { return v.kind == Kind::Bool ? v.b : v.i; }
double as_float(const Value& v) { return v.kind == Kind::Float ? v.f : static_cast<double>(as_int(v)); }

[[noreturn]] void unsupported(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  fail("TypeError: unsupported operand type(s) for " + std::string(op) + ": '" + type_name(a) + "' and '" +
       type_name(b) + "'");
}

// Python ints are unbounded; the renderer's are 64-bit and refuse to overflow.
[[noreturn]] void overflow() { fail("OverflowError: integer result out of the 64-bit range the renderer supports"); }

template <typename Op>
Value checked(Op op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (op(a, b, &r)) overflow();
  return Value::integer(r);
}
bool add(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

Value repeat(const Value& seq, int64_t times) {
  if (times < 0) times = 0;
  size_t unit = seq.kind == Kind::String ? seq.str().size() : seq.list->size();
  if (unit && static_cast<uint64_t>(times) > kMaxBuiltSize / unit) fail("MemoryError: repetition result too large");
  if (seq.kind == Kind::String) {
    std::string out;
    for (int64_t k = 0; k < times; ++k) out += seq.str();
    return Value::string(std::move(out));
  }
  List out;
  for (int64_t k = 0; k < times; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::make_list(std::move(out), seq.seq);
}

// Python's float floor division and modulo (float_divmod).
void float_divmod(double a, double b, double* div, double* mod) {
  if (b == 0) fail("ZeroDivisionError: float floor division by zero");
  double m = std::fmod(a, b);
  double d = (a - m) / b;
  if (m != 0) {
    if ((b < 0) != (m < 0)) {
      m += b;
      d -= 1.0;
    }
  } else {
    m = std::copysign(0.0, b);
  }
  double fd;
  if (d != 0) {
    fd = std::floor(d);
    if (d - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, a / b);
  }
  *div = fd;
  *mod = m;
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (is_int(a) && is_int(b)) return as_int(a) < as_int(b);
    return as_float(a) < as_float(b);
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 byte order is code point order
  if (a.kind == Kind::List && b.kind == Kind::List && a.seq == b.seq && a.seq != Seq::Generator) {
    const List &x = *a.list, &y = *b.list;
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (!equals(x[k], y[k])) return less(x[k], y[k]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  fail("TypeError: '<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Kind::Undefined: return false;
    case Kind::String:
      if (!item.is_string())
        fail("TypeError: 'in <string>' requires string as left operand, not " + type_name(item));
      return container.str().find(item.str()) != std::string::npos;
    case Kind::List:
      for (const Value& v : *container.list)
        if (equals(v, item)) return true;
      return false;
    case Kind::Dict: return item.is_string() && container.find(item.str()) != nullptr;
    default: fail("TypeError: argument of type '" + type_name(container) + "' is not iterable");
  }
}

}  // namespace

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (is_int(a) && is_int(b)) return as_int(a) == as_int(b);
    return as_float(a) == as_float(b);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.str() == b.str();
    case Kind::List: {
      if (a.seq != b.seq || a.seq == Seq::Generator) return a.list == b.list && a.seq == b.seq;
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k])) return false;
      return true;
    }
    case Kind::Dict: {
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* o = b.find(k);
        if (!o || !equals(v, *o)) return false;
      }
      return true;
    }
    case Kind::Namespace: return a.ns == b.ns;
    case Kind::Callable: return a.s == b.s && a.self == b.self;
    default: return false;
  }
}

bool compare(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  if (op == "<") return less(a, b);
  if (op == ">") return less(b, a);
  if (op == "<=") return less(a, b) || equals(a, b);
  if (op == ">=") return less(b, a) || equals(a, b);
  if (op == "in") return contains(b, a);
  if (op == "notin") return !contains(b, a);
  fail("unknown comparison " + std::string(op));
}

Value negate(const Value& v, bool minus) {
  if (is_int(v)) {
    if (!minus) return Value::integer(as_int(v));
    return checked(sub, 0, as_int(v));
  }
  if (v.kind == Kind::Float) return Value::floating(minus ? -v.f : v.f);
  if (v.is_undefined()) fail_undefined(v);
  fail(std::string("TypeError: bad operand type for unary ") + (minus ? "-" : "+") + ": '" + type_name(v) + "'");
}

Value binary_op(std::string_view op, const Value& a, const Value& b) {
  const bool ints = is_int(a) && is_int(b), nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) return checked(add, as_int(a), as_int(b));
    if (nums) return Value::floating(as_float(a) + as_float(b));
    if (a.is_string() && b.is_string()) {
      if (a.str().size() + b.str().size() > kMaxBuiltSize) fail("MemoryError: string too large");
      return Value::string(a.str() + b.str());
    }
    if (a.kind == Kind::List && b.kind == Kind::List && a.seq == b.seq && a.seq != Seq::Generator) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(out), a.seq);
    }
    if (a.is_string() && !b.is_undefined() && !a.is_undefined())
      fail("TypeError: can only concatenate str (not \"" + type_name(b) + "\") to str");
    unsupported(op, a, b);
  }
  if (op == "-") {
    if (ints) return checked(sub, as_int(a), as_int(b));
    if (nums) return Value::floating(as_float(a) - as_float(b));
    unsupported(op, a, b);
  }
  if (op == "*") {
    if (ints) return checked(mul, as_int(a), as_int(b));
    if (nums) return Value::floating(as_float(a) * as_float(b));
    bool seq_a = a.is_string() || (a.kind == Kind::List && a.seq != Seq::Generator);
    bool seq_b = b.is_string() || (b.kind == Kind::List && b.seq != Seq::Generator);
    if (seq_a && is_int(b)) return repeat(a, as_int(b));
    if (seq_b && is_int(a)) return repeat(b, as_int(a));
    unsupported(op, a, b);
  }
  if (op == "/") {
    if (!nums) unsupported(op, a, b);
    if (as_float(b) == 0) fail("ZeroDivisionError: division by zero");
    return Value::floating(as_float(a) / as_float(b));
  }
  if (op == "//" || op == "%") {
    if (a.is_string() && op == "%") fail("unsupported printf-style string formatting with '%'");
    if (!nums) unsupported(op, a, b);
    if (ints) {
      int64_t x = as_int(a), y = as_int(b);
      if (y == 0) fail("ZeroDivisionError: integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) fail("OverflowError: integer result out of range");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        m += y;
        --q;
      }
      return Value::integer(op == "//" ? q : m);
    }
    double d, m;
    float_divmod(as_float(a), as_float(b), &d, &m);
    return Value::floating(op == "//" ? d : m);
  }
  if (op == "**") {
    if (!nums) unsupported(op, a, b);
    if (ints && as_int(b) >= 0) {
      int64_t base = as_int(a), e = as_int(b), acc = 1;
      while (e > 0) {
        if ((e & 1) && __builtin_mul_overflow(acc, base, &acc)) overflow();
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) overflow();
      }
      return Value::integer(acc);
    }
    double x = as_float(a), y = as_float(b);
    if (x == 0 && y < 0) fail("ZeroDivisionError: 0.0 cannot be raised to a negative power");
    if (x < 0 && std::floor(y) != y) fail("unsupported complex result of '**'");
    return Value::floating(std::pow(x, y));
  }
  fail("unknown operator " + std::string(op));
}

}  // namespace zi::tok::jinja
