// Names of the options' enums (device, dtype, offload tier, ...) in one table per enum, so that YAML keys, flags,
// worker.proto, logs and errors spell them the same way. A table is a constexpr array of {value, name}.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "engine/core/status.h"

namespace zi {

template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

// "auto|cpu|cuda": the choices, in table order.
template <typename E, size_t N>
std::string enum_choices(const std::array<EnumName<E>, N>& names, std::string_view sep = "|") {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += sep;
    out += n.name;
  }
  return out;
}

// The name of `value` ("?" when the table lacks it: a programming error, never user input).
template <typename E, size_t N>
std::string_view enum_name(E value, const std::array<EnumName<E>, N>& names) {
  for (const auto& n : names)
    if (n.value == value) return n.name;
  return "?";
}

// `text` as one of the table's names (exact spelling); InvalidArgument otherwise, e.g.
// "must be one of auto|cpu|cuda, got 'gpu'". The caller prefixes the key or flag.
template <typename E, size_t N>
StatusOr<E> parse_enum(std::string_view text, const std::array<EnumName<E>, N>& names) {
  for (const auto& n : names)
    if (n.name == text) return n.value;
  return absl::InvalidArgumentError(
      absl::StrCat("must be one of ", enum_choices(names), ", got '", std::string(text), "'"));
}

}  // namespace zi
