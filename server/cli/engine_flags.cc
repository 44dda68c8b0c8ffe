#include "server/cli/engine_flags.h"

#include "engine/runtime/engine_options.h"
#include "engine/zero/placement.h"

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
  cmd->add_flag("--quant-embeddings", f->quant_embeddings,
                "Quantize the LM head too, with --quant-bits (quantization.embeddings: true)");
  cmd->add_flag("--kv-offload", f->kv_offload, "Keep the KV cache in pinned CPU memory");
  cmd->add_option("--kv-cache-bytes", f->kv_cache_bytes,
                  "KV cache size, e.g. 8GiB (kv_cache.max_bytes; default: GPU memory left, or max_batch_size "
                  "full contexts in host memory)");
  cmd->add_option("--kv-offload-attention", f->kv_offload_attention,
                  "With --kv-offload: who computes decode attention over the host cache: auto (GPU and CPU share "
                  "it), gpu or cpu (kv_cache.offload_attention)")
      ->check(CLI::IsMember({"auto", "gpu", "cpu"}));
  cmd->add_option("--num-gpus", f->num_gpus, "Ranks (GPU workers, or CPU workers on the CPU backend)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--device", f->device, "auto|cpu|cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--max-context", f->max_context, "Tokens per sequence (0 = from config.json)")
      ->check(CLI::Range(0, 1 << 24));
}

}  // namespace zi::cli

namespace zi::cli {

Status apply_engine_flags(const EngineFlags& e, EngineOptions* o) {
  if (e.cpu_offload && e.disk_offload)
    return absl::InvalidArgumentError("--cpu-offload and --disk-offload exclude each other");
  if (e.cpu_offload) o->offload_tier = OffloadTier::kCpu;
  if (e.disk_offload) o->offload_tier = OffloadTier::kNvme;
  if (e.offload_dir) o->offload_dir = *e.offload_dir;
  if (e.pin_memory) o->pin_memory = *e.pin_memory != 0;
  if (e.gpu_weights_budget) {
    ZI_ASSIGN_OR_RETURN(o->gpu_weights_budget, parse_bytes(*e.gpu_weights_budget, "--gpu-weights-budget"));
  }
  if (e.quant_bits) o->quant_bits = static_cast<uint32_t>(*e.quant_bits);
  if (e.quant_group_size) o->quant_group_size = static_cast<uint32_t>(*e.quant_group_size);
  if (e.quant_embeddings) o->quant_embeddings = true;
  if (e.kv_offload) o->kv_offload = true;
  if (e.kv_cache_bytes) {
    ZI_ASSIGN_OR_RETURN(o->kv_cache_bytes, parse_bytes(*e.kv_cache_bytes, "--kv-cache-bytes"));
  }
  if (e.kv_offload_attention) o->kv_offload_attention = *e.kv_offload_attention;
  if (e.num_gpus) o->world_size = static_cast<uint32_t>(*e.num_gpus);
  if (e.device) o->device = *e.device;
  if (e.max_context) o->max_context = static_cast<uint32_t>(*e.max_context);
  return absl::OkStatus();
}

}  // namespace zi::cli
