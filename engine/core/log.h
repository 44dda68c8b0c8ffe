// Minimal leveled logging to stderr (stdout carries only command results).
// Usage: ZI_LOG(INFO) << "loaded " << n << " layers";   Thread-safe: each line is written with one fwrite.
#pragma once

#include <sstream>
#include <string_view>

namespace zi {

enum class LogLevel { DEBUG = 0, INFO = 1, WARNING = 2, ERROR = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug|info|warning|error"; false when unknown.
bool parse_log_level(std::string_view name, LogLevel* out);

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  std::ostream& stream() { return os_; }

 private:
  LogLevel level_;
  std::ostringstream os_;
};

}  // namespace zi

#define ZI_LOG(level)                                                   \
  if (::zi::LogLevel::level < ::zi::log_level()) {                      \
  } else                                                                \
    ::zi::LogLine(::zi::LogLevel::level, __FILE__, __LINE__).stream()
