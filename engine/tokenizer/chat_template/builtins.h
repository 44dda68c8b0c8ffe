// The filters, tests, methods and global functions of the subset: the names the parser accepts (anything else is
// refused when the template loads) and their implementations, each as Jinja 3.1 / Python 3 behave.
#pragma once

#include <ctime>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/chat_template/value.h"

namespace zi::tok::jinja {

struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;

  // The argument at position `index` or named `name`, or null.
  const Value* get(size_t index, std::string_view name) const;
  // Fails unless every argument is one of the `count` positional ones or named in `names`.
  void check(std::string_view fn, size_t count, std::initializer_list<std::string_view> names) const;
};

bool is_filter(std::string_view name);
bool is_test(std::string_view name);
bool is_method(std::string_view name);
bool is_global_function(std::string_view name);

Value call_filter(std::string_view name, const Value& v, const Args& a);
bool call_test(std::string_view name, const Value& v, const Args& a);
Value call_method(const Value& self, std::string_view name, const Args& a);

// The clock strftime_now reads (transformers: datetime.now(), local time); replaceable for tests.
using Clock = std::function<std::tm()>;
Value call_global(std::string_view name, const Args& a, const Clock& now);

}  // namespace zi::tok::jinja
