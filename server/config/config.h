// The deployment file of `zeroinfer serve` (YAML, DESIGN.md "YAML deployment file"; documented key by key in
// config/README.md) and the command-line flags that override its keys.
//
// Rules: every key is optional except model.path; an unknown key or a bad value is an error naming the file and
// the key path, e.g. `config.yaml: server.max_batch_size: must be 1..1024, got 0`. A relative model.path (and
// offload.dir) is resolved against the folder that holds the YAML file, so a file works from any CWD.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/runtime/engine_options.h"
#include "server/config/knobs.h"

namespace zi::server {

// server.tls: the gRPC port speaks TLS when cert_file is set (then key_file is required too).
struct TlsConfig {
  std::string cert_file;               // PEM certificate chain of the server (resolved like model.path)
  std::string key_file;                // PEM private key of that certificate
  std::string client_ca_file;          // PEM CA bundle that signs client certificates; set = mTLS
  bool require_client_cert = false;    // refuse a handshake without a client certificate (needs client_ca_file)
  bool enabled() const { return !cert_file.empty(); }
};

// The deployment: the engine's options (shared with generate, bench, plan and convert) and the serving keys.
struct ServeConfig {
  std::string source;                  // the file the config came from (prefix of error messages)
  // model.*, device, parallel.num_gpus, offload.*, quantization.*, kv_cache.*, debug.step_delay_ms and
  // server.max_batch_size (sequences per step on each rank). model.path is engine.model_dir (resolved, see above),
  // model.name engine.served_name (default: the folder's name), parallel.num_gpus engine.world_size.
  EngineOptions engine;
  // server
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9400";
  std::string health_listen;           // a plaintext port serving only grpc.health.v1 (probes); empty = none
  // The OpenAI-compatible HTTP API (server/http/); empty = off. Same TLS, token and loopback rule as listen.
  std::string http_listen = "127.0.0.1:8000";
  uint64_t http_max_body_bytes = uint64_t{8} << 20;  // a larger request body is refused (413) before it is read
  uint32_t max_queue = 256;            // requests admitted but not yet running
  uint32_t max_new_tokens_default = 256;
  uint32_t max_prompt_tokens = 0;      // 0 = the model's context
  double shutdown_grace_seconds = 30;
  uint32_t max_streams_per_connection = 128;  // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: more wait at the client
  uint32_t keepalive_seconds = 60;     // server pings an idle connection this often; no ack in 20 s drops it
                                       // (and cancels its streams): clients that vanished without a FIN. 0 = off
  TlsConfig tls;
  std::string auth_token_file;         // bearer token every RPC but health must carry; empty = none (or the
                                       // ZEROINFER_AUTH_TOKEN environment variable when that is set)
  bool allow_insecure = false;         // plaintext gRPC on an address other than loopback
  // parallel: a worker silent this long (no heartbeat, even mid-step) is lost
  double heartbeat_timeout_seconds = 60;
  std::string workers = "spawn";       // spawn: this host's ranks as child processes; external: ranks join over TCP
  std::string worker_listen = "0.0.0.0:50060";  // external: where `zeroinfer worker --coordinator` dials (mTLS)
  double join_timeout_seconds = 300;   // external: how long start-up waits for every rank to join
  // scheduler
  std::string scheduler_policy = "continuous";  // continuous|static
  uint32_t max_num_batched_tokens = 0;          // tokens per step (decodes + prefill chunks); 0 = auto
  // logging
  std::string log_level = "info";      // debug|info|warning|error
};

// Parses YAML text. `source` names the file in messages; relative paths are resolved against `base_dir`
// (empty: left as written).
StatusOr<ServeConfig> parse_config(std::string_view yaml_text, const std::string& source,
                                   const std::string& base_dir);
// Reads and parses a file (base_dir = the file's folder) and checks that model.path is a directory.
StatusOr<ServeConfig> load_config(const std::string& path);
// Fills what follows from the keys once flags are applied: model.name's default (the folder's name).
void finish_config(ServeConfig* config);

// Plaintext gRPC and HTTP are served only on a loopback address (127.0.0.0/8, ::1, localhost) unless server.tls is
// set or server.allow_insecure is true; otherwise an error naming server.listen (or server.http_listen) and the
// keys that would allow it.
// parallel.workers: external needs server.tls with client_ca_file: workers join over mutual TLS, never plaintext.
Status check_transport_security(const ServeConfig& config);
bool is_loopback_host(std::string_view host);

// One key whose value differs between the running config and a reloaded one (SIGHUP).
struct ConfigChange {
  std::string key;         // e.g. "server.max_queue"
  std::string before, after;
  bool reloadable = false; // applied without a restart; otherwise it takes a restart
};
// Keys that can change without a restart: logging.level, server.max_queue, server.max_new_tokens_default,
// server.max_prompt_tokens, server.shutdown_grace_seconds, server.auth_token_file. Every other key is compared
// too and reported as needing a restart. In key order of config/README.md.
std::vector<ConfigChange> diff_configs(const ServeConfig& running, const ServeConfig& reloaded);

struct HostPort {
  std::string host;  // as written, brackets of an IPv6 literal removed
  uint16_t port = 0;
};
// "127.0.0.1:50051", "[::1]:0", "localhost:9400".
StatusOr<HostPort> parse_host_port(std::string_view text);
// The reverse: "HOST:PORT", an IPv6 literal in brackets.
std::string join_host_port(const std::string& host, int port);

}  // namespace zi::server
