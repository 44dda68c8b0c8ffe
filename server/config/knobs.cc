#include "server/config/knobs.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "engine/core/log.h"
#include "engine/core/size.h"
#include "server/config/config.h"

namespace zi::server {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxTokens = 1u << 24;
constexpr uint32_t kAll = kServe | kGenerate | kBench | kPlan | kConvert;
constexpr uint32_t kEngine = kServe | kGenerate | kBench | kPlan;  // commands that build (or plan) an executor

template <typename T>
using Field = T& (*)(ServeConfig&);

template <typename T>
const T& read(Field<T> f, const ServeConfig& c) {
  return f(const_cast<ServeConfig&>(c));
}

Status bad(const std::string& what, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", msg));
}

std::string trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

StatusOr<uint64_t> parse_uint(std::string_view text, const std::string& what, uint64_t lo, uint64_t hi) {
  const std::string s = trimmed(text);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size())
    return bad(what, absl::StrCat("must be an integer in ", lo, "..", hi, ", got '", s, "'"));
  if (v < lo || v > hi) return bad(what, absl::StrCat("must be ", lo, "..", hi, ", got ", v));
  return v;
}

// Base of every row: key, flag, commands, help.
Knob row(std::string key, std::string flag, uint32_t commands, std::string help) {
  Knob k;
  k.key = std::move(key);
  k.flag = std::move(flag);
  k.commands = k.flag.empty() ? 0 : commands;
  k.help = std::move(help);
  return k;
}

Knob uint_knob(Knob k, Field<uint32_t> f, uint64_t lo, uint64_t hi) {
  k.set = [f, lo, hi](ServeConfig& c, std::string_view t, const std::string& what, const std::string&) -> Status {
    ZI_ASSIGN_OR_RETURN(uint64_t v, parse_uint(t, what, lo, hi));
    f(c) = static_cast<uint32_t>(v);
    return absl::OkStatus();
  };
  k.get = [f](const ServeConfig& c) { return absl::StrCat(read(f, c)); };
  return k;
}

Knob size_knob(Knob k, Field<uint64_t> f, uint64_t lo, uint64_t hi, uint64_t multiple = 1) {
  k.set = [f, lo, hi, multiple](ServeConfig& c, std::string_view t, const std::string& what,
                                const std::string&) -> Status {
    ZI_ASSIGN_OR_RETURN(uint64_t v, parse_size(t, what));
    if (v < lo || v > hi) return bad(what, absl::StrCat("must be ", lo, "..", hi, " bytes, got ", v));
    if (v % multiple != 0)
      return bad(what, absl::StrCat("must be a multiple of ", multiple, " bytes (direct I/O), got ", v));
    f(c) = v;
    return absl::OkStatus();
  };
  k.get = [f](const ServeConfig& c) { return absl::StrCat(read(f, c)); };
  return k;
}

Knob double_knob(Knob k, Field<double> f, double lo, double hi) {
  k.set = [f, lo, hi](ServeConfig& c, std::string_view t, const std::string& what, const std::string&) -> Status {
    const std::string s = trimmed(t);
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v))
      return bad(what, absl::StrCat("must be a number in ", lo, "..", hi, ", got '", s, "'"));
    if (v < lo || v > hi) return bad(what, absl::StrCat("must be ", lo, "..", hi, ", got ", s));
    f(c) = v;
    return absl::OkStatus();
  };
  k.get = [f](const ServeConfig& c) {
    std::ostringstream os;
    os << read(f, c);
    return os.str();
  };
  return k;
}

Knob bool_knob(Knob k, Field<bool> f) {
  k.set = [f](ServeConfig& c, std::string_view t, const std::string& what, const std::string&) -> Status {
    std::string s = trimmed(t);
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (s == "true" || s == "yes" || s == "on" || s == "1") f(c) = true;
    else if (s == "false" || s == "no" || s == "off" || s == "0") f(c) = false;
    else return bad(what, absl::StrCat("must be true or false, got '", trimmed(t), "'"));
    return absl::OkStatus();
  };
  k.get = [f](const ServeConfig& c) { return std::string(read(f, c) ? "true" : "false"); };
  return k;
}

// A string; `check` (optional) validates it. `path`: a relative value is resolved against base_dir.
Knob string_knob(Knob k, Field<std::string> f, bool path = false,
                 std::function<Status(const std::string&, const std::string&)> check = nullptr) {
  k.set = [f, path, check](ServeConfig& c, std::string_view t, const std::string& what,
                           const std::string& base_dir) -> Status {
    std::string v(t);
    if (check) ZI_RETURN_IF_ERROR(check(v, what));
    if (path && !v.empty() && !base_dir.empty() && !fs::path(v).is_absolute())
      v = (fs::path(base_dir) / v).lexically_normal().string();
    f(c) = std::move(v);
    return absl::OkStatus();
  };
  k.get = [f](const ServeConfig& c) { return read(f, c); };
  return k;
}

template <typename E, size_t N>
Knob enum_knob(Knob k, Field<E> f, const std::array<EnumName<E>, N>& names) {
  k.help = absl::StrCat(k.help, ": ", enum_choices(names));
  k.set = [f, &names](ServeConfig& c, std::string_view t, const std::string& what, const std::string&) -> Status {
    auto v = parse_enum(trimmed(t), names);
    if (!v.ok()) return bad(what, v.status().message());
    f(c) = *v;
    return absl::OkStatus();
  };
  k.get = [f, &names](const ServeConfig& c) { return std::string(enum_name(read(f, c), names)); };
  return k;
}

// A string from a fixed list (settings that stay strings above the engine: the scheduler policy, the log level).
Knob choice_knob(Knob k, Field<std::string> f, std::vector<std::string> choices) {
  const std::string list = absl::StrJoin(choices, "|");
  k.help = absl::StrCat(k.help, ": ", list);
  return string_knob(std::move(k), f, false, [choices, list](const std::string& v, const std::string& what) -> Status {
    for (const auto& c : choices)
      if (v == c) return absl::OkStatus();
    return bad(what, absl::StrCat("must be one of ", list, ", got '", v, "'"));
  });
}

Status check_host_port(const std::string& v, const std::string& what) {
  auto hp = parse_host_port(v);
  return hp.ok() ? absl::OkStatus() : bad(what, hp.status().message());
}

Knob engine(Knob k) {
  k.engine = true;
  return k;
}
Knob reloadable(Knob k) {
  k.reloadable = true;
  return k;
}
Knob bare(Knob k) {
  k.bare = true;
  return k;
}

std::vector<Knob> make_knobs() {
  using C = ServeConfig;
  std::vector<Knob> t;
  // model
  t.push_back(engine(string_knob(row("model.path", "", 0, "Hugging Face model folder"),
                                 [](C& c) -> std::string& { return c.engine.model_dir; }, /*path=*/true,
                                 [](const std::string& v, const std::string& what) -> Status {
                                   return v.empty() ? bad(what, "must be a folder path") : absl::OkStatus();
                                 })));
  t.push_back(engine(string_knob(row("model.name", "", 0, "Served model name"),
                                 [](C& c) -> std::string& { return c.engine.served_name; })));
  t.push_back(engine(enum_knob(row("model.dtype", "--dtype", kAll, "Compute dtype on the GPU"),
                               +[](C& c) -> ComputeDtype& { return c.engine.dtype; }, kComputeDtypeNames)));
  t.push_back(engine(uint_knob(row("model.max_context", "--max-context", kEngine,
                                   "Tokens per sequence (0 = from config.json): 0..16777216"),
                               [](C& c) -> uint32_t& { return c.engine.max_context; }, 0, kMaxTokens)));
  t.push_back(engine(bare(bool_knob(row("model.enforce_eager", "--enforce-eager", kEngine,
                                        "Run every step op by op: no CUDA graphs for decode steps"),
                                    [](C& c) -> bool& { return c.engine.enforce_eager; }))));
  t.push_back(engine(enum_knob(row("device", "--device", kAll, "Compute device"),
                               +[](C& c) -> Device& { return c.engine.device; }, kDeviceNames)));
  // server
  t.push_back(string_knob(row("server.listen", "--listen", kServe, "gRPC address HOST:PORT (port 0 = any free port)"),
                          [](C& c) -> std::string& { return c.listen; }, false, check_host_port));
  t.push_back(string_knob(row("server.metrics_listen", "--metrics-listen", kServe, "Prometheus /metrics HOST:PORT"),
                          [](C& c) -> std::string& { return c.metrics_listen; }, false, check_host_port));
  t.push_back(string_knob(row("server.health_listen", "--health-listen", kServe,
                              "Plaintext HOST:PORT serving only grpc.health.v1, for probes (empty = none)"),
                          [](C& c) -> std::string& { return c.health_listen; }, false,
                          [](const std::string& v, const std::string& what) {
                            return v.empty() ? absl::OkStatus() : check_host_port(v, what);
                          }));
  t.push_back(string_knob(row("server.http_listen", "--http-listen", kServe,
                              "OpenAI-compatible HTTP API HOST:PORT (port 0 = any free port; empty = off)"),
                          [](C& c) -> std::string& { return c.http_listen; }, false,
                          [](const std::string& v, const std::string& what) {
                            return v.empty() ? absl::OkStatus() : check_host_port(v, what);
                          }));
  t.push_back(size_knob(row("server.http_max_body_bytes", "", 0, ""),
                        [](C& c) -> uint64_t& { return c.http_max_body_bytes; }, 1024, uint64_t{1} << 30));
  t.push_back(reloadable(uint_knob(row("server.max_queue", "", 0, ""), [](C& c) -> uint32_t& { return c.max_queue; },
                                   1, 1000000)));
  // An integer, or auto (stored as 0): the throughput planner chooses it (engine/zero/planner/).
  Knob batch = uint_knob(row("server.max_batch_size", "--max-batch-size", kServe | kPlan,
                             "Sequences per step on each rank: 1..1024, or auto (the throughput planner)"),
                         [](C& c) -> uint32_t& { return c.engine.max_batch_size; }, 1, 1024);
  batch.set = [inner = batch.set](C& c, std::string_view t, const std::string& what, const std::string& b) -> Status {
    if (trimmed(t) == "auto") {
      c.engine.max_batch_size = 0;
      return absl::OkStatus();
    }
    Status s = inner(c, t, what, b);
    if (!s.ok() && absl::StrContains(s.message(), "must be"))
      return bad(what, absl::StrCat("must be 1..1024 or auto, got ", trimmed(t)));
    return s;
  };
  batch.get = [](const C& c) {
    return c.engine.max_batch_size == 0 ? std::string("auto") : absl::StrCat(c.engine.max_batch_size);
  };
  t.push_back(engine(std::move(batch)));
  t.push_back(reloadable(uint_knob(row("server.max_new_tokens_default", "", 0, ""),
                                   [](C& c) -> uint32_t& { return c.max_new_tokens_default; }, 1, kMaxTokens)));
  t.push_back(reloadable(uint_knob(row("server.max_prompt_tokens", "", 0, ""),
                                   [](C& c) -> uint32_t& { return c.max_prompt_tokens; }, 0, kMaxTokens)));
  t.push_back(reloadable(double_knob(row("server.shutdown_grace_seconds", "", 0, ""),
                                     [](C& c) -> double& { return c.shutdown_grace_seconds; }, 0, 3600)));
  t.push_back(uint_knob(row("server.max_streams_per_connection", "", 0, ""),
                        [](C& c) -> uint32_t& { return c.max_streams_per_connection; }, 1, 65536));
  t.push_back(uint_knob(row("server.keepalive_seconds", "", 0, ""),
                        [](C& c) -> uint32_t& { return c.keepalive_seconds; }, 0, 86400));
  t.push_back(string_knob(row("server.tls.cert_file", "", 0, ""), [](C& c) -> std::string& { return c.tls.cert_file; },
                          true));
  t.push_back(string_knob(row("server.tls.key_file", "", 0, ""), [](C& c) -> std::string& { return c.tls.key_file; },
                          true));
  t.push_back(string_knob(row("server.tls.client_ca_file", "", 0, ""),
                          [](C& c) -> std::string& { return c.tls.client_ca_file; }, true));
  t.push_back(bool_knob(row("server.tls.require_client_cert", "", 0, ""),
                        [](C& c) -> bool& { return c.tls.require_client_cert; }));
  t.push_back(reloadable(string_knob(row("server.auth_token_file", "", 0, ""),
                                     [](C& c) -> std::string& { return c.auth_token_file; }, true)));
  t.push_back(bare(bool_knob(row("server.allow_insecure", "--allow-insecure", kServe,
                                 "Serve plaintext gRPC on an address other than loopback"),
                             [](C& c) -> bool& { return c.allow_insecure; })));
  // parallel
  t.push_back(engine(uint_knob(row("parallel.num_gpus", "--num-gpus", kAll,
                                   "Ranks: GPU workers, or CPU workers on the CPU backend: 1..64"),
                               [](C& c) -> uint32_t& { return c.engine.world_size; }, 1, 64)));
  t.push_back(double_knob(row("parallel.heartbeat_timeout_seconds", "--heartbeat-timeout", kServe | kGenerate | kBench,
                              "Seconds without a worker heartbeat before the worker counts as lost: 1..86400"),
                          [](C& c) -> double& { return c.heartbeat_timeout_seconds; }, 1, 86400));
  t.push_back(choice_knob(row("parallel.workers", "--workers", kServe,
                              "Worker processes: spawned here, or external ones that join over TCP"),
                          [](C& c) -> std::string& { return c.workers; }, {"spawn", "external"}));
  t.push_back(string_knob(row("parallel.worker_listen", "--worker-listen", kServe,
                              "With --workers external: HOST:PORT workers join on (mutual TLS; port 0 = any free port)"),
                          [](C& c) -> std::string& { return c.worker_listen; }, false, check_host_port));
  t.push_back(double_knob(row("parallel.join_timeout_seconds", "", 0, ""),
                          [](C& c) -> double& { return c.join_timeout_seconds; }, 1, 86400));
  t.push_back(engine(enum_knob(row("parallel.cpu_communicator", "--cpu-communicator", kServe | kGenerate | kBench,
                                   "How CPU ranks all-gather (auto = shm when every rank is on one host)"),
                               +[](C& c) -> CpuCommunicator& { return c.engine.cpu_communicator; },
                               kCpuCommunicatorNames)));
  // memory
  t.push_back(engine(size_knob(row("memory.gpu_limit", "--gpu-memory-limit", kEngine,
                                   "Bytes this process may hold on each GPU, CUDA context included (NVML), e.g. "
                                   "48GiB (0 = the whole card)"),
                               [](C& c) -> uint64_t& { return c.engine.gpu_memory_limit; }, 0, UINT64_MAX)));
  t.push_back(engine(size_knob(row("memory.host_limit", "--host-memory-limit", kEngine,
                                   "Pinned + pageable host bytes for weights and KV cache, e.g. 200GiB (0 = "
                                   "MemAvailable at start)"),
                               [](C& c) -> uint64_t& { return c.engine.host_memory_limit; }, 0, UINT64_MAX)));
  // offload
  t.push_back(engine(enum_knob(row("offload.tier", "--offload-tier", kEngine,
                                   "Where streamed layers live (--cpu-offload = cpu, --disk-offload = nvme)"),
                               +[](C& c) -> OffloadTier& { return c.engine.offload_tier; }, kOffloadTierNames)));
  t.push_back(engine(string_knob(row("offload.dir", "--offload-dir", kEngine, "Directory of the NVMe offload store"),
                                 [](C& c) -> std::string& { return c.engine.offload_dir; }, true)));
  t.push_back(engine(bare(bool_knob(row("offload.pin_memory", "--pin-memory", kEngine,
                                        "Pin host weight buffers: true|false (bare = true)"),
                                    [](C& c) -> bool& { return c.engine.pin_memory; }))));
  t.push_back(engine(size_knob(row("offload.gpu_weights_budget", "--gpu-weights-budget", kEngine,
                                   "Cap on resident weight bytes per GPU, e.g. 2GiB (0 = as many layers as fit)"),
                               [](C& c) -> uint64_t& { return c.engine.gpu_weights_budget; }, 0, UINT64_MAX)));
  t.push_back(engine(uint_knob(row("offload.prefetch_depth", "--prefetch-depth", kEngine,
                                   "GPU slots in the streaming ring: 1..16, 0 = auto (20 ms of copy)"),
                               [](C& c) -> uint32_t& { return c.engine.prefetch_depth; }, 0, 16)));
  t.push_back(engine(size_knob(row("offload.aio.block_size", "--aio-block-size", kEngine,
                                   "NVMe tier: bytes per read request, a multiple of 4096: 4KiB..1GiB"),
                               [](C& c) -> uint64_t& { return c.engine.aio_block_size; }, 4096, 1ull << 30, 4096)));
  t.push_back(engine(uint_knob(row("offload.aio.queue_depth", "--aio-queue-depth", kEngine,
                                   "NVMe tier: reads in flight: 1..1024"),
                               [](C& c) -> uint32_t& { return c.engine.aio_queue_depth; }, 1, 1024)));
  // quantization
  Knob bits = uint_knob(row("quantization.bits", "--quant-bits", kAll, "Weight quantization: 4, 8 or 16 (off)"),
                        [](C& c) -> uint32_t& { return c.engine.quant_bits; }, 4, 16);
  bits.set = [inner = bits.set](C& c, std::string_view t, const std::string& what, const std::string& b) -> Status {
    const std::string s = trimmed(t);
    if (s != "4" && s != "8" && s != "16") return bad(what, absl::StrCat("must be 4, 8 or 16, got '", s, "'"));
    return inner(c, s, what, b);
  };
  t.push_back(engine(std::move(bits)));
  t.push_back(engine(uint_knob(row("quantization.group_size", "--quant-group-size", kAll,
                                   "Weights per quantization group: 1..1048576"),
                               [](C& c) -> uint32_t& { return c.engine.quant_group_size; }, 1, 1u << 20)));
  t.push_back(engine(bare(bool_knob(row("quantization.embeddings", "--quant-embeddings", kEngine,
                                        "Quantize the LM head too, with --quant-bits"),
                                    [](C& c) -> bool& { return c.engine.quant_embeddings; }))));
  // kv_cache
  t.push_back(engine(bare(bool_knob(row("kv_cache.offload", "--kv-offload", kEngine,
                                        "Keep the KV cache in pinned CPU memory"),
                                    [](C& c) -> bool& { return c.engine.kv_offload; }))));
  t.push_back(engine(enum_knob(row("kv_cache.offload_attention", "--kv-offload-attention", kEngine,
                                   "With --kv-offload: who computes decode attention over the host cache"),
                               +[](C& c) -> KvOffloadAttention& { return c.engine.kv_offload_attention; },
                               kKvOffloadAttentionNames)));
  t.push_back(engine(size_knob(row("kv_cache.max_bytes", "--kv-cache-bytes", kEngine,
                                   "KV cache size, e.g. 8GiB (0 = GPU memory left, or max_batch_size full contexts "
                                   "in host memory)"),
                               [](C& c) -> uint64_t& { return c.engine.kv_cache_bytes; }, 0, UINT64_MAX)));
  t.push_back(engine(uint_knob(row("kv_cache.block_size", "--kv-block-size", kEngine, "Tokens per KV block: 1..1024"),
                               [](C& c) -> uint32_t& { return c.engine.kv_block_size; }, 1, 1024)));
  // scheduler
  t.push_back(choice_knob(row("scheduler.policy", "--scheduler-policy,--policy", kServe | kGenerate | kBench,
                              "Batching policy"),
                          [](C& c) -> std::string& { return c.scheduler_policy; }, {"continuous", "static"}));
  t.push_back(uint_knob(row("scheduler.max_num_batched_tokens", "--max-num-batched-tokens", kServe | kGenerate | kBench,
                            "Tokens per step (decodes + prefill chunks): 1..16777216, 0 = auto"),
                        [](C& c) -> uint32_t& { return c.max_num_batched_tokens; }, 0, 1u << 24));
  // logging
  t.push_back(reloadable(choice_knob(row("logging.level", "--log-level", kServe, "Log level"),
                                     [](C& c) -> std::string& { return c.log_level; },
                                     {"debug", "info", "warning", "error"})));
  // debug (tests only)
  t.push_back(engine(uint_knob(row("debug.step_delay_ms", "", 0, ""),
                               [](C& c) -> uint32_t& { return c.engine.debug_step_delay_ms; }, 0, 60000)));
  return t;
}

}  // namespace

const std::vector<Knob>& knobs() {
  static const std::vector<Knob> table = make_knobs();
  return table;
}

const Knob* find_knob(std::string_view key) {
  for (const Knob& k : knobs())
    if (k.key == key) return &k;
  return nullptr;
}

Status apply_flags(const FlagValues& flags, ServeConfig* config) {
  for (const auto& [knob, text] : flags) {
    const std::string name = knob->flag.substr(0, knob->flag.find(','));
    ZI_RETURN_IF_ERROR(knob->set(*config, text, name, /*base_dir=*/""));
  }
  return absl::OkStatus();
}

}  // namespace zi::server
