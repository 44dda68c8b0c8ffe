#include "engine/worker/convert.h"

namespace zi::worker {
namespace {

// Each options enum crosses the socket as its proto twin, numbered alike: the casts below rely on it.
template <typename E, typename P>
constexpr bool same_numbers(E e, P p) {
  return static_cast<int>(e) == static_cast<int>(p);
}
static_assert(same_numbers(Device::kAuto, pb::DEVICE_AUTO) && same_numbers(Device::kCpu, pb::DEVICE_CPU) &&
              same_numbers(Device::kCuda, pb::DEVICE_CUDA));
static_assert(same_numbers(ComputeDtype::kAuto, pb::COMPUTE_DTYPE_AUTO) &&
              same_numbers(ComputeDtype::kBFloat16, pb::COMPUTE_DTYPE_BFLOAT16) &&
              same_numbers(ComputeDtype::kFloat16, pb::COMPUTE_DTYPE_FLOAT16));
static_assert(same_numbers(OffloadTier::kNone, pb::OFFLOAD_TIER_NONE) &&
              same_numbers(OffloadTier::kCpu, pb::OFFLOAD_TIER_CPU) &&
              same_numbers(OffloadTier::kNvme, pb::OFFLOAD_TIER_NVME));
static_assert(same_numbers(KvOffloadAttention::kAuto, pb::KV_OFFLOAD_ATTENTION_AUTO) &&
              same_numbers(KvOffloadAttention::kGpu, pb::KV_OFFLOAD_ATTENTION_GPU) &&
              same_numbers(KvOffloadAttention::kCpu, pb::KV_OFFLOAD_ATTENTION_CPU));
static_assert(same_numbers(CpuCommunicator::kAuto, pb::CPU_COMMUNICATOR_AUTO) &&
              same_numbers(CpuCommunicator::kShm, pb::CPU_COMMUNICATOR_SHM) &&
              same_numbers(CpuCommunicator::kGloo, pb::CPU_COMMUNICATOR_GLOO));

// A proto3 enum is open (any number may arrive); one outside the C++ enum's table becomes its first value.
template <typename E, size_t N>
E enum_from(int v, const std::array<EnumName<E>, N>& names) {
  for (const auto& n : names)
    if (static_cast<int>(n.value) == v) return n.value;
  return names[0].value;
}

}  // namespace

void to_proto(const EngineOptions& in, pb::EngineOptions* out) {
  out->set_model_dir(in.model_dir);
  out->set_served_name(in.served_name);
  out->set_device(static_cast<pb::Device>(in.device));
  out->set_dtype(static_cast<pb::ComputeDtype>(in.dtype));
  out->set_max_context(in.max_context);
  out->set_max_batch_size(in.max_batch_size);
  out->set_dummy_weights(in.dummy_weights);
  out->set_dummy_seed(in.dummy_seed);
  out->set_offload_tier(static_cast<pb::OffloadTier>(in.offload_tier));
  out->set_offload_dir(in.offload_dir);
  out->set_pin_memory(in.pin_memory);
  out->set_gpu_weights_budget(in.gpu_weights_budget);
  out->set_prefetch_depth(in.prefetch_depth);
  out->set_aio_block_size(in.aio_block_size);
  out->set_aio_queue_depth(in.aio_queue_depth);
  out->set_quant_bits(in.quant_bits);
  out->set_quant_group_size(in.quant_group_size);
  out->set_kv_offload(in.kv_offload);
  out->set_enforce_eager(in.enforce_eager);
  out->set_kv_cache_bytes(in.kv_cache_bytes);
  out->set_kv_block_size(in.kv_block_size);
  out->set_kv_offload_attention(static_cast<pb::KvOffloadAttention>(in.kv_offload_attention));
  out->set_rank(in.rank);
  out->set_world_size(in.world_size);
  out->set_cpu_communicator(static_cast<pb::CpuCommunicator>(in.cpu_communicator));
  out->set_debug_step_delay_ms(in.debug_step_delay_ms);
  out->set_cpu_threads(in.cpu_threads);
  out->set_quant_embeddings(in.quant_embeddings);
  out->set_max_step_tokens(in.max_step_tokens);
  out->set_gpu_memory_limit(in.gpu_memory_limit);
  out->set_host_memory_limit(in.host_memory_limit);
}

EngineOptions from_proto(const pb::EngineOptions& in) {
  EngineOptions o;
  o.model_dir = in.model_dir();
  o.served_name = in.served_name();
  o.device = enum_from(in.device(), kDeviceNames);
  o.dtype = enum_from(in.dtype(), kComputeDtypeNames);
  o.max_context = in.max_context();
  o.max_batch_size = in.max_batch_size();
  o.dummy_weights = in.dummy_weights();
  o.dummy_seed = in.dummy_seed();
  o.offload_tier = enum_from(in.offload_tier(), kOffloadTierNames);
  o.offload_dir = in.offload_dir();
  o.pin_memory = in.pin_memory();
  o.gpu_weights_budget = in.gpu_weights_budget();
  o.prefetch_depth = in.prefetch_depth();
  o.aio_block_size = in.aio_block_size();
  o.aio_queue_depth = in.aio_queue_depth();
  o.quant_bits = in.quant_bits();
  o.quant_group_size = in.quant_group_size();
  o.kv_offload = in.kv_offload();
  o.enforce_eager = in.enforce_eager();
  o.kv_cache_bytes = in.kv_cache_bytes();
  if (in.kv_block_size() > 0) o.kv_block_size = in.kv_block_size();
  o.kv_offload_attention = enum_from(in.kv_offload_attention(), kKvOffloadAttentionNames);
  o.rank = in.rank();
  o.world_size = in.world_size();
  o.cpu_communicator = enum_from(in.cpu_communicator(), kCpuCommunicatorNames);
  o.debug_step_delay_ms = in.debug_step_delay_ms();
  o.cpu_threads = in.cpu_threads();
  o.quant_embeddings = in.quant_embeddings();
  o.max_step_tokens = in.max_step_tokens();
  o.gpu_memory_limit = in.gpu_memory_limit();
  o.host_memory_limit = in.host_memory_limit();
  return o;
}

void to_proto(const ModelSummary& in, pb::ModelSummary* out) {
  out->set_name(in.name);
  out->set_architecture(in.architecture);
  out->set_parameters(in.parameters);
  out->set_vocab_size(in.vocab_size);
  out->set_max_context(in.max_context);
  out->set_dtype(in.dtype);
  out->set_device(in.device);
  out->set_num_ranks(in.num_ranks);
  for (int32_t id : in.eos_token_ids) out->add_eos_token_ids(id);
  out->set_bos_token_id(in.bos_token_id);
  out->set_kv_block_size(in.kv_block_size);
  out->set_kv_num_blocks(in.kv_num_blocks);
  out->set_quant_bits(in.quant_bits);
  out->set_quant_group_size(in.quant_group_size);
  out->set_layer_weight_bytes(in.layer_weight_bytes);
  for (const std::string& t : in.layer_tiers) out->add_layer_tiers(t);
  out->set_streamed_bytes_per_step(in.streamed_bytes_per_step);
  out->set_prefetch_depth(in.prefetch_depth);
  out->set_max_step_tokens(in.max_step_tokens);
}

ModelSummary from_proto(const pb::ModelSummary& in) {
  ModelSummary s;
  s.name = in.name();
  s.architecture = in.architecture();
  s.parameters = in.parameters();
  s.vocab_size = in.vocab_size();
  s.max_context = in.max_context();
  s.dtype = in.dtype();
  s.device = in.device();
  s.num_ranks = in.num_ranks();
  s.eos_token_ids.assign(in.eos_token_ids().begin(), in.eos_token_ids().end());
  s.bos_token_id = in.bos_token_id();
  s.kv_block_size = in.kv_block_size();
  s.kv_num_blocks = in.kv_num_blocks();
  s.quant_bits = in.quant_bits();
  s.quant_group_size = in.quant_group_size();
  s.layer_weight_bytes = in.layer_weight_bytes();
  s.layer_tiers.assign(in.layer_tiers().begin(), in.layer_tiers().end());
  s.streamed_bytes_per_step = in.streamed_bytes_per_step();
  s.prefetch_depth = in.prefetch_depth();
  s.max_step_tokens = in.max_step_tokens();
  return s;
}

static void to_proto(const SamplingParams& in, pb::SamplingParams* out) {
  out->set_temperature(in.temperature);
  out->set_top_k(in.top_k);
  out->set_top_p(in.top_p);
  out->set_repetition_penalty(in.repetition_penalty);
  out->set_seed(in.seed);
  out->set_return_logprobs(in.return_logprobs);
}

static SamplingParams from_proto(const pb::SamplingParams& in) {
  SamplingParams p;
  p.temperature = in.temperature();
  p.top_k = in.top_k();
  p.top_p = in.top_p();
  p.repetition_penalty = in.repetition_penalty();
  p.seed = in.seed();
  p.return_logprobs = in.return_logprobs();
  return p;
}

void to_proto(const StepInput& in, pb::StepInput* out) {
  for (const SeqStep& s : in.seqs) {
    pb::SeqStep* o = out->add_seqs();
    o->set_seq_id(s.seq_id);
    o->mutable_tokens()->Add(s.tokens.begin(), s.tokens.end());
    if (s.first) to_proto(s.sampling, o->mutable_sampling());
    o->set_first(s.first);
    o->set_sample(s.sample);
    o->set_want_logits(s.want_logits);
  }
  for (const SeqRelease& r : in.release) out->add_release(r.seq_id);
}

StepInput from_proto(const pb::StepInput& in) {
  StepInput out;
  out.seqs.reserve(in.seqs_size());
  for (const pb::SeqStep& o : in.seqs()) {
    SeqStep s;
    s.seq_id = o.seq_id();
    s.tokens.assign(o.tokens().begin(), o.tokens().end());
    if (o.has_sampling()) s.sampling = from_proto(o.sampling());
    s.first = o.first();
    s.sample = o.sample();
    s.want_logits = o.want_logits();
    out.seqs.push_back(std::move(s));
  }
  out.release.assign(in.release().begin(), in.release().end());  // rank 0 each (convert.h)
  return out;
}

void to_proto(const StepOutput& in, pb::StepReply* out) {
  for (const SeqResult& r : in.results) {
    pb::SeqResult* o = out->add_results();
    o->set_seq_id(r.seq_id);
    o->set_token(r.token);
    o->set_logprob(r.logprob);
    o->mutable_logits()->Add(r.logits.begin(), r.logits.end());
  }
  pb::StepStats* st = out->mutable_stats();
  st->set_seconds(in.stats.seconds);
  st->set_prefill_tokens(in.stats.prefill_tokens);
  st->set_decode_tokens(in.stats.decode_tokens);
  st->set_fetch_bytes(in.stats.fetch_bytes);
  st->set_nvme_bytes(in.stats.nvme_bytes);
  st->set_copy_seconds(in.stats.copy_seconds);
  st->set_nvme_read_seconds(in.stats.nvme_read_seconds);
  st->set_stall_seconds(in.stats.stall_seconds);
  st->set_allgather_bytes(in.stats.allgather_bytes);
  st->set_allgather_seconds(in.stats.allgather_seconds);
  st->set_rank(in.stats.rank);
  st->set_device_memory_used_bytes(in.stats.device_memory_used_bytes);
  st->set_kv_usage_ratio(in.stats.kv_usage_ratio);
}

StepOutput from_proto(const pb::StepReply& in) {
  StepOutput out;
  out.results.reserve(in.results_size());
  for (const pb::SeqResult& o : in.results()) {
    SeqResult r;
    r.seq_id = o.seq_id();
    r.token = o.token();
    r.logprob = o.logprob();
    r.logits.assign(o.logits().begin(), o.logits().end());
    out.results.push_back(std::move(r));
  }
  const pb::StepStats& st = in.stats();
  out.stats.seconds = st.seconds();
  out.stats.prefill_tokens = st.prefill_tokens();
  out.stats.decode_tokens = st.decode_tokens();
  out.stats.fetch_bytes = st.fetch_bytes();
  out.stats.nvme_bytes = st.nvme_bytes();
  out.stats.copy_seconds = st.copy_seconds();
  out.stats.nvme_read_seconds = st.nvme_read_seconds();
  out.stats.stall_seconds = st.stall_seconds();
  out.stats.allgather_bytes = st.allgather_bytes();
  out.stats.allgather_seconds = st.allgather_seconds();
  out.stats.rank = st.rank();
  out.stats.device_memory_used_bytes = st.device_memory_used_bytes();
  out.stats.kv_usage_ratio = st.kv_usage_ratio();
  return out;
}

void to_proto(const Status& in, pb::Error* out) {
  out->set_code(static_cast<int32_t>(in.code()));
  out->set_message(std::string(in.message()));
}

Status from_proto(const pb::Error& in) {
  auto code = static_cast<absl::StatusCode>(in.code());
  if (code == absl::StatusCode::kOk) code = absl::StatusCode::kUnknown;
  return Status(code, in.message());
}

}  // namespace zi::worker
