// The YAML deployment file: DESIGN.md's schema, defaults, errors naming the key path, flag overrides.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/config/config.h"

namespace zi::server {
namespace {

StatusOr<ServeConfig> parse(const std::string& yaml) { return parse_config(yaml, "test.yaml", "/base"); }

std::string error_of(const std::string& yaml) {
  auto c = parse(yaml);
  return c.ok() ? "(accepted)" : std::string(c.status().message());
}

TEST(Config, OnlyModelPathIsRequiredAndDefaultsFollowTheDesign) {
  auto c = parse("model: {path: models/llama}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_path, "/base/models/llama");  // relative to the config file's folder
  EXPECT_EQ(c->model_name, "llama");
  EXPECT_EQ(c->dtype, "auto");
  EXPECT_EQ(c->device, "auto");
  EXPECT_EQ(c->listen, "127.0.0.1:50051");
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9400");
  EXPECT_EQ(c->max_queue, 256u);
  EXPECT_EQ(c->max_batch_size, 16u);
  EXPECT_EQ(c->max_new_tokens_default, 256u);
  EXPECT_EQ(c->max_prompt_tokens, 0u);
  EXPECT_EQ(c->shutdown_grace_seconds, 30);
  EXPECT_EQ(c->num_gpus, 1u);
  EXPECT_EQ(c->offload_tier, OffloadTier::kNone);
  EXPECT_EQ(c->offload_dir, "/var/lib/zeroinfer/offload");
  EXPECT_TRUE(c->pin_memory);
  EXPECT_EQ(c->aio_block_size, 1u << 20);
  EXPECT_EQ(c->aio_queue_depth, 8u);
  EXPECT_EQ(c->quant_bits, 16u);
  EXPECT_EQ(c->quant_group_size, 64u);
  EXPECT_FALSE(c->kv_offload);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->debug_step_delay_ms, 0u);
  EXPECT_EQ(parse("model: {path: /abs/m/}\n")->model_name, "m");
}

TEST(Config, ParsesEveryKeyOfTheSchema) {
  auto c = parse(R"(
model:    {path: /m/opt, name: opt-30b, dtype: float16, max_context: 4096}
device: cuda
server:   {listen: "0.0.0.0:6000", metrics_listen: "[::1]:9500", max_queue: 8, max_batch_size: 32,
           max_new_tokens_default: 100, max_prompt_tokens: 1000, shutdown_grace_seconds: 2.5}
parallel: {num_gpus: 4}
offload:  {tier: nvme, dir: store, pin_memory: false, gpu_weights_budget: 2GiB, prefetch_depth: 3,
           aio: {block_size: 512KiB, queue_depth: 16}}
quantization: {bits: 4, group_size: 128}
kv_cache: {offload: true}
logging:  {level: debug}
debug:    {step_delay_ms: 25}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_name, "opt-30b");
  EXPECT_EQ(c->dtype, "float16");
  EXPECT_EQ(c->max_context, 4096u);
  EXPECT_EQ(c->device, "cuda");
  EXPECT_EQ(c->listen, "0.0.0.0:6000");
  EXPECT_EQ(c->metrics_listen, "[::1]:9500");
  EXPECT_EQ(c->max_queue, 8u);
  EXPECT_EQ(c->max_batch_size, 32u);
  EXPECT_EQ(c->max_new_tokens_default, 100u);
  EXPECT_EQ(c->max_prompt_tokens, 1000u);
  EXPECT_DOUBLE_EQ(c->shutdown_grace_seconds, 2.5);
  EXPECT_EQ(c->num_gpus, 4u);
  EXPECT_EQ(c->offload_tier, OffloadTier::kNvme);
  EXPECT_EQ(c->offload_dir, "/base/store");
  EXPECT_FALSE(c->pin_memory);
  EXPECT_EQ(c->gpu_weights_budget, 2ull << 30);
  EXPECT_EQ(c->prefetch_depth, 3u);
  EXPECT_EQ(c->aio_block_size, 512u << 10);
  EXPECT_EQ(c->aio_queue_depth, 16u);
  EXPECT_EQ(c->quant_bits, 4u);
  EXPECT_EQ(c->quant_group_size, 128u);
  EXPECT_TRUE(c->kv_offload);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->debug_step_delay_ms, 25u);

  EngineOptions e = engine_options(*c);
  EXPECT_EQ(e.model_dir, "/m/opt");
  EXPECT_EQ(e.served_name, "opt-30b");
  EXPECT_EQ(e.device, "cuda");
  EXPECT_EQ(e.max_batch_size, 32u);
  EXPECT_EQ(e.offload_tier, OffloadTier::kNvme);
  EXPECT_EQ(e.gpu_weights_budget, 2ull << 30);
  EXPECT_EQ(e.quant_bits, 4u);
  EXPECT_TRUE(e.kv_offload);
  EXPECT_EQ(e.world_size, 4u);
  EXPECT_EQ(e.debug_step_delay_ms, 25u);
}

TEST(Config, BadValuesNameTheFileAndKeyPath) {
  EXPECT_EQ(error_of("model: {path: m}\nserver: {max_batch_size: 0}\n"),
            "test.yaml: server.max_batch_size: must be 1..1024, got 0");
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
  EXPECT_EQ(error_of("model: {path: m}\noffload: {aio: {block_size: 5000}}\n"),
            "test.yaml: offload.aio.block_size: must be a multiple of 4096 bytes (direct I/O), got 5000");
  EXPECT_EQ(error_of("model: {path: m}\noffload: {gpu_weights_budget: 2 parsecs}\n"),
            "test.yaml: offload.gpu_weights_budget: unknown size unit 'parsecs' in '2 parsecs' (use B, KiB, MiB, "
            "GiB, TiB, KB, MB, GB, TB)");
  EXPECT_EQ(error_of("model: {path: m}\nserver: {shutdown_grace_seconds: .nan}\n"),
            "test.yaml: server.shutdown_grace_seconds: must be a number in 0..3600, got '.nan'");
  EXPECT_EQ(error_of("model: {path: m}\nlogging: {level: loud}\n"),
            "test.yaml: logging.level: must be one of debug|info|warning|error, got 'loud'");
  EXPECT_EQ(error_of("model: {path: m}\ndebug: {step_delay_ms: 100000}\n"),
            "test.yaml: debug.step_delay_ms: must be 0..60000, got 100000");
  EXPECT_EQ(error_of("model: {path: m}\nserver: 5\n"), "test.yaml: server: must be a mapping of keys");
  EXPECT_EQ(error_of("model: {path: [a, b]}\n"), "test.yaml: model.path: must be a folder path");
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

TEST(Config, SyntaxErrorsGiveTheLine) {
  std::string e = error_of("model: {path: m}\nserver: {listen: [\n");
  EXPECT_EQ(e.rfind("test.yaml:", 0), 0u);
  EXPECT_NE(e.find("YAML syntax error"), std::string::npos) << e;
}

TEST(Config, FlagsOverrideKeys) {
  auto c = parse("model: {path: m}\nserver: {listen: \"127.0.0.1:1\"}\noffload: {tier: cpu}\n");
  ASSERT_TRUE(c.ok());
  ConfigOverrides o;
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "127.0.0.1:0";
  o.offload_tier = "nvme";
  o.offload_dir = "/mnt/nvme";
  o.pin_memory = false;
  o.gpu_weights_budget = "1.5GiB";
  o.max_context = 512;
  o.quant_bits = 8;
  o.quant_group_size = 32;
  o.kv_offload = true;
  o.num_gpus = 2;
  o.device = "cpu";
  o.log_level = "warning";
  ASSERT_TRUE(apply_overrides(o, &*c).ok());
  EXPECT_EQ(c->listen, "127.0.0.1:0");
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:0");
  EXPECT_EQ(c->offload_tier, OffloadTier::kNvme);
  EXPECT_EQ(c->offload_dir, "/mnt/nvme");
  EXPECT_FALSE(c->pin_memory);
  EXPECT_EQ(c->gpu_weights_budget, 3ull << 29);
  EXPECT_EQ(c->max_context, 512u);
  EXPECT_EQ(c->quant_bits, 8u);
  EXPECT_EQ(c->quant_group_size, 32u);
  EXPECT_TRUE(c->kv_offload);
  EXPECT_EQ(c->num_gpus, 2u);
  EXPECT_EQ(c->device, "cpu");
  EXPECT_EQ(c->log_level, "warning");

  ConfigOverrides bad;
  bad.listen = "nohost";
  Status st = apply_overrides(bad, &*c);
  EXPECT_EQ(st.message(), "--listen: expected HOST:PORT, got 'nohost'");
  ConfigOverrides bad_size;
  bad_size.gpu_weights_budget = "lots";
  EXPECT_EQ(apply_overrides(bad_size, &*c).message(),
            "--gpu-weights-budget: must be a size such as 1MiB, 2GiB or 1048576, got 'lots'");
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
  ConfigOverrides o;
  o.listen = "[::]:0";
  ASSERT_TRUE(apply_overrides(o, &*local).ok());
  EXPECT_FALSE(check_transport_security(*local).ok());
  o.allow_insecure = true;
  ASSERT_TRUE(apply_overrides(o, &*local).ok());
  EXPECT_TRUE(check_transport_security(*local).ok());
}

TEST(Config, QuantizedEmbeddingsReachTheEngineOptions) {
  auto c = parse("model: {path: m}\nquantization: {bits: 4, embeddings: true}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->quant_embeddings);
  EXPECT_TRUE(engine_options(*c).quant_embeddings);
  auto d = parse("model: {path: m}\nquantization: {bits: 4}\n");
  EXPECT_FALSE(engine_options(*d).quant_embeddings);
  ConfigOverrides o;
  o.quant_embeddings = true;  // --quant-embeddings
  ASSERT_TRUE(apply_overrides(o, &*d).ok());
  EXPECT_TRUE(engine_options(*d).quant_embeddings);
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
              src + ": server.max_batch_size: must be 1..1024, got 0");
    if (text.find("tier: ") != std::string::npos) {
      EXPECT_EQ(replaced("tier: ", "tier: tape, old_tier: "),
                src + ": offload.tier: must be one of none|cpu|nvme, got 'tape'");
    }
  }
  EXPECT_GE(n, 4);
}

TEST(Config, SizesAndAddresses) {
  EXPECT_EQ(*parse_size("1048576"), 1048576u);
  EXPECT_EQ(*parse_size("1MiB"), 1u << 20);
  EXPECT_EQ(*parse_size("1 MiB"), 1u << 20);
  EXPECT_EQ(*parse_size("2G"), 2ull << 30);
  EXPECT_EQ(*parse_size("1GB"), 1000000000u);
  EXPECT_EQ(*parse_size("4kib"), 4096u);
  EXPECT_FALSE(parse_size("").ok());
  EXPECT_FALSE(parse_size("MiB").ok());
  EXPECT_FALSE(parse_size("0.3B").ok());
  EXPECT_FALSE(parse_size("-1").ok());
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
  EXPECT_TRUE(std::filesystem::exists(c->model_path + "/config.json")) << c->model_path;
  EXPECT_TRUE(std::filesystem::exists(c->model_path + "/tokenizer.json")) << c->model_path;
  EXPECT_EQ(std::filesystem::path(c->model_path).filename(), "kjv-llama");
  EXPECT_EQ(c->listen, "127.0.0.1:50051");
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9400");
  EXPECT_EQ(c->debug_step_delay_ms, 0u);
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
