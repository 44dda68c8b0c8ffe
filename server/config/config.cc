#include "server/config/config.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_join.h"
#include "engine/core/log.h"

namespace zi::server {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}


// Walks one YAML mapping at `prefix` ("" = top level, else "server.", "server.tls.", ...): a key that names a knob
// is read through it; a key that is a section of knobs is walked in turn; anything else is an unknown key, named
// with the keys allowed at that level. A null value leaves the default.
Status walk(const YAML::Node& node, const std::string& prefix, const std::string& source, const std::string& base_dir,
            ServeConfig* c) {
  auto err = [&](const std::string& path, absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, ": ", msg));
  };
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsMap())
    return err(prefix.empty() ? std::string("(top level)") : prefix.substr(0, prefix.size() - 1),
               "must be a mapping of keys");
  for (const auto& kv : node) {
    if (kv.first.Scalar().find('.') != std::string::npos)  // "aio.block_size: x" would bypass the nesting
      return err(prefix + kv.first.Scalar(), "unknown key (write nested keys as nested mappings)");
    const std::string key = prefix + kv.first.Scalar();
    const YAML::Node& value = kv.second;
    if (const Knob* k = find_knob(key)) {
      if (value.IsNull()) continue;
      if (!value.IsScalar()) return err(key, "must be a single value, not a list or mapping");
      ZI_RETURN_IF_ERROR(k->set(*c, value.Scalar(), absl::StrCat(source, ": ", key), base_dir));
      continue;
    }
    const std::string section = key + ".";
    bool is_section = false;
    for (const Knob& k : knobs()) is_section = is_section || k.key.rfind(section, 0) == 0;
    if (is_section) {
      ZI_RETURN_IF_ERROR(walk(value, section, source, base_dir, c));
      continue;
    }
    std::vector<std::string> allowed;  // the names one level below `prefix`, in table order
    for (const Knob& k : knobs()) {
      if (k.key.rfind(prefix, 0) != 0) continue;
      std::string name = k.key.substr(prefix.size());
      name = name.substr(0, name.find('.'));
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) allowed.push_back(name);
    }
    return err(key, absl::StrCat("unknown key (allowed here: ", absl::StrJoin(allowed, ", "), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

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
  c.engine.model_dir.clear();
  ZI_RETURN_IF_ERROR(walk(root, "", source, base_dir, &c));
  if (c.engine.model_dir.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": model.path: is required (the Hugging Face model folder)"));
  const TlsConfig& tls = c.tls;
  auto err = [&](const char* key, absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", key, ": ", msg));
  };
  const bool any_tls = !tls.cert_file.empty() || !tls.key_file.empty() || !tls.client_ca_file.empty() ||
                       tls.require_client_cert;
  if (any_tls && tls.cert_file.empty())
    return err("server.tls.cert_file", "is required with server.tls (the server's PEM certificate chain)");
  if (any_tls && tls.key_file.empty())
    return err("server.tls.key_file", "is required with server.tls (the PEM private key of cert_file)");
  if (tls.require_client_cert && tls.client_ca_file.empty())
    return err("server.tls.require_client_cert",
               "needs server.tls.client_ca_file (the CA bundle that signs client certificates)");
  finish_config(&c);
  return c;
}

void finish_config(ServeConfig* c) {
  EngineOptions& e = c->engine;
  if (!e.served_name.empty() || e.model_dir.empty()) return;
  e.served_name = fs::path(e.model_dir).lexically_normal().filename().string();
  if (e.served_name.empty() || e.served_name == ".")  // "path: models/x/" ends with a separator
    e.served_name = fs::path(e.model_dir).lexically_normal().parent_path().filename().string();
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
  if (!fs::is_directory(c.engine.model_dir, ec))
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": model.path: '", c.engine.model_dir, "' is not a folder (relative paths start at the "
                     "config file's folder)"));
  return c;
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

std::string join_host_port(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

Status check_transport_security(const ServeConfig& c) {
  // Even on loopback: a rank sees every prompt placed on it, so nothing but a certified worker may take one.
  if (c.workers == "external" && (!c.tls.enabled() || c.tls.key_file.empty() || c.tls.client_ca_file.empty()))
    return absl::InvalidArgumentError(absl::StrCat(
        c.source, ": parallel.workers: external needs server.tls.cert_file, server.tls.key_file and "
        "server.tls.client_ca_file: workers join over mutual TLS, never plaintext"));
  if (c.tls.enabled() || c.allow_insecure) return absl::OkStatus();
  // The gRPC port, then the HTTP API's (when on): the same rule for both.
  const std::pair<const char*, const std::string*> ports[] = {{"server.listen", &c.listen},
                                                              {"server.http_listen", &c.http_listen}};
  for (const auto& [key, address] : ports) {
    if (address->empty()) continue;
    auto hp = parse_host_port(*address);
    if (!hp.ok()) return absl::InvalidArgumentError(absl::StrCat(c.source, ": ", key, ": ", hp.status().message()));
    if (is_loopback_host(hp->host)) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        c.source, ": ", key, ": '", *address,
        "' is not a loopback address and server.tls is not set: plaintext ",
        address == &c.listen ? "gRPC" : "HTTP", " is served only on loopback; set server.tls.cert_file and server.tls.key_file, or server.allow_insecure: true "
        "(--allow-insecure) to serve plaintext anyway"));
  }
  return absl::OkStatus();
}

std::vector<ConfigChange> diff_configs(const ServeConfig& a, const ServeConfig& b) {
  std::vector<ConfigChange> out;
  for (const Knob& k : knobs()) {
    std::string before = k.get(a), after = k.get(b);
    if (before != after) out.push_back({k.key, std::move(before), std::move(after), k.reloadable});
  }
  return out;
}

}  // namespace zi::server
