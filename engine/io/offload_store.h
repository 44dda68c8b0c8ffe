// The offload store: a model's streamed weights laid out for the fastest reads, made once by `zeroinfer convert`
// (or on the fly at load) and read by the NVMe and CPU tiers.
//
//   STORE/manifest.json          what is where (below), written last and atomically: no manifest, no store
//   STORE/rank-R-of-N.bin        rank R's partition of every shard, each 4 KiB aligned (O_DIRECT-ready)
//
// A *shard* is one unit of streaming (one decoder layer's weights, in the dtype / quantized format they are used
// in). Its tensors are packed at 256-byte-aligned offsets into `bytes` bytes; ZeRO-3 splits those bytes into N equal
// partitions of `partition_bytes` (a multiple of 4096; the last one zero-padded), and rank R keeps partition R.
// A rank fetches its partition and the ranks all-gather the shard, which is then byte-identical to the packed shard.
// Every partition has a CRC-32C so a damaged or foreign file is refused, naming the file and the shard.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi {

class DirectReader;

struct StoreTensor {
  std::string name;            // checkpoint name, e.g. "model.layers.3.mlp.up_proj.weight"
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  uint64_t offset = 0;         // within the packed shard, a multiple of kTensorAlignment
  uint64_t nbytes = 0;
};

struct StoreShard {
  std::string name;            // e.g. "layer.3"
  uint64_t bytes = 0;          // packed size
  uint64_t partition_bytes = 0;
  std::vector<StoreTensor> tensors;
  std::vector<uint64_t> file_offsets;  // [N]: where partition R sits in rank R's file
  std::vector<uint32_t> crc32c;        // [N]: of partition R's partition_bytes bytes
};

// What the store was made from: a store for another model, precision or rank count is refused.
struct StoreIdentity {
  std::string architecture;
  std::string config_digest;   // CRC-32C of config.json's bytes, hex
  std::string dtype = "BF16";  // the layer shards' compute dtype (safetensors spelling)
  uint32_t quant_bits = 16;
  uint32_t quant_group_size = 64;
  uint32_t num_ranks = 1;
};

// A tensor to put in a shard; `data` is read during add_shard only.
struct TensorBytes {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  uint64_t nbytes = 0;
};

class OffloadStoreWriter {
 public:
  static constexpr uint64_t kTensorAlignment = 256;
  static constexpr uint64_t kPartitionAlignment = 4096;

  // Creates DIR (and parents) and the N rank files, replacing an older store there.
  static StatusOr<std::unique_ptr<OffloadStoreWriter>> Create(const std::string& dir, const StoreIdentity& id);
  ~OffloadStoreWriter();
  // Packs the tensors into one shard, splits it into N partitions and appends each to its rank's file.
  Status add_shard(const std::string& name, const std::vector<TensorBytes>& tensors);
  // Writes manifest.json (atomically: a temp file renamed into place) and closes the files.
  Status finish();

  // The layout add_shard would give (offsets, bytes, partition_bytes): for planning without writing.
  static StoreShard layout(const std::string& name, const std::vector<TensorBytes>& tensors, uint32_t num_ranks);

 private:
  OffloadStoreWriter() = default;
  std::string rank_file(uint32_t rank) const;
  std::string dir_;
  StoreIdentity id_;
  std::vector<int> fds_;
  std::vector<uint64_t> file_sizes_;
  std::vector<StoreShard> shards_;
  bool finished_ = false;
};

class OffloadStore {
 public:
  // Reads and validates DIR/manifest.json against `expected` (architecture, config digest, quantization, ranks)
  // and checks that every rank file holds every partition. Errors name the file and the shard or key.
  static StatusOr<std::unique_ptr<OffloadStore>> Open(const std::string& dir, const StoreIdentity& expected);

  const StoreIdentity& identity() const { return id_; }
  const std::vector<StoreShard>& shards() const { return shards_; }
  const StoreShard* find(const std::string& name) const;
  std::string rank_file(uint32_t rank) const;
  const std::string& dir() const { return dir_; }

  // Reads rank `rank`'s partition of `shard` (partition_bytes bytes) into dst (4 KiB aligned) through `reader`
  // (opened on rank_file(rank)); with verify, a CRC mismatch is a DataLoss error naming file and shard.
  Status read_partition(const StoreShard& shard, uint32_t rank, DirectReader& reader, void* dst,
                        bool verify) const;

 private:
  std::string dir_;
  StoreIdentity id_;
  std::vector<StoreShard> shards_;
};

// The identity digest of a config.json file (CRC-32C of its bytes, as 8 hex digits).
StatusOr<std::string> config_digest(const std::string& config_json_path);

}  // namespace zi
