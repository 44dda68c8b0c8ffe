#include "engine/runtime/host_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace zi {

uint64_t host_memory_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream ss(line.substr(13));
    uint64_t kib = 0;
    ss >> kib;  // "MemAvailable:   123456 kB"
    return kib * 1024;
  }
  return 0;
}

uint64_t resolve_host_limit(uint64_t limit) { return limit > 0 ? limit : host_memory_available(); }

}  // namespace zi
