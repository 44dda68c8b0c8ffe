// `zeroinfer convert --model DIR --out STORE [--num_gpus N] [--dtype D] [--device cpu] [--quant-bits B]`: writes the offload store the NVMe tier
// streams from (one file per rank, each layer shard 4 KiB aligned, manifest with checksums). The server builds the
// same store on its first load when offload.dir has none; converting ahead keeps that time out of start-up.
#include <cstdio>
#include <memory>

#include "engine/core/log.h"
#include "engine/io/safetensors.h"
#include "engine/core/compute_dtype.h"
#include "engine/model/config.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"
#include "engine/zero/placement.h"
#include "engine/zero/streamed_parameters.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"

namespace zi::cli {
namespace {

struct ConvertFlags {
  std::string model, out;
  bool dummy = false;
  std::unique_ptr<OptionBinder> options;
};

int run(const ConvertFlags& f) {
  auto fail = [](const Status& s, int code) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(s.message()).c_str());
    return code;
  };
  server::ServeConfig config;
  config.engine.model_dir = f.model;
  if (Status s = f.options->apply(&config); !s.ok()) return fail(s, 2);
  if (f.options->print_requested()) {
    std::printf("%s\n", engine_options_json(config).c_str());
    return 0;
  }
  const EngineOptions& o = config.engine;
  auto quant = make_quant_config(o.quant_bits, o.quant_group_size, false);
  if (!quant.ok()) return fail(quant.status(), 2);
  auto cfg = load_model_config(f.model);
  if (!cfg.ok()) return fail(cfg.status(), 1);
  const Architecture* arch = find_architecture(cfg->architecture);
  std::unique_ptr<Checkpoint> ckpt;
  if (!f.dummy) {
    auto c = Checkpoint::Open(f.model);
    if (!c.ok()) return fail(c.status(), 1);
    ckpt = std::move(*c);
  }
  // The store holds what the compute device uses: 16-bit for the GPU (model.dtype), fp32 for the CPU backend.
  const DType dtype = o.device == Device::kCpu ? DType::kF32 : gpu_compute_dtype(o.dtype, config_dtype(cfg->dtype));
  auto id = model_store_identity(*cfg, dtype, o.world_size, *quant);
  if (!id.ok()) return fail(id.status(), 1);
  Status s = write_offload_store(*cfg, *arch, ckpt.get(), 0, dtype, *id, f.out);
  if (!s.ok()) return fail(s, 1);
  std::printf("wrote %s: %ld layer shards in %s, %u rank file(s)\n", f.out.c_str(), static_cast<long>(cfg->num_layers),
              std::string(dtype_torch_name(dtype)).c_str(), o.world_size);
  return 0;
}

}  // namespace

void register_convert(CLI::App& app, int* rc) {
  auto f = std::make_shared<ConvertFlags>();
  auto* cmd = app.add_subcommand("convert", "Write the NVMe offload store for a model");
  cmd->add_option("--model", f->model, "Hugging Face model folder")->required();
  cmd->add_option("--out", f->out, "Store directory (offload.dir)")->required();
  // --device cpu: the fp32 store the CPU backend streams; otherwise 16-bit as --dtype says.
  f->options = std::make_unique<OptionBinder>(cmd, server::kConvert);
  cmd->add_flag("--dummy", f->dummy, "Random weights from config.json alone");
  cmd->callback([f, rc] { *rc = run(*f); });
}

}  // namespace zi::cli
