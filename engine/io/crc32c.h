// CRC-32C (Castagnoli) of byte ranges: the offload store's per-partition checksum. Uses the SSE4.2 crc32
// instruction when the CPU has it (several GB/s per core), a table otherwise. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace zi {

// Extends `crc` (0 for a fresh checksum) with n bytes.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace zi
