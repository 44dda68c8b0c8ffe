// The shared-memory communicator (CPU ranks of a ZeRO-3 group): all-gather correctness for partitions smaller
// and larger than its staging chunk, group formation errors that name what is wrong, and a dead peer turning
// into an error rather than a hang.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <numeric>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/comm/communicator.h"

namespace zi {
namespace {

using ::testing::HasSubstr;

// Every rank fills its partition with bytes derived from (rank, offset, round); after the gather every rank
// must see every partition.
void run_group(int world, size_t partition, size_t chunk, int rounds) {
  ShmCommOptions opts;
  opts.chunk_bytes = chunk;
  auto id = create_shm_comm_id(world, opts);
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<std::thread> threads;
  std::vector<std::string> failures(world);
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      auto comm = connect_shm_communicator(*id, r, world, opts);
      if (!comm.ok()) {
        failures[r] = std::string(comm.status().message());
        return;
      }
      EXPECT_EQ((*comm)->rank(), r);
      EXPECT_EQ((*comm)->size(), world);
      std::vector<unsigned char> buf(partition * world);
      for (int round = 0; round < rounds; ++round) {
        std::fill(buf.begin(), buf.end(), 0xEE);
        for (size_t i = 0; i < partition; ++i) buf[r * partition + i] = static_cast<unsigned char>(r * 31 + i * 7 + round);
        Status s = (*comm)->all_gather(buf.data(), partition, nullptr);
        if (!s.ok()) {
          failures[r] = std::string(s.message());
          return;
        }
        for (int q = 0; q < world; ++q)
          for (size_t i = 0; i < partition; ++i)
            if (buf[q * partition + i] != static_cast<unsigned char>(q * 31 + i * 7 + round)) {
              failures[r] = "rank " + std::to_string(r) + " round " + std::to_string(round) + ": partition " +
                            std::to_string(q) + " byte " + std::to_string(i) + " is wrong";
              return;
            }
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
}

TEST(ShmCommunicator, AllGathersSmallPartitions) { run_group(3, 100, 4096, 5); }
TEST(ShmCommunicator, AllGathersPartitionsLargerThanTheStagingChunk) { run_group(2, 10000, 1024, 3); }
TEST(ShmCommunicator, OneRankIsItsOwnGroup) { run_group(1, 64, 4096, 2); }

TEST(ShmCommunicator, JoinTimesOutNamingTheMissingRanks) {
  ShmCommOptions opts;
  opts.join_timeout = std::chrono::milliseconds(300);
  auto id = create_shm_comm_id(3, opts);
  ASSERT_TRUE(id.ok());
  auto comm = connect_shm_communicator(*id, 0, 3, opts);
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(comm.status().message(), HasSubstr("ranks 1, 2 never joined"));
}

TEST(ShmCommunicator, RefusesAnotherWorldSizeAndBadIds) {
  auto id = create_shm_comm_id(2);
  ASSERT_TRUE(id.ok());
  auto comm = connect_shm_communicator(*id, 0, 3);
  ASSERT_FALSE(comm.ok());
  EXPECT_THAT(comm.status().message(), HasSubstr("made for 2 ranks, this rank expects 3"));
  EXPECT_FALSE(connect_shm_communicator("nccl:00", 0, 2).ok());
  EXPECT_FALSE(connect_shm_communicator(*id, 2, 2).ok());  // rank outside 0..1
  EXPECT_FALSE(create_shm_comm_id(0).ok());
  shm_unlink(id->substr(4).c_str());  // rank 0 never joined, so nobody else removes it
}

// A peer process that joins and then exits: the survivor's next collective fails with UNAVAILABLE naming the
// rank, instead of waiting forever.
TEST(ShmCommunicator, DeadPeerProcessFailsTheCollective) {
  ShmCommOptions opts;
  opts.join_timeout = std::chrono::milliseconds(20000);
  opts.op_timeout = std::chrono::milliseconds(60000);
  auto id = create_shm_comm_id(2, opts);
  ASSERT_TRUE(id.ok());
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto comm = connect_shm_communicator(*id, 1, 2, opts);
    _exit(comm.ok() ? 0 : 3);  // joins, then leaves without taking part in the gather
  }
  auto comm = connect_shm_communicator(*id, 0, 2, opts);
  ASSERT_TRUE(comm.ok()) << comm.status();
  std::vector<char> buf(2 * 64, 1);
  const auto t0 = std::chrono::steady_clock::now();
  Status s = (*comm)->all_gather(buf.data(), 64, nullptr);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("rank 1"));
  EXPECT_THAT(s.message(), HasSubstr("exited"));
  EXPECT_LT(secs, 50.0) << "noticed only by the operation timeout";
  int st = 0;
  waitpid(child, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  // The group stays failed.
  EXPECT_FALSE((*comm)->all_gather(buf.data(), 64, nullptr).ok());
}

}  // namespace
}  // namespace zi
