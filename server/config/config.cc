#include "server/config/config.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <yaml-cpp/yaml.h>

#include "engine/core/log.h"

namespace zi::server {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  return b == std::string_view::npos ? std::string() : std::string(s.substr(b, e - b + 1));
}

// Reads one YAML mapping, remembering which keys were consumed so that the rest can be reported as unknown.
// Every error names `source: key.path`.
class Section {
 public:
  Section(const YAML::Node& node, std::string prefix, const std::string& source)
      : node_(node), prefix_(std::move(prefix)), source_(source) {}

  Status check_is_map() const {
    if (node_.IsMap() || node_.IsNull()) return absl::OkStatus();
    return err(prefix_.empty() ? std::string("(top level)") : prefix_.substr(0, prefix_.size() - 1),
               "must be a mapping of keys");
  }

  // The node under `key` (marked as known); an undefined node when absent or null.
  YAML::Node get(const std::string& key) {
    known_.push_back(key);
    if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node n = node_[key];
    if (n && n.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    return n;
  }

  Status unknown_keys() const {
    if (!node_.IsMap()) return absl::OkStatus();
    for (const auto& kv : node_) {
      std::string k = kv.first.Scalar();
      if (std::find(known_.begin(), known_.end(), k) == known_.end()) {
        std::string allowed;
        for (const auto& a : known_) absl::StrAppend(&allowed, allowed.empty() ? "" : ", ", a);
        return err(prefix_ + k, absl::StrCat("unknown key (allowed here: ", allowed, ")"));
      }
    }
    return absl::OkStatus();
  }

  Status err(const std::string& path, absl::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", path, ": ", msg));
  }
  std::string path(const std::string& key) const { return prefix_ + key; }

  Status read_string(const std::string& key, std::string* out) {
    YAML::Node n = get(key);
    if (!n) return absl::OkStatus();
    if (!n.IsScalar()) return err(path(key), "must be a string");
    *out = n.Scalar();
    return absl::OkStatus();
  }

  Status read_choice(const std::string& key, std::initializer_list<const char*> choices, std::string* out) {
    YAML::Node n = get(key);
    if (!n) return absl::OkStatus();
    std::string list;
    for (const char* c : choices) absl::StrAppend(&list, list.empty() ? "" : "|", c);
    if (!n.IsScalar()) return err(path(key), absl::StrCat("must be one of ", list));
    for (const char* c : choices)
      if (n.Scalar() == c) {
        *out = c;
        return absl::OkStatus();
      }
    return err(path(key), absl::StrCat("must be one of ", list, ", got '", n.Scalar(), "'"));
  }

  Status read_uint(const std::string& key, uint64_t lo, uint64_t hi, uint32_t* out) {
    uint64_t v = *out;
    ZI_RETURN_IF_ERROR(read_uint64(key, lo, hi, &v));
    *out = static_cast<uint32_t>(v);
    return absl::OkStatus();
  }

  Status read_uint64(const std::string& key, uint64_t lo, uint64_t hi, uint64_t* out) {
    YAML::Node n = get(key);
    if (!n) return absl::OkStatus();
    std::string s = n.IsScalar() ? n.Scalar() : std::string();
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (!n.IsScalar() || s.empty() || ec != std::errc() || p != s.data() + s.size())
      return err(path(key), absl::StrCat("must be an integer in ", lo, "..", hi, ", got '", s, "'"));
    if (v < lo || v > hi) return err(path(key), absl::StrCat("must be ", lo, "..", hi, ", got ", v));
    *out = v;
    return absl::OkStatus();
  }

  Status read_double(const std::string& key, double lo, double hi, double* out) {
    YAML::Node n = get(key);
    if (!n) return absl::OkStatus();
    std::string s = n.IsScalar() ? n.Scalar() : std::string();
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (!n.IsScalar() || s.empty() || ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v))
      return err(path(key), absl::StrCat("must be a number in ", lo, "..", hi, ", got '", s, "'"));
    if (v < lo || v > hi) return err(path(key), absl::StrCat("must be ", lo, "..", hi, ", got ", s));
    *out = v;
    return absl::OkStatus();
  }

  Status read_bool(const std::string& key, bool* out) {
    YAML::Node n = get(key);
    if (!n) return absl::OkStatus();
    std::string s = n.IsScalar() ? lower(n.Scalar()) : std::string();
    if (s == "true" || s == "yes" || s == "on") *out = true;
    else if (s == "false" || s == "no" || s == "off") *out = false;
    else return err(path(key), absl::StrCat("must be true or false, got '", n.IsScalar() ? n.Scalar() : "", "'"));
    return absl::OkStatus();
  }

  Status read_size(const std::string& key, uint64_t lo, uint64_t hi, uint64_t* out) {
    YAML::Node n = get(key);
    if (!n) return absl::OkStatus();
    if (!n.IsScalar()) return err(path(key), "must be a size such as 1MiB or 1048576");
    auto v = parse_size(n.Scalar());
    if (!v.ok()) return err(path(key), v.status().message());
    if (*v < lo || *v > hi)
      return err(path(key), absl::StrCat("must be ", lo, "..", hi, " bytes, got ", *v));
    *out = *v;
    return absl::OkStatus();
  }

  // A nested mapping; `fn` reads its keys, then its unknown keys are reported.
  Status nested(const std::string& key, const std::function<Status(Section&)>& fn) {
    YAML::Node n = get(key);
    Section sub(n ? n : YAML::Node(YAML::NodeType::Null), prefix_ + key + ".", source_);
    ZI_RETURN_IF_ERROR(sub.check_is_map());
    ZI_RETURN_IF_ERROR(fn(sub));
    return sub.unknown_keys();
  }

 private:
  YAML::Node node_;
  std::string prefix_;
  const std::string& source_;
  std::vector<std::string> known_;
};

Status check_listen(Section& s, const std::string& key, const std::string& value) {
  auto hp = parse_host_port(value);
  if (!hp.ok()) return s.err(s.path(key), hp.status().message());
  return absl::OkStatus();
}

std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || base_dir.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

OffloadTier tier_from(const std::string& s) {
  if (s == "cpu") return OffloadTier::kCpu;
  if (s == "nvme") return OffloadTier::kNvme;
  return OffloadTier::kNone;
}

constexpr uint64_t kMaxTokens = 1u << 24;

}  // namespace

StatusOr<uint64_t> parse_size(std::string_view text) {
  std::string s = trim(text);
  size_t digits = 0;
  while (digits < s.size() && (std::isdigit(static_cast<unsigned char>(s[digits])) || s[digits] == '.')) ++digits;
  double number = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + digits, number);
  if (digits == 0 || ec != std::errc() || p != s.data() + digits)
    return absl::InvalidArgumentError(absl::StrCat("must be a size such as 1MiB, 2GiB or 1048576, got '", s, "'"));
  std::string unit = lower(trim(std::string_view(s).substr(digits)));
  static const std::map<std::string, double> kUnits = {
      {"", 1},          {"b", 1},
      {"k", 1024.0},    {"kib", 1024.0},       {"kb", 1e3},
      {"m", 1048576.0}, {"mib", 1048576.0},    {"mb", 1e6},
      {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
      {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end())
    return absl::InvalidArgumentError(
        absl::StrCat("unknown size unit '", unit, "' in '", s, "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"));
  double bytes = number * it->second;
  if (bytes > 1.8e19) return absl::InvalidArgumentError(absl::StrCat("size '", s, "' is too large"));
  if (bytes != std::floor(bytes))
    return absl::InvalidArgumentError(absl::StrCat("size '", s, "' is not a whole number of bytes"));
  return static_cast<uint64_t>(bytes);
}

StatusOr<HostPort> parse_host_port(std::string_view text) {
  std::string s(text);
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got '", s, "'"));
  HostPort hp;
  hp.host = s.substr(0, colon);
  if (hp.host.front() == '[') {
    if (hp.host.back() != ']') return absl::InvalidArgumentError(absl::StrCat("expected [IPv6]:PORT, got '", s, "'"));
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  } else if (hp.host.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("write an IPv6 address as [ADDR]:PORT, got '", s, "'"));
  }
  std::string port = s.substr(colon + 1);
  unsigned v = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (ec != std::errc() || p != port.data() + port.size() || v > 65535)
    return absl::InvalidArgumentError(absl::StrCat("port must be 0..65535, got '", port, "'"));
  hp.port = static_cast<uint16_t>(v);
  return hp;
}

StatusOr<ServeConfig> parse_config(std::string_view yaml_text, const std::string& source,
                                   const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.mark.line + 1, ":", e.mark.column + 1, ": YAML syntax error: ", e.msg));
  }
  ServeConfig c;
  c.source = source;
  Section top(root, "", source);
  ZI_RETURN_IF_ERROR(top.check_is_map());
  std::string tier = "none";
  Status s = top.nested("model", [&](Section& m) -> Status {
    YAML::Node p = m.get("path");
    if (!p) return m.err("model.path", "is required (the Hugging Face model folder)");
    if (!p.IsScalar() || p.Scalar().empty()) return m.err("model.path", "must be a folder path");
    c.model_path = resolve(base_dir, p.Scalar());
    ZI_RETURN_IF_ERROR(m.read_string("name", &c.model_name));
    ZI_RETURN_IF_ERROR(m.read_choice("dtype", {"auto", "bfloat16", "float16"}, &c.dtype));
    return m.read_uint("max_context", 0, kMaxTokens, &c.max_context);
  });
  ZI_RETURN_IF_ERROR(s);
  ZI_RETURN_IF_ERROR(top.read_choice("device", {"auto", "cpu", "cuda"}, &c.device));
  ZI_RETURN_IF_ERROR(top.nested("server", [&](Section& v) -> Status {
    ZI_RETURN_IF_ERROR(v.read_string("listen", &c.listen));
    ZI_RETURN_IF_ERROR(check_listen(v, "listen", c.listen));
    ZI_RETURN_IF_ERROR(v.read_string("metrics_listen", &c.metrics_listen));
    ZI_RETURN_IF_ERROR(check_listen(v, "metrics_listen", c.metrics_listen));
    ZI_RETURN_IF_ERROR(v.read_uint("max_queue", 1, 1000000, &c.max_queue));
    ZI_RETURN_IF_ERROR(v.read_uint("max_batch_size", 1, 1024, &c.max_batch_size));
    ZI_RETURN_IF_ERROR(v.read_uint("max_new_tokens_default", 1, kMaxTokens, &c.max_new_tokens_default));
    ZI_RETURN_IF_ERROR(v.read_uint("max_prompt_tokens", 0, kMaxTokens, &c.max_prompt_tokens));
    ZI_RETURN_IF_ERROR(v.read_double("shutdown_grace_seconds", 0, 3600, &c.shutdown_grace_seconds));
    ZI_RETURN_IF_ERROR(v.read_uint("max_streams_per_connection", 1, 65536, &c.max_streams_per_connection));
    ZI_RETURN_IF_ERROR(v.read_uint("keepalive_seconds", 0, 86400, &c.keepalive_seconds));
    ZI_RETURN_IF_ERROR(v.nested("tls", [&](Section& t) -> Status {
      TlsConfig& tls = c.tls;
      ZI_RETURN_IF_ERROR(t.read_string("cert_file", &tls.cert_file));
      ZI_RETURN_IF_ERROR(t.read_string("key_file", &tls.key_file));
      ZI_RETURN_IF_ERROR(t.read_string("client_ca_file", &tls.client_ca_file));
      ZI_RETURN_IF_ERROR(t.read_bool("require_client_cert", &tls.require_client_cert));
      tls.cert_file = resolve(base_dir, tls.cert_file);
      tls.key_file = resolve(base_dir, tls.key_file);
      tls.client_ca_file = resolve(base_dir, tls.client_ca_file);
      const bool any = !tls.cert_file.empty() || !tls.key_file.empty() || !tls.client_ca_file.empty() ||
                       tls.require_client_cert;
      if (any && tls.cert_file.empty())
        return t.err("server.tls.cert_file", "is required with server.tls (the server's PEM certificate chain)");
      if (any && tls.key_file.empty())
        return t.err("server.tls.key_file", "is required with server.tls (the PEM private key of cert_file)");
      if (tls.require_client_cert && tls.client_ca_file.empty())
        return t.err("server.tls.require_client_cert",
                     "needs server.tls.client_ca_file (the CA bundle that signs client certificates)");
      return absl::OkStatus();
    }));
    ZI_RETURN_IF_ERROR(v.read_string("auth_token_file", &c.auth_token_file));
    c.auth_token_file = resolve(base_dir, c.auth_token_file);
    return v.read_bool("allow_insecure", &c.allow_insecure);
  }));
  ZI_RETURN_IF_ERROR(top.nested("parallel", [&](Section& v) { return v.read_uint("num_gpus", 1, 64, &c.num_gpus); }));
  ZI_RETURN_IF_ERROR(top.nested("offload", [&](Section& v) -> Status {
    ZI_RETURN_IF_ERROR(v.read_choice("tier", {"none", "cpu", "nvme"}, &tier));
    ZI_RETURN_IF_ERROR(v.read_string("dir", &c.offload_dir));
    c.offload_dir = resolve(base_dir, c.offload_dir);
    ZI_RETURN_IF_ERROR(v.read_bool("pin_memory", &c.pin_memory));
    ZI_RETURN_IF_ERROR(v.read_size("gpu_weights_budget", 0, UINT64_MAX, &c.gpu_weights_budget));
    ZI_RETURN_IF_ERROR(v.read_uint("prefetch_depth", 0, 64, &c.prefetch_depth));
    return v.nested("aio", [&](Section& a) -> Status {
      ZI_RETURN_IF_ERROR(a.read_size("block_size", 4096, 1ull << 30, &c.aio_block_size));
      if (c.aio_block_size % 4096 != 0)
        return a.err("offload.aio.block_size", absl::StrCat("must be a multiple of 4096 bytes (direct I/O), got ",
                                                             c.aio_block_size));
      return a.read_uint("queue_depth", 1, 1024, &c.aio_queue_depth);
    });
  }));
  c.offload_tier = tier_from(tier);
  ZI_RETURN_IF_ERROR(top.nested("quantization", [&](Section& v) -> Status {
    YAML::Node b = v.get("bits");
    if (b) {
      std::string bs = b.IsScalar() ? b.Scalar() : "";
      if (bs != "4" && bs != "8" && bs != "16") return v.err("quantization.bits", absl::StrCat("must be 4, 8 or 16, got '", bs, "'"));
      c.quant_bits = static_cast<uint32_t>(std::stoul(bs));
    }
    ZI_RETURN_IF_ERROR(v.read_uint("group_size", 1, 1 << 20, &c.quant_group_size));
    return v.read_bool("embeddings", &c.quant_embeddings);
  }));
  ZI_RETURN_IF_ERROR(top.nested("kv_cache", [&](Section& v) -> Status {
    ZI_RETURN_IF_ERROR(v.read_bool("offload", &c.kv_offload));
    ZI_RETURN_IF_ERROR(v.read_size("max_bytes", 0, UINT64_MAX, &c.kv_cache_bytes));
    ZI_RETURN_IF_ERROR(v.read_choice("offload_attention", {"auto", "gpu", "cpu"}, &c.kv_offload_attention));
    return v.read_uint("block_size", 1, 1024, &c.kv_block_size);
  }));
  ZI_RETURN_IF_ERROR(top.nested("scheduler", [&](Section& v) -> Status {
    ZI_RETURN_IF_ERROR(v.read_choice("policy", {"continuous", "static"}, &c.scheduler_policy));
    return v.read_uint("max_num_batched_tokens", 1, 1u << 24, &c.max_num_batched_tokens);
  }));
  ZI_RETURN_IF_ERROR(top.nested("logging", [&](Section& v) {
    return v.read_choice("level", {"debug", "info", "warning", "error"}, &c.log_level);
  }));
  ZI_RETURN_IF_ERROR(top.nested("debug", [&](Section& v) {
    return v.read_uint("step_delay_ms", 0, 60000, &c.debug_step_delay_ms);
  }));
  ZI_RETURN_IF_ERROR(top.unknown_keys());
  if (c.model_name.empty()) c.model_name = fs::path(c.model_path).lexically_normal().filename().string();
  if (c.model_name.empty() || c.model_name == ".")  // "path: models/x/" ends with a separator
    c.model_name = fs::path(c.model_path).lexically_normal().parent_path().filename().string();
  return c;
}

StatusOr<ServeConfig> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the config file"));
  std::stringstream ss;
  ss << in.rdbuf();
  // Absolute, so that the paths mean the same to the workers and in logs whatever the current directory.
  std::error_code aec;
  fs::path dir = fs::absolute(fs::path(path), aec).parent_path();
  ZI_ASSIGN_OR_RETURN(ServeConfig c, parse_config(ss.str(), path, dir.empty() ? "." : dir.string()));
  std::error_code ec;
  if (!fs::is_directory(c.model_path, ec))
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": model.path: '", c.model_path, "' is not a folder (relative paths start at the "
                     "config file's folder)"));
  return c;
}

Status apply_overrides(const ConfigOverrides& o, ServeConfig* c) {
  auto flag_err = [](absl::string_view flag, absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", msg));
  };
  if (o.offload_tier) {
    if (*o.offload_tier != "none" && *o.offload_tier != "cpu" && *o.offload_tier != "nvme")
      return flag_err("offload tier", "must be none, cpu or nvme");
    c->offload_tier = tier_from(*o.offload_tier);
  }
  if (o.offload_dir) c->offload_dir = *o.offload_dir;
  if (o.pin_memory) c->pin_memory = *o.pin_memory;
  if (o.gpu_weights_budget) {
    auto v = parse_size(*o.gpu_weights_budget);
    if (!v.ok()) return flag_err("--gpu-weights-budget", v.status().message());
    c->gpu_weights_budget = *v;
  }
  if (o.max_context) {
    if (*o.max_context > kMaxTokens) return flag_err("--max-context", absl::StrCat("must be 0..", kMaxTokens));
    c->max_context = *o.max_context;
  }
  if (o.quant_bits) {
    if (*o.quant_bits != 4 && *o.quant_bits != 8 && *o.quant_bits != 16)
      return flag_err("--quant-bits", absl::StrCat("must be 4, 8 or 16, got ", *o.quant_bits));
    c->quant_bits = *o.quant_bits;
  }
  if (o.quant_group_size) {
    if (*o.quant_group_size < 1 || *o.quant_group_size > (1u << 20))
      return flag_err("--quant-group-size", "must be 1..1048576");
    c->quant_group_size = *o.quant_group_size;
  }
  if (o.quant_embeddings) c->quant_embeddings = *o.quant_embeddings;
  if (o.kv_offload) c->kv_offload = *o.kv_offload;
  if (o.kv_cache_bytes) {
    auto bytes = parse_size(*o.kv_cache_bytes);
    if (!bytes.ok()) return flag_err("--kv-cache-bytes", bytes.status().message());
    c->kv_cache_bytes = *bytes;
  }
  if (o.kv_offload_attention) {
    if (*o.kv_offload_attention != "auto" && *o.kv_offload_attention != "gpu" && *o.kv_offload_attention != "cpu")
      return flag_err("--kv-offload-attention", absl::StrCat("must be auto, gpu or cpu, got ", *o.kv_offload_attention));
    c->kv_offload_attention = *o.kv_offload_attention;
  }
  if (o.num_gpus) {
    if (*o.num_gpus < 1 || *o.num_gpus > 64) return flag_err("--num-gpus", "must be 1..64");
    c->num_gpus = *o.num_gpus;
  }
  if (o.device) {
    if (*o.device != "auto" && *o.device != "cpu" && *o.device != "cuda")
      return flag_err("--device", "must be auto, cpu or cuda");
    c->device = *o.device;
  }
  if (o.listen) {
    auto hp = parse_host_port(*o.listen);
    if (!hp.ok()) return flag_err("--listen", hp.status().message());
    c->listen = *o.listen;
  }
  if (o.metrics_listen) {
    auto hp = parse_host_port(*o.metrics_listen);
    if (!hp.ok()) return flag_err("--metrics-listen", hp.status().message());
    c->metrics_listen = *o.metrics_listen;
  }
  if (o.log_level) {
    LogLevel l;
    if (!parse_log_level(*o.log_level, &l)) return flag_err("--log-level", "must be debug, info, warning or error");
    c->log_level = *o.log_level;
  }
  if (o.allow_insecure) c->allow_insecure = *o.allow_insecure;
  return absl::OkStatus();
}

EngineOptions engine_options(const ServeConfig& c) {
  EngineOptions o;
  o.model_dir = c.model_path;
  o.served_name = c.model_name;
  o.device = c.device;
  o.dtype = c.dtype;
  o.max_context = c.max_context;
  o.max_batch_size = c.max_batch_size;
  o.offload_tier = c.offload_tier;
  o.offload_dir = c.offload_dir;
  o.pin_memory = c.pin_memory;
  o.gpu_weights_budget = c.gpu_weights_budget;
  o.prefetch_depth = c.prefetch_depth;
  o.aio_block_size = c.aio_block_size;
  o.aio_queue_depth = c.aio_queue_depth;
  o.quant_bits = c.quant_bits;
  o.quant_group_size = c.quant_group_size;
  o.quant_embeddings = c.quant_embeddings;
  o.kv_offload = c.kv_offload;
  o.kv_cache_bytes = c.kv_cache_bytes;
  o.kv_block_size = c.kv_block_size;
  o.kv_offload_attention = c.kv_offload_attention;
  o.world_size = c.num_gpus;
  o.debug_step_delay_ms = c.debug_step_delay_ms;
  return o;
}

bool is_loopback_host(std::string_view host) {
  std::string h = lower(host);
  if (h == "localhost" || h == "ip6-localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
  }
  return false;
}

Status check_transport_security(const ServeConfig& c) {
  if (c.tls.enabled() || c.allow_insecure) return absl::OkStatus();
  auto hp = parse_host_port(c.listen);
  if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat(c.source, ": server.listen: ", hp.status().message()));
  if (is_loopback_host(hp->host)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      c.source, ": server.listen: '", c.listen,
      "' is not a loopback address and server.tls is not set: plaintext gRPC is served only on loopback; set "
      "server.tls.cert_file and server.tls.key_file, or server.allow_insecure: true (--allow-insecure) to serve "
      "plaintext anyway"));
}

namespace {

std::string fmt_double(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
const char* fmt_bool(bool v) { return v ? "true" : "false"; }
const char* fmt_tier(OffloadTier t) { return t == OffloadTier::kCpu ? "cpu" : t == OffloadTier::kNvme ? "nvme" : "none"; }

}  // namespace

std::vector<ConfigChange> diff_configs(const ServeConfig& a, const ServeConfig& b) {
  struct Key {
    const char* name;
    std::function<std::string(const ServeConfig&)> value;
    bool reloadable;
  };
  auto str = [](std::string ServeConfig::*m) { return [m](const ServeConfig& c) { return c.*m; }; };
  auto num = [](auto ServeConfig::*m) { return [m](const ServeConfig& c) { return absl::StrCat(c.*m); }; };
  auto flag = [](bool ServeConfig::*m) { return [m](const ServeConfig& c) { return std::string(fmt_bool(c.*m)); }; };
  const std::vector<Key> keys = {
      {"model.path", str(&ServeConfig::model_path), false},
      {"model.name", str(&ServeConfig::model_name), false},
      {"model.dtype", str(&ServeConfig::dtype), false},
      {"model.max_context", num(&ServeConfig::max_context), false},
      {"device", str(&ServeConfig::device), false},
      {"server.listen", str(&ServeConfig::listen), false},
      {"server.metrics_listen", str(&ServeConfig::metrics_listen), false},
      {"server.max_queue", num(&ServeConfig::max_queue), true},
      {"server.max_batch_size", num(&ServeConfig::max_batch_size), false},
      {"server.max_new_tokens_default", num(&ServeConfig::max_new_tokens_default), true},
      {"server.max_prompt_tokens", num(&ServeConfig::max_prompt_tokens), true},
      {"server.shutdown_grace_seconds", [](const ServeConfig& c) { return fmt_double(c.shutdown_grace_seconds); },
       true},
      {"server.max_streams_per_connection", num(&ServeConfig::max_streams_per_connection), false},
      {"server.keepalive_seconds", num(&ServeConfig::keepalive_seconds), false},
      {"server.tls.cert_file", [](const ServeConfig& c) { return c.tls.cert_file; }, false},
      {"server.tls.key_file", [](const ServeConfig& c) { return c.tls.key_file; }, false},
      {"server.tls.client_ca_file", [](const ServeConfig& c) { return c.tls.client_ca_file; }, false},
      {"server.tls.require_client_cert",
       [](const ServeConfig& c) { return std::string(fmt_bool(c.tls.require_client_cert)); }, false},
      {"server.auth_token_file", str(&ServeConfig::auth_token_file), true},
      {"server.allow_insecure", flag(&ServeConfig::allow_insecure), false},
      {"parallel.num_gpus", num(&ServeConfig::num_gpus), false},
      {"offload.tier", [](const ServeConfig& c) { return std::string(fmt_tier(c.offload_tier)); }, false},
      {"offload.dir", str(&ServeConfig::offload_dir), false},
      {"offload.pin_memory", flag(&ServeConfig::pin_memory), false},
      {"offload.gpu_weights_budget", num(&ServeConfig::gpu_weights_budget), false},
      {"offload.prefetch_depth", num(&ServeConfig::prefetch_depth), false},
      {"offload.aio.block_size", num(&ServeConfig::aio_block_size), false},
      {"offload.aio.queue_depth", num(&ServeConfig::aio_queue_depth), false},
      {"quantization.bits", num(&ServeConfig::quant_bits), false},
      {"quantization.group_size", num(&ServeConfig::quant_group_size), false},
      {"quantization.embeddings", flag(&ServeConfig::quant_embeddings), false},
      {"kv_cache.offload", flag(&ServeConfig::kv_offload), false},
      {"kv_cache.max_bytes", num(&ServeConfig::kv_cache_bytes), false},
      {"kv_cache.block_size", num(&ServeConfig::kv_block_size), false},
      {"kv_cache.offload_attention", str(&ServeConfig::kv_offload_attention), false},
      {"scheduler.policy", str(&ServeConfig::scheduler_policy), false},
      {"scheduler.max_num_batched_tokens", num(&ServeConfig::max_num_batched_tokens), false},
      {"logging.level", str(&ServeConfig::log_level), true},
      {"debug.step_delay_ms", num(&ServeConfig::debug_step_delay_ms), false},
  };
  std::vector<ConfigChange> out;
  for (const Key& k : keys) {
    std::string before = k.value(a), after = k.value(b);
    if (before != after) out.push_back({k.name, std::move(before), std::move(after), k.reloadable});
  }
  return out;
}

}  // namespace zi::server
