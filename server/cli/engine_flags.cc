#include "server/cli/engine_flags.h"

namespace zi::cli {

void add_engine_flags(CLI::App* cmd, EngineFlags* f) {
  cmd->add_flag("--cpu-offload", f->cpu_offload, "Stream weights from CPU memory (offload.tier: cpu)");
  cmd->add_flag("--disk-offload", f->disk_offload, "Stream weights from NVMe files (offload.tier: nvme)");
  cmd->add_option("--offload-dir", f->offload_dir, "Directory of the NVMe offload store");
  cmd->add_option("--pin-memory", f->pin_memory, "Pin host weight buffers (0|1; bare = 1)")
      ->expected(0, 1)
      ->default_str("1")
      ->check(CLI::IsMember({0, 1}));
  cmd->add_option("--gpu-weights-budget", f->gpu_weights_budget, "Cap on resident weight bytes per GPU, e.g. 2GiB");
  cmd->add_option("--quant-bits", f->quant_bits, "Weight quantization: 4, 8 or 16 (off)")
      ->check(CLI::IsMember({4, 8, 16}));
  cmd->add_option("--quant-group-size", f->quant_group_size, "Weights per quantization group")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--kv-offload", f->kv_offload, "Keep the KV cache in pinned CPU memory");
  cmd->add_option("--num-gpus", f->num_gpus, "Ranks (GPU workers, or CPU workers on the CPU backend)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--device", f->device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--max-context", f->max_context, "Tokens per sequence (0 = from config.json)")
      ->check(CLI::Range(0, 1 << 24));
}

}  // namespace zi::cli
