// `zeroinfer client [--server HOST:PORT] [--max-new-tokens N] [--temperature T] [--seed S] PROMPT`: streams the
// generated text to stdout as it arrives; a summary (tokens, time to first token, tokens/s) goes to stderr.
// Against a TLS server: --tls-ca CA.pem (and --tls-cert/--tls-key for mTLS); a bearer token: --token or
// $ZEROINFER_AUTH_TOKEN.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/core/status.h"
#include "server/cli/commands.h"
#include "zeroinfer/v1/generate.grpc.pb.h"

namespace zi::cli {
namespace {

namespace pb = ::zeroinfer::v1;
using Clock = std::chrono::steady_clock;

struct ClientFlags {
  std::string server = "127.0.0.1:50051";
  std::string prompt;
  std::string prompt_ids;
  uint32_t max_new_tokens = 0;
  std::optional<float> temperature, top_p, repetition_penalty;
  std::optional<uint32_t> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  double timeout = 0;
  // Transport: TLS when --tls or any --tls-* flag is given; a bearer token from --token or $ZEROINFER_AUTH_TOKEN.
  bool tls = false;
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  std::optional<std::string> token;
};

StatusOr<std::string> read_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Insecure credentials, or TLS with the given CA (default: the system's roots) and client certificate.
StatusOr<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const ClientFlags& f) {
  const bool tls = f.tls || !f.tls_ca.empty() || !f.tls_cert.empty() || !f.tls_key.empty() ||
                   !f.tls_server_name.empty();
  if (!tls) return grpc::InsecureChannelCredentials();
  if (f.tls_cert.empty() != f.tls_key.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together (the client certificate and its key)");
  grpc::SslCredentialsOptions o;
  if (!f.tls_ca.empty()) {
    ZI_ASSIGN_OR_RETURN(o.pem_root_certs, read_file("--tls-ca", f.tls_ca));
  }
  if (!f.tls_cert.empty()) {
    ZI_ASSIGN_OR_RETURN(o.pem_cert_chain, read_file("--tls-cert", f.tls_cert));
    ZI_ASSIGN_OR_RETURN(o.pem_private_key, read_file("--tls-key", f.tls_key));
  }
  return grpc::SslCredentials(o);
}

const char* reason_name(pb::FinishReason r) {
  switch (r) {
    case pb::FINISH_REASON_LENGTH: return "length";
    case pb::FINISH_REASON_EOS: return "eos";
    case pb::FINISH_REASON_STOP: return "stop";
    case pb::FINISH_REASON_CANCELLED: return "cancelled";
    default: return "none";
  }
}

int run(const ClientFlags& f) {
  pb::GenerateRequest req;
  if (!f.prompt_ids.empty()) {
    if (!f.prompt.empty()) {
      std::fprintf(stderr, "zeroinfer: give either PROMPT or --prompt-ids, not both\n");
      return 2;
    }
    for (absl::string_view part : absl::StrSplit(f.prompt_ids, ',', absl::SkipWhitespace())) {
      uint32_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        std::fprintf(stderr, "zeroinfer: --prompt-ids: '%s' is not a token id\n", std::string(part).c_str());
        return 2;
      }
      req.mutable_prompt_token_ids()->add_ids(id);
    }
  } else if (!f.prompt.empty()) {
    req.set_prompt(f.prompt);
  } else {
    std::fprintf(stderr, "zeroinfer: client needs a PROMPT (or --prompt-ids)\n");
    return 2;
  }
  if (f.temperature) req.mutable_sampling()->set_temperature(*f.temperature);
  if (f.top_k) req.mutable_sampling()->set_top_k(*f.top_k);
  if (f.top_p) req.mutable_sampling()->set_top_p(*f.top_p);
  if (f.repetition_penalty) req.mutable_sampling()->set_repetition_penalty(*f.repetition_penalty);
  if (f.seed) req.mutable_sampling()->set_seed(*f.seed);
  req.mutable_stopping()->set_max_new_tokens(f.max_new_tokens);
  for (const auto& s : f.stop) req.mutable_stopping()->add_stop(s);
  req.mutable_stopping()->set_ignore_eos(f.ignore_eos);

  auto creds = channel_credentials(f);
  if (!creds.ok()) {
    std::fprintf(stderr, "zeroinfer: %s\n", std::string(creds.status().message()).c_str());
    return 2;
  }
  grpc::ChannelArguments args;
  if (!f.tls_server_name.empty()) args.SetSslTargetNameOverride(f.tls_server_name);
  auto channel = grpc::CreateCustomChannel(f.server, *creds, args);
  auto stub = pb::Generation::NewStub(channel);
  grpc::ClientContext ctx;
  std::optional<std::string> token = f.token;
  if (!token) {
    const char* env = std::getenv("ZEROINFER_AUTH_TOKEN");
    if (env != nullptr && *env != '\0') token = env;
  }
  if (token) ctx.AddMetadata("authorization", "Bearer " + *token);
  if (f.timeout > 0)
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(f.timeout)));
  const auto start = Clock::now();
  std::optional<Clock::time_point> first;
  auto reader = stub->Generate(&ctx, req);
  pb::GenerateResponse msg;
  uint32_t tokens = 0, prompt_tokens = 0;
  pb::FinishReason reason = pb::FINISH_REASON_UNSPECIFIED;
  bool ended_with_newline = true;
  while (reader->Read(&msg)) {
    if (!first && (msg.token_ids_size() > 0 || !msg.text().empty())) first = Clock::now();
    if (!msg.text().empty()) {
      std::fwrite(msg.text().data(), 1, msg.text().size(), stdout);
      std::fflush(stdout);
      ended_with_newline = msg.text().back() == '\n';
    }
    tokens += static_cast<uint32_t>(msg.token_ids_size());
    if (msg.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
      reason = msg.finish_reason();
      tokens = msg.usage().completion_tokens();
      prompt_tokens = msg.usage().prompt_tokens();
    }
  }
  grpc::Status status = reader->Finish();
  const double total = std::chrono::duration<double>(Clock::now() - start).count();
  if (!ended_with_newline && isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!status.ok()) {
    std::fprintf(stderr, "zeroinfer: %s: %s (gRPC code %d)\n", f.server.c_str(), status.error_message().c_str(),
                 static_cast<int>(status.error_code()));
    return 1;
  }
  const double ttft = first ? std::chrono::duration<double>(*first - start).count() : total;
  std::fprintf(stderr,
               "[%u prompt tokens, %u generated, finish %s; time to first token %.1f ms; %.1f tokens/s over %.2f s]\n",
               prompt_tokens, tokens, reason_name(reason), ttft * 1e3, total > 0 ? tokens / total : 0.0, total);
  return 0;
}

}  // namespace

void register_client(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("client", "Stream a generation from a running `zeroinfer serve`");
  auto f = std::make_shared<ClientFlags>();
  cmd->add_option("prompt", f->prompt, "Prompt text");
  cmd->add_option("--server", f->server, "Server address HOST:PORT")->capture_default_str();
  cmd->add_option("--prompt-ids", f->prompt_ids, "Prompt as comma-separated token ids (instead of PROMPT)");
  cmd->add_option("--max-new-tokens", f->max_new_tokens, "Tokens to generate (0 = the server's default)");
  cmd->add_option("--temperature", f->temperature, "Sampling temperature (0 or absent = greedy)");
  cmd->add_option("--top-k", f->top_k, "Top-k sampling (0 = off)");
  cmd->add_option("--top-p", f->top_p, "Nucleus sampling, (0, 1]");
  cmd->add_option("--repetition-penalty", f->repetition_penalty, "> 0; 1 = off");
  cmd->add_option("--seed", f->seed, "Sampling seed (same seed and request → same tokens)");
  // One string per --stop (repeat the flag for more), so that the prompt after it stays the prompt.
  cmd->add_option("--stop", f->stop, "Stop string (repeatable)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Keep generating past EOS");
  cmd->add_option("--timeout", f->timeout, "Deadline in seconds (0 = none)");
  cmd->add_flag("--tls", f->tls, "Connect over TLS (implied by the --tls-* flags); without --tls-ca the system's CAs");
  cmd->add_option("--tls-ca", f->tls_ca, "PEM CA bundle that signs the server's certificate");
  cmd->add_option("--tls-cert", f->tls_cert, "PEM client certificate (mTLS; with --tls-key)");
  cmd->add_option("--tls-key", f->tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--tls-server-name", f->tls_server_name,
                  "Name to check the server's certificate against (default: the host of --server)");
  cmd->add_option("--token", f->token,
                  "Bearer token sent as 'authorization: Bearer TOKEN' (default: $ZEROINFER_AUTH_TOKEN)");
  cmd->callback([f, rc] { *rc = run(*f); });
}

}  // namespace zi::cli
