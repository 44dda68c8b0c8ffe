// Fuzz target: the YAML deployment file of `zeroinfer serve` (server/config/config.h parse_config), plus its
// size and HOST:PORT value parsers on the input's first line.
// Promises checked on an accepted file: model.path is set (and resolved under the base folder when relative),
// every bounded key is within the bounds config/README.md documents, every knob's value as printed
// (Knob::get, what --print-options and the reload diff show) reads back to itself, and apply_flags() accepts
// what parse_config accepted.
#include <cstdint>
#include <string>

#include "engine/core/size.h"
#include "server/config/config.h"
#include "server/config/knobs.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zi::server;
  const std::string_view text = zi::fuzz::as_text(data, size);

  const std::string_view line = text.substr(0, std::min(text.find('\n'), text.size()));
  if (auto bytes = zi::parse_size(line, "line"); bytes.ok()) {
    // The bytes, written out (as the reload diff and --print-options print a size), read back the same.
    auto again = zi::parse_size(std::to_string(*bytes), "again");
    FUZZ_CHECK(again.ok() && *again == *bytes, "size %llu does not read back", (unsigned long long)*bytes);
  } else {
    FUZZ_CHECK(bytes.status().message().substr(0, 6) == "line: ", "size error does not name what: %s",
               bytes.status().ToString().c_str());
  }
  if (auto hp = parse_host_port(line); hp.ok()) FUZZ_CHECK(hp->host.find(':') == std::string::npos || line[0] == '[', "host");

  auto cfg = parse_config(text, "fuzz.yaml", "/base");
  if (!cfg.ok()) {
    FUZZ_CHECK(cfg.status().message().substr(0, 9) == "fuzz.yaml", "error does not name the file: %s",
               cfg.status().ToString().c_str());
    return 0;
  }
  const ServeConfig& c = *cfg;
  const zi::EngineOptions& e = c.engine;
  FUZZ_CHECK(!e.model_dir.empty(), "model.path accepted empty");
  FUZZ_CHECK(e.model_dir[0] == '/', "model.path %s not resolved against the base folder", e.model_dir.c_str());
  FUZZ_CHECK(zi::enum_name(e.dtype, zi::kComputeDtypeNames) != "?", "dtype %d", static_cast<int>(e.dtype));
  FUZZ_CHECK(zi::enum_name(e.device, zi::kDeviceNames) != "?", "device %d", static_cast<int>(e.device));
  FUZZ_CHECK(zi::enum_name(e.offload_tier, zi::kOffloadTierNames) != "?", "offload tier %d",
             static_cast<int>(e.offload_tier));
  FUZZ_CHECK(zi::enum_name(e.kv_offload_attention, zi::kKvOffloadAttentionNames) != "?", "kv offload attention %d",
             static_cast<int>(e.kv_offload_attention));
  FUZZ_CHECK(e.max_batch_size >= 1 && e.max_batch_size <= 1024, "max_batch_size %u", e.max_batch_size);
  FUZZ_CHECK(e.world_size >= 1 && e.world_size <= 64, "num_gpus %u", e.world_size);
  FUZZ_CHECK(e.quant_bits == 4 || e.quant_bits == 8 || e.quant_bits == 16, "quant_bits %u", e.quant_bits);
  FUZZ_CHECK(e.quant_group_size >= 1, "quant_group_size 0");
  FUZZ_CHECK(e.aio_block_size > 0 && e.aio_block_size % 4096 == 0, "aio.block_size %llu",
             (unsigned long long)e.aio_block_size);
  FUZZ_CHECK(e.kv_block_size >= 1, "kv_cache.block_size 0");
  FUZZ_CHECK(c.shutdown_grace_seconds >= 0 && c.shutdown_grace_seconds == c.shutdown_grace_seconds, "grace");
  FUZZ_CHECK(c.heartbeat_timeout_seconds >= 1 && c.heartbeat_timeout_seconds <= 86400, "heartbeat timeout");
  FUZZ_CHECK(parse_host_port(c.listen).ok() && parse_host_port(c.metrics_listen).ok(), "listen addresses");
  FUZZ_CHECK(diff_configs(c, c).empty(), "a config differs from itself");

  // Every knob's printed value is accepted by its own reader and prints the same again.
  for (const Knob& k : knobs()) {
    ServeConfig copy = c;
    const std::string printed = k.get(c);
    zi::Status st = k.set(copy, printed, k.key, /*base_dir=*/"");
    FUZZ_CHECK(st.ok(), "%s: its printed value '%s' is refused: %s", k.key.c_str(), printed.c_str(),
               st.ToString().c_str());
    FUZZ_CHECK(k.get(copy) == printed, "%s: '%s' reads back as '%s'", k.key.c_str(), printed.c_str(),
               k.get(copy).c_str());
  }
  ServeConfig copy = c;
  FUZZ_CHECK(apply_flags(FlagValues{}, &copy).ok(), "no flags refused");
  FUZZ_CHECK(diff_configs(c, copy).empty(), "no flags changed the config");
  return 0;
}
