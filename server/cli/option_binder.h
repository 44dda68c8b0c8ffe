// The one command-line binder: serve, generate, bench, plan and convert take their setting flags from the knob
// table (server/config/knobs.h), so a flag is spelled, parsed, validated and named in errors the same way by every
// command that has it, and means what its YAML key means. Also --cpu-offload / --disk-offload (offload.tier) and
// --print-options.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/core/status.h"
#include "server/config/config.h"

namespace zi::cli {

class OptionBinder {
 public:
  // Adds to `cmd` the flag of every knob whose row lists `command`. The binder must outlive cmd's parsing (keep it
  // beside the command's other flags).
  OptionBinder(CLI::App* cmd, server::Command command);
  OptionBinder(const OptionBinder&) = delete;
  OptionBinder& operator=(const OptionBinder&) = delete;

  // The flags given, in table order (--cpu-offload / --disk-offload as offload.tier).
  StatusOr<server::FlagValues> values() const;
  // Applies them over `config` (YAML keys or defaults), then fills derived defaults; errors name the flag.
  Status apply(server::ServeConfig* config) const;
  // Whether the flag of `key` was given.
  bool given(std::string_view key) const;
  // --print-options: print the engine options (as JSON, keys as in YAML) instead of running.
  bool print_requested() const { return print_; }

 private:
  struct Slot {
    const server::Knob* knob = nullptr;
    std::optional<std::string> text;
  };
  std::vector<Slot> slots_;  // sized once: CLI11 holds pointers into it
  bool cpu_offload_ = false;
  bool disk_offload_ = false;
  bool print_ = false;
};

// The engine knobs of `config` as one JSON object {"model.dtype": "auto", ...} (what --print-options prints).
std::string engine_options_json(const server::ServeConfig& config);

}  // namespace zi::cli
