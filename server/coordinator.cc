#include "server/coordinator.h"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <boost/asio/thread_pool.hpp>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/registry.h>

#include "engine/core/log.h"
#include "engine/tokenizer/model_chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/frontend/frontend_state.h"
#include "server/grpc/generation_service.h"
#include "server/grpc/health_port.h"
#include "server/grpc/security.h"
#include "server/http/http_server.h"
#include "server/http/openai_api.h"
#include "server/http/openai_errors.h"
#include "server/http/tls_context.h"
#include "server/metrics/metrics_http.h"
#include "server/metrics/serving_metrics.h"
#include "server/scheduler/scheduler.h"
#include "server/worker_pool/worker_pool.h"

namespace zi::server {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kServiceName = "zeroinfer.v1.Generation";

// Waits up to `timeout` for SIGINT/SIGTERM/SIGHUP (blocked in every thread). Returns the signal number, or 0 on
// timeout.
int wait_signal(const sigset_t& set, milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>(timeout.count() % 1000) * 1000000L};
  int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

// What a SIGHUP may change while serving (see diff_configs): the config as it now runs, and where each reloadable
// key takes effect.
class Reloader {
 public:
  Reloader(const ServeConfig& config, ConfigReloader reload, FrontendState* service, ServingRuntime* runtime,
           std::optional<std::string> token)
      : running_(config), startup_max_queue_(config.max_queue), reload_(std::move(reload)), service_(service),
        runtime_(runtime), token_(std::move(token)) {}

  const ServeConfig& running() const { return running_; }

  // Re-reads the file (the command line's flags still override it), applies what can change now and logs each
  // key that takes a restart. A file that no longer loads changes nothing.
  void reload() {
    if (!reload_) {
      ZI_LOG(WARNING) << "SIGHUP: this server has no configuration file to reload";
      return;
    }
    StatusOr<ServeConfig> next = reload_();
    StatusOr<std::optional<std::string>> token =
        next.ok() ? load_auth_token(*next) : StatusOr<std::optional<std::string>>(next.status());
    if (!token.ok()) {
      ZI_LOG(ERROR) << "SIGHUP: " << token.status().message() << "; the running configuration is unchanged";
      return;
    }
    int applied = 0, restart = 0;
    for (const ConfigChange& ch : diff_configs(running_, *next)) {
      if (!ch.reloadable) {
        ZI_LOG(WARNING) << "SIGHUP: " << ch.key << " changed (" << ch.before << " -> " << ch.after
                        << ") but takes a restart; still " << ch.before;
        ++restart;
        continue;
      }
      if (ch.key == "server.max_queue" && next->max_queue > startup_max_queue_) {
        ZI_LOG(WARNING) << "SIGHUP: server.max_queue changed (" << ch.before << " -> " << ch.after
                        << ") but above its start-up value " << startup_max_queue_ << " it takes a restart; now "
                        << startup_max_queue_;
        running_.max_queue = startup_max_queue_;
        service_->set_max_queue(0);
        ++restart;
        continue;
      }
      ZI_LOG(INFO) << "SIGHUP: " << ch.key << ": " << ch.before << " -> " << ch.after;
      ++applied;
    }
    if (token_.has_value() != token->has_value() || (token_ && *token_ != **token)) {
      ZI_LOG(INFO) << "SIGHUP: bearer token " << (!token->has_value() ? "removed: RPCs need no token now"
                                                  : !token_.has_value() ? "set: every RPC but health needs it now"
                                                                        : "replaced");
      token_ = *token;
      service_->set_auth_token(token_);
      ++applied;
    }
    // Apply the reloadable keys (running_ keeps the start-up value of every other key).
    running_.log_level = next->log_level;
    LogLevel level;
    if (parse_log_level(running_.log_level, &level)) set_log_level(level);
    if (next->max_queue <= startup_max_queue_) {
      running_.max_queue = next->max_queue;
      service_->set_max_queue(next->max_queue < startup_max_queue_ ? next->max_queue : 0);
    }
    running_.max_new_tokens_default = next->max_new_tokens_default;
    running_.max_prompt_tokens = next->max_prompt_tokens;
    running_.shutdown_grace_seconds = next->shutdown_grace_seconds;
    running_.auth_token_file = next->auth_token_file;
    if (runtime_) {
      runtime_->limits.max_prompt_tokens = running_.max_prompt_tokens;
      runtime_->limits.max_new_tokens_default = running_.max_new_tokens_default;
      service_->set_limits(runtime_->limits);
    }
    ZI_LOG(INFO) << "SIGHUP: reloaded " << running_.source << ": " << applied << " change" << (applied == 1 ? "" : "s")
                 << " applied, " << restart << " waiting for a restart";
  }

  // The model is up: request limits now live in `runtime`.
  void set_runtime(ServingRuntime* runtime) { runtime_ = runtime; }

 private:
  ServeConfig running_;
  const uint32_t startup_max_queue_;
  ConfigReloader reload_;
  FrontendState* service_;  // both front ends' limits, queue bound and token
  ServingRuntime* runtime_;
  std::optional<std::string> token_;
};

// The main port's health and, when server.health_listen is set, its mirror there.
void set_health(grpc::Server* server, HealthPort* health_port, bool serving) {
  if (health_port) health_port->set_serving(serving, kServiceName);
  grpc::HealthCheckServiceInterface* h = server->GetHealthCheckService();
  if (!h) return;
  h->SetServingStatus("", serving);
  h->SetServingStatus(kServiceName, serving);
}

// Start-up failures: one line on stderr, exit code 1.
int fail(const Status& st) {
  std::fprintf(stderr, "zeroinfer: %s\n", std::string(st.message()).c_str());
  return 1;
}

// The coordinator's parts in start-up order; destroyed in reverse (the workers before the scheduler, see drain()).
class Coordinator {
 public:
  Coordinator(const ServeConfig& config, std::string executable, ConfigReloader reload)
      : config_(config), executable_(std::move(executable)), reload_(std::move(reload)) {}

  // Security, /metrics, the gRPC port (health NOT_SERVING), the tokenizer, the workers and the scheduler; then
  // SERVING. Returns an exit code when the process must end here (1: start-up failed, 0: a signal while loading).
  std::optional<int> start();
  // Until SIGINT/SIGTERM (SIGHUP reloads): returns the signal.
  int serve();
  // Refuses new requests, lets what runs finish within the grace period, cancels the rest, stops everything.
  void drain(int sig);

 private:
  std::optional<int> start_frontend();
  std::optional<int> start_engine();

  const ServeConfig& config_;
  const std::string executable_;
  ConfigReloader reload_;
  sigset_t signals_{};
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  ServingMetrics metrics_{*registry_};
  std::unique_ptr<MetricsHttpServer> exposer_;
  boost::asio::thread_pool intake_{2};  // tokenization and validation, off the reactor threads
  FrontendState state_;  // what gRPC and the HTTP API share (model, limits, token)
  GenerationService service_{&intake_, &state_, &metrics_};
  http::OpenAiApi api_{&intake_, &state_, &metrics_};
  std::unique_ptr<http::HttpServer> http_;
  std::optional<tok::ModelChatTemplate> chat_template_;
  std::unique_ptr<Reloader> reloader_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HealthPort> health_port_;  // server.health_listen; null when unset
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<Scheduler> scheduler_;
  ServingRuntime rt_;
  bool reload_pending_ = false;
};

std::optional<int> Coordinator::start() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);  // already blocked by run_coordinator; inherited by new threads
  signal(SIGPIPE, SIG_IGN);
  if (auto rc = start_frontend()) return rc;
  return start_engine();
}

std::optional<int> Coordinator::start_frontend() {
  const ServeConfig& config = config_;
  // Transport security first: a plaintext public port, or a certificate that cannot be read, stops here.
  if (Status st = check_transport_security(config); !st.ok()) return fail(st);
  auto tls = load_tls_material(config);  // read once: both ports present the same certificate
  if (!tls.ok()) return fail(tls.status());
  auto credentials = make_server_credentials(*tls);
  auto token = load_auth_token(config);
  if (!token.ok()) return fail(token.status());

  // Metrics first: a port clash is reported before anything heavy starts.
  {
    auto hp = parse_host_port(config.metrics_listen);
    if (!hp.ok()) return fail(absl::InvalidArgumentError(absl::StrCat("server.metrics_listen: ", hp.status().message())));
    auto started = MetricsHttpServer::Start(config.metrics_listen, registry_);
    if (!started.ok()) return fail(Status(started.status().code(),
                                          absl::StrCat("server.metrics_listen: ", started.status().message())));
    exposer_ = std::move(*started);
    ZI_LOG(INFO) << "metrics on http://" << join_host_port(hp->host, exposer_->port()) << "/metrics";
  }

  // The health-only port next: plaintext wherever it listens (it serves nothing but the serving state).
  if (!config.health_listen.empty()) {
    auto hp = parse_host_port(config.health_listen);
    if (!hp.ok())
      return fail(absl::InvalidArgumentError(absl::StrCat("server.health_listen: ", hp.status().message())));
    auto started = HealthPort::Start(config.health_listen);
    if (!started.ok()) return fail(started.status());
    health_port_ = std::move(*started);
    health_port_->set_serving(false, kServiceName);
    ZI_LOG(INFO) << "health on " << join_host_port(hp->host, health_port_->port())
                 << " (plaintext, grpc.health.v1 only)";
  }

  state_.set_auth_token(*token);
  reloader_ = std::make_unique<Reloader>(config, std::move(reload_), &state_, nullptr, *token);
  auto hp = parse_host_port(config.listen);
  if (!hp.ok()) return fail(absl::InvalidArgumentError(absl::StrCat("server.listen: ", hp.status().message())));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  // No SO_REUSEPORT: a second server on a taken port must fail, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Per-connection bounds: streams beyond the limit wait in the client's HTTP/2 layer, not in our queue; keepalive
  // pings find clients that vanished without closing (host crash, partition) and cancel their streams.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, static_cast<int>(config.max_streams_per_connection));
  if (config.keepalive_seconds > 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(config.keepalive_seconds * 1000));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  builder.AddListeningPort(config.listen, credentials, &port);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0)
    return fail(absl::UnavailableError(absl::StrCat("server.listen: cannot listen on ", config.listen)));
  set_health(server_.get(), health_port_.get(), false);  // the built-in service starts SERVING; nothing is loaded yet
  ZI_LOG(INFO) << "listening on " << join_host_port(hp->host, port)
               << (!config.tls.enabled()                  ? " (plaintext)"
                   : config.tls.require_client_cert        ? " (TLS, client certificate required)"
                   : !config.tls.client_ca_file.empty()    ? " (TLS, client certificates verified)"
                                                           : " (TLS)")
               << (token->has_value() ? ", bearer token required" : "");

  // The OpenAI-compatible HTTP API: the same TLS material, token and (through state_) model and limits.
  if (!config.http_listen.empty()) {
    auto http_hp = parse_host_port(config.http_listen);
    if (!http_hp.ok())
      return fail(absl::InvalidArgumentError(absl::StrCat("server.http_listen: ", http_hp.status().message())));
    http::HttpServerOptions options;
    options.listen = config.http_listen;
    options.max_body_bytes = config.http_max_body_bytes;
    options.error_body = [](unsigned status, const std::string& message) {
      return std::make_pair(std::string("application/json"), http::error_json(http::api_error(status, message)));
    };
    if (tls->has_value()) {
      auto ctx = http::make_ssl_context(**tls);
      if (!ctx.ok()) return fail(ctx.status());
      options.tls = std::move(*ctx);
    }
    auto started = http::HttpServer::Start(std::move(options), [this](http::Request req,
                                                                      std::shared_ptr<http::Reply> reply) {
      api_.handle(std::move(req), std::move(reply));
    });
    if (!started.ok())
      return fail(Status(started.status().code(), absl::StrCat("server.http_listen: ", started.status().message())));
    http_ = std::move(*started);
    ZI_LOG(INFO) << "OpenAI-compatible HTTP API on " << (tls->has_value() ? "https://" : "http://")
                 << join_host_port(http_hp->host, http_->port()) << "/v1"
                 << (token->has_value() ? " (bearer token required)" : "");
  }
  return std::nullopt;
}

std::optional<int> Coordinator::start_engine() {
  const ServeConfig& config = config_;
  auto tokenizer = Tokenizer::FromDir(config.engine.model_dir);
  if (!tokenizer.ok()) return fail(tokenizer.status());
  tokenizer_ = std::move(*tokenizer);
  // A template outside the interpreter's subset stops here, naming the construct and the file.
  auto chat_template = tok::load_model_chat_template(config.engine.model_dir);
  if (!chat_template.ok()) return fail(chat_template.status());
  chat_template_ = std::move(*chat_template);

  WorkerPoolOptions pool_options;
  pool_options.executable = executable_;
  pool_options.heartbeat_timeout = std::chrono::duration_cast<milliseconds>(
      std::chrono::duration<double>(config.heartbeat_timeout_seconds));
  pool_options.log_level = config.log_level;
  pool_options.external = config.workers == "external";
  pool_options.worker_listen = config.worker_listen;
  pool_options.tls = {config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file,
                      "server.tls.cert_file", "server.tls.key_file", "server.tls.client_ca_file"};
  pool_options.join_timeout = std::chrono::duration_cast<milliseconds>(
      std::chrono::duration<double>(config.join_timeout_seconds));
  // Spawned from this (main) thread: PR_SET_PDEATHSIG follows the thread that forks.
  auto pool = WorkerPool::Spawn(config.engine, pool_options);
  if (!pool.ok()) return fail(pool.status());
  pool_ = std::move(*pool);
  std::optional<Status> started;
  for (auto last = std::chrono::steady_clock::now(); !started;) {
    started = pool_->wait_ready(milliseconds(100));
    if (started) break;
    if (int sig = wait_signal(signals_, milliseconds(1))) {
      if (sig == SIGHUP) {
        ZI_LOG(INFO) << "SIGHUP while loading: reloading once the model is up";
        reload_pending_ = true;
        continue;
      }
      ZI_LOG(INFO) << strsignal(sig) << " while loading: stopping";
      pool_->shutdown(seconds(2));
      server_->Shutdown(std::chrono::system_clock::now() + seconds(1));
      return 0;
    }
    if (std::chrono::steady_clock::now() - last > seconds(10)) {  // keep systemd's start timeout at bay
      sd_notify(0, "EXTEND_TIMEOUT_USEC=30000000");
      last = std::chrono::steady_clock::now();
    }
  }
  if (!started->ok()) {
    pool_->shutdown(seconds(2));
    server_->Shutdown(std::chrono::system_clock::now() + seconds(1));
    return fail(*started);
  }
  const ModelSummary& summary = pool_->summary();

  SchedulerOptions sopts;
  sopts.max_queue = config.max_queue;
  // server.max_batch_size is per rank (each worker holds that many KV slots); data parallelism multiplies it.
  sopts.max_batch_size = config.engine.max_batch_size * config.engine.world_size;
  sopts.eos_token_ids = summary.eos_token_ids;
  sopts.max_num_batched_tokens = config.max_num_batched_tokens;
  auto policy = make_policy(config.scheduler_policy);
  if (!policy.ok()) return fail(policy.status());
  scheduler_ = std::make_unique<Scheduler>(pool_.get(), tokenizer_.get(), sopts, &metrics_, std::move(*policy));
  grpc::Server* srv = server_.get();
  auto on_lost = [srv, hport = health_port_.get(), sched = scheduler_.get(), state = &state_](const Status& st) {
    set_health(srv, hport, false);
    state->set_serving(false);
    sched->fail_all(st);
  };
  scheduler_->set_on_executor_lost(on_lost);
  pool_->set_on_lost(on_lost);

  ServingRuntime& rt = rt_;
  rt.tokenizer = tokenizer_.get();
  rt.scheduler = scheduler_.get();
  rt.summary = summary;
  rt.limits.vocab_size = summary.vocab_size;
  rt.limits.max_context = summary.max_context;
  rt.limits.max_prompt_tokens = config.max_prompt_tokens;
  rt.limits.max_new_tokens_default = config.max_new_tokens_default;
  rt.chat_template = chat_template_ ? &*chat_template_ : nullptr;
  rt.max_batch_size = sopts.max_batch_size;
  state_.set_runtime(rt);
  reloader_->set_runtime(&rt);
  if (reload_pending_) reloader_->reload();
  set_health(server_.get(), health_port_.get(), true);
  state_.set_serving(true);
  sd_notify(0, "READY=1");
  ZI_LOG(INFO) << "serving " << summary.name << " (" << summary.architecture << ", " << summary.parameters
               << " parameters, context " << summary.max_context << ", " << summary.device << ", "
               << summary.num_ranks << " rank" << (summary.num_ranks == 1 ? "" : "s") << ", "
               << (chat_template_ ? "chat template from " + chat_template_->chat_template.source_name()
                                  : std::string("no chat template: chat requests are refused"))
               << ")";

  return std::nullopt;
}

int Coordinator::serve() {
  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  auto last_ping = std::chrono::steady_clock::now();
  int sig = 0;
  while ((sig = wait_signal(signals_, milliseconds(200))) == 0 || sig == SIGHUP) {
    if (sig == SIGHUP) reloader_->reload();
    auto now = std::chrono::steady_clock::now();
    if (watchdog && now - last_ping > std::chrono::microseconds(watchdog_usec / 2) &&
        now - scheduler_->last_turn() < std::chrono::microseconds(watchdog_usec)) {
      sd_notify(0, "WATCHDOG=1");
      last_ping = now;
    }
  }

  return sig;
}

void Coordinator::drain(int sig) {
  const double grace_seconds = reloader_->running().shutdown_grace_seconds;
  ZI_LOG(INFO) << strsignal(sig) << ": draining (" << scheduler_->in_flight() << " requests in flight, grace "
               << grace_seconds << " s)";
  sd_notify(0, "STOPPING=1");
  scheduler_->start_draining();  // first: once health says NOT_SERVING, new requests are refused
  state_.set_serving(false);     // the HTTP API's /health and new requests: 503
  if (auto* h = server_->GetHealthCheckService()) h->Shutdown();  // NOT_SERVING for good
  if (health_port_) health_port_->shutdown_health();
  const auto grace_end = std::chrono::steady_clock::now() +
                         std::chrono::duration_cast<milliseconds>(std::chrono::duration<double>(grace_seconds));
  while (scheduler_->in_flight() > 0 && std::chrono::steady_clock::now() < grace_end) {
    if (int again = wait_signal(signals_, milliseconds(20))) {
      if (again == SIGHUP) {
        ZI_LOG(INFO) << "SIGHUP while draining: ignored";
        continue;
      }
      ZI_LOG(INFO) << "second signal: cutting the grace period short";
      break;
    }
  }
  if (scheduler_->in_flight() > 0) {
    ZI_LOG(WARNING) << "cancelling " << scheduler_->in_flight() << " unfinished requests";
    scheduler_->fail_all(absl::CancelledError("server shutting down: the request did not finish within "
                                             "server.shutdown_grace_seconds"));
    for (int i = 0; i < 500 && scheduler_->in_flight() > 0; ++i) std::this_thread::sleep_for(milliseconds(10));
  }
  server_->Shutdown(std::chrono::system_clock::now() + seconds(2));
  intake_.join();
  // The workers go before the scheduler: once shutdown() returns, no on_lost callback can reach the scheduler.
  pool_->shutdown(seconds(5));
  scheduler_.reset();
  server_.reset();
  http_.reset();  // after the scheduler: no sink can write to a connection any more
  if (health_port_) health_port_->stop(1000);  // after the workers: no on_lost can reach it any more
  exposer_.reset();
  ZI_LOG(INFO) << "stopped";
}

}  // namespace

int run_coordinator(const ServeConfig& config, const std::string& executable, ConfigReloader reload) {
  // Blocked before the Coordinator exists: its members start threads (the intake pool), and a thread that left
  // SIGTERM unblocked could take it with the default action (the process dies, no drain, no STOPPING=1), as a CI
  // run of ops_test saw on 2026-12-08. start() blocks the same set again and waits for it.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  Coordinator c(config, executable, std::move(reload));
  if (std::optional<int> rc = c.start()) return *rc;
  c.drain(c.serve());
  return 0;
}

}  // namespace zi::server
