#include "engine/core/size.h"

#include <cctype>
#include <charconv>
#include <cmath>

namespace zi {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Bytes per unit, by lower-cased unit.
double unit_bytes(const std::string& unit) {
  struct Unit {
    const char* name;
    double bytes;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},         {"b", 1},
      {"k", 0x1p10},   {"kib", 0x1p10}, {"kb", 1e3},
      {"m", 0x1p20},   {"mib", 0x1p20}, {"mb", 1e6},
      {"g", 0x1p30},   {"gib", 0x1p30}, {"gb", 1e9},
      {"t", 0x1p40},   {"tib", 0x1p40}, {"tb", 1e12}};
  for (const Unit& u : kUnits)
    if (unit == u.name) return u.bytes;
  return 0;
}

}  // namespace

StatusOr<uint64_t> parse_size(std::string_view text, std::string_view what) {
  const std::string_view s = trim(text);
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": ", std::string(why), ", got '", std::string(text), "'"));
  };
  // A plain byte count is read exactly (a double would round past 2^53).
  uint64_t exact = 0;
  if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), exact); ec == std::errc() && p == s.data() + s.size())
    return exact;
  if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), exact); ec == std::errc::result_out_of_range)
    return bad("is larger than 2^64 - 1 bytes");
  size_t digits = 0;
  while (digits < s.size() && (std::isdigit(static_cast<unsigned char>(s[digits])) || s[digits] == '.')) ++digits;
  double number = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + digits, number);
  if (digits == 0 || ec != std::errc() || p != s.data() + digits)
    return bad("must be a size such as 2GiB, 512MiB, 1.5GB or 1048576");
  std::string unit(trim(s.substr(digits)));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const double per = unit_bytes(unit);
  if (per == 0) return bad("unknown size unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, in any case)");
  const double bytes = number * per;
  if (!std::isfinite(bytes) || bytes >= 0x1p64) return bad("is larger than 2^64 - 1 bytes");
  if (bytes != std::floor(bytes)) return bad("is not a whole number of bytes");
  return static_cast<uint64_t>(bytes);
}

std::string format_bytes(uint64_t b) {
  const double x = static_cast<double>(b);
  if (b >= (uint64_t{1} << 30)) return absl::StrFormat("%.2f GiB", x / (1 << 30));
  if (b >= (uint64_t{1} << 20)) return absl::StrFormat("%.1f MiB", x / (1 << 20));
  if (b >= (uint64_t{1} << 10)) return absl::StrFormat("%.1f KiB", x / (1 << 10));
  return absl::StrFormat("%d B", b);
}

}  // namespace zi
