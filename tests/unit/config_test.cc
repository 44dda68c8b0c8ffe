// The YAML deployment file: DESIGN.md's schema, defaults, errors naming the key path, flag overrides (the knob
// table's apply_flags, which the command-line binder feeds).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/core/size.h"
#include "server/config/config.h"
#include "server/config/knobs.h"

namespace zi::server {
namespace {

StatusOr<ServeConfig> parse(const std::string& yaml) { return parse_config(yaml, "test.yaml", "/base"); }

std::string error_of(const std::string& yaml) {
  auto c = parse(yaml);
  return c.ok() ? "(accepted)" : std::string(c.status().message());
}

// One flag given on the command line: the knob of `key` (which must exist) and its text.
std::pair<const Knob*, std::string> flag(const std::string& key, const std::string& text) {
  const Knob* k = find_knob(key);
  EXPECT_NE(k, nullptr) << "no knob " << key;
  return {k, text};
}

TEST(Config, OnlyModelPathIsRequiredAndDefaultsFollowTheDesign) {
  auto c = parse("model: {path: models/llama}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.model_dir, "/base/models/llama");  // relative to the config file's folder
  EXPECT_EQ(c->engine.served_name, "llama");
  EXPECT_EQ(c->engine.dtype, ComputeDtype::kAuto);
  EXPECT_EQ(c->engine.device, Device::kAuto);
  EXPECT_EQ(c->listen, "127.0.0.1:50051");
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9400");
  EXPECT_EQ(c->max_queue, 256u);
  EXPECT_EQ(c->engine.max_batch_size, 16u);
  EXPECT_EQ(c->max_new_tokens_default, 256u);
  EXPECT_EQ(c->max_prompt_tokens, 0u);
  EXPECT_EQ(c->shutdown_grace_seconds, 30);
  EXPECT_EQ(c->engine.world_size, 1u);
  EXPECT_EQ(c->engine.offload_tier, OffloadTier::kNone);
  EXPECT_EQ(c->engine.offload_dir, "/var/lib/zeroinfer/offload");
  EXPECT_TRUE(c->engine.pin_memory);
  EXPECT_EQ(c->engine.aio_block_size, 1u << 20);
  EXPECT_EQ(c->engine.aio_queue_depth, 8u);
  EXPECT_EQ(c->engine.quant_bits, 16u);
  EXPECT_EQ(c->engine.quant_group_size, 64u);
  EXPECT_FALSE(c->engine.kv_offload);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->engine.debug_step_delay_ms, 0u);
  EXPECT_EQ(c->http_listen, "127.0.0.1:8000");
  EXPECT_EQ(c->http_max_body_bytes, 8u << 20);
  EXPECT_EQ(parse("model: {path: /abs/m/}\n")->engine.served_name, "m");
}

TEST(Config, ParsesEveryKeyOfTheSchema) {
  auto c = parse(R"(
model:    {path: /m/opt, name: opt-30b, dtype: float16, max_context: 4096, enforce_eager: true}
device: cuda
server:   {listen: "0.0.0.0:6000", metrics_listen: "[::1]:9500", health_listen: "0.0.0.0:6001", http_listen: "",
           http_max_body_bytes: 1MiB, max_queue: 8, max_batch_size: 32,
           max_new_tokens_default: 100, max_prompt_tokens: 1000, shutdown_grace_seconds: 2.5,
           max_streams_per_connection: 7, keepalive_seconds: 0, auth_token_file: token, allow_insecure: true,
           tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem, require_client_cert: true}}
parallel: {num_gpus: 4, heartbeat_timeout_seconds: 5, workers: external, worker_listen: "10.0.0.1:7000",
           join_timeout_seconds: 30, cpu_communicator: gloo}
memory:   {gpu_limit: 48GiB, host_limit: 200GB}
offload:  {tier: nvme, dir: store, pin_memory: false, gpu_weights_budget: 2GiB, prefetch_depth: 3,
           aio: {block_size: 512KiB, queue_depth: 16}}
quantization: {bits: 4, group_size: 128, embeddings: true}
kv_cache: {offload: true, offload_attention: cpu, max_bytes: 1.5GiB, block_size: 32}
scheduler: {policy: static, max_num_batched_tokens: 512}
logging:  {level: debug}
debug:    {step_delay_ms: 25}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  const EngineOptions& e = c->engine;
  EXPECT_EQ(e.model_dir, "/m/opt");
  EXPECT_EQ(e.served_name, "opt-30b");
  EXPECT_EQ(e.dtype, ComputeDtype::kFloat16);
  EXPECT_EQ(e.max_context, 4096u);
  EXPECT_TRUE(e.enforce_eager);
  EXPECT_EQ(e.device, Device::kCuda);
  EXPECT_EQ(c->listen, "0.0.0.0:6000");
  EXPECT_EQ(c->metrics_listen, "[::1]:9500");
  EXPECT_EQ(c->health_listen, "0.0.0.0:6001");
  EXPECT_EQ(c->http_listen, "");  // off
  EXPECT_EQ(c->http_max_body_bytes, 1u << 20);
  EXPECT_EQ(c->max_queue, 8u);
  EXPECT_EQ(e.max_batch_size, 32u);
  EXPECT_EQ(c->max_new_tokens_default, 100u);
  EXPECT_EQ(c->max_prompt_tokens, 1000u);
  EXPECT_DOUBLE_EQ(c->shutdown_grace_seconds, 2.5);
  EXPECT_EQ(c->max_streams_per_connection, 7u);
  EXPECT_EQ(c->keepalive_seconds, 0u);
  EXPECT_EQ(c->auth_token_file, "/base/token");
  EXPECT_TRUE(c->allow_insecure);
  EXPECT_EQ(c->tls.cert_file, "/base/c.pem");
  EXPECT_EQ(e.world_size, 4u);
  EXPECT_DOUBLE_EQ(c->heartbeat_timeout_seconds, 5);
  EXPECT_EQ(c->workers, "external");
  EXPECT_EQ(c->worker_listen, "10.0.0.1:7000");
  EXPECT_DOUBLE_EQ(c->join_timeout_seconds, 30);
  EXPECT_EQ(c->engine.cpu_communicator, CpuCommunicator::kGloo);
  EXPECT_EQ(e.gpu_memory_limit, 48ull << 30);
  EXPECT_EQ(e.host_memory_limit, 200000000000ull);
  EXPECT_EQ(e.offload_tier, OffloadTier::kNvme);
  EXPECT_EQ(e.offload_dir, "/base/store");
  EXPECT_FALSE(e.pin_memory);
  EXPECT_EQ(e.gpu_weights_budget, 2ull << 30);
  EXPECT_EQ(e.prefetch_depth, 3u);
  EXPECT_EQ(e.aio_block_size, 512u << 10);
  EXPECT_EQ(e.aio_queue_depth, 16u);
  EXPECT_EQ(e.quant_bits, 4u);
  EXPECT_EQ(e.quant_group_size, 128u);
  EXPECT_TRUE(e.quant_embeddings);
  EXPECT_TRUE(e.kv_offload);
  EXPECT_EQ(e.kv_offload_attention, KvOffloadAttention::kCpu);
  EXPECT_EQ(e.kv_cache_bytes, 3ull << 29);
  EXPECT_EQ(e.kv_block_size, 32u);
  EXPECT_EQ(c->scheduler_policy, "static");
  EXPECT_EQ(c->max_num_batched_tokens, 512u);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(e.debug_step_delay_ms, 25u);

  // The file above sets every key of the table to a value other than its default: a new knob extends it.
  auto defaults = parse("model: {path: /base/models/llama}\n");
  ASSERT_TRUE(defaults.ok());
  std::vector<std::string> unchanged;
  for (const Knob& k : knobs())
    if (k.get(*defaults) == k.get(*c)) unchanged.push_back(k.key);
  EXPECT_TRUE(unchanged.empty()) << "keys the schema test does not set: " << ::testing::PrintToString(unchanged);
  EXPECT_EQ(diff_configs(*defaults, *c).size(), knobs().size());
}

// server.max_batch_size is an integer or auto (0 in EngineOptions: the throughput planner chooses it).
TEST(Config, MaxBatchSizeIsAnIntegerOrAuto) {
  auto a = parse("model: {path: m}\nserver: {max_batch_size: auto}\n");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->engine.max_batch_size, 0u);
  EXPECT_EQ(find_knob("server.max_batch_size")->get(*a), "auto");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {max_batch_size: automatic}\n"),
            "test.yaml: server.max_batch_size: must be 1..1024 or auto, got automatic");
  EXPECT_EQ(error_of("model: {path: m}\nmemory: {gpu_limit: lots}\n"),
            "test.yaml: memory.gpu_limit: must be a size such as 2GiB, 512MiB, 1.5GB or 1048576, got 'lots'");
}

TEST(Config, BadValuesNameTheFileAndKeyPath) {
  EXPECT_EQ(error_of("model: {path: m}\nserver: {max_batch_size: 0}\n"),
            "test.yaml: server.max_batch_size: must be 1..1024 or auto, got 0");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {max_queue: -3}\n"),
            "test.yaml: server.max_queue: must be an integer in 1..1000000, got '-3'");
  EXPECT_EQ(error_of("{}"), "test.yaml: model.path: is required (the Hugging Face model folder)");
  EXPECT_EQ(error_of(""), "test.yaml: model.path: is required (the Hugging Face model folder)");
  EXPECT_EQ(error_of("model: {path: m}\ndevice: tpu\n"), "test.yaml: device: must be one of auto|cpu|cuda, got 'tpu'");
  EXPECT_EQ(error_of("model: {path: m}\nquantization: {bits: 5}\n"),
            "test.yaml: quantization.bits: must be 4, 8 or 16, got '5'");
  EXPECT_EQ(error_of("model: {path: m}\noffload: {tier: tape}\n"),
            "test.yaml: offload.tier: must be one of none|cpu|nvme, got 'tape'");
  EXPECT_EQ(error_of("model: {path: m}\noffload: {pin_memory: maybe}\n"),
            "test.yaml: offload.pin_memory: must be true or false, got 'maybe'");
  EXPECT_EQ(error_of("model: {path: m}\nkv_cache: {offload: 3}\n"),
            "test.yaml: kv_cache.offload: must be true or false, got '3'");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {listen: localhost}\n"),
            "test.yaml: server.listen: expected HOST:PORT, got 'localhost'");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {metrics_listen: \"h:70000\"}\n"),
            "test.yaml: server.metrics_listen: port must be 0..65535, got '70000'");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {health_listen: \"8081\"}\n"),
            "test.yaml: server.health_listen: expected HOST:PORT, got '8081'");
  EXPECT_EQ(error_of("model: {path: m}\noffload: {aio: {block_size: 5000}}\n"),
            "test.yaml: offload.aio.block_size: must be a multiple of 4096 bytes (direct I/O), got 5000");
  EXPECT_EQ(error_of("model: {path: m}\noffload: {gpu_weights_budget: 2 parsecs}\n"),
            "test.yaml: offload.gpu_weights_budget: unknown size unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, "
            "in any case), got '2 parsecs'");
  EXPECT_EQ(error_of("model: {path: m}\nkv_cache: {max_bytes: 0.5B}\n"),
            "test.yaml: kv_cache.max_bytes: is not a whole number of bytes, got '0.5B'");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {shutdown_grace_seconds: .nan}\n"),
            "test.yaml: server.shutdown_grace_seconds: must be a number in 0..3600, got '.nan'");
  EXPECT_EQ(error_of("model: {path: m}\nlogging: {level: loud}\n"),
            "test.yaml: logging.level: must be one of debug|info|warning|error, got 'loud'");
  EXPECT_EQ(error_of("model: {path: m}\ndebug: {step_delay_ms: 100000}\n"),
            "test.yaml: debug.step_delay_ms: must be 0..60000, got 100000");
  EXPECT_EQ(error_of("model: {path: m}\nserver: 5\n"), "test.yaml: server: must be a mapping of keys");
  EXPECT_EQ(error_of("model: {path: [a, b]}\n"),
            "test.yaml: model.path: must be a single value, not a list or mapping");
  EXPECT_EQ(error_of("model: {path: \"\"}\n"), "test.yaml: model.path: must be a folder path");
}

TEST(Config, UnknownKeysAreErrorsAtEveryLevel) {
  std::string top = error_of("model: {path: m}\nservr: {}\n");
  EXPECT_EQ(top.rfind("test.yaml: servr: unknown key (allowed here: model, device, server,", 0), 0u) << top;
  std::string nested = error_of("model: {path: m}\nserver: {max_batch: 4}\n");
  EXPECT_EQ(nested.rfind("test.yaml: server.max_batch: unknown key (allowed here: listen, metrics_listen,", 0), 0u)
      << nested;
  std::string deep = error_of("model: {path: m}\noffload: {aio: {depth: 4}}\n");
  EXPECT_EQ(deep.rfind("test.yaml: offload.aio.depth: unknown key", 0), 0u) << deep;
}

// A mapping or list where a knob takes one value is an error naming the knob's key path (not an unknown key below
// it, and not silently ignored).
TEST(Config, AKeyNestedUnderAScalarKnobIsAnError) {
  EXPECT_EQ(error_of("model: {path: m, dtype: {x: 1}}\n"),
            "test.yaml: model.dtype: must be a single value, not a list or mapping");
  EXPECT_EQ(error_of("model: {path: m}\ndevice: {x: 1}\n"),
            "test.yaml: device: must be a single value, not a list or mapping");
  EXPECT_EQ(error_of("model: {path: m}\noffload: {aio: {block_size: {x: 1}}}\n"),
            "test.yaml: offload.aio.block_size: must be a single value, not a list or mapping");
  EXPECT_EQ(error_of("model: {path: m}\nquantization: {bits: [4, 8]}\n"),
            "test.yaml: quantization.bits: must be a single value, not a list or mapping");
  // A section where a mapping is expected but a value is given.
  EXPECT_EQ(error_of("model: {path: m}\noffload: {aio: 5}\n"), "test.yaml: offload.aio: must be a mapping of keys");
}

TEST(Config, SyntaxErrorsGiveTheLine) {
  std::string e = error_of("model: {path: m}\nserver: {listen: [\n");
  EXPECT_EQ(e.rfind("test.yaml:", 0), 0u);
  EXPECT_NE(e.find("YAML syntax error"), std::string::npos) << e;
}

TEST(Config, FlagsOverrideKeys) {
  auto c = parse("model: {path: m}\nserver: {listen: \"127.0.0.1:1\"}\noffload: {tier: cpu}\n");
  ASSERT_TRUE(c.ok());
  const FlagValues flags = {
      flag("server.listen", "127.0.0.1:0"),
      flag("server.metrics_listen", "127.0.0.1:0"),
      flag("offload.tier", "nvme"),
      flag("offload.dir", "/mnt/nvme"),
      flag("offload.pin_memory", "false"),
      flag("offload.gpu_weights_budget", "1.5GiB"),
      flag("model.max_context", "512"),
      flag("quantization.bits", "8"),
      flag("quantization.group_size", "32"),
      flag("kv_cache.offload", "true"),
      flag("parallel.num_gpus", "2"),
      flag("device", "cpu"),
      flag("logging.level", "warning"),
  };
  ASSERT_TRUE(apply_flags(flags, &*c).ok());
  EXPECT_EQ(c->listen, "127.0.0.1:0");
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:0");
  EXPECT_EQ(c->engine.offload_tier, OffloadTier::kNvme);
  EXPECT_EQ(c->engine.offload_dir, "/mnt/nvme");
  EXPECT_FALSE(c->engine.pin_memory);
  EXPECT_EQ(c->engine.gpu_weights_budget, 3ull << 29);
  EXPECT_EQ(c->engine.max_context, 512u);
  EXPECT_EQ(c->engine.quant_bits, 8u);
  EXPECT_EQ(c->engine.quant_group_size, 32u);
  EXPECT_TRUE(c->engine.kv_offload);
  EXPECT_EQ(c->engine.world_size, 2u);
  EXPECT_EQ(c->engine.device, Device::kCpu);
  EXPECT_EQ(c->log_level, "warning");
  // A relative path from a flag is taken as given (the shell's working directory), not against the file's folder.
  ASSERT_TRUE(apply_flags({flag("offload.dir", "store")}, &*c).ok());
  EXPECT_EQ(c->engine.offload_dir, "store");

  // Errors name the flag (its first spelling), not the YAML key.
  EXPECT_EQ(apply_flags({flag("server.listen", "nohost")}, &*c).message(),
            "--listen: expected HOST:PORT, got 'nohost'");
  EXPECT_EQ(apply_flags({flag("offload.gpu_weights_budget", "lots")}, &*c).message(),
            "--gpu-weights-budget: must be a size such as 2GiB, 512MiB, 1.5GB or 1048576, got 'lots'");
  EXPECT_EQ(apply_flags({flag("scheduler.policy", "fifo")}, &*c).message(),
            "--scheduler-policy: must be one of continuous|static, got 'fifo'");
  EXPECT_EQ(apply_flags({flag("device", "tpu")}, &*c).message(), "--device: must be one of auto|cpu|cuda, got 'tpu'");
  // Flags apply in order: the last of two wins; a refused flag leaves the earlier ones applied.
  ASSERT_TRUE(apply_flags({flag("quantization.bits", "4"), flag("quantization.bits", "16")}, &*c).ok());
  EXPECT_EQ(c->engine.quant_bits, 16u);
}

TEST(Config, TlsTokenAndInsecureKeys) {
  auto c = parse("model: {path: m}\nserver: {tls: {cert_file: tls/server.pem, key_file: /etc/k.pem, "
                 "client_ca_file: ca.pem, require_client_cert: true}, auth_token_file: token, allow_insecure: true}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tls.enabled());
  EXPECT_EQ(c->tls.cert_file, "/base/tls/server.pem");  // relative to the config file's folder
  EXPECT_EQ(c->tls.key_file, "/etc/k.pem");
  EXPECT_EQ(c->tls.client_ca_file, "/base/ca.pem");
  EXPECT_TRUE(c->tls.require_client_cert);
  EXPECT_EQ(c->auth_token_file, "/base/token");
  EXPECT_TRUE(c->allow_insecure);
  auto d = parse("model: {path: m}\n");
  EXPECT_FALSE(d->tls.enabled());
  EXPECT_EQ(d->auth_token_file, "");
  EXPECT_FALSE(d->allow_insecure);
  EXPECT_FALSE(parse("model: {path: m}\nserver: {tls: {}}\n")->tls.enabled());

  EXPECT_EQ(error_of("model: {path: m}\nserver: {tls: {key_file: k.pem}}\n"),
            "test.yaml: server.tls.cert_file: is required with server.tls (the server's PEM certificate chain)");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {tls: {cert_file: c.pem}}\n"),
            "test.yaml: server.tls.key_file: is required with server.tls (the PEM private key of cert_file)");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {tls: {cert_file: c.pem, key_file: k.pem, require_client_cert: true}}\n"),
            "test.yaml: server.tls.require_client_cert: needs server.tls.client_ca_file (the CA bundle that signs "
            "client certificates)");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {tls: {cert_file: c.pem, key_file: k.pem, require_client_cert: 2}}\n"),
            "test.yaml: server.tls.require_client_cert: must be true or false, got '2'");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {allow_insecure: sure}\n"),
            "test.yaml: server.allow_insecure: must be true or false, got 'sure'");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {tls: on}\n"), "test.yaml: server.tls: must be a mapping of keys");
  std::string typo = error_of("model: {path: m}\nserver: {tls: {cert: c.pem}}\n");
  EXPECT_EQ(typo.rfind("test.yaml: server.tls.cert: unknown key (allowed here: cert_file, key_file, client_ca_file, "
                       "require_client_cert)", 0),
            0u)
      << typo;
}

TEST(Config, PlaintextOnlyOnLoopbackUnlessAllowed) {
  for (const char* host : {"127.0.0.1", "127.3.2.1", "localhost", "LOCALHOST", "::1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(is_loopback_host(host)) << host;
  for (const char* host : {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.com", "localhost.example.com"})
    EXPECT_FALSE(is_loopback_host(host)) << host;
  auto c = parse("model: {path: m}\nserver: {listen: \"[::1]:50051\"}\n");
  EXPECT_TRUE(check_transport_security(*c).ok());
  c = parse("model: {path: m}\nserver: {listen: \"0.0.0.0:50051\"}\n");
  EXPECT_EQ(check_transport_security(*c).message(),
            "test.yaml: server.listen: '0.0.0.0:50051' is not a loopback address and server.tls is not set: "
            "plaintext gRPC is served only on loopback; set server.tls.cert_file and server.tls.key_file, or "
            "server.allow_insecure: true (--allow-insecure) to serve plaintext anyway");
  auto allowed = parse("model: {path: m}\nserver: {listen: \"0.0.0.0:50051\", allow_insecure: true}\n");
  EXPECT_TRUE(check_transport_security(*allowed).ok());
  auto with_tls = parse("model: {path: m}\nserver: {listen: \"0.0.0.0:1\", tls: {cert_file: c, key_file: k}}\n");
  EXPECT_TRUE(check_transport_security(*with_tls).ok());
  // The flags: --listen moves a loopback file onto a public address; --allow-insecure allows it.
  auto local = parse("model: {path: m}\n");
  ASSERT_TRUE(apply_flags({flag("server.listen", "[::]:0")}, &*local).ok());
  EXPECT_FALSE(check_transport_security(*local).ok());
  ASSERT_TRUE(apply_flags({flag("server.allow_insecure", "true")}, &*local).ok());
  EXPECT_TRUE(check_transport_security(*local).ok());
  // The HTTP API's address under the same rule, named by its own key.
  auto http = parse("model: {path: m}\nserver: {http_listen: \"0.0.0.0:8000\"}\n");
  EXPECT_EQ(check_transport_security(*http).message(),
            "test.yaml: server.http_listen: '0.0.0.0:8000' is not a loopback address and server.tls is not set: "
            "plaintext HTTP is served only on loopback; set server.tls.cert_file and server.tls.key_file, or "
            "server.allow_insecure: true (--allow-insecure) to serve plaintext anyway");
  EXPECT_TRUE(check_transport_security(*parse("model: {path: m}\nserver: {http_listen: \"\"}\n")).ok());
}

// Joined workers talk mutual TLS, even on loopback and even with allow_insecure: a rank sees its prompts.
TEST(Config, ExternalWorkersNeedMutualTls) {
  const std::string need =
      "test.yaml: parallel.workers: external needs server.tls.cert_file, server.tls.key_file and "
      "server.tls.client_ca_file: workers join over mutual TLS, never plaintext";
  auto plain = parse("model: {path: m}\nserver: {allow_insecure: true}\nparallel: {workers: external}\n");
  EXPECT_EQ(check_transport_security(*plain).message(), need);
  auto no_ca = parse("model: {path: m}\nserver: {tls: {cert_file: c, key_file: k}}\nparallel: {workers: external}\n");
  EXPECT_EQ(check_transport_security(*no_ca).message(), need);
  auto mtls = parse("model: {path: m}\nserver: {tls: {cert_file: c, key_file: k, client_ca_file: ca}}\n"
                    "parallel: {workers: external, worker_listen: \"0.0.0.0:7000\"}\n");
  EXPECT_TRUE(check_transport_security(*mtls).ok());
  EXPECT_EQ(error_of("model: {path: m}\nparallel: {workers: remote}\n"),
            "test.yaml: parallel.workers: must be one of spawn|external, got 'remote'");
  EXPECT_EQ(error_of("model: {path: m}\nparallel: {cpu_communicator: mpi}\n"),
            "test.yaml: parallel.cpu_communicator: must be one of auto|shm|gloo, got 'mpi'");
}

TEST(Config, QuantizedEmbeddingsReachTheEngineOptions) {
  auto c = parse("model: {path: m}\nquantization: {bits: 4, embeddings: true}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->engine.quant_embeddings);
  auto d = parse("model: {path: m}\nquantization: {bits: 4}\n");
  EXPECT_FALSE(d->engine.quant_embeddings);
  const Knob* k = find_knob("quantization.embeddings");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->flag, "--quant-embeddings");
  EXPECT_TRUE(k->bare);    // the binder hands a bare flag over as "true"
  EXPECT_TRUE(k->engine);  // workers see it
  ASSERT_TRUE(apply_flags({{k, "true"}}, &*d).ok());  // --quant-embeddings
  EXPECT_TRUE(d->engine.quant_embeddings);
  EXPECT_EQ(error_of("model: {path: m}\nquantization: {embeddings: 4}\n"),
            "test.yaml: quantization.embeddings: must be true or false, got '4'");
}

TEST(Config, DiffSaysWhichChangedKeysReloadWithoutARestart) {
  auto a = parse("model: {path: m}\n");
  auto b = parse("model: {path: m}\n");
  EXPECT_TRUE(diff_configs(*a, *b).empty());
  b = parse("model: {path: m}\nserver: {max_queue: 4, max_batch_size: 8, max_new_tokens_default: 9, "
            "max_prompt_tokens: 10, shutdown_grace_seconds: 1.5, auth_token_file: /t, listen: \"127.0.0.1:1\", "
            "tls: {cert_file: c, key_file: k}}\nlogging: {level: debug}\nquantization: {bits: 8}\n");
  ASSERT_TRUE(b.ok()) << b.status();
  std::ostringstream got;
  for (const ConfigChange& ch : diff_configs(*a, *b))
    got << ch.key << ": " << ch.before << " -> " << ch.after << (ch.reloadable ? " (now)" : " (restart)") << "\n";
  EXPECT_EQ(got.str(),
            "server.listen: 127.0.0.1:50051 -> 127.0.0.1:1 (restart)\n"
            "server.max_queue: 256 -> 4 (now)\n"
            "server.max_batch_size: 16 -> 8 (restart)\n"
            "server.max_new_tokens_default: 256 -> 9 (now)\n"
            "server.max_prompt_tokens: 0 -> 10 (now)\n"
            "server.shutdown_grace_seconds: 30 -> 1.5 (now)\n"
            "server.tls.cert_file:  -> /base/c (restart)\n"
            "server.tls.key_file:  -> /base/k (restart)\n"
            "server.auth_token_file:  -> /t (now)\n"
            "quantization.bits: 16 -> 8 (restart)\n"
            "logging.level: info -> debug (now)\n");
}

// Each example deployment, broken in two ways (a misspelled key, a bad value): the error names the file and the
// key path.
TEST(Config, ABrokenExampleNamesItsBadKey) {
  namespace fs = std::filesystem;
  int n = 0;
  for (const auto& e : fs::directory_iterator(std::string(ZI_SOURCE_DIR) + "/config/examples")) {
    if (e.path().extension() != ".yaml") continue;
    ++n;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const std::string src = e.path().string(), dir = e.path().parent_path().string();
    ASSERT_TRUE(parse_config(text, src, dir).ok()) << src << ": " << parse_config(text, src, dir).status();
    auto replaced = [&](const std::string& from, const std::string& to) {
      std::string t = text;
      size_t p = t.find(from);
      EXPECT_NE(p, std::string::npos) << src << " has no '" << from << "'";
      if (p != std::string::npos) t.replace(p, from.size(), to);
      auto c = parse_config(t, src, dir);
      return c.ok() ? std::string("(accepted)") : std::string(c.status().message());
    };
    std::string typo = replaced("max_batch_size:", "max_batchsize:");
    EXPECT_EQ(typo.rfind(src + ": server.max_batchsize: unknown key (allowed here: listen,", 0), 0u) << typo;
    EXPECT_EQ(replaced("max_batch_size:", "max_batch_size: 0, old_max_batch_size:"),
              src + ": server.max_batch_size: must be 1..1024 or auto, got 0");
    if (text.find("tier: ") != std::string::npos) {
      EXPECT_EQ(replaced("tier: ", "tier: tape, old_tier: "),
                src + ": offload.tier: must be one of none|cpu|nvme, got 'tape'");
    }
  }
  EXPECT_GE(n, 4);
}

TEST(Config, SizesAndAddresses) {
  EXPECT_EQ(*zi::parse_size("1048576", "x"), 1048576u);
  EXPECT_EQ(*zi::parse_size("1MiB", "x"), 1u << 20);
  EXPECT_EQ(*zi::parse_size("1 MiB", "x"), 1u << 20);
  EXPECT_EQ(*zi::parse_size("2G", "x"), 2ull << 30);
  EXPECT_EQ(*zi::parse_size("1GB", "x"), 1000000000u);
  EXPECT_EQ(*zi::parse_size("4kib", "x"), 4096u);
  EXPECT_FALSE(zi::parse_size("", "x").ok());
  EXPECT_FALSE(zi::parse_size("MiB", "x").ok());
  EXPECT_FALSE(zi::parse_size("0.3B", "x").ok());
  EXPECT_FALSE(zi::parse_size("-1", "x").ok());
  auto hp = parse_host_port("[::1]:50051");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 50051);
  EXPECT_EQ(parse_host_port("localhost:0")->port, 0);
  EXPECT_FALSE(parse_host_port("::1:80").ok());
  EXPECT_FALSE(parse_host_port(":80").ok());
  EXPECT_FALSE(parse_host_port("host:").ok());
  EXPECT_FALSE(parse_host_port("host:port").ok());
}

TEST(Config, TheRepositoryDefaultServesTheBundledModel) {
  const std::string path = std::string(ZI_SOURCE_DIR) + "/config/default.yaml";
  auto c = load_config(path);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string& dir = c->engine.model_dir;
  EXPECT_TRUE(std::filesystem::exists(dir + "/config.json")) << dir;
  EXPECT_TRUE(std::filesystem::exists(dir + "/tokenizer.json")) << dir;
  EXPECT_EQ(std::filesystem::path(dir).filename(), "kjv-llama");
  EXPECT_EQ(c->listen, "127.0.0.1:50051");
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9400");
  EXPECT_EQ(c->engine.debug_step_delay_ms, 0u);
}

TEST(Config, LoadChecksTheModelFolder) {
  auto dir = std::filesystem::temp_directory_path() / ("zi_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::FILE* f = std::fopen((dir / "c.yaml").c_str(), "w");
    std::fputs("model: {path: nowhere}\n", f);
    std::fclose(f);
  }
  auto c = load_config((dir / "c.yaml").string());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("model.path: '" + (dir / "nowhere").string() + "' is not a folder"),
            std::string::npos)
      << c.status();
  EXPECT_FALSE(load_config((dir / "missing.yaml").string()).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zi::server
