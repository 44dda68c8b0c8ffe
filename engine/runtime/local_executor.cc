#include "engine/runtime/local_executor.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>
#include <unordered_set>

#include "engine/core/log.h"
#include "engine/io/safetensors.h"
#include "engine/model/registry.h"
#include "engine/model/quantized_weights.h"
#include "engine/zero/layer_pack.h"
#include "engine/zero/placement.h"
#include "engine/zero/planner/cost_model.h"
#include "engine/zero/streamed_parameters.h"

namespace zi {

namespace {

constexpr uint64_t kGpuKvMarginBytes = kGpuSlackBytes;  // left free beside the KV cache: cuBLAS, fragmentation

// Rows the largest step carries: max_step_tokens when set (the planner's prefill budget), else every slot's context.
uint64_t step_rows(const EngineOptions& o, uint32_t max_context) {
  return o.max_step_tokens ? std::max<uint64_t>(o.max_step_tokens, o.max_batch_size)
                           : activation_tokens(o.max_batch_size, max_context);
}

// The paged KV cache's size: kv_cache_bytes when set; otherwise on a GPU the device memory left after the weights,
// the streaming ring and an activation reserve (at most max_batch_size full contexts), and in host memory (the CPU
// backend, or KV offload) max_batch_size full contexts.
StatusOr<std::unique_ptr<KvCache>> make_kv_cache(const EngineOptions& options, const ModelConfig& cfg,
                                                 uint32_t max_context, Backend& backend) {
  KvCacheShape shape;
  shape.num_layers = static_cast<int>(cfg.num_layers);
  shape.slots = static_cast<int>(options.max_batch_size);
  shape.context = static_cast<int>(max_context);
  shape.n_kv_heads = static_cast<int>(cfg.num_kv_heads);
  shape.head_dim = static_cast<int>(cfg.head_dim);
  if (options.kv_block_size == 0 || options.kv_block_size > 1024)
    return absl::InvalidArgumentError(absl::StrCat("kv_cache.block_size must be 1..1024, got ", options.kv_block_size));
  shape.block_size = static_cast<int>(options.kv_block_size);
  int64_t device_free = backend.device_free_bytes();
  const bool on_device = device_free >= 0;
  // memory.gpu_limit: what the process may still take is the limit less what it holds (NVML, context included).
  std::string within;
  if (on_device && options.gpu_memory_limit > 0) {
    const int64_t held = std::max<int64_t>(0, backend.process_device_bytes());
    const int64_t room = std::max<int64_t>(0, static_cast<int64_t>(options.gpu_memory_limit) - held);
    if (room < device_free) {
      device_free = room;
      within = absl::StrCat(" (within memory.gpu_limit ", format_bytes(options.gpu_memory_limit), ": the process holds ",
                            format_bytes(static_cast<uint64_t>(held)), ")");
    }
  }
  if (options.kv_offload && !on_device) {
    ZI_LOG(INFO) << "kv_cache.offload: no-op on the " << backend.name()
                 << " backend (its KV cache is in host memory already)";
  }
  shape.host = options.kv_offload && on_device;
  const size_t elem = dtype_size(backend.activation_dtype());
  const uint64_t block_bytes = std::max<uint64_t>(
      1, kv_block_bytes(shape.num_layers, shape.block_size, shape.n_kv_heads, shape.head_dim, elem));
  const int64_t full = static_cast<int64_t>(shape.slots) * ((shape.context + shape.block_size - 1) / shape.block_size);
  int64_t blocks = full;
  std::string why = absl::StrCat("max_batch_size ", shape.slots, " × max_context ", shape.context);
  if (options.kv_cache_bytes > 0) {
    blocks = static_cast<int64_t>(options.kv_cache_bytes / block_bytes);
    why = absl::StrCat("kv_cache.max_bytes ", format_bytes(options.kv_cache_bytes));
    if (on_device && !shape.host && options.kv_cache_bytes + kGpuKvMarginBytes > static_cast<uint64_t>(device_free))
      return absl::ResourceExhaustedError(absl::StrCat(
          "kv_cache.max_bytes ", format_bytes(options.kv_cache_bytes), " does not fit the GPU: ",
          format_bytes(static_cast<uint64_t>(device_free)), " free after the weights", within, " (",
          format_bytes(kGpuKvMarginBytes), " kept free); lower it or set kv_cache.offload: true"));
  } else if (on_device && !shape.host) {
    const uint64_t act = activation_bytes_for_rows(cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size,
                                                   step_rows(options, max_context), options.max_batch_size, elem,
                                                   layer_chunk_rows(cfg));
    const uint64_t reserve = act + kGpuKvMarginBytes;
    const uint64_t avail = static_cast<uint64_t>(device_free) > reserve ? device_free - reserve : 0;
    blocks = std::min<int64_t>(full, static_cast<int64_t>(avail / block_bytes));
    why = absl::StrCat(format_bytes(static_cast<uint64_t>(device_free)), " GPU memory free after the weights", within,
                       ", less ",
                       format_bytes(reserve), " for activations and a margin");
  }
  if (blocks < 1)
    return absl::ResourceExhaustedError(absl::StrCat("KV cache too small: ", why, " holds no block of ",
                                                     shape.block_size, " tokens (", format_bytes(block_bytes),
                                                     "); raise kv_cache.max_bytes or set kv_cache.offload: true"));
  shape.num_blocks = blocks;
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> kv, KvCache::Create(backend, shape));
  ZI_LOG(INFO) << "KV cache: " << blocks << " blocks of " << shape.block_size << " tokens ("
               << blocks * shape.block_size << " tokens, " << format_bytes(kv->bytes()) << ") in "
               << (shape.host ? "pinned host memory (KV offload)" : on_device ? "GPU memory" : "host memory")
               << ", sized by " << why;
  return kv;
}

}  // namespace

StatusOr<ModelFolder> open_model_folder(const EngineOptions& options) {
  ModelFolder m;
  ZI_ASSIGN_OR_RETURN(m.config, load_model_config(options.model_dir));
  m.arch = find_architecture(m.config.architecture);
  ZI_CHECK(m.arch != nullptr);  // load_model_config refused unsupported architectures
  if (!options.dummy_weights) {
    ZI_ASSIGN_OR_RETURN(m.checkpoint, Checkpoint::Open(options.model_dir));
  }
  return m;
}

LocalExecutor::~LocalExecutor() = default;

StatusOr<std::unique_ptr<LocalExecutor>> LocalExecutor::Create(const EngineOptions& options, ModelFolder model,
                                                               std::unique_ptr<Backend> backend,
                                                               ParamsLoader loader,
                                                               std::shared_ptr<Communicator> comm) {
  const ModelConfig& cfg = model.config;
  const Architecture* arch = model.arch;
  ZI_CHECK(arch != nullptr);

  uint32_t max_context = options.max_context;
  if (max_context == 0) max_context = static_cast<uint32_t>(std::min<int64_t>(cfg.default_max_context, INT32_MAX));
  if (max_context > static_cast<uint32_t>(INT32_MAX))
    return absl::InvalidArgumentError(absl::StrCat("max_context ", max_context, " exceeds 2^31 - 1"));
  if (cfg.max_position_embeddings > 0 && max_context > cfg.max_position_embeddings) {
    ZI_LOG(WARNING) << "max_context " << max_context << " exceeds the model's max_position_embeddings "
                    << cfg.max_position_embeddings << "; quality past it is not guaranteed";
  }
  if (options.max_batch_size == 0 || options.max_batch_size > 65536)
    return absl::InvalidArgumentError(absl::StrCat("max_batch_size must be in 1..65536, got ",
                                                   options.max_batch_size));

  ZI_ASSIGN_OR_RETURN(const QuantConfig quant,
                      make_quant_config(options.quant_bits, options.quant_group_size, options.quant_embeddings));

  auto ex = std::unique_ptr<LocalExecutor>(new LocalExecutor());
  ex->options_ = options;
  ex->backend_ = std::move(backend);
  ex->comm_ = std::move(comm);
  std::unique_ptr<Checkpoint> checkpoint = std::move(model.checkpoint);
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<ParameterSource> params;
  if (loader) {
    ZI_ASSIGN_OR_RETURN(params, loader(*ex->backend_, cfg, *arch, checkpoint.get(), max_context));
  } else {
    ZI_ASSIGN_OR_RETURN(params, load_resident_parameters(*ex->backend_, cfg, *arch, checkpoint.get(),
                                                         options.dummy_seed, quant));
  }
  // One decoder layer's weight bytes as the backend holds (and streams) them: packed when quantized.
  const uint64_t layer_bytes =
      cfg.num_layers > 0
          ? layer_layout(cfg, *arch, 0, layer_shard_dtype(*ex->backend_, cfg, *arch, checkpoint.get()), 1, quant).bytes
          : 0;
  checkpoint.reset();  // weights are copied onto the backend; the mapping is no longer needed
  const uint64_t n_params = params->parameter_count();
  const std::string stored_dtype = params->stored_dtype();
  ZI_ASSIGN_OR_RETURN(ex->model_, arch->create(cfg, *ex->backend_, std::move(params)));

  ZI_ASSIGN_OR_RETURN(ex->kv_, make_kv_cache(options, cfg, max_context, *ex->backend_));

  ModelSummary& s = ex->summary_;
  s.name = options.served_name;
  if (s.name.empty()) s.name = std::filesystem::path(options.model_dir).lexically_normal().filename().string();
  if (s.name.empty() || s.name == ".")
    s.name = std::filesystem::path(options.model_dir).lexically_normal().parent_path().filename().string();
  s.architecture = cfg.architecture;
  s.parameters = n_params;
  s.vocab_size = static_cast<uint32_t>(cfg.vocab_size);
  s.max_context = max_context;
  s.dtype = stored_dtype;
  s.device = ex->backend_->name();
  s.num_ranks = options.world_size;
  s.quant_bits = static_cast<uint32_t>(quant.params.bits);
  s.quant_group_size = quant.enabled() ? static_cast<uint32_t>(quant.params.group_size) : 0;
  s.layer_weight_bytes = layer_bytes;
  {
    ParameterSource& ps = ex->model_->parameters();
    const std::string resident = s.device == "cuda" ? "gpu" : "cpu";
    for (int l = 0; l < ps.num_layers(); ++l) {
      std::string t = ps.layer_tier(l);
      if (!t.empty()) s.streamed_bytes_per_step += layer_bytes;  // all ranks' partitions: the layer's bytes
      s.layer_tiers.push_back(t.empty() ? resident : t);
    }
    s.prefetch_depth = ps.prefetch_depth();
  }
  // Decode steps replay CUDA graphs where nothing outside the graph changes between replays (step_graphs.h).
  const bool all_resident = std::all_of(s.layer_tiers.begin(), s.layer_tiers.end(),
                                        [&](const std::string& t) { return t == "gpu"; });
  if (!options.enforce_eager && s.device == "cuda" && all_resident && options.world_size <= 1 &&
      !options.kv_offload)
    ex->graphs_ = std::make_unique<StepGraphs>(*ex->model_, *ex->backend_, *ex->kv_,
                                               static_cast<int>(options.max_batch_size),
                                               static_cast<int>(max_context));
  s.max_step_tokens = static_cast<uint32_t>(step_rows(options, max_context));
  s.eos_token_ids = cfg.eos_token_ids;
  s.bos_token_id = cfg.bos_token_id;
  s.kv_block_size = static_cast<uint32_t>(ex->kv_->block_size());
  s.kv_num_blocks = static_cast<uint64_t>(ex->kv_->num_blocks());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ZI_LOG(INFO) << "loaded " << s.architecture << " from " << options.model_dir
               << (options.dummy_weights ? " (dummy weights)" : "") << ": " << n_params << " parameters ("
               << s.dtype << "), " << cfg.num_layers << " layers, max_context " << max_context << ", "
               << options.max_batch_size << " sequences (KV cache " << (ex->kv_->bytes() >> 20) << " MiB) on "
               << s.device << " in " << secs << " s";
  return ex;
}

Status LocalExecutor::validate(const StepInput& input) const {
  // One rank in this process (in a ZeRO-3 group the worker pool hands each rank its own micro-batch as rank 0).
  for (const SeqRelease& r : input.release)
    if (r.rank != 0)
      return absl::InvalidArgumentError(absl::StrCat("release of sequence ", r.seq_id, " names rank ", r.rank,
                                                     "; this executor runs one rank (rank 0)"));
  for (const SeqStep& s : input.seqs)
    if (s.rank != 0)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": SeqStep.rank is ", s.rank,
                                                     "; this executor runs one rank (rank 0)"));
  std::unordered_set<uint64_t> released;
  for (const SeqRelease& r : input.release) released.insert(r.seq_id);
  std::unordered_set<uint64_t> in_step;
  int new_seqs = 0;
  int freed = 0;
  int64_t freed_blocks = 0, needed_blocks = 0;
  for (uint64_t id : released)
    if (auto it = seqs_.find(id); it != seqs_.end()) {
      ++freed;
      freed_blocks += static_cast<int64_t>(kv_->block_table(it->second.slot).size());
    }
  for (const SeqStep& s : input.seqs) {
    if (!in_step.insert(s.seq_id).second)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, " appears twice in one step"));
    const bool exists = seqs_.count(s.seq_id) && !released.count(s.seq_id);
    if (s.first && exists)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, " already exists"));
    if (!s.first && !exists)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, " is unknown (not started or released)"));
    if (s.tokens.empty())
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": no tokens to append"));
    for (int32_t t : s.tokens)
      if (t < 0 || static_cast<uint32_t>(t) >= summary_.vocab_size)
        return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": token id ", t,
                                                       " is outside the vocabulary (vocab_size ",
                                                       summary_.vocab_size, ")"));
    const int64_t length = s.first ? 0 : seqs_.at(s.seq_id).length;
    const int64_t new_length = length + static_cast<int64_t>(s.tokens.size());
    if (new_length > kv_->max_context())
      return absl::OutOfRangeError(absl::StrCat("sequence ", s.seq_id, " would hold ", new_length,
                                                " tokens, over max_context ", kv_->max_context()));
    const int64_t held = s.first ? 0 : static_cast<int64_t>(kv_->block_table(seqs_.at(s.seq_id).slot).size());
    needed_blocks += std::max<int64_t>(0, kv_->blocks_for(new_length) - held);
    if (s.first) {
      ++new_seqs;
      ZI_RETURN_IF_ERROR(validate_sampling_params(s.sampling));
    }
  }
  if (new_seqs > kv_->free_slots() + freed)
    return absl::ResourceExhaustedError(absl::StrCat("all ", kv_->slots(), " KV cache slots are in use (",
                                                     new_seqs, " new sequences; max_batch_size ", kv_->slots(), ")"));
  if (needed_blocks > kv_->free_blocks() + freed_blocks)
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache out of blocks: the step needs ", needed_blocks, " more, ", kv_->free_blocks() + freed_blocks,
        " free of ", kv_->num_blocks(), " (", kv_->block_size(), " tokens each)"));
  return absl::OkStatus();
}

StatusOr<StepOutput> LocalExecutor::step(const StepInput& input) {
  const auto t0 = std::chrono::steady_clock::now();
  if (options_.debug_step_delay_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.debug_step_delay_ms));
  if (Status bad = validate(input); !bad.ok()) {
    // The other ranks are stepping: take part in this step's collectives before refusing it.
    if (options_.world_size > 1) (void)walk_layers(model_->parameters());
    return bad;
  }

  for (const SeqRelease& rel : input.release) {
    auto it = seqs_.find(rel.seq_id);
    if (it == seqs_.end()) continue;  // releasing twice (or a never-started id) is harmless
    kv_->release(it->second.slot);
    seqs_.erase(it);
  }

  // Create new sequences and lay the step out: rows of all sequences flattened in input order.
  std::vector<uint64_t> created;
  ForwardBatch batch;
  std::vector<int32_t> logits_begin(input.seqs.size(), -1);  // first logit row of each sequence's results
  StepOutput out;
  for (size_t i = 0; i < input.seqs.size(); ++i) {
    const SeqStep& s = input.seqs[i];
    if (s.first) {
      SeqState st;
      st.slot = *kv_->acquire();  // validate() checked there are enough
      st.sampling = s.sampling;
      st.rng = SequenceRng(s.sampling.seed);
      seqs_.emplace(s.seq_id, std::move(st));
      created.push_back(s.seq_id);
    }
    const SeqState& st = seqs_.at(s.seq_id);
    const int32_t row_begin = static_cast<int32_t>(batch.tokens.size());
    const int32_t n = static_cast<int32_t>(s.tokens.size());
    batch.seqs.push_back(SeqSlice{st.slot, row_begin, n, st.length});
    batch.tokens.insert(batch.tokens.end(), s.tokens.begin(), s.tokens.end());
    if (s.want_logits || s.sample) {
      logits_begin[i] = static_cast<int32_t>(batch.logit_rows.size());
      if (s.want_logits) {
        for (int32_t r = 0; r < n; ++r) batch.logit_rows.push_back(row_begin + r);
      } else {
        batch.logit_rows.push_back(row_begin + n - 1);
      }
    }
    if (s.first || n > 1)
      out.stats.prefill_tokens += n;
    else
      out.stats.decode_tokens += n;
  }

  std::vector<float> logits;
  if (!batch.tokens.empty()) {
    StatusOr<Tensor> result = absl::UnknownError("not run");
    StatusOr<std::optional<Tensor>> replayed = graphs_ ? graphs_->run(batch) : std::optional<Tensor>();
    if (!replayed.ok())
      result = replayed.status();
    else if (replayed->has_value())
      result = **replayed;
    else
      result = model_->forward(batch, *kv_);
    if (!result.ok()) {
      // The step failed as a whole: forget the sequences it created (others keep their length: the KV rows written
      // past it are simply overwritten by their next step).
      for (uint64_t id : created) {
        kv_->release(seqs_.at(id).slot);
        seqs_.erase(id);
      }
      return result.status();
    }
    logits = backend_->to_host_f32(*result);
  } else if (options_.world_size > 1) {
    // Nothing to compute on this rank, but every layer's all-gather needs it (engine/model/weights.h).
    ZI_RETURN_IF_ERROR(walk_layers(model_->parameters()));
  }

  const size_t V = summary_.vocab_size;
  out.results.resize(input.seqs.size());
  for (size_t i = 0; i < input.seqs.size(); ++i) {
    const SeqStep& s = input.seqs[i];
    SeqState& st = seqs_.at(s.seq_id);
    st.length += static_cast<int32_t>(s.tokens.size());
    st.history.insert(st.history.end(), s.tokens.begin(), s.tokens.end());
    SeqResult& r = out.results[i];
    r.seq_id = s.seq_id;
    if (logits_begin[i] < 0) continue;
    const float* first_row = logits.data() + static_cast<size_t>(logits_begin[i]) * V;
    if (s.want_logits) r.logits.assign(first_row, first_row + s.tokens.size() * V);
    if (s.sample) {
      const float* last = s.want_logits ? first_row + (s.tokens.size() - 1) * V : first_row;
      SampledToken tok = sample_token(std::span<const float>(last, V), st.sampling, st.history, st.rng);
      r.token = tok.token;
      if (st.sampling.return_logprobs) r.logprob = tok.logprob;
    }
  }
  out.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.stats.kv_usage_ratio = kv_->usage_ratio();
  const StreamStats ss = model_->parameters().take_stream_stats();
  backend_->observe_weight_stream(ss.fetch_bytes, ss.copy_seconds, model_->parameters().num_layers());
  out.stats.fetch_bytes = ss.fetch_bytes;
  out.stats.nvme_bytes = ss.nvme_bytes;
  out.stats.copy_seconds = ss.copy_seconds;
  out.stats.nvme_read_seconds = ss.nvme_read_seconds;
  out.stats.stall_seconds = ss.stall_seconds;
  out.stats.allgather_bytes = ss.allgather_bytes;
  out.stats.allgather_seconds = ss.allgather_seconds;
  out.stats.rank = options_.rank;
  out.stats.device_memory_used_bytes = backend_->device_memory_used_bytes();
  return out;
}

}  // namespace zi
