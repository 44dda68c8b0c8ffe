// Faults the serving tests do not cover already (those: a worker SIGKILLed mid-step, the coordinator killed,
// SIGTERM drain and grace expiry, in serve_lifecycle_test.cc): a worker that stops answering, a truncated weights
// file, a truncated or corrupted offload store, and a full disk under the offload folder. Each must end in a clear
// error naming the file (or the rank) and a clean exit or a failed step, never a hang or a crash.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "server/worker_pool/worker_pool.h"
#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

namespace fs = std::filesystem;

// A private copy of the llama_mha fixture (config, weights, tokenizer), removed with the object.
struct ModelCopy {
  fs::path dir;
  ModelCopy() {
    static int n = 0;
    dir = fs::temp_directory_path() / ("zi_faults_" + std::to_string(getpid()) + "_" + std::to_string(n++));
    fs::create_directories(dir / "model");
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json"})
      fs::copy_file(fs::path(ZI_TEST_DATA) / "models" / "llama_mha" / f, dir / "model" / f);
  }
  ~ModelCopy() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string model() const { return (dir / "model").string(); }
  std::string store() const { return (dir / "store").string(); }
};

// Runs `argv` with stdout+stderr captured, after `in_child` (run in the child before exec); returns {wait status,
// output}. A hang is a test failure, not a stuck CI job: the child is killed after `timeout`.
std::pair<int, std::string> run_child(const std::vector<std::string>& argv, const std::function<void()>& in_child,
                                      std::chrono::seconds timeout = 120s) {
  int fds[2];
  if (pipe(fds) != 0) return {-1, ""};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    in_child();
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  auto reader = std::async(std::launch::async, [fd = fds[0]] {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    close(fd);
    return out;
  });
  int status = 0;
  const auto until = Clock::now() + timeout;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << argv[1] << " did not finish within " << timeout.count() << " s";
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  return {status, reader.get()};
}

std::vector<std::string> generate_nvme(const ModelCopy& m) {
  return {ZI_BINARY, "generate", "--model", m.model(), "--prompt-ids", "1,100,200", "--max-new-tokens", "4",
          "--device", "cpu", "--disk-offload", "--offload-dir", m.store(), "--json"};
}

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

// ---------------------------------------------------------------------------------------------------------------
// A worker that stops answering (SIGSTOP: alive, socket open, silent) is declared lost once its heartbeats stop for
// heartbeat_timeout, SIGKILLed, and the step waiting for it fails with UNAVAILABLE naming the rank. Driven through
// the coordinator's WorkerPool with a short timeout (`serve` uses 60 s, too long for CI).
TEST(Faults, WorkerThatStopsAnsweringIsLostKilledAndItsStepFails) {
  EngineOptions eo;
  eo.model_dir = std::string(ZI_TEST_DATA) + "/models/llama_mha";
  eo.device = Device::kCpu;
  eo.max_batch_size = 2;
  eo.world_size = 1;
  eo.cpu_threads = 1;
  eo.debug_step_delay_ms = 200;  // the step in flight when the worker stops
  server::WorkerPoolOptions po;
  po.executable = ZI_BINARY;
  po.log_level = "warning";
  po.heartbeat_interval = 100ms;
  po.heartbeat_timeout = 1500ms;
  auto pool = server::WorkerPool::Spawn(eo, po);
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::promise<Status> lost;
  (*pool)->set_on_lost([&](const Status& s) { lost.set_value(s); });
  auto ready = (*pool)->wait_ready(60s);
  ASSERT_TRUE(ready.has_value() && ready->ok()) << (ready ? ready->ToString() : "not ready in 60 s");

  StepInput in;
  SeqStep s;
  s.seq_id = 1;
  s.tokens = {1, 100, 200};
  s.first = true;
  in.seqs.push_back(s);
  auto first = (*pool)->step(in);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->results.size(), 1u);

  const pid_t worker = (*pool)->worker_pids().at(0);
  StepInput next;
  SeqStep d;
  d.seq_id = 1;
  d.tokens = {first->results[0].token};
  next.seqs.push_back(d);
  auto step = std::async(std::launch::async, [&] { return (*pool)->step(next); });
  std::this_thread::sleep_for(50ms);  // the step is on its way to (or in) the worker
  ASSERT_EQ(kill(worker, SIGSTOP), 0);

  ASSERT_EQ(step.wait_for(60s), std::future_status::ready) << "the step waited on a silent worker for 60 s";
  StatusOr<StepOutput> out = step.get();
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnavailable) << out.status();
  EXPECT_NE(out.status().message().find("worker rank 0"), std::string::npos) << out.status();
  EXPECT_NE(out.status().message().find("stopped responding"), std::string::npos) << out.status();
  auto lost_future = lost.get_future();
  ASSERT_EQ(lost_future.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(lost_future.get().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(eventually([&] { return process_gone(worker); }, 10s)) << "the silent worker was not killed";
  // Later steps fail at once with the same reason.
  auto again = (*pool)->step(next);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
  (*pool)->shutdown(2s);
}

// ---------------------------------------------------------------------------------------------------------------
// A weights file cut short: `serve` exits 1 with one line naming the file and the first tensor past its end.
TEST(Faults, TruncatedWeightsFileStopsServeWithOneLineNamingTheFile) {
  ModelCopy m;
  const fs::path weights = fs::path(m.model()) / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  const std::string config = (m.dir / "serve.yaml").string();
  std::ofstream(config) << "model: {path: " << m.model() << "}\n";
  auto [st, out] = run_child({ZI_BINARY, "serve", "--config", config, "--listen", "127.0.0.1:0", "--metrics-listen",
                              "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
                             [] {});
  EXPECT_TRUE(exited_with(st, 1)) << "wait status " << st << "\n" << out;
  // The worker's load error, relayed by the coordinator as its one error line (the port is bound, NOT_SERVING,
  // while the model loads, so "listening on" comes first).
  const size_t line = out.find("zeroinfer: worker rank 0: " + weights.string() + ": tensor '");
  EXPECT_NE(line, std::string::npos) << out;
  EXPECT_NE(out.find("out of range (data buffer is", line), std::string::npos) << out;
  EXPECT_EQ(out.find("zeroinfer: ", line + 1), std::string::npos) << "more than one error line:\n" << out;
}

// ---------------------------------------------------------------------------------------------------------------
// The offload store: built on first use; a rank file cut short afterwards is refused naming the file and the
// first shard it lacks; a flipped byte is caught by the partition's CRC-32C when the layer is first read, naming
// the file and the shard.
TEST(Faults, TruncatedOrCorruptedOffloadStoreIsRefusedNamingFileAndShard) {
  ModelCopy m;
  auto [st0, out0] = run_child(generate_nvme(m), [] {});
  ASSERT_TRUE(exited_with(st0, 0)) << out0;
  const std::string good = out0.substr(out0.rfind("{\"token_ids\""));
  const fs::path rank_file = fs::path(m.store()) / "rank-0-of-1.bin";
  ASSERT_TRUE(fs::exists(fs::path(m.store()) / "manifest.json"));
  const uintmax_t size = fs::file_size(rank_file);

  // A second run reads the same store and answers the same.
  auto [st1, out1] = run_child(generate_nvme(m), [] {});
  ASSERT_TRUE(exited_with(st1, 0)) << out1;
  EXPECT_EQ(out1.substr(out1.rfind("{\"token_ids\"")), good);

  fs::resize_file(rank_file, size - 4096);
  auto [st2, out2] = run_child(generate_nvme(m), [] {});
  EXPECT_TRUE(exited_with(st2, 1)) << "wait status " << st2 << "\n" << out2;
  EXPECT_NE(out2.find(rank_file.string()), std::string::npos) << out2;
  EXPECT_NE(out2.find("truncated: shard layer."), std::string::npos) << out2;

  // Full length again (zeros at the end), and one byte of the first shard's weights flipped.
  fs::resize_file(rank_file, size);
  {
    std::fstream f(rank_file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    char c = 0;
    f.get(c);
    f.seekp(100);
    f.put(static_cast<char>(c ^ 0xff));
  }
  auto [st3, out3] = run_child(generate_nvme(m), [] {});
  EXPECT_TRUE(exited_with(st3, 1)) << "wait status " << st3 << "\n" << out3;
  EXPECT_NE(out3.find(rank_file.string()), std::string::npos) << out3;
  EXPECT_NE(out3.find("checksum mismatch"), std::string::npos) << out3;
}

// ---------------------------------------------------------------------------------------------------------------
// The offload folder's disk fills up while the store is written. Simulated portably with RLIMIT_FSIZE (SIGXFSZ
// ignored, so write() fails with EFBIG as it fails with ENOSPC on a full disk): a clear error naming the file, exit
// 1, and no manifest (a half-written store is never taken for a store).
TEST(Faults, OffloadDirDiskFullIsAClearErrorAndLeavesNoManifest) {
  ModelCopy m;
  auto [st, out] = run_child(generate_nvme(m), [] {
    signal(SIGXFSZ, SIG_IGN);
    rlimit lim{64 << 10, 64 << 10};
    setrlimit(RLIMIT_FSIZE, &lim);
  });
  EXPECT_TRUE(exited_with(st, 1)) << "wait status " << st << "\n" << out;
  EXPECT_NE(out.find(m.store()), std::string::npos) << out;
  EXPECT_NE(out.find("File too large"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(fs::path(m.store()) / "manifest.json"));
}

// A real file system too small for the store, where this test may mount one (root, or CAP_SYS_ADMIN): a 128 KiB
// tmpfs. The store's size is checked against the free space before anything is written.
TEST(Faults, OffloadDirOnAFullTmpfsIsAClearErrorAndLeavesNoManifest) {
  ModelCopy m;
  fs::create_directories(m.store());
  if (mount("zi_faults", m.store().c_str(), "tmpfs", 0, "size=128k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "); the RLIMIT_FSIZE test stands in";
  auto [st, out] = run_child(generate_nvme(m), [] {});
  EXPECT_TRUE(exited_with(st, 1)) << "wait status " << st << "\n" << out;
  EXPECT_NE(out.find(m.store()), std::string::npos) << out;
  // Refused before writing: the store's size against the space the disk has, and what to change.
  EXPECT_NE(out.find("the offload store needs"), std::string::npos) << out;
  EXPECT_NE(out.find("offload.dir"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(fs::path(m.store()) / "manifest.json"));
  umount2(m.store().c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace zi::testing
