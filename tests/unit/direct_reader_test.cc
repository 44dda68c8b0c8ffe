#include "engine/io/direct_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

namespace zi {
namespace {

struct AlignedBuf {
  explicit AlignedBuf(size_t n) : size(n) { ZI_CHECK(posix_memalign(&p, 4096, n) == 0); }
  ~AlignedBuf() { free(p); }
  char* data() { return static_cast<char*>(p); }
  void* p = nullptr;
  size_t size;
};

class DirectReaderTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    // Under the build tree rather than /tmp: /tmp may be tmpfs, which has no O_DIRECT.
    dir_ = std::filesystem::current_path() / ("direct_reader_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "data.bin").string();
    std::mt19937_64 rng(42);
    bytes_.resize(5 * 4096 * 64 + 4096 * 3);  // not a multiple of the block size
    for (auto& b : bytes_) b = static_cast<char>(rng());
    std::ofstream(path_, std::ios::binary).write(bytes_.data(), static_cast<std::streamsize>(bytes_.size()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string path_;
  std::vector<char> bytes_;
};

TEST_P(DirectReaderTest, ReadsExactlyTheRequestedRanges) {
  DirectReaderOptions opts;
  opts.block_size = 64 * 1024;
  opts.queue_depth = 4;
  opts.use_io_uring = GetParam();
  auto r = DirectReader::Open(path_, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->file_size(), bytes_.size());
  AlignedBuf buf(bytes_.size());
  ASSERT_TRUE((*r)->read(0, bytes_.size(), buf.data()).ok());
  EXPECT_EQ(0, std::memcmp(buf.data(), bytes_.data(), bytes_.size()));
  // A middle range that spans several blocks and starts off a block boundary.
  std::memset(buf.data(), 0, buf.size);
  ASSERT_TRUE((*r)->read(4096 * 3, 4096 * 37, buf.data()).ok());
  EXPECT_EQ(0, std::memcmp(buf.data(), bytes_.data() + 4096 * 3, 4096 * 37));
}

TEST_P(DirectReaderTest, ReadPastTheEndNamesTheFileAndSaysTruncated) {
  DirectReaderOptions opts;
  opts.use_io_uring = GetParam();
  auto r = DirectReader::Open(path_, opts);
  ASSERT_TRUE(r.ok());
  AlignedBuf buf(bytes_.size() + 4096);
  Status s = (*r)->read(0, bytes_.size() + 4096, buf.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find(path_), std::string::npos) << s;
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s;
}

TEST_P(DirectReaderTest, UnalignedDirectReadIsRefusedNotUndefined) {
  DirectReaderOptions opts;
  opts.use_io_uring = GetParam();
  auto r = DirectReader::Open(path_, opts);
  ASSERT_TRUE(r.ok());
  if (!(*r)->using_o_direct()) GTEST_SKIP() << "filesystem has no O_DIRECT";
  AlignedBuf buf(8192);
  EXPECT_EQ((*r)->read(100, 4096, buf.data()).code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(IoUringAndPread, DirectReaderTest, ::testing::Bool());

TEST(DirectReader, MissingFileAndBadSettingsAreClearErrors) {
  auto r = DirectReader::Open("/nonexistent/zeroinfer/shard.bin", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/zeroinfer/shard.bin"), std::string::npos);
  DirectReaderOptions bad;
  bad.block_size = 1000;
  auto r2 = DirectReader::Open("/proc/self/exe", bad);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("block_size"), std::string::npos);
}

}  // namespace
}  // namespace zi
