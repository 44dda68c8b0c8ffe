// Reading values as Jinja's sandboxed environment does: attribute and item access (each falling back to the
// other, missing ones giving undefined), slicing, iteration and len().
#pragma once

#include <string>

#include "engine/tokenizer/chat_template/value.h"

namespace zi::tok::jinja {

// obj.name: a str/dict/list method first (as Python's getattr), then the dict key or namespace attribute.
Value get_attr(const Value& obj, const std::string& name);
// obj[key]: the item first, then (for a string key) the attribute.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step]; a null bound is left out.
Value get_slice(const Value& obj, const Value* start, const Value* stop, const Value* step);
// The items `for` walks: a list's items, a string's characters, a dict's keys, nothing for undefined.
List iterate(const Value& v);
// len(v): code points of a string, items of a list or dict, 0 for undefined.
int64_t length(const Value& v);

}  // namespace zi::tok::jinja
