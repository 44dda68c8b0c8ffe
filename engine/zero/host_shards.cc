// Loading the streamed layers' host side: CPU-tier partitions packed in parallel into (pinned) host memory, or
// the NVMe store opened — and built first when the directory has none.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "engine/core/log.h"
#include "engine/io/safetensors.h"
#include "engine/model/registry.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/streamed_parameters.h"

namespace zi {

DType layer_shard_dtype(Backend& backend, const ModelConfig& cfg, const Architecture& arch, const Checkpoint* ckpt) {
  DType src = DType::kF32;
  if (ckpt) {
    LayerWeights scratch;
    std::vector<WeightSpec> specs;
    arch.layer_weights(cfg, 0, scratch, specs);
    if (const TensorInfo* t = specs.empty() ? nullptr : ckpt->find(specs[0].name)) src = t->dtype;
  } else if (cfg.dtype == "float16") {
    src = DType::kF16;
  } else if (cfg.dtype == "bfloat16") {
    src = DType::kBF16;
  }
  return backend.weight_dtype(src);
}

StatusOr<StoreIdentity> model_store_identity(const ModelConfig& cfg, DType shard_dtype, uint32_t num_ranks,
                                             const QuantConfig& quant) {
  StoreIdentity id;
  id.architecture = cfg.architecture;
  ZI_ASSIGN_OR_RETURN(id.config_digest, config_digest(cfg.dir + "/config.json"));
  id.num_ranks = num_ranks;
  id.dtype = std::string(dtype_safetensors_name(shard_dtype));
  id.quant_bits = static_cast<uint32_t>(quant.params.bits);
  id.quant_group_size = static_cast<uint32_t>(quant.params.group_size);
  return id;
}

namespace {

// MemAvailable from /proc/meminfo in bytes (0 when unknown).
uint64_t host_memory_available() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kb = 0;
  while (std::fgets(line, sizeof(line), f))
    if (std::sscanf(line, "MemAvailable: %lu kB", &kb) == 1) break;
  std::fclose(f);
  return kb * 1024;
}

// Progress for long loads: bytes, percent and ETA every few seconds (one log line each: readable under systemd).
class Progress {
 public:
  Progress(std::string what, uint64_t total) : what_(std::move(what)), total_(total) {}
  void add(uint64_t bytes) {
    const uint64_t done = done_ += bytes;
    std::lock_guard<std::mutex> lock(mu_);
    const double t = seconds();
    if (t - last_ < 2.0 && done < total_) return;
    last_ = t;
    const double rate = done / std::max(t, 1e-9);
    ZI_LOG(INFO) << what_ << ": " << format_bytes(done) << " of " << format_bytes(total_) << " ("
                 << static_cast<int>(100.0 * done / std::max<uint64_t>(total_, 1)) << "%, "
                 << absl::StrFormat("%.2f GB/s", rate / 1e9) << ", ETA "
                 << absl::StrFormat("%.0f s", (total_ - done) / std::max(rate, 1.0)) << ")";
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::string what_;
  uint64_t total_;
  std::atomic<uint64_t> done_{0};
  std::mutex mu_;
  double last_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Runs fn(i) for i in [0, n) on `threads` threads; the first error wins.
Status parallel_for(int n, int threads, const std::function<Status(int)>& fn) {
  std::atomic<int> next{0};
  Status first = absl::OkStatus();
  std::mutex mu;
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, std::min(threads, n)); ++t)
    pool.emplace_back([&] {
      for (int i; (i = next++) < n;) {
        Status s = fn(i);
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first.ok()) first = s;
          next = n;
        }
      }
    });
  for (auto& th : pool) th.join();
  return first;
}

Status pack(const Checkpoint* ckpt, const ModelConfig& cfg, const Architecture& arch, int layer,
            const StoreShard& shard, uint64_t seed, const QuantConfig& quant, void* dst) {
  if (ckpt) return pack_layer_from_checkpoint(*ckpt, shard, dst, quant);
  pack_layer_dummy(cfg, arch, layer, shard, seed, dst, quant);
  return absl::OkStatus();
}

// The quantization a store's identity describes (which tensors: the layer rule; the LM head is never in a shard).
QuantConfig quant_of(const StoreIdentity& id) {
  QuantConfig q;
  q.params.bits = static_cast<int>(id.quant_bits);
  q.params.group_size = id.quant_group_size;
  return q;
}

}  // namespace

Status write_offload_store(const ModelConfig& cfg, const Architecture& arch, const Checkpoint* ckpt, uint64_t seed,
                           DType shard_dtype, const StoreIdentity& id, const std::string& dir) {
  const QuantConfig quant = quant_of(id);
  if (quant.enabled()) ZI_RETURN_IF_ERROR(check_quant_params(quant.params));
  std::vector<StoreShard> layouts;
  for (int l = 0; l < cfg.num_layers; ++l)
    layouts.push_back(layer_layout(cfg, arch, l, shard_dtype, id.num_ranks, quant));
  ZI_LOG(INFO) << dir << ": writing the offload store (" << layouts.size() << " layer shards, " << id.num_ranks
               << " rank file(s))";
  uint64_t total = 0, on_disk = 0;
  for (const auto& s : layouts) {
    total += s.bytes;
    on_disk += s.partition_bytes * id.num_ranks;
  }
  // Refuse up front, naming the sizes, rather than fail with ENOSPC halfway through a long write.
  {
    std::error_code ec;
    std::filesystem::path probe = std::filesystem::absolute(dir, ec);
    while (!probe.empty() && !std::filesystem::exists(probe, ec) && probe != probe.parent_path())
      probe = probe.parent_path();
    const auto space = std::filesystem::space(probe, ec);
    if (!ec && space.available < on_disk)
      return absl::ResourceExhaustedError(absl::StrCat(
          dir, ": the offload store needs ", format_bytes(on_disk), " but ", probe.string(), " has ",
          format_bytes(space.available), " free; free space or point offload.dir (--offload-dir) at a larger disk"));
  }
  ZI_ASSIGN_OR_RETURN(auto writer, OffloadStoreWriter::Create(dir, id));
  Progress progress(absl::StrCat("writing ", dir), total);
  std::vector<char> buf;
  for (size_t l = 0; l < layouts.size(); ++l) {
    const StoreShard& s = layouts[l];
    buf.assign(s.bytes, 0);
    ZI_RETURN_IF_ERROR(pack(ckpt, cfg, arch, static_cast<int>(l), s, seed, quant, buf.data()));
    std::vector<TensorBytes> tensors;
    for (const StoreTensor& t : s.tensors) tensors.push_back({t.name, t.dtype, t.shape, buf.data() + t.offset, t.nbytes});
    ZI_RETURN_IF_ERROR(writer->add_shard(s.name, tensors));
    progress.add(s.bytes);
  }
  return writer->finish();
}

Status check_host_tier_fits(const ModelConfig& cfg, const Architecture& arch, DType dtype,
                            const StreamingLoad& load) {
  uint64_t cpu_bytes = 0;
  for (int l = 0; l < static_cast<int>(load.tiers.size()); ++l)
    if (load.tiers[l] == LayerTier::kCpu)
      cpu_bytes += layer_layout(cfg, arch, l, dtype, load.num_ranks, load.quant).partition_bytes;
  // Refuse before loading or pinning anything when the host cannot hold this rank's partitions (pinning most of
  // memory away would take the machine down with it, not just this process).
  if (const uint64_t avail = host_memory_available(); avail > 0 && cpu_bytes > avail)
    return absl::ResourceExhaustedError(absl::StrCat(
        "the CPU tier needs ", format_bytes(cpu_bytes), " of host memory for this rank's streamed layers but ",
        format_bytes(avail), " is available; use offload.tier nvme (--disk-offload), fewer bits "
        "(quantization.bits), more ranks (parallel.num_gpus) or a larger offload.gpu_weights_budget"));
  return absl::OkStatus();
}

StatusOr<std::shared_ptr<HostShards>> load_host_shards(Backend& backend, const ModelConfig& cfg,
                                                       const Architecture& arch, const Checkpoint* checkpoint,
                                                       uint64_t dummy_seed, const StreamingLoad& load,
                                                       HostAllocator& host_alloc) {
  auto shards = std::make_shared<HostShards>();
  shards->rank = load.rank;
  shards->num_ranks = load.num_ranks;
  shards->quant = load.quant;
  const DType dtype = layer_shard_dtype(backend, cfg, arch, checkpoint);
  const int L = static_cast<int>(cfg.num_layers);
  for (int l = 0; l < L; ++l)
    shards->layouts.push_back(layer_layout(cfg, arch, l, dtype, load.num_ranks, load.quant));
  shards->partitions.resize(L);
  ZI_CHECK(static_cast<int>(load.tiers.size()) == L);

  const bool any_nvme = std::count(load.tiers.begin(), load.tiers.end(), LayerTier::kNvme) > 0;
  if (any_nvme) {
    ZI_ASSIGN_OR_RETURN(StoreIdentity id, model_store_identity(cfg, dtype, load.num_ranks, load.quant));
    auto store = OffloadStore::Open(load.store_dir, id);
    if (!store.ok() && absl::IsNotFound(store.status())) {
      if (load.rank == 0) {
        ZI_LOG(INFO) << load.store_dir << ": no offload store yet";
        ZI_RETURN_IF_ERROR(write_offload_store(cfg, arch, checkpoint, dummy_seed, dtype, id, load.store_dir));
      } else {
        // Rank 0 writes every rank's file (its manifest last); the others wait for it rather than race.
        ZI_LOG(INFO) << load.store_dir << ": waiting for rank 0 to write the offload store";
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::hours(6);
        while (absl::IsNotFound(store.status()) && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::seconds(1));
          store = OffloadStore::Open(load.store_dir, id);
        }
      }
      if (load.rank == 0) store = OffloadStore::Open(load.store_dir, id);
    }
    if (!store.ok()) return store.status();
    shards->store = std::move(store).value();
    for (int l = 0; l < L; ++l) {
      const StoreShard* s = shards->store->find(shards->layouts[l].name);
      if (load.tiers[l] == LayerTier::kNvme && (!s || s->bytes != shards->layouts[l].bytes))
        return absl::DataLossError(absl::StrCat(load.store_dir, ": shard ", shards->layouts[l].name,
                                                " is missing or has another size than this model's layer"));
    }
  }

  std::vector<int> cpu_layers;
  uint64_t cpu_bytes = 0;
  for (int l = 0; l < L; ++l)
    if (load.tiers[l] == LayerTier::kCpu) {
      cpu_layers.push_back(l);
      cpu_bytes += shards->layouts[l].partition_bytes;
    }
  if (cpu_layers.empty()) return shards;
  const int threads = load.load_threads > 0 ? load.load_threads
                                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Progress progress("loading streamed layers into host memory", cpu_bytes);
  ZI_RETURN_IF_ERROR(parallel_for(static_cast<int>(cpu_layers.size()), threads, [&](int i) -> Status {
    const int l = cpu_layers[i];
    const StoreShard& s = shards->layouts[l];
    ZI_ASSIGN_OR_RETURN(HostBlock block, host_alloc.allocate(s.partition_bytes));
    if (load.num_ranks == 1) {
      ZI_RETURN_IF_ERROR(pack(checkpoint, cfg, arch, l, s, dummy_seed, load.quant, block.data));
      if (s.partition_bytes > s.bytes)
        std::memset(static_cast<char*>(block.data) + s.bytes, 0, s.partition_bytes - s.bytes);
    } else {
      // ZeRO-3: this rank keeps its 1/N of the packed shard.
      std::vector<char> full(s.partition_bytes * load.num_ranks, 0);
      ZI_RETURN_IF_ERROR(pack(checkpoint, cfg, arch, l, s, dummy_seed, load.quant, full.data()));
      std::memcpy(block.data, full.data() + load.rank * s.partition_bytes, s.partition_bytes);
    }
    shards->partitions[l] = std::move(block);
    progress.add(s.partition_bytes);
    return absl::OkStatus();
  }));
  ZI_LOG(INFO) << "host copies of " << cpu_layers.size() << " streamed layers ready: " << format_bytes(cpu_bytes)
               << " in " << absl::StrFormat("%.1f s", progress.seconds());
  return shards;
}

}  // namespace zi
