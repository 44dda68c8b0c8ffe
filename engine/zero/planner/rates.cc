#include "engine/zero/planner/rates.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace zi {

double Rates::gemm_tflops(double tokens) const {
  if (gemm.empty()) return 0;
  if (tokens <= static_cast<double>(gemm.front().tokens)) return gemm.front().tflops;
  if (tokens >= static_cast<double>(gemm.back().tokens)) return gemm.back().tflops;
  for (size_t i = 1; i < gemm.size(); ++i) {
    const GemmRate& a = gemm[i - 1];
    const GemmRate& b = gemm[i];
    if (tokens > static_cast<double>(b.tokens)) continue;
    const double la = std::log2(static_cast<double>(a.tokens)), lb = std::log2(static_cast<double>(b.tokens));
    const double t = lb > la ? (std::log2(tokens) - la) / (lb - la) : 1.0;
    return a.tflops + t * (b.tflops - a.tflops);
  }
  return gemm.back().tflops;
}

StatusOr<Rates> parse_rates(const std::string& text, const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  auto bad = [&](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", why));
  };
  Rates r;
  auto number = [&](const char* field, double* out, bool required) -> Status {
    if (!j.contains(field)) {
      if (required) return bad(field, "missing");
      return absl::OkStatus();
    }
    if (!j[field].is_number()) return bad(field, "must be a number");
    const double v = j[field].get<double>();
    if (!std::isfinite(v) || v < 0) return bad(field, "must be a finite number >= 0");
    *out = v;
    return absl::OkStatus();
  };
  double ctx = 0, total = 0;
  ZI_RETURN_IF_ERROR(number("h2d_bytes_per_second", &r.h2d_bytes_per_second, true));
  ZI_RETURN_IF_ERROR(number("disk_bytes_per_second", &r.disk_bytes_per_second, false));
  ZI_RETURN_IF_ERROR(number("cpu_attention_bytes_per_second", &r.cpu_attention_bytes_per_second, false));
  ZI_RETURN_IF_ERROR(number("hbm_bytes_per_second", &r.hbm_bytes_per_second, true));
  ZI_RETURN_IF_ERROR(number("gpu_context_bytes", &ctx, true));
  ZI_RETURN_IF_ERROR(number("gpu_total_bytes", &total, false));
  r.gpu_context_bytes = static_cast<uint64_t>(ctx);
  r.gpu_total_bytes = static_cast<uint64_t>(total);
  if (r.h2d_bytes_per_second <= 0) return bad("h2d_bytes_per_second", "must be > 0");
  if (r.hbm_bytes_per_second <= 0) return bad("hbm_bytes_per_second", "must be > 0");
  if (j.contains("device") && j["device"].is_string()) r.device = j["device"].get<std::string>();
  if (j.contains("gemm_shapes") && j["gemm_shapes"].is_string()) r.gemm_shapes = j["gemm_shapes"].get<std::string>();
  if (!j.contains("gemm") || !j["gemm"].is_array() || j["gemm"].empty())
    return bad("gemm", "must be a non-empty array of {\"tokens\": T, \"tflops\": F}");
  for (size_t i = 0; i < j["gemm"].size(); ++i) {
    const nlohmann::json& g = j["gemm"][i];
    const std::string at = absl::StrCat("gemm[", i, "]");
    if (!g.is_object() || !g.contains("tokens") || !g.contains("tflops") || !g["tokens"].is_number_integer() ||
        !g["tflops"].is_number())
      return bad(at, "must be {\"tokens\": T, \"tflops\": F}");
    GemmRate gr{g["tokens"].get<int64_t>(), g["tflops"].get<double>()};
    if (gr.tokens < 1 || !(gr.tflops > 0) || !std::isfinite(gr.tflops))
      return bad(at, "tokens must be >= 1 and tflops > 0");
    if (!r.gemm.empty() && gr.tokens <= r.gemm.back().tokens) return bad(at, "tokens must be ascending");
    r.gemm.push_back(gr);
  }
  return r;
}

StatusOr<Rates> read_rates(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the rates file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_rates(ss.str(), path);
}

std::string rates_json(const Rates& r) {
  nlohmann::ordered_json j;
  j["device"] = r.device;
  j["gemm_shapes"] = r.gemm_shapes;
  j["h2d_bytes_per_second"] = r.h2d_bytes_per_second;
  j["disk_bytes_per_second"] = r.disk_bytes_per_second;
  j["cpu_attention_bytes_per_second"] = r.cpu_attention_bytes_per_second;
  j["hbm_bytes_per_second"] = r.hbm_bytes_per_second;
  j["gpu_context_bytes"] = r.gpu_context_bytes;
  j["gpu_total_bytes"] = r.gpu_total_bytes;
  j["gemm"] = nlohmann::ordered_json::array();
  for (const GemmRate& g : r.gemm) j["gemm"].push_back({{"tokens", g.tokens}, {"tflops", g.tflops}});
  return j.dump(2);
}

Status write_rates(const Rates& r, const std::string& path) {
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write the rates file"));
  out << rates_json(r) << "\n";
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace zi
