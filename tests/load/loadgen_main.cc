// loadgen: N concurrent Generate streams against a running `zeroinfer serve` for M seconds, with random client
// cancellations and deadlines (tests/load/load_generator.h says how each request is counted).
//
//   build-rel/tests/load/loadgen --server 127.0.0.1:50051 --streams 64 --seconds 600 --server-pid PID
//       --metrics-port 9400         (PID: the `zeroinfer serve` process; its workers are counted with it)
//
// stdout: one JSON object (the report); stderr: a human summary. Exit 0 when nothing was lost or failed and the
// server holds no request afterwards (when --metrics-port is given), 1 otherwise, 2 on bad usage.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "tests/load/load_generator.h"

int main(int argc, char** argv) {
  zi::load::LoadOptions o;
  CLI::App app{"Load generator for zeroinfer serve (public gRPC API only)"};
  app.add_option("--server", o.server, "HOST:PORT of the server");
  app.add_option("--streams", o.streams, "concurrent streams")->check(CLI::Range(1, 4096));
  app.add_option("--connections", o.connections, "gRPC connections the streams are spread over")
      ->check(CLI::Range(1, 1024));
  app.add_option("--seconds", o.seconds, "how long new requests are started")->check(CLI::Range(0.0, 86400.0));
  app.add_option("--max-new-tokens", o.max_new_tokens, "each request asks for 1..N new tokens")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-prompt-tokens", o.max_prompt_tokens, "prompts of 1..N random token ids")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--cancel-fraction", o.cancel_fraction, "share of requests the client cancels")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--deadline-fraction", o.deadline_fraction, "share of requests with a short deadline")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--deadline-min-ms", o.deadline_min_ms)->check(CLI::Range(1, 3600000));
  app.add_option("--deadline-max-ms", o.deadline_max_ms)->check(CLI::Range(1, 3600000));
  app.add_option("--lost-after", o.lost_after_s, "seconds after which an unanswered request counts as lost")
      ->check(CLI::Range(1, 86400));
  app.add_option("--seed", o.seed);
  app.add_option("--server-pid", o.server_pid, "report the RSS of this process and its children");
  app.add_option("--metrics-port", o.metrics_port, "check requests_running/waiting on 127.0.0.1:PORT afterwards");
  try {
    app.parse(argc, argv);
    if (o.deadline_max_ms < o.deadline_min_ms) throw CLI::ValidationError("--deadline-max-ms", "below --deadline-min-ms");
    if (o.cancel_fraction + o.deadline_fraction > 1)
      throw CLI::ValidationError("--cancel-fraction", "plus --deadline-fraction exceeds 1");
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  zi::load::LoadReport r = zi::load::run_load(o);
  std::fprintf(stderr,
               "loadgen: %d streams x %.1f s: sent %llu, completed %llu, cancelled %llu, expired %llu, rejected "
               "%llu, failed %llu, lost %llu; %llu tokens; ttft p50 %.1f ms p99 %.1f ms; latency p50 %.1f ms p99 "
               "%.1f ms\n",
               o.streams, r.seconds, (unsigned long long)r.sent, (unsigned long long)r.completed,
               (unsigned long long)r.cancelled, (unsigned long long)r.expired, (unsigned long long)r.rejected,
               (unsigned long long)r.failed, (unsigned long long)r.lost, (unsigned long long)r.tokens, r.ttft_p50_ms,
               r.ttft_p99_ms, r.latency_p50_ms, r.latency_p99_ms);
  if (r.rss_before_kb >= 0)
    std::fprintf(stderr, "loadgen: server RSS (with workers) before %lld kB, peak %lld kB, after %lld kB\n",
                 (long long)r.rss_before_kb, (long long)r.rss_peak_kb, (long long)r.rss_after_kb);
  for (const auto& [why, n] : r.failures) std::fprintf(stderr, "loadgen: failed x%llu: %s\n", (unsigned long long)n, why.c_str());
  std::printf("%s\n", r.json().c_str());
  const bool server_clean = o.metrics_port <= 0 || (r.server_running_after == 0 && r.server_waiting_after == 0);
  return r.lost == 0 && r.failed == 0 && r.accounted() == r.sent && server_clean ? 0 : 1;
}
