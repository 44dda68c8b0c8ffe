#include "server/http/completion_job.h"

#include "server/http/openai_errors.h"

namespace zi::server::http {

using Json = nlohmann::json;

namespace {

const char* finish_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos:
    case FinishReason::kStop: return "stop";
    case FinishReason::kNone: break;
  }
  return "";
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

class CompletionJob::ChoiceSink final : public ResponseSink {
 public:
  ChoiceSink(std::shared_ptr<CompletionJob> job, size_t index) : job_(std::move(job)), index_(index) {}
  void send(GenerationChunk chunk) override { job_->on_chunk(index_, std::move(chunk)); }
  void fail(const Status& status) override { job_->on_fail(index_, status); }
  bool cancelled() const override { return job_->cancelled(); }

 private:
  std::shared_ptr<CompletionJob> job_;
  size_t index_;
};

CompletionJob::CompletionJob(CompletionFormat format, size_t choices, std::shared_ptr<Reply> reply,
                             const Tokenizer* tokenizer)
    : format_(std::move(format)), reply_(std::move(reply)), tokenizer_(tokenizer), choices_(choices) {}

std::shared_ptr<ResponseSink> CompletionJob::sink(size_t index) {
  return std::make_shared<ChoiceSink>(shared_from_this(), index);
}

bool CompletionJob::cancelled() const {
  if (reply_->gone()) return true;
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

void CompletionJob::fail(const Status& status) { on_fail(choices_.size(), status); }

void CompletionJob::on_fail(size_t index, const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (index < choices_.size() && choices_[index].finish_reason.empty()) {
    choices_[index].finish_reason = "error";
    ++done_;
  }
  if (failed_ || ended_) return;
  failed_ = true;  // the other choices see cancelled() and stop
  if (reply_->gone()) return;
  const ApiError error = api_error(status);
  if (!stream_started_) {
    send_error(*reply_, error);
  } else {
    reply_->write(event(Json::parse(error_json(error))));
    reply_->write("data: [DONE]\n\n");
    reply_->end();
  }
  ended_ = true;
}

Json CompletionJob::chunk_base() const {
  return Json{{"id", format_.id},
              {"object", format_.chat ? "chat.completion.chunk" : "text_completion"},
              {"created", format_.created},
              {"model", format_.model}};
}

std::string CompletionJob::event(const Json& body) const { return "data: " + dump(body) + "\n\n"; }

Json CompletionJob::logprobs_json(const std::vector<uint32_t>& ids, const std::vector<float>& logprobs) const {
  const size_t n = std::min(ids.size(), logprobs.size());
  auto token_text = [&](size_t i) {
    const int32_t id = static_cast<int32_t>(ids[i]);
    return tokenizer_ ? tokenizer_->decode(std::span<const int32_t>(&id, 1), false) : std::to_string(id);
  };
  if (format_.chat) {
    Json content = Json::array();
    for (size_t i = 0; i < n; ++i) {
      std::string t = token_text(i);
      content.push_back({{"token", t},
                         {"logprob", logprobs[i]},
                         {"bytes", std::vector<unsigned char>(t.begin(), t.end())},
                         {"top_logprobs", Json::array()}});
    }
    return {{"content", content}};
  }
  Json tokens = Json::array(), values = Json::array(), offsets = Json::array();
  size_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    std::string t = token_text(i);
    offsets.push_back(offset);
    offset += t.size();
    tokens.push_back(std::move(t));
    values.push_back(logprobs[i]);
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", nullptr}, {"text_offset", offsets}};
}

Json CompletionJob::usage_json() const {
  uint64_t prompt = 0, completion = 0;
  for (const Choice& c : choices_) {
    prompt += c.prompt_tokens;
    completion += c.completion_tokens;
  }
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

void CompletionJob::on_chunk(size_t index, GenerationChunk chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_ || ended_ || index >= choices_.size()) return;
  Choice& c = choices_[index];
  const bool last = chunk.finish != FinishReason::kNone;
  if (last) {
    c.finish_reason = finish_name(chunk.finish);
    c.prompt_tokens = chunk.prompt_tokens;
    c.completion_tokens = chunk.completion_tokens;
    ++done_;
  }
  if (format_.stream) {
    stream_chunk(index, chunk, last ? c.finish_reason : "");
  } else {
    c.text += chunk.text;
    if (format_.logprobs) {
      c.token_ids.insert(c.token_ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
      c.logprobs.insert(c.logprobs.end(), chunk.logprobs.begin(), chunk.logprobs.end());
    }
  }
  finish_if_done();
}

void CompletionJob::stream_chunk(size_t index, const GenerationChunk& chunk, const std::string& finish_reason) {
  Choice& c = choices_[index];
  if (!stream_started_) {
    reply_->start_stream("text/event-stream", {{"Cache-Control", "no-cache"}});
    stream_started_ = true;
  }
  const bool has_logprobs = format_.logprobs && !chunk.token_ids.empty();
  if (chunk.text.empty() && finish_reason.empty() && !has_logprobs && c.started) return;
  Json choice = {{"index", index}};
  if (format_.chat) {
    Json delta = Json::object();
    if (!c.started) delta["role"] = "assistant";
    if (!chunk.text.empty() || !c.started) delta["content"] = chunk.text;
    choice["delta"] = delta;
  } else {
    choice["text"] = chunk.text;
  }
  c.started = true;
  choice["logprobs"] = has_logprobs ? logprobs_json(chunk.token_ids, chunk.logprobs) : Json(nullptr);
  choice["finish_reason"] = finish_reason.empty() ? Json(nullptr) : Json(finish_reason);
  Json body = chunk_base();
  body["choices"] = Json::array({choice});
  if (format_.include_usage) body["usage"] = nullptr;
  reply_->write(event(body));
}

void CompletionJob::finish_if_done() {
  if (done_ < choices_.size() || ended_) return;
  ended_ = true;
  if (format_.stream) {
    if (format_.include_usage) {
      Json body = chunk_base();
      body["choices"] = Json::array();
      body["usage"] = usage_json();
      reply_->write(event(body));
    }
    reply_->write("data: [DONE]\n\n");
    reply_->end();
    return;
  }
  Json choices = Json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    Json choice = {{"index", i}};
    if (format_.chat) choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else choice["text"] = c.text;
    choice["logprobs"] = format_.logprobs ? logprobs_json(c.token_ids, c.logprobs) : Json(nullptr);
    choice["finish_reason"] = c.finish_reason;
    choices.push_back(std::move(choice));
  }
  Json body = {{"id", format_.id},
               {"object", format_.chat ? "chat.completion" : "text_completion"},
               {"created", format_.created},
               {"model", format_.model},
               {"choices", choices},
               {"usage", usage_json()}};
  reply_->send(200, "application/json", dump(body));
}

}  // namespace zi::server::http
