#include "engine/io/offload_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "engine/io/crc32c.h"
#include "engine/io/direct_reader.h"

namespace zi {
namespace {

namespace fs = std::filesystem;

struct Aligned {
  explicit Aligned(size_t n) { ZI_CHECK(posix_memalign(&p, 4096, n) == 0); }
  ~Aligned() { free(p); }
  char* data() { return static_cast<char*>(p); }
  void* p = nullptr;
};

class OffloadStoreTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    dir_ = (fs::current_path() / ("offload_store_test_" + std::to_string(getpid()))).string();
    fs::remove_all(dir_);
    std::mt19937 rng(7);
    for (int layer = 0; layer < 3; ++layer) {
      std::vector<std::vector<char>> ts;
      for (size_t n : {size_t(5000), size_t(12345), size_t(64)}) {  // sizes off every alignment
        std::vector<char> b(n + layer);
        for (auto& c : b) c = static_cast<char>(rng());
        ts.push_back(std::move(b));
      }
      data_.push_back(std::move(ts));
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  StoreIdentity identity(uint32_t ranks) const {
    return {"LlamaForCausalLM", "0badc0de", "BF16", 16, 64, ranks};
  }
  std::vector<TensorBytes> tensors(int layer) const {
    std::vector<TensorBytes> out;
    for (size_t i = 0; i < data_[layer].size(); ++i)
      out.push_back({absl::StrCat("model.layers.", layer, ".t", i), DType::kU8,
                     {static_cast<int64_t>(data_[layer][i].size())}, data_[layer][i].data(),
                     data_[layer][i].size()});
    return out;
  }
  void write(uint32_t ranks) {
    auto w = OffloadStoreWriter::Create(dir_, identity(ranks));
    ASSERT_TRUE(w.ok()) << w.status();
    for (int l = 0; l < 3; ++l) ASSERT_TRUE((*w)->add_shard(absl::StrCat("layer.", l), tensors(l)).ok());
    ASSERT_TRUE((*w)->finish().ok());
  }

  std::string dir_;
  std::vector<std::vector<std::vector<char>>> data_;
};

// The partitions of all ranks, concatenated, are the packed shard: every tensor's bytes at its offset.
TEST_P(OffloadStoreTest, PartitionsReassembleEveryTensorExactly) {
  const uint32_t n = GetParam();
  write(n);
  auto st = OffloadStore::Open(dir_, identity(n));
  ASSERT_TRUE(st.ok()) << st.status();
  ASSERT_EQ((*st)->shards().size(), 3u);
  for (int l = 0; l < 3; ++l) {
    const StoreShard* s = (*st)->find(absl::StrCat("layer.", l));
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->partition_bytes % 4096, 0u);
    EXPECT_GE(s->partition_bytes * n, s->bytes);
    Aligned packed(s->partition_bytes * n);
    for (uint32_t r = 0; r < n; ++r) {
      auto reader = DirectReader::Open((*st)->rank_file(r), {});
      ASSERT_TRUE(reader.ok());
      ASSERT_TRUE((*st)->read_partition(*s, r, **reader, packed.data() + r * s->partition_bytes, true).ok());
    }
    for (size_t i = 0; i < s->tensors.size(); ++i) {
      EXPECT_EQ(s->tensors[i].offset % 256, 0u);
      ASSERT_EQ(s->tensors[i].nbytes, data_[l][i].size());
      EXPECT_EQ(0, std::memcmp(packed.data() + s->tensors[i].offset, data_[l][i].data(), data_[l][i].size()))
          << s->name << " tensor " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, OffloadStoreTest, ::testing::Values(1u, 2u, 3u));

TEST_F(OffloadStoreTest, StoreForAnotherRankCountOrPrecisionIsRefusedWithBothNumbers) {
  write(2);
  auto st = OffloadStore::Open(dir_, identity(1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("num_gpus 2"), std::string::npos) << st.status();
  EXPECT_NE(st.status().message().find("num_gpus 1"), std::string::npos) << st.status();
  StoreIdentity q = identity(2);
  q.quant_bits = 4;
  st = OffloadStore::Open(dir_, q);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("quant_bits"), std::string::npos) << st.status();
}

TEST_F(OffloadStoreTest, TruncatedFileIsRefusedNamingFileAndShard) {
  write(1);
  const std::string f = dir_ + "/rank-0-of-1.bin";
  fs::resize_file(f, fs::file_size(f) - 4096);
  auto st = OffloadStore::Open(dir_, identity(1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find(f), std::string::npos) << st.status();
  EXPECT_NE(st.status().message().find("layer.2"), std::string::npos) << st.status();
  EXPECT_NE(st.status().message().find("truncated"), std::string::npos) << st.status();
}

TEST_F(OffloadStoreTest, DamagedBytesFailTheChecksumNamingTheShard) {
  write(1);
  const std::string f = dir_ + "/rank-0-of-1.bin";
  auto st = OffloadStore::Open(dir_, identity(1));
  ASSERT_TRUE(st.ok());
  const StoreShard* s = (*st)->find("layer.1");
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(s->file_offsets[0] + 100));
    io.put('\x5a' ^ static_cast<char>(data_[1][0][100]));
  }
  Aligned buf(s->partition_bytes);
  auto reader = DirectReader::Open(f, {});
  ASSERT_TRUE(reader.ok());
  Status r = (*st)->read_partition(*s, 0, **reader, buf.data(), true);
  EXPECT_EQ(r.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.message().find("layer.1"), std::string::npos) << r;
}

TEST_F(OffloadStoreTest, MissingOrGarbledManifestIsAClearError) {
  auto st = OffloadStore::Open(dir_, identity(1));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kNotFound);
  write(1);
  std::ofstream(dir_ + "/manifest.json") << "{\"format\": \"zeroinfer-offload-store\", \"version\": 1}";
  st = OffloadStore::Open(dir_, identity(1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("architecture"), std::string::npos) << st.status();
}

TEST(Crc32c, MatchesTheStandardCheckValue) {
  const char* s = "123456789";
  EXPECT_EQ(crc32c(s, 9), 0xE3069283u);  // the CRC-32C check value
  // Incremental equals one-shot.
  EXPECT_EQ(crc32c(s + 4, 5, crc32c(s, 4)), 0xE3069283u);
}

}  // namespace
}  // namespace zi
