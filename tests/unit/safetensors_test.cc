// safetensors reader and writer: valid files round-trip; every malformed header is refused with a message naming the
// file and the tensor; sharded checkpoints resolve through model.safetensors.index.json.
#include "engine/io/safetensors.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/io/safetensors_writer.h"

namespace zi {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/zi_st_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file image with the given header text and `data_len` data bytes (values 0..255 repeating).
std::string image(const std::string& header, size_t data_len, uint64_t claimed_len = UINT64_MAX) {
  uint64_t len = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  std::string s(8, '\0');
  std::memcpy(s.data(), &len, 8);
  s += header;
  for (size_t i = 0; i < data_len; ++i) s.push_back(static_cast<char>(i & 0xff));
  return s;
}

StatusOr<std::vector<TensorInfo>> parse(const std::string& img) {
  return parse_safetensors(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(img.data()), img.size()), "bad.safetensors");
}

void expect_refused(const std::string& img, const std::string& fragment) {
  auto r = parse(img);
  ASSERT_FALSE(r.ok()) << "accepted: " << fragment;
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("bad.safetensors")) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(fragment)) << r.status();
}

TEST(Safetensors, WriterRoundTripsThroughTheMmapReader) {
  TempDir dir;
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  std::vector<uint16_t> b = {f32_to_bf16(1.0f), f32_to_bf16(-0.5f)};
  const std::string path = dir.path() + "/x.safetensors";
  ASSERT_TRUE(write_safetensors(path,
                                {f32_tensor("a", {2, 3}, a),
                                 {"b", DType::kBF16, {2},
                                  std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), 4)}},
                                {{"format", "pt"}})
                  .ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), 2u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  auto ta = (*f)->get("a");
  ASSERT_TRUE(ta.ok());
  EXPECT_EQ((*ta)->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ((*ta)->dtype, DType::kF32);
  std::vector<float> back(6);
  convert_to_f32(DType::kF32, (*ta)->data, back.data(), 6);
  EXPECT_EQ(back, a);
  auto tb = (*f)->get("b");
  ASSERT_TRUE(tb.ok());
  float bf[2];
  convert_to_f32(DType::kBF16, (*tb)->data, bf, 2);
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bf[1], -0.5f);
  auto missing = (*f)->get("c");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("'c'"));
}

TEST(Safetensors, ReadsTheFixtureCheckpoint) {
  auto ck = Checkpoint::Open(std::string(ZI_TEST_DATA) + "/models/llama_mha");
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto t = (*ck)->get("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->dtype, DType::kBF16);
  EXPECT_EQ((*t)->shape, (std::vector<int64_t>{64, 64}));
  auto m = (*ck)->get("model.layers.9.mlp.up_proj.weight");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("model.layers.9.mlp.up_proj.weight"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("model.safetensors"));
}

TEST(Safetensors, EmptyHeaderWithNoTensorsIsValid) {
  auto r = parse(image("{}      ", 0));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->empty());
}

TEST(Safetensors, RefusesTruncatedFiles) {
  expect_refused(std::string("\x10\x00\x00", 3), "truncated");
  const std::string h = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  expect_refused(image(h, 0, h.size() + 100), "truncated");
  // Header intact but the data buffer is cut short: the tensor's span is out of range.
  expect_refused(image(h, 5), "out of range");
}

TEST(Safetensors, RefusesHugeHeaderLength) {
  expect_refused(image("{}", 0, uint64_t{1} << 62), "exceeds the limit");
  expect_refused(image("{}", 0, UINT64_MAX - 1), "exceeds the limit");
}

TEST(Safetensors, RefusesNonJsonHeader) {
  expect_refused(image("not json", 0), "not a JSON object");
  expect_refused(image("{\"t\": [1, 2", 0), "not valid JSON");
  expect_refused(image("[1,2]   ", 0), "not a JSON object");
}

TEST(Safetensors, RefusesOverlappingOffsets) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  auto r = parse(image(h, 12));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("overlaps"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("'b'"));
}

TEST(Safetensors, RefusesOutOfRangeOffsets) {
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), "'a'");
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8), "end before begin");
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8), "non-negative");
}

TEST(Safetensors, RefusesShapeSizeMismatch) {
  expect_refused(image(R"({"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,8]}})", 8), "needs 12 bytes");
  expect_refused(image(R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}})", 8),
                 "overflows");
  expect_refused(image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative");
  expect_refused(image(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), "non-negative");
}

TEST(Safetensors, RefusesUnknownDtype) {
  expect_refused(image(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", 2), "unknown dtype 'Q4'");
}

TEST(Safetensors, RefusesBufferNotFullyCovered) {
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "0..4");
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8), "4..8");
}

TEST(Safetensors, RefusesMalformedEntries) {
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       8),
                 "'a' twice");
  expect_refused(image(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "missing dtype");
  expect_refused(image(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "missing shape");
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), "data_offsets");
  expect_refused(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4), "unknown field");
  expect_refused(image(R"({"__metadata__":{"k":1}})", 0), "__metadata__");
}

TEST(Safetensors, OpenNamesTheFileWhenMissingOrEmpty) {
  TempDir dir;
  auto r = SafetensorsFile::Open(dir.path() + "/nope.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("nope.safetensors"));
  write_bytes(dir.path() + "/empty.safetensors", "");
  auto e = SafetensorsFile::Open(dir.path() + "/empty.safetensors");
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("empty.safetensors: truncated"));
}

TEST(Safetensors, ShardedCheckpointThroughIndex) {
  TempDir dir;
  std::vector<float> a = {1, 2}, b = {3, 4, 5};
  ASSERT_TRUE(write_safetensors(dir.path() + "/model-00001-of-00002.safetensors", {f32_tensor("a", {2}, a)}).ok());
  ASSERT_TRUE(write_safetensors(dir.path() + "/model-00002-of-00002.safetensors", {f32_tensor("b", {3}, b)}).ok());
  write_bytes(dir.path() + "/model.safetensors.index.json",
              R"({"metadata":{"total_size":20},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
              R"("b":"model-00002-of-00002.safetensors"}})");
  auto ck = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  auto tb = (*ck)->get("b");
  ASSERT_TRUE(tb.ok());
  EXPECT_EQ((*tb)->shape, std::vector<int64_t>{3});
  EXPECT_THAT((*tb)->file, HasSubstr("model-00002-of-00002.safetensors"));
  EXPECT_EQ((*ck)->names(), (std::vector<std::string>{"a", "b"}));
  auto m = (*ck)->get("c");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("model.safetensors.index.json: tensor 'c'"));
}

TEST(Safetensors, ShardedCheckpointErrorsNameShardAndTensor) {
  TempDir dir;
  std::vector<float> a = {1, 2};
  ASSERT_TRUE(write_safetensors(dir.path() + "/s1.safetensors", {f32_tensor("a", {2}, a)}).ok());
  // The index maps 'b' to s1, which does not hold it.
  write_bytes(dir.path() + "/model.safetensors.index.json",
              R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  auto r = Checkpoint::Open(dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("s1.safetensors: tensor 'b' is missing"));
  // A shard file that does not exist.
  write_bytes(dir.path() + "/model.safetensors.index.json", R"({"weight_map":{"a":"s2.safetensors"}})");
  r = Checkpoint::Open(dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("s2.safetensors"));
  // A path escaping the folder.
  write_bytes(dir.path() + "/model.safetensors.index.json", R"({"weight_map":{"a":"../s1.safetensors"}})");
  r = Checkpoint::Open(dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("weight_map['a']"));
  // No weight_map.
  write_bytes(dir.path() + "/model.safetensors.index.json", R"({"metadata":{}})");
  r = Checkpoint::Open(dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("weight_map"));
}

TEST(Safetensors, FolderWithoutCheckpointIsAnError) {
  TempDir dir;
  auto r = Checkpoint::Open(dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("model.safetensors"));
}

TEST(DType, HalfConversionsRoundTrip) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f})
    EXPECT_EQ(f16_to_f32(f32_to_f16(v)), v) << v;
  EXPECT_EQ(f16_to_f32(f32_to_f16(1e6f)), INFINITY);
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // Round to nearest even: 1 + 2^-8 is halfway between two bf16 values and rounds to 1.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.00390625f)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.01171875f)), 1.015625f);
}

}  // namespace
}  // namespace zi
