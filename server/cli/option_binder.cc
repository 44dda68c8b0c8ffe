#include "server/cli/option_binder.h"

#include <nlohmann/json.hpp>

namespace zi::cli {

using server::Knob;

OptionBinder::OptionBinder(CLI::App* cmd, server::Command command) {
  const auto& table = server::knobs();
  slots_.resize(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const Knob& k = table[i];
    slots_[i].knob = &k;
    if (!(k.commands & command)) continue;
    const std::string help = absl::StrCat(k.help, " (", k.key, ")");
    std::optional<std::string>* text = &slots_[i].text;
    if (k.bare) {
      // A switch: bare = true, or an explicit value (--kv-offload=false) read like its YAML key.
      cmd->add_option(k.flag, *text, help)->expected(0, 1)->default_str("true")->type_name("[true|false]");
    } else {
      cmd->add_option(k.flag, *text, help)->type_name("VALUE");
    }
  }
  if (command != server::kConvert) {
    cmd->add_flag("--cpu-offload", cpu_offload_, "Stream weights from CPU memory (offload.tier: cpu)");
    cmd->add_flag("--disk-offload", disk_offload_, "Stream weights from NVMe files (offload.tier: nvme)");
  }
  cmd->add_flag("--print-options", print_,
                  "Print the engine options the config and flags resolve to (JSON, keys as in YAML) and exit");
}

StatusOr<server::FlagValues> OptionBinder::values() const {
  if (cpu_offload_ && disk_offload_)
    return absl::InvalidArgumentError("--cpu-offload and --disk-offload exclude each other");
  server::FlagValues out;
  const Knob* tier = server::find_knob("offload.tier");
  if (cpu_offload_ || disk_offload_) {
    if (given("offload.tier"))
      return absl::InvalidArgumentError(absl::StrCat(cpu_offload_ ? "--cpu-offload" : "--disk-offload",
                                                     " and --offload-tier exclude each other"));
    out.emplace_back(tier, cpu_offload_ ? "cpu" : "nvme");
  }
  for (const Slot& s : slots_)
    if (s.text) out.emplace_back(s.knob, *s.text == "" ? "true" : *s.text);
  return out;
}

Status OptionBinder::apply(server::ServeConfig* config) const {
  ZI_ASSIGN_OR_RETURN(server::FlagValues v, values());
  ZI_RETURN_IF_ERROR(server::apply_flags(v, config));
  server::finish_config(config);
  return absl::OkStatus();
}

bool OptionBinder::given(std::string_view key) const {
  for (const Slot& s : slots_)
    if (s.knob->key == key) return s.text.has_value();
  return false;
}

std::string engine_options_json(const server::ServeConfig& config) {
  nlohmann::ordered_json j;
  for (const Knob& k : server::knobs())
    if (k.engine) j[k.key] = k.get(config);
  return j.dump();
}

}  // namespace zi::cli
