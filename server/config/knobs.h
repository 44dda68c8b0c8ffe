// Every setting of a deployment in one table: its YAML key, its command-line flag, the commands that take the flag,
// how its text is read and printed, and whether SIGHUP applies it without a restart. The YAML reader
// (config.cc), the flag binder (server/cli/option_binder.h), the reload diff and `--print-options` all walk this
// table, so a value is parsed, validated and named the same way wherever it comes from.
//
// Adding a knob (docs/DESIGN.md "Adding a knob"): a field in EngineOptions (engine) or ServeConfig (serving), one
// row in knobs.cc, the key in config/README.md, a worker.proto field when workers need it, a row in
// tests/integration/options_test.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/status.h"

namespace zi::server {

struct ServeConfig;

// The subcommands whose flags the table gives (a bit set).
enum Command : uint32_t {
  kServe = 1u << 0,
  kGenerate = 1u << 1,
  kBench = 1u << 2,
  kPlan = 1u << 3,
  kConvert = 1u << 4,
};

struct Knob {
  std::string key;          // YAML key path, e.g. "offload.gpu_weights_budget"
  std::string flag;         // "--gpu-weights-budget" ("" = YAML only); spelled with '-' ('_' is accepted too)
  uint32_t commands = 0;    // Command bits whose command line has the flag
  std::string help;         // flag help, ending with the choices or range
  bool engine = false;      // an EngineOptions field: workers see it; `--print-options` prints it
  bool reloadable = false;  // SIGHUP applies it without a restart
  bool bare = false;        // a switch: the flag alone means true (--kv-offload), or takes a value (--kv-offload=false)
  // Reads `text` into the config. `what` names the key or flag in errors ("test.yaml: kv_cache.max_bytes" or
  // "--kv-cache-bytes"); `base_dir` resolves a relative path (YAML: the file's folder; flags: "" = as given).
  std::function<Status(ServeConfig&, std::string_view text, const std::string& what, const std::string& base_dir)>
      set;
  std::function<std::string(const ServeConfig&)> get;  // the value as YAML would spell it
};

// Every knob, in config/README.md's key order.
const std::vector<Knob>& knobs();
// The knob with this key; null when there is none.
const Knob* find_knob(std::string_view key);

// Flags given on a command line: the knob and the text, in the order given. Applied over YAML keys (serve) or
// over the defaults (generate, bench, plan, convert); errors name the flag.
using FlagValues = std::vector<std::pair<const Knob*, std::string>>;
Status apply_flags(const FlagValues& flags, ServeConfig* config);

}  // namespace zi::server
