// `zeroinfer generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N] [--temperature T]
//  [--top-k K] [--top-p P] [--seed S] [--repetition-penalty R] [--stop STR]... [--ignore-eos] [--json]
//  [--logits-out FILE] [engine flags]`: one sequence, in-process, through the same Executor the workers run.
// stdout: the new text (streamed as it becomes final), or with --json one line
// {"token_ids": [...], "text": "...", "finish_reason": "length|eos|stop"}. Exit 2 for bad usage, 1 for errors.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/core/log.h"
#include "engine/io/safetensors_writer.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"
#include "engine/runtime/stopping.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/cli/commands.h"
#include "server/cli/option_binder.h"
#include "server/config/config.h"

namespace zi::cli {
namespace {

// Used when --max-new-tokens is not given (as server.max_new_tokens_default), capped by the context left.
constexpr uint32_t kDefaultMaxNewTokens = 256;

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

std::optional<Failure> check_sampling_flags(const GenerateFlags& f, SamplingParams* sp) {
  if (f.temperature) {
    if (!std::isfinite(*f.temperature) || *f.temperature < 0)
      return usage(absl::StrCat("--temperature must be a finite number >= 0, got ", *f.temperature));
    sp->temperature = *f.temperature;
  }
  if (f.top_k) {
    if (*f.top_k < 0 || *f.top_k > std::numeric_limits<uint32_t>::max())
      return usage(absl::StrCat("--top-k must be in 0..4294967295 (0 = off), got ", *f.top_k));
    sp->top_k = static_cast<uint32_t>(*f.top_k);
  }
  if (f.top_p) {
    if (!(*f.top_p > 0.0f && *f.top_p <= 1.0f)) return usage(absl::StrCat("--top-p must be in (0, 1], got ", *f.top_p));
    sp->top_p = *f.top_p;
  }
  if (f.repetition_penalty) {
    if (!std::isfinite(*f.repetition_penalty) || !(*f.repetition_penalty > 0))
      return usage(absl::StrCat("--repetition-penalty must be a finite number > 0, got ", *f.repetition_penalty));
    sp->repetition_penalty = *f.repetition_penalty;
  }
  sp->seed = f.seed;
  if (f.max_new_tokens && *f.max_new_tokens < 1)
    return usage(absl::StrCat("--max-new-tokens must be >= 1, got ", *f.max_new_tokens));
  for (const auto& s : f.stop)
    if (s.empty()) return usage("--stop must not be empty");
  return std::nullopt;
}

std::optional<Failure> parse_prompt_ids(const std::string& text, std::vector<int32_t>* ids) {
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int64_t v;
    if (!absl::SimpleAtoi(part, &v) || v < 0 || v > std::numeric_limits<int32_t>::max())
      return usage(absl::StrCat("--prompt-ids: '", part, "' is not a token id (expected e.g. 1,2,3)"));
    ids->push_back(static_cast<int32_t>(v));
  }
  return std::nullopt;
}

std::optional<Failure> engine_options_from(const GenerateFlags& f, server::ServeConfig* c) {
  c->engine.model_dir = f.model;
  c->engine.max_batch_size = 1;  // one sequence
  if (Status s = f.options->apply(c); !s.ok()) return usage(std::string(s.message()));
  if (c->engine.world_size != 1)
    return usage(absl::StrCat("--num-gpus ", c->engine.world_size, ": generate runs one rank in-process (use serve)"));
  return std::nullopt;
}

struct Generation {
  std::vector<int32_t> token_ids;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  std::vector<float> prefill_logits;  // [prompt_len, V]
  std::vector<float> step_logits;     // [token_ids.size(), V]
};

std::optional<Failure> run_generate(const GenerateFlags& f) {
  SamplingParams sampling;
  if (auto fail = check_sampling_flags(f, &sampling)) return fail;
  server::ServeConfig config;
  if (auto fail = engine_options_from(f, &config)) return fail;
  if (f.options->print_requested()) {
    std::printf("%s\n", engine_options_json(config).c_str());
    return std::nullopt;
  }
  const EngineOptions& options = config.engine;

  // The tokenizer: needed for --prompt and --stop; without tokenizer.json, --prompt-ids still works (no text).
  std::unique_ptr<Tokenizer> tokenizer;
  {
    auto tok = Tokenizer::FromDir(f.model);
    if (tok.ok()) {
      tokenizer = std::move(*tok);
    } else if (f.prompt || !f.stop.empty() || std::filesystem::exists(f.model + "/tokenizer.json") ||
               !std::filesystem::is_directory(f.model)) {
      return error(tok.status());
    } else {
      ZI_LOG(WARNING) << f.model << "/tokenizer.json is missing: no text output, only token ids (--json)";
    }
  }
  std::vector<int32_t> prompt;
  if (f.prompt) {
    auto ids = tokenizer->encode(*f.prompt, /*add_special_tokens=*/true);
    if (!ids.ok()) return usage(absl::StrCat("--prompt: ", ids.status().message()));
    prompt = std::move(*ids);
    if (prompt.empty()) return usage("--prompt: the text encodes to no tokens");
  } else {
    if (auto fail = parse_prompt_ids(*f.prompt_ids, &prompt)) return fail;
  }

  auto created = create_executor(options);
  if (!created.ok()) return error(created.status());
  Executor& ex = **created;
  const ModelSummary& model = ex.summary();
  const size_t V = model.vocab_size;
  for (int32_t id : prompt)
    if (static_cast<uint32_t>(id) >= model.vocab_size)
      return usage(absl::StrCat(f.prompt ? "--prompt" : "--prompt-ids", ": token id ", id,
                                " is outside the vocabulary (vocab_size ", model.vocab_size, ")"));
  const int64_t room = static_cast<int64_t>(model.max_context) - static_cast<int64_t>(prompt.size());
  if (room <= 0)
    return usage(absl::StrCat("the prompt has ", prompt.size(), " tokens; max_context ", model.max_context,
                              " leaves no room for new tokens (see --max-context)"));
  uint32_t max_new = static_cast<uint32_t>(std::min<int64_t>(kDefaultMaxNewTokens, room));
  if (f.max_new_tokens) {
    if (*f.max_new_tokens > room)
      return usage(absl::StrCat("--max-new-tokens ", *f.max_new_tokens, ": the prompt (", prompt.size(),
                                " tokens) plus new tokens exceed max_context ", model.max_context));
    max_new = static_cast<uint32_t>(*f.max_new_tokens);
  }

  const TokenStopCriteria criteria{max_new, model.eos_token_ids, f.ignore_eos};
  StopStringMatcher stops(f.stop);
  std::optional<IncrementalDetokenizer> detok;
  if (tokenizer) detok.emplace(*tokenizer, /*skip_special_tokens=*/true);
  const bool want_logits = f.logits_out.has_value();
  Generation gen;
  auto emit = [&](const std::string& piece) {
    gen.text += piece;
    if (!f.json && !piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };

  SeqStep step;
  step.seq_id = 1;
  step.tokens = prompt;
  step.first = true;
  step.sampling = sampling;
  step.want_logits = want_logits;
  while (gen.finish == FinishReason::kNone) {
    auto out = ex.step(StepInput{{step}, {}});
    if (!out.ok()) return error(out.status());
    const SeqResult& r = out->results.at(0);
    const int32_t token = r.token;
    const float* chose = nullptr;  // the logits row that chose `token`
    if (want_logits) {
      if (step.first) gen.prefill_logits = r.logits;
      chose = r.logits.data() + (step.tokens.size() - 1) * V;
    }
    gen.finish = check_token(criteria, token, static_cast<uint32_t>(gen.token_ids.size() + 1));
    if (gen.finish == FinishReason::kEos) break;  // EOS ends generation and is not returned
    gen.token_ids.push_back(token);
    if (chose) gen.step_logits.insert(gen.step_logits.end(), chose, chose + V);
    if (detok) {
      StopStringMatcher::Result s = stops.push(detok->push(token));
      emit(s.emit);
      if (s.stopped) gen.finish = FinishReason::kStop;
    }
    step = SeqStep();
    step.seq_id = 1;
    step.tokens = {token};
    step.want_logits = want_logits;
  }
  if (detok && gen.finish != FinishReason::kStop) {
    StopStringMatcher::Result s = stops.push(detok->flush());
    emit(s.emit);
    if (s.stopped) {
      gen.finish = FinishReason::kStop;
    } else {
      emit(stops.flush());
    }
  }

  if (f.logits_out) {
    const int64_t n_prompt = static_cast<int64_t>(prompt.size()), n_new = static_cast<int64_t>(gen.token_ids.size());
    Status st = write_safetensors(*f.logits_out, {f32_tensor("prefill_logits", {n_prompt, static_cast<int64_t>(V)},
                                                             gen.prefill_logits),
                                                  f32_tensor("step_logits", {n_new, static_cast<int64_t>(V)},
                                                             gen.step_logits)});
    if (!st.ok()) return error(st);
  }
  if (f.json) {
    nlohmann::ordered_json out;  // keys in DESIGN.md's order
    out["token_ids"] = gen.token_ids;
    out["text"] = gen.text;
    out["finish_reason"] = std::string(finish_reason_name(gen.finish));
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
