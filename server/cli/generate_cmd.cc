// `zeroinfer generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N] [--temperature T]
//  [--top-k K] [--top-p P] [--seed S] [--repetition-penalty R] [--stop STR]... [--ignore-eos] [--json]
//  [--logits-out FILE] [engine flags]`: one request through what `serve` runs — the same validation
// (server/grpc/validate.h), the same scheduler and the same executor (in-process for one rank, worker processes for
// --num-gpus N) — with stdout as its sink.
// stdout: the new text (streamed as it becomes final), or with --json one line
// {"token_ids": [...], "text": "...", "finish_reason": "length|eos|stop"}. Exit 2 for bad usage, 1 for errors.
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/core/log.h"
#include "engine/io/safetensors_writer.h"
#include "engine/runtime/stopping.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"
#include "server/grpc/validate.h"
#include "server/scheduler/scheduler.h"
#include "server/worker_pool/start_executor.h"

namespace zi::cli {
namespace {

namespace pb = ::zeroinfer::v1;

struct GenerateFlags {
  std::string model;
  std::optional<std::string> prompt;
  std::optional<std::string> prompt_ids;
  std::optional<int64_t> max_new_tokens;
  std::optional<float> temperature;
  std::optional<int64_t> top_k;
  std::optional<float> top_p;
  uint64_t seed = 0;
  std::optional<float> repetition_penalty;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool json = false;
  std::optional<std::string> logits_out;
  std::unique_ptr<OptionBinder> options;
};

// A failure with its exit code: 2 = bad usage (a flag's value), 1 = anything else.
struct Failure {
  int code;
  std::string message;
};

Failure usage(std::string m) { return {2, std::move(m)}; }
Failure error(const Status& s) { return {1, std::string(s.message())}; }

// validate_request names the request's fields; on the command line they are flags.
Failure refused(const Status& s) {
  static const std::pair<const char*, const char*> kFlags[] = {
      {"sampling.temperature", "--temperature"},   {"sampling.top_p", "--top-p"},
      {"sampling.repetition_penalty", "--repetition-penalty"},
      {"stopping.max_new_tokens", "--max-new-tokens"}, {"stopping.stop", "--stop"},
      {"prompt_token_ids", "--prompt-ids"},        {"prompt", "--prompt"}};
  std::string m(s.message());
  for (const auto& [field, flag] : kFlags)
    if (m.rfind(field, 0) == 0) {
      m = flag + m.substr(m.find(':'));
      break;
    }
  return {s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1, m};
}

StatusOr<std::vector<uint32_t>> parse_prompt_ids(const std::string& text) {
  std::vector<uint32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int64_t v;
    if (!absl::SimpleAtoi(part, &v) || v < 0 || v > std::numeric_limits<int32_t>::max())
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt-ids: '", part, "' is not a token id (expected e.g. 1,2,3)"));
    ids.push_back(static_cast<uint32_t>(v));
  }
  return ids;
}

// The flags as the public API's request, so that serve's validation checks them.
StatusOr<pb::GenerateRequest> to_request(const GenerateFlags& f) {
  pb::GenerateRequest r;
  if (f.prompt) {
    r.set_prompt(*f.prompt);
  } else {
    ZI_ASSIGN_OR_RETURN(std::vector<uint32_t> ids, parse_prompt_ids(*f.prompt_ids));
    for (uint32_t id : ids) r.mutable_prompt_token_ids()->add_ids(id);
  }
  pb::SamplingParams* sp = r.mutable_sampling();
  if (f.temperature) sp->set_temperature(*f.temperature);
  if (f.top_k) {
    if (*f.top_k < 0 || *f.top_k > std::numeric_limits<uint32_t>::max())
      return absl::InvalidArgumentError(absl::StrCat("--top-k must be in 0..4294967295 (0 = off), got ", *f.top_k));
    sp->set_top_k(static_cast<uint32_t>(*f.top_k));
  }
  if (f.top_p) sp->set_top_p(*f.top_p);
  if (f.repetition_penalty) sp->set_repetition_penalty(*f.repetition_penalty);
  sp->set_seed(f.seed);
  pb::StoppingCriteria* st = r.mutable_stopping();
  if (f.max_new_tokens) {
    if (*f.max_new_tokens < 1 || *f.max_new_tokens > std::numeric_limits<uint32_t>::max())
      return absl::InvalidArgumentError(absl::StrCat("--max-new-tokens must be >= 1, got ", *f.max_new_tokens));
    st->set_max_new_tokens(static_cast<uint32_t>(*f.max_new_tokens));
  }
  for (const auto& s : f.stop) st->add_stop(s);
  st->set_ignore_eos(f.ignore_eos);
  return r;
}

// The request's results: printed as they come (text mode), kept for --json and --logits-out. The scheduler calls
// send()/fail() from its thread; wait() returns once the last chunk or the failure arrived.
class StdoutSink final : public server::ResponseSink {
 public:
  explicit StdoutSink(bool stream_text) : stream_text_(stream_text) {}

  void send(server::GenerationChunk chunk) override {
    if (stream_text_ && !chunk.text.empty()) {
      std::fwrite(chunk.text.data(), 1, chunk.text.size(), stdout);
      std::fflush(stdout);
    }
    std::lock_guard<std::mutex> lock(mu_);
    token_ids_.insert(token_ids_.end(), chunk.token_ids.begin(), chunk.token_ids.end());
    text_ += chunk.text;
    logits_.insert(logits_.end(), chunk.logits.begin(), chunk.logits.end());
    if (chunk.finish != FinishReason::kNone) {
      finish_ = chunk.finish;
      done_ = true;
      cv_.notify_all();
    }
  }
  void fail(const Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_all();
  }
  bool cancelled() const override { return false; }

  Status wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
    return status_;
  }
  // After wait().
  const std::vector<uint32_t>& token_ids() const { return token_ids_; }
  const std::string& text() const { return text_; }
  FinishReason finish() const { return finish_; }
  const std::vector<float>& logits() const { return logits_; }  // [rows × V]: every position appended

 private:
  const bool stream_text_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Status status_;
  std::vector<uint32_t> token_ids_;
  std::string text_;
  FinishReason finish_ = FinishReason::kNone;
  std::vector<float> logits_;
};

// prefill_logits [P, V] (every prompt position) and step_logits [n_new, V] (the row that chose each new token:
// position P - 1 + i), from the rows the scheduler streamed.
Status write_logits(const std::string& path, const std::vector<float>& rows, size_t prompt_len, size_t n_new,
                    size_t vocab) {
  const size_t have = vocab ? rows.size() / vocab : 0;
  if (have < prompt_len + n_new - 1)
    return absl::InternalError(absl::StrCat("--logits-out: the engine returned ", have, " logits rows, expected ",
                                            prompt_len + n_new - 1));
  std::vector<float> prefill(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(prompt_len * vocab));
  std::vector<float> steps(rows.begin() + static_cast<std::ptrdiff_t>((prompt_len - 1) * vocab),
                           rows.begin() + static_cast<std::ptrdiff_t>((prompt_len - 1 + n_new) * vocab));
  const auto v = static_cast<int64_t>(vocab);
  return write_safetensors(path, {f32_tensor("prefill_logits", {static_cast<int64_t>(prompt_len), v}, prefill),
                                  f32_tensor("step_logits", {static_cast<int64_t>(n_new), v}, steps)});
}

std::optional<Failure> run_generate(const GenerateFlags& f) {
  server::ServeConfig config;
  config.engine.model_dir = f.model;
  config.engine.max_batch_size = 1;  // one sequence per rank
  if (Status s = f.options->apply(&config); !s.ok()) return usage(std::string(s.message()));
  if (f.options->print_requested()) {
    std::printf("%s\n", engine_options_json(config).c_str());
    return std::nullopt;
  }
  auto request = to_request(f);
  if (!request.ok()) return usage(std::string(request.status().message()));

  // The tokenizer: needed for --prompt and --stop; without tokenizer.json, --prompt-ids still works (no text).
  std::unique_ptr<Tokenizer> tokenizer;
  if (auto tok = Tokenizer::FromDir(f.model); tok.ok()) {
    tokenizer = std::move(*tok);
  } else if (f.prompt || !f.stop.empty() || std::filesystem::exists(f.model + "/tokenizer.json") ||
             !std::filesystem::is_directory(f.model)) {
    return error(tok.status());
  } else {
    ZI_LOG(WARNING) << f.model << "/tokenizer.json is missing: no text output, only token ids (--json)";
  }
  // Sampling and stopping fields are checked before the model loads (no model limits yet), then again with them.
  const auto seed = [] { return uint64_t{0}; };
  server::RequestLimits limits{std::numeric_limits<uint32_t>::max(), std::numeric_limits<uint32_t>::max(), 0,
                               config.max_new_tokens_default};
  if (auto early = server::validate_request(*request, tokenizer.get(), limits, seed); !early.ok())
    return refused(early.status());

  server::WorkerPoolOptions pool;
  pool.log_level = config.log_level;
  pool.heartbeat_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::duration<double>(config.heartbeat_timeout_seconds));
  auto ex = server::start_executor(config.engine, pool);
  if (!ex.ok()) return error(ex.status());
  const ModelSummary& model = (*ex)->summary();
  limits = {model.vocab_size, model.max_context, 0, config.max_new_tokens_default};
  auto req = server::validate_request(*request, tokenizer.get(), limits, seed);
  if (!req.ok()) return refused(req.status());
  req->want_logits = f.logits_out.has_value();
  const size_t prompt_len = req->prompt.size();

  server::SchedulerOptions so;
  so.max_queue = 1;
  so.max_batch_size = config.engine.max_batch_size * model.num_ranks;
  so.max_num_batched_tokens = config.max_num_batched_tokens;
  so.eos_token_ids = model.eos_token_ids;
  auto policy = server::make_policy(config.scheduler_policy);
  if (!policy.ok()) return usage(std::string(policy.status().message()));
  auto sink = std::make_shared<StdoutSink>(!f.json);
  {
    server::Scheduler scheduler(ex->get(), tokenizer.get(), so, nullptr, std::move(*policy));
    auto place = scheduler.reserve();
    if (!place.ok()) return error(place.status());
    scheduler.submit(std::move(*place), std::move(*req), sink);
    if (Status st = sink->wait(); !st.ok()) return error(st);
  }

  if (f.logits_out) {
    Status st = write_logits(*f.logits_out, sink->logits(), prompt_len, sink->token_ids().size(), model.vocab_size);
    if (!st.ok()) return error(st);
  }
  if (f.json) {
    nlohmann::ordered_json out;  // keys in DESIGN.md's order
    out["token_ids"] = sink->token_ids();
    out["text"] = sink->text();
    out["finish_reason"] = std::string(finish_reason_name(sink->finish()));
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  std::fflush(stdout);
  return std::nullopt;
}

}  // namespace

void register_generate(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("generate", "Generate from a prompt with a Hugging Face model folder, in-process");
  auto f = std::make_shared<GenerateFlags>();
  cmd->add_option("--model", f->model, "Model folder: config.json, *.safetensors, tokenizer.json")->required();
  auto* prompt = cmd->add_option("--prompt", f->prompt, "Prompt text (tokenized with special tokens, as tokenize)");
  auto* ids = cmd->add_option("--prompt-ids", f->prompt_ids, "Prompt token ids, e.g. 1,2,3 (used as given)");
  prompt->excludes(ids);
  ids->excludes(prompt);
  cmd->add_option("--max-new-tokens", f->max_new_tokens, "Tokens to generate at most (default: min(256, room))");
  cmd->add_option("--temperature", f->temperature, "Sampling temperature (absent or 0 = greedy)");
  cmd->add_option("--top-k", f->top_k, "Keep the K most likely tokens (0 = off)");
  cmd->add_option("--top-p", f->top_p, "Nucleus sampling mass in (0, 1]");
  cmd->add_option("--seed", f->seed, "Seed of the sequence's RNG");
  cmd->add_option("--repetition-penalty", f->repetition_penalty, "> 0; 1 = off");
  cmd->add_option("--stop", f->stop, "Stop before this string (repeatable)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Treat EOS as an ordinary token");
  cmd->add_flag("--json", f->json, "Print one JSON line {token_ids, text, finish_reason}");
  cmd->add_option("--logits-out", f->logits_out, "Write prefill_logits and step_logits (float32 safetensors)");
  f->options = std::make_unique<OptionBinder>(cmd, server::kGenerate);
  cmd->callback([f, rc] {
    if (!f->prompt && !f->prompt_ids && !f->options->print_requested()) {
      std::fprintf(stderr, "zeroinfer: generate: one of --prompt or --prompt-ids is required\n");
      *rc = 2;
      return;
    }
    std::optional<Failure> failure = run_generate(*f);
    if (failure) {
      std::fprintf(stderr, "zeroinfer: %s\n", failure->message.c_str());
      *rc = failure->code;
      return;
    }
    *rc = 0;
  });
}

}  // namespace zi::cli
