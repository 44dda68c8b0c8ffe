#include "engine/core/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace zi {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::INFO)};
const char* kNames[] = {"D", "I", "W", "E"};
}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

bool parse_log_level(std::string_view name, LogLevel* out) {
  if (name == "debug") *out = LogLevel::DEBUG;
  else if (name == "info") *out = LogLevel::INFO;
  else if (name == "warning" || name == "warn") *out = LogLevel::WARNING;
  else if (name == "error") *out = LogLevel::ERROR;
  else return false;
  return true;
}

LogLine::LogLine(LogLevel level, const char* file, int line) : level_(level) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  std::string_view f(file);
  if (auto p = f.rfind('/'); p != std::string_view::npos) f.remove_prefix(p + 1);
  os_ << kNames[static_cast<int>(level)] << ' ' << buf << '.' << (ms < 100 ? (ms < 10 ? "00" : "0") : "") << ms
      << ' ' << getpid() << ' ' << f << ':' << line << "] ";
}

LogLine::~LogLine() {
  os_ << '\n';
  std::string s = os_.str();
  std::fwrite(s.data(), 1, s.size(), stderr);
}

}  // namespace zi
