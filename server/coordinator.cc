#include "server/coordinator.h"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <boost/asio/thread_pool.hpp>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/registry.h>

#include "engine/core/log.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/grpc/generation_service.h"
#include "server/metrics/metrics_http.h"
#include "server/metrics/serving_metrics.h"
#include "server/scheduler/scheduler.h"
#include "server/worker_pool/worker_pool.h"

namespace zi::server {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kServiceName = "zeroinfer.v1.Generation";

std::string join_host_port(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

// Waits up to `timeout` for SIGINT/SIGTERM (blocked in every thread); SIGHUP is logged and ignored.
// Returns the signal number, or 0 on timeout.
int wait_signal(const sigset_t& set, milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>(timeout.count() % 1000) * 1000000L};
  int sig = sigtimedwait(&set, nullptr, &ts);
  if (sig == SIGHUP) {
    ZI_LOG(WARNING) << "SIGHUP: configuration reload is not supported; restart the server to apply changes";
    return 0;
  }
  return sig > 0 ? sig : 0;
}

void set_health(grpc::Server* server, bool serving) {
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

}  // namespace

int run_coordinator(const ServeConfig& config, const std::string& executable) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // inherited by every thread started from here on
  signal(SIGPIPE, SIG_IGN);

  // Metrics first: a port clash is reported before anything heavy starts.
  auto registry = std::make_shared<prometheus::Registry>();
  ServingMetrics metrics(*registry);
  std::unique_ptr<MetricsHttpServer> exposer;
  {
    auto hp = parse_host_port(config.metrics_listen);
    if (!hp.ok()) return fail(absl::InvalidArgumentError(absl::StrCat("server.metrics_listen: ", hp.status().message())));
    auto started = MetricsHttpServer::Start(config.metrics_listen, registry);
    if (!started.ok()) return fail(Status(started.status().code(),
                                          absl::StrCat("server.metrics_listen: ", started.status().message())));
    exposer = std::move(*started);
    ZI_LOG(INFO) << "metrics on http://" << join_host_port(hp->host, exposer->port()) << "/metrics";
  }

  boost::asio::thread_pool intake(2);  // tokenization and validation, off the reactor threads
  GenerationService service(&intake, &metrics);
  auto hp = parse_host_port(config.listen);
  if (!hp.ok()) return fail(absl::InvalidArgumentError(absl::StrCat("server.listen: ", hp.status().message())));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  // No SO_REUSEPORT: a second server on a taken port must fail, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(config.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0)
    return fail(absl::UnavailableError(absl::StrCat("server.listen: cannot listen on ", config.listen)));
  set_health(server.get(), false);  // the built-in service starts SERVING; nothing is loaded yet
  ZI_LOG(INFO) << "listening on " << join_host_port(hp->host, port);

  auto tokenizer = Tokenizer::FromDir(config.model_path);
  if (!tokenizer.ok()) return fail(tokenizer.status());

  WorkerPoolOptions pool_options;
  pool_options.executable = executable;
  pool_options.log_level = config.log_level;
  // Spawned from this (main) thread: PR_SET_PDEATHSIG follows the thread that forks.
  auto pool = WorkerPool::Spawn(engine_options(config), pool_options);
  if (!pool.ok()) return fail(pool.status());
  std::optional<Status> started;
  for (auto last = std::chrono::steady_clock::now(); !started;) {
    started = (*pool)->wait_ready(milliseconds(100));
    if (started) break;
    if (int sig = wait_signal(signals, milliseconds(1))) {
      ZI_LOG(INFO) << strsignal(sig) << " while loading: stopping";
      (*pool)->shutdown(seconds(2));
      server->Shutdown(std::chrono::system_clock::now() + seconds(1));
      return 0;
    }
    if (std::chrono::steady_clock::now() - last > seconds(10)) {  // keep systemd's start timeout at bay
      sd_notify(0, "EXTEND_TIMEOUT_USEC=30000000");
      last = std::chrono::steady_clock::now();
    }
  }
  if (!started->ok()) {
    (*pool)->shutdown(seconds(2));
    server->Shutdown(std::chrono::system_clock::now() + seconds(1));
    return fail(*started);
  }
  const ModelSummary& summary = (*pool)->summary();

  SchedulerOptions sopts;
  sopts.max_queue = config.max_queue;
  sopts.max_batch_size = config.max_batch_size;
  sopts.eos_token_ids = summary.eos_token_ids;
  sopts.max_num_batched_tokens = config.max_num_batched_tokens;
  auto policy = make_policy(config.scheduler_policy);
  if (!policy.ok()) return fail(policy.status());
  auto scheduler = std::make_unique<Scheduler>(pool->get(), tokenizer->get(), sopts, &metrics, std::move(*policy));
  grpc::Server* srv = server.get();
  auto on_lost = [srv, sched = scheduler.get()](const Status& st) {
    set_health(srv, false);
    sched->fail_all(st);
  };
  scheduler->set_on_executor_lost(on_lost);
  (*pool)->set_on_lost(on_lost);

  ServingRuntime rt;
  rt.tokenizer = tokenizer->get();
  rt.scheduler = scheduler.get();
  rt.summary = summary;
  rt.limits.vocab_size = summary.vocab_size;
  rt.limits.max_context = summary.max_context;
  rt.limits.max_prompt_tokens = config.max_prompt_tokens;
  rt.limits.max_new_tokens_default = config.max_new_tokens_default;
  service.set_runtime(rt);
  set_health(server.get(), true);
  sd_notify(0, "READY=1");
  ZI_LOG(INFO) << "serving " << summary.name << " (" << summary.architecture << ", " << summary.parameters
               << " parameters, context " << summary.max_context << ", " << summary.device << ", "
               << summary.num_ranks << " rank" << (summary.num_ranks == 1 ? "" : "s") << ")";

  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  auto last_ping = std::chrono::steady_clock::now();
  int sig = 0;
  while (!(sig = wait_signal(signals, milliseconds(200)))) {
    auto now = std::chrono::steady_clock::now();
    if (watchdog && now - last_ping > std::chrono::microseconds(watchdog_usec / 2) &&
        now - scheduler->last_turn() < std::chrono::microseconds(watchdog_usec)) {
      sd_notify(0, "WATCHDOG=1");
      last_ping = now;
    }
  }

  // Drain.
  ZI_LOG(INFO) << strsignal(sig) << ": draining (" << scheduler->in_flight() << " requests in flight, grace "
               << config.shutdown_grace_seconds << " s)";
  sd_notify(0, "STOPPING=1");
  scheduler->start_draining();  // first: once health says NOT_SERVING, new requests are refused
  if (auto* h = server->GetHealthCheckService()) h->Shutdown();  // NOT_SERVING for good
  const auto grace_end = std::chrono::steady_clock::now() +
                         std::chrono::duration_cast<milliseconds>(std::chrono::duration<double>(config.shutdown_grace_seconds));
  while (scheduler->in_flight() > 0 && std::chrono::steady_clock::now() < grace_end) {
    if (wait_signal(signals, milliseconds(20))) {
      ZI_LOG(INFO) << "second signal: cutting the grace period short";
      break;
    }
  }
  if (scheduler->in_flight() > 0) {
    ZI_LOG(WARNING) << "stopping " << scheduler->in_flight() << " unfinished requests";
    scheduler->fail_all(absl::UnavailableError("server shutting down: the request did not finish within "
                                               "server.shutdown_grace_seconds"));
    for (int i = 0; i < 500 && scheduler->in_flight() > 0; ++i) std::this_thread::sleep_for(milliseconds(10));
  }
  server->Shutdown(std::chrono::system_clock::now() + seconds(2));
  intake.join();
  // The workers go before the scheduler: once shutdown() returns, no on_lost callback can reach the scheduler.
  (*pool)->shutdown(seconds(5));
  scheduler.reset();
  server.reset();
  exposer.reset();
  ZI_LOG(INFO) << "stopped";
  return 0;
}

}  // namespace zi::server
