// The bounded CI version of the load and soak run (docs/RELIABILITY.md has the long one): 12 concurrent streams for
// 4 s against `zeroinfer serve` on the bundled tiny model, with a debug step delay so that requests overlap, some
// cancelled by their client and some given deadlines shorter than their generation. Nothing may be lost or fail,
// the server must hold no request afterwards, still produce the fixture's greedy tokens (freed KV slots reused
// cleanly) and exit 0 on SIGTERM.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/integration/serve_harness.h"
#include "tests/load/load_generator.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

double server_total(const ServerProcess& s, std::initializer_list<const char*> reasons) {
  double sum = 0;
  for (const char* r : reasons)
    sum += std::max(0.0, metric(s, std::string("zeroinfer_requests_total{finish_reason=\"") + r + "\"}"));
  return sum;
}

TEST(Load, ConcurrentStreamsWithCancelsAndDeadlinesLoseNothing) {
  auto server = start_server("server: {max_queue: 256, max_batch_size: 8}\ndebug: {step_delay_ms: 2}\n");
  ASSERT_FALSE(HasFailure());

  load::LoadOptions o;
  o.server = server->address();
  o.streams = 12;
  o.seconds = 4;
  o.max_new_tokens = 24;
  o.max_prompt_tokens = 24;  // prompt + new tokens stay inside the fixture's 256-token context
  o.cancel_fraction = 0.2;
  o.deadline_fraction = 0.2;
  o.deadline_min_ms = 3;     // a 2 ms step: most of these expire mid-generation
  o.deadline_max_ms = 40;
  o.lost_after_s = 60;
  o.seed = 7;
  o.server_pid = server->pid();
  o.metrics_port = server->metrics_port();
  const load::LoadReport r = load::run_load(o, 2048);
  std::fprintf(stderr, "load report: %s\n", r.json().c_str());
  for (const auto& [why, n] : r.failures) ADD_FAILURE() << n << " x " << why;

  EXPECT_EQ(r.accounted(), r.sent);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.failed, 0u);
  EXPECT_EQ(r.rejected, 0u);  // the queue (256) is far larger than the 12 streams
  EXPECT_GT(r.completed, 0u);
  EXPECT_GT(r.cancelled, 0u);
  EXPECT_GT(r.expired, 0u);
  EXPECT_GE(r.rss_before_kb, 0);
  EXPECT_GE(r.rss_after_kb, 0);
  EXPECT_EQ(r.server_running_after, 0) << "requests still running with no client";
  EXPECT_EQ(r.server_waiting_after, 0) << "requests still queued with no client";
  // The server finished normally at least every request its client saw complete (it may have finished a few more
  // whose client had given up), and saw no more requests than were sent.
  EXPECT_GE(server_total(*server, {"length", "eos", "stop"}), static_cast<double>(r.completed));
  EXPECT_LE(server_total(*server, {"length", "eos", "stop", "cancelled", "error", "rejected"}),
            static_cast<double>(r.sent));
  EXPECT_EQ(server_total(*server, {"error"}), 0);

  // Still serving, and a sequence placed in slots that the load used again and again decodes the fixture.
  EXPECT_EQ(health(server->channel().get(), ""), 1);
  std::ifstream f(std::string(ZI_TEST_DATA) + "/models/llama_mha/reference.json");
  auto ref = nlohmann::json::parse(f);
  auto stub = server->stub();
  for (size_t i = 0; i < ref["prompts"].size(); ++i) {
    StreamResult g = generate(stub.get(), ids_request(ref["prompts"][i].get<std::vector<uint32_t>>(), 12));
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    EXPECT_EQ(g.tokens, ref["greedy"][i].get<std::vector<uint32_t>>()) << "prompt " << i;
  }
  int st = server->signal_and_wait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st << "\n" << server->log();
}

}  // namespace
}  // namespace zi::testing
