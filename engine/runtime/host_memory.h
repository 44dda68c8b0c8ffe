// Host memory the process may use: memory.host_limit when set, else MemAvailable (/proc/meminfo) at start — what
// can be allocated without swapping others out, not MemTotal.
#pragma once

#include <cstdint>

namespace zi {

// MemAvailable in bytes; 0 when /proc/meminfo cannot be read.
uint64_t host_memory_available();
// `limit` when > 0, else host_memory_available().
uint64_t resolve_host_limit(uint64_t limit);

}  // namespace zi
