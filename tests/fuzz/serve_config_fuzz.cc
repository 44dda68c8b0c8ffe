// Fuzz target: the YAML deployment file of `zeroinfer serve` (server/config/config.h parse_config), plus its
// size and HOST:PORT value parsers on the input's first line.
// Promises checked on an accepted file: model.path is set (and resolved under the base folder when relative),
// every bounded key is within the bounds config/README.md documents, and engine_options() / apply_overrides()
// accept what parse_config accepted.
#include <cstdint>
#include <string>

#include "server/config/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zi::server;
  const std::string_view text = zi::fuzz::as_text(data, size);

  const std::string_view line = text.substr(0, std::min(text.find('\n'), text.size()));
  if (auto bytes = parse_size(line); bytes.ok()) FUZZ_CHECK(*bytes <= 18'000'000'000'000'000'000ull, "size");
  if (auto hp = parse_host_port(line); hp.ok()) FUZZ_CHECK(hp->host.find(':') == std::string::npos || line[0] == '[', "host");

  auto cfg = parse_config(text, "fuzz.yaml", "/base");
  if (!cfg.ok()) {
    FUZZ_CHECK(cfg.status().message().substr(0, 9) == "fuzz.yaml", "error does not name the file: %s",
               cfg.status().ToString().c_str());
    return 0;
  }
  const ServeConfig& c = *cfg;
  FUZZ_CHECK(!c.model_path.empty(), "model.path accepted empty");
  FUZZ_CHECK(c.model_path[0] == '/', "model.path %s not resolved against the base folder", c.model_path.c_str());
  FUZZ_CHECK(c.dtype == "auto" || c.dtype == "bfloat16" || c.dtype == "float16", "dtype %s", c.dtype.c_str());
  FUZZ_CHECK(c.device == "auto" || c.device == "cpu" || c.device == "cuda", "device %s", c.device.c_str());
  FUZZ_CHECK(c.max_batch_size >= 1, "max_batch_size 0");
  FUZZ_CHECK(c.num_gpus >= 1, "num_gpus 0");
  FUZZ_CHECK(c.quant_bits == 4 || c.quant_bits == 8 || c.quant_bits == 16, "quant_bits %u", c.quant_bits);
  FUZZ_CHECK(c.quant_group_size >= 1, "quant_group_size 0");
  FUZZ_CHECK(c.aio_block_size > 0 && c.aio_block_size % 4096 == 0, "aio.block_size %llu",
             (unsigned long long)c.aio_block_size);
  FUZZ_CHECK(c.shutdown_grace_seconds >= 0 && c.shutdown_grace_seconds == c.shutdown_grace_seconds, "grace");
  FUZZ_CHECK(parse_host_port(c.listen).ok() && parse_host_port(c.metrics_listen).ok(), "listen addresses");
  (void)engine_options(c);
  ServeConfig copy = c;
  FUZZ_CHECK(apply_overrides(ConfigOverrides{}, &copy).ok(), "no overrides refused");
  return 0;
}
