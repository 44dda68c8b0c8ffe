#include "server/http/openai_api.h"

#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "engine/core/log.h"
#include "server/grpc/security.h"
#include "server/http/completion_job.h"
#include "server/http/openai_errors.h"
#include "server/http/openai_request.h"

namespace zi::server::http {

namespace bhttp = boost::beast::http;
using Json = nlohmann::json;

void OpenAiApi::reject(uint64_t n) {
  for (uint64_t i = 0; metrics_ && i < n; ++i) metrics_->count_request(RequestOutcome::kRejected);
}

void OpenAiApi::handle(Request req, std::shared_ptr<Reply> reply) {
  std::string_view path(req.target().data(), req.target().size());
  path = path.substr(0, path.find('?'));
  const bhttp::verb method = req.method();
  const bool get = method == bhttp::verb::get || method == bhttp::verb::head;
  auto wrong_method = [&](const char* allowed) {
    send_error(*reply, api_error(405, absl::StrCat(std::string(path), " takes ", allowed)));
  };
  const bool is_completion = path == "/v1/completions", is_chat = path == "/v1/chat/completions";
  if (path == "/health") {
    if (!get) return wrong_method("GET");
    const bool serving = state_->runtime() != nullptr && state_->serving();
    return reply->send(serving ? 200 : 503, "application/json",
                       serving ? R"({"status":"ok"})" : R"({"status":"unavailable"})");
  }
  if (!is_completion && !is_chat && path != "/v1/models")
    return send_error(*reply, api_error(404, absl::StrCat("no such path: ", std::string(path),
                                                          " (served: /v1/completions, /v1/chat/completions, "
                                                          "/v1/models, /health)")));
  if (path == "/v1/models" ? !get : method != bhttp::verb::post) return wrong_method(get ? "POST" : "GET");

  std::shared_ptr<const std::string> token = state_->auth_token();
  std::optional<std::string_view> authorization;
  if (auto it = req.find(bhttp::field::authorization); it != req.end()) authorization = std::string_view(it->value().data(), it->value().size());
  if (Status auth = check_bearer_value(authorization, token.get()); !auth.ok()) {
    if (path != "/v1/models") reject();
    return send_error(*reply, api_error(auth));
  }
  std::shared_ptr<const ServingRuntime> rt = state_->runtime();
  if (!rt || !state_->serving()) {
    if (path != "/v1/models") reject();
    return send_error(*reply, api_error(absl::UnavailableError(
                                  rt ? "the server is shutting down" : "the model is still loading; retry shortly")));
  }
  if (path == "/v1/models") return models(*reply, *rt);
  generate(std::move(req), std::move(reply), is_chat);
}

void OpenAiApi::models(Reply& reply, const ServingRuntime& rt) {
  Json model = {{"id", rt.summary.name},       {"object", "model"},
                {"created", started_},          {"owned_by", "zeroinfer"},
                {"max_model_len", rt.limits.max_context}};
  reply.send(200, "application/json", Json{{"object", "list"}, {"data", Json::array({model})}}.dump());
}

void OpenAiApi::generate(Request req, std::shared_ptr<Reply> reply, bool chat) {
  const Clock::time_point arrival = Clock::now();
  boost::asio::post(*intake_, [this, chat, arrival, body = std::move(req.body()), reply]() mutable {
    std::shared_ptr<const ServingRuntime> rt = state_->runtime();
    auto refuse = [&](const Status& st, uint64_t n = 1) {
      reject(n);
      send_error(*reply, api_error(st));
    };
    if (reply->gone()) return;
    StatusOr<OpenAiRequest> parsed = chat ? parse_chat_request(body)
                                          : parse_completion_request(body, rt->max_batch_size);
    if (!parsed.ok()) return refuse(parsed.status());
    const size_t n = parsed->prompts.size();
    if (metrics_) metrics_->count_api_request(Api::kHttp, n);
    if (!parsed->model.empty() && parsed->model != rt->summary.name)
      return refuse(absl::NotFoundError(absl::StrCat("model: '", parsed->model, "' is not served here; this server "
                                                     "serves '", rt->summary.name, "' (GET /v1/models)")),
                    n);
    if (Status bound = state_->check_lowered_queue_bound(*rt->scheduler); !bound.ok()) return refuse(bound, n);
    // A place in the queue for every choice first, so that a full queue refuses the whole request.
    std::vector<Reservation> places;
    for (size_t i = 0; i < n; ++i) {
      StatusOr<Reservation> place = rt->scheduler->reserve();
      if (!place.ok()) return refuse(place.status(), n);
      places.push_back(std::move(*place));
    }
    std::vector<GenerationRequest> valid;
    for (size_t i = 0; i < n; ++i) {
      StatusOr<GenerationRequest> v = validate_request(parsed->prompts[i], rt->tokenizer, rt->limits,
                                                       [this] { return state_->random_u64(); }, rt->chat_template);
      if (!v.ok()) return refuse(with_openai_fields(v.status()), n);
      valid.push_back(std::move(*v));
    }
    CompletionFormat format;
    format.chat = chat;
    format.stream = parsed->stream;
    format.include_usage = parsed->include_usage;
    format.logprobs = parsed->logprobs;
    format.id = absl::StrFormat("%s-%016x", chat ? "chatcmpl" : "cmpl", state_->random_u64());
    format.model = rt->summary.name;
    format.created = static_cast<int64_t>(std::time(nullptr));
    auto job = std::make_shared<CompletionJob>(format, n, reply, rt->tokenizer);
    // A client that goes cancels every choice at the next step boundary.
    reply->on_gone([scheduler = rt->scheduler] { scheduler->wake(); });
    for (size_t i = 0; i < n; ++i) {
      valid[i].request_id = n == 1 ? format.id : absl::StrCat(format.id, "-", i);
      valid[i].arrival = arrival;
      rt->scheduler->submit(std::move(places[i]), std::move(valid[i]), job->sink(i));
    }
  });
}

}  // namespace zi::server::http
