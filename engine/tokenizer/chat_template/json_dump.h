// Python's json.dumps, which transformers' `tojson` filter calls (json.dumps(x, ensure_ascii=False, indent=...,
// separators=..., sort_keys=...)): not Jinja's own tojson, so no HTML escaping and non-ASCII kept by default.
#pragma once

#include <optional>
#include <string>

#include "engine/tokenizer/chat_template/value.h"

namespace zi::tok::jinja {

struct JsonDumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // json.dumps(indent=n) is n spaces; absent: one line
  std::optional<std::pair<std::string, std::string>> separators;  // (item, key); default by indent as Python's
  bool sort_keys = false;
};

std::string json_dumps(const Value& v, const JsonDumpOptions& opt);

}  // namespace zi::tok::jinja
