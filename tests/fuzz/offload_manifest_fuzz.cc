// Fuzz target: the offload store's manifest.json (engine/io/offload_store.h OffloadStore::Open) in a scratch
// store folder whose two rank files (rank-0-of-2.bin, rank-1-of-2.bin) exist with fixed sizes.
// Input: the manifest's bytes. The expected identity is fixed (below); the seeds carry it, so mutations reach the
// shard table.
// Promises checked on an accepted store: every shard has one offset and one CRC per rank, aligned partitions that
// hold the packed bytes, every rank's partition lies inside its file (no wrap-around), and every tensor lies
// inside its shard — what read_partition and the layer views rely on.
#include <cstdint>
#include <string>

#include "engine/io/offload_store.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr uint32_t kRanks = 2;
constexpr uint64_t kRankFileBytes[kRanks] = {3 * 4096, 2 * 4096};

zi::StoreIdentity expected_identity() {
  zi::StoreIdentity id;
  id.architecture = "LlamaForCausalLM";
  id.config_digest = "1c2e5a7b";
  id.dtype = "BF16";
  id.quant_bits = 16;
  id.quant_group_size = 64;
  id.num_ranks = kRanks;
  return id;
}

const std::string& store_dir() {
  static const std::string dir = [] {
    std::string d = zi::fuzz::scratch_dir() + "/store";
    std::filesystem::create_directories(d);
    for (uint32_t r = 0; r < kRanks; ++r) {
      const std::string path = d + "/rank-" + std::to_string(r) + "-of-" + std::to_string(kRanks) + ".bin";
      zi::fuzz::write_file(path, "");
      std::filesystem::resize_file(path, kRankFileBytes[r]);
    }
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = store_dir();
  zi::fuzz::write_file(dir + "/manifest.json", zi::fuzz::as_text(data, size));
  auto store = zi::OffloadStore::Open(dir, expected_identity());
  if (!store.ok()) {
    FUZZ_CHECK(store.status().message().find(dir) != std::string::npos, "error names no file: %s",
               store.status().ToString().c_str());
    return 0;
  }
  for (const zi::StoreShard& s : (*store)->shards()) {
    const char* name = s.name.c_str();
    FUZZ_CHECK(s.file_offsets.size() == kRanks && s.crc32c.size() == kRanks, "shard %s: per-rank tables", name);
    FUZZ_CHECK(s.partition_bytes > 0 && s.partition_bytes % 4096 == 0, "shard %s: partition_bytes", name);
    FUZZ_CHECK((unsigned __int128)s.partition_bytes * kRanks >= s.bytes, "shard %s: partitions smaller than bytes",
               name);
    for (uint32_t r = 0; r < kRanks; ++r) {
      FUZZ_CHECK(s.file_offsets[r] % 4096 == 0, "shard %s: rank %u offset unaligned", name, r);
      FUZZ_CHECK((unsigned __int128)s.file_offsets[r] + s.partition_bytes <= kRankFileBytes[r],
                 "shard %s: rank %u partition [%llu, +%llu) outside the %llu-byte file", name, r,
                 (unsigned long long)s.file_offsets[r], (unsigned long long)s.partition_bytes,
                 (unsigned long long)kRankFileBytes[r]);
    }
    for (const zi::StoreTensor& t : s.tensors)
      FUZZ_CHECK((unsigned __int128)t.offset + t.nbytes <= s.bytes, "shard %s: tensor %s outside the shard", name,
                 t.name.c_str());
    FUZZ_CHECK((*store)->find(s.name) != nullptr, "find(%s) fails", name);
  }
  return 0;
}
