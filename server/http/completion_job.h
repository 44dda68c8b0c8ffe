// One OpenAI completion or chat request in flight: one scheduler request per choice (each prompt of a
// completion), their chunks turned into OpenAI's responses on one Reply.
//
// stream: false — one JSON response once every choice has finished, with usage (summed over the choices).
// stream: true  — server-sent events: `data: {chunk}\n\n` per piece of text (chat: the first chunk of a choice
//                 carries delta.role), the choice's last chunk with finish_reason, then with
//                 stream_options.include_usage a chunk with empty choices and the usage, then `data: [DONE]`.
// finish_reason: EOS and stop strings → "stop", the token limit → "length".
// A failure before the stream began is an OpenAI error response (the other choices are cancelled); after it, an
// `data: {"error": ...}` event, then [DONE]. A client that goes cancels every choice (cancelled() turns true and
// the scheduler is woken), so their KV blocks are freed as a gRPC cancel frees them.
//
// Thread-safety: sinks are called from the scheduler thread, fail() from the intake pool; all under one mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"
#include "server/http/http_server.h"
#include "server/scheduler/request.h"

namespace zi::server::http {

struct CompletionFormat {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  std::string id;       // "cmpl-..." / "chatcmpl-..."
  std::string model;    // the served name
  int64_t created = 0;  // Unix seconds
};

class CompletionJob : public std::enable_shared_from_this<CompletionJob> {
 public:
  // `tokenizer` (borrowed; outlives the job) spells the tokens of logprobs.
  CompletionJob(CompletionFormat format, size_t choices, std::shared_ptr<Reply> reply, const Tokenizer* tokenizer);

  // The sink of choice `index`, for Scheduler::submit.
  std::shared_ptr<ResponseSink> sink(size_t index);
  // Ends the whole request with `status` (a choice could not be submitted); the other choices are cancelled.
  void fail(const Status& status);
  // True once the client went or the request failed: every choice stops.
  bool cancelled() const;

 private:
  class ChoiceSink;
  struct Choice {
    std::string text;
    std::vector<uint32_t> token_ids;
    std::vector<float> logprobs;
    std::string finish_reason;  // "" while running
    bool started = false;       // streamed its first chunk (chat: the role)
    uint32_t prompt_tokens = 0, completion_tokens = 0;
  };

  void on_chunk(size_t index, GenerationChunk chunk);
  void on_fail(size_t index, const Status& status);
  // Under mu_: the stream's events for one chunk, and the ending once every choice is done.
  void stream_chunk(size_t index, const GenerationChunk& chunk, const std::string& finish_reason);
  void finish_if_done();
  std::string event(const nlohmann::json& body) const;
  nlohmann::json chunk_base() const;
  nlohmann::json logprobs_json(const std::vector<uint32_t>& ids, const std::vector<float>& logprobs) const;
  nlohmann::json usage_json() const;

  const CompletionFormat format_;
  std::shared_ptr<Reply> reply_;
  const Tokenizer* tokenizer_;
  mutable std::mutex mu_;
  std::vector<Choice> choices_;  // guarded by mu_
  size_t done_ = 0;              // guarded by mu_
  bool stream_started_ = false;  // guarded by mu_
  bool failed_ = false;          // guarded by mu_
  bool ended_ = false;           // the reply is complete; guarded by mu_
};

}  // namespace zi::server::http
