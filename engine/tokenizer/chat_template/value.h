// A template value with Python's data model, as Jinja sees it: undefined, None, bool, int, float, str, list
// (also tuples and the generators that select/map/items return), dict (insertion-ordered, string keys),
// namespace() objects and callables (builtin functions and bound methods such as `content.strip`).
// Containers are shared and immutable (the sandbox Jinja runs in forbids mutating them), so copies are cheap;
// a namespace is shared and mutable, as `{% set ns.x = ... %}` needs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace zi::tok::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;

enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };
// Which Python sequence a List-kind value is: they print, measure and test differently.
enum class Seq : uint8_t { List, Tuple, Generator };

struct Value {
  Kind kind = Kind::Undefined;
  Seq seq = Seq::List;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::shared_ptr<const std::string> s;  // String; Callable: its name; Undefined: what was missing (may be null)
  std::shared_ptr<const List> list;
  std::shared_ptr<const Dict> dict;
  std::shared_ptr<Dict> ns;              // Namespace
  std::shared_ptr<const Value> self;     // Callable: the bound receiver, null for a global function

  static Value undefined(std::string hint = "");
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value floating(double v);
  static Value string(std::string v);
  static Value make_list(List v, Seq seq = Seq::List);
  static Value make_dict(Dict v);
  static Value make_namespace(Dict v);
  static Value callable(std::string name, const Value* self = nullptr);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  const std::string& str() const { return *s; }
  // Dict / namespace member, or nullptr.
  const Value* find(std::string_view key) const;
};

// Python's type name, for error messages ("str", "NoneType", "list", ...).
std::string type_name(const Value& v);
// The message an undefined value fails with when used ("'x' is undefined").
std::string undefined_message(const Value& v);
[[noreturn]] void fail_undefined(const Value& v);

// str(v) as Jinja prints it ({{ v }}, ~, |string, |join): undefined is "", None "None", floats Python's repr.
std::string to_str(const Value& v);
std::string repr(const Value& v);
std::string format_float(double d);
bool truthy(const Value& v);

Value from_json(const nlohmann::ordered_json& j);

}  // namespace zi::tok::jinja
