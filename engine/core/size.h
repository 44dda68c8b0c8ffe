// Byte sizes as people write them, for every flag and YAML key that takes one (--gpu-weights-budget,
// kv_cache.max_bytes, offload.aio.block_size, ...): one parser, so every command accepts the same spellings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/core/status.h"

namespace zi {

// "2GiB", "2gib", "2 G", "1.5GB", "512KiB", "4096" → bytes. Units in any case: B; K, KiB, M, MiB, G, GiB, T, TiB
// (binary); KB, MB, GB, TB (decimal). Decimals allowed when the result is a whole number of bytes.
// InvalidArgument "`what`: must be a size such as 2GiB, 512MiB or 1048576, got 'x'" (what = the flag or key).
StatusOr<uint64_t> parse_size(std::string_view text, std::string_view what);

// 1536 → "1.5 KiB"; for logs and reports.
std::string format_bytes(uint64_t bytes);

}  // namespace zi
