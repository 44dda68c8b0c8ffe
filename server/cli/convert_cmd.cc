// `zeroinfer convert --model DIR --out STORE [--num_gpus N] [--dtype D]`: writes the offload store the NVMe tier
// streams from (one file per rank, each layer shard 4 KiB aligned, manifest with checksums). The server builds the
// same store on its first load when offload.dir has none; converting ahead keeps that time out of start-up.
#include <cstdio>
#include <memory>

#include "engine/core/log.h"
#include "engine/io/safetensors.h"
#include "engine/model/compute_dtype.h"
#include "engine/model/config.h"
#include "engine/model/registry.h"
#include "engine/quant/quantized_weights.h"
#include "engine/zero/placement.h"
#include "engine/zero/streamed_parameters.h"
#include "server/cli/commands.h"

namespace zi::cli {
namespace {

struct ConvertFlags {
  std::string model, out, dtype = "auto";
  int num_gpus = 1;
  int quant_bits = 16;
  int quant_group_size = 64;
  bool dummy = false;
};

int run(const ConvertFlags& f) {
  auto fail = [](const Status& s, int code) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(s.message()).c_str());
    return code;
  };
  auto quant = make_quant_config(static_cast<uint32_t>(f.quant_bits), static_cast<uint32_t>(f.quant_group_size), false);
  if (!quant.ok()) return fail(quant.status(), 2);
  auto cfg = load_model_config(f.model);
  if (!cfg.ok()) return fail(cfg.status(), 1);
  const Architecture* arch = find_architecture(cfg->architecture);
  std::unique_ptr<Checkpoint> ckpt;
  DType src = config_dtype(cfg->dtype);
  if (!f.dummy) {
    auto c = Checkpoint::Open(f.model);
    if (!c.ok()) return fail(c.status(), 1);
    ckpt = std::move(*c);
  }
  // The store holds what the compute device uses: 16-bit for the GPU (auto|bfloat16|float16), fp32 for the CPU.
  DType dtype = DType::kF32;
  if (f.dtype != "float32") {
    auto d = gpu_compute_dtype(f.dtype, src);
    if (!d.ok()) return fail(d.status(), 2);
    dtype = *d;
  }
  auto id = model_store_identity(*cfg, dtype, static_cast<uint32_t>(f.num_gpus), *quant);
  if (!id.ok()) return fail(id.status(), 1);
  Status s = write_offload_store(*cfg, *arch, ckpt.get(), 0, dtype, *id, f.out);
  if (!s.ok()) return fail(s, 1);
  std::printf("wrote %s: %ld layer shards in %s, %d rank file(s)\n", f.out.c_str(), static_cast<long>(cfg->num_layers),
              std::string(dtype_torch_name(dtype)).c_str(), f.num_gpus);
  return 0;
}

}  // namespace

void register_convert(CLI::App& app, int* rc) {
  auto f = std::make_shared<ConvertFlags>();
  auto* cmd = app.add_subcommand("convert", "Write the NVMe offload store for a model");
  cmd->add_option("--model", f->model, "Hugging Face model folder")->required();
  cmd->add_option("--out", f->out, "Store directory (offload.dir)")->required();
  cmd->add_option("--num-gpus", f->num_gpus, "Ranks: one store file each (ZeRO-3 partitions)")->check(CLI::Range(1, 64));
  cmd->add_option("--dtype", f->dtype, "auto|bfloat16|float16 (GPU), float32 (CPU backend)")
      ->check(CLI::IsMember({"auto", "bfloat16", "float16", "float32"}));
  cmd->add_option("--quant-bits", f->quant_bits, "Store linear weights at 4 or 8 bits (16 = as they are)")
      ->check(CLI::IsMember({4, 8, 16}));
  cmd->add_option("--quant-group-size", f->quant_group_size, "Weights per quantization group")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--dummy", f->dummy, "Random weights from config.json alone");
  cmd->callback([f, rc] { *rc = run(*f); });
}

}  // namespace zi::cli
