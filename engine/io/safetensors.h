// safetensors reader: the file is mmapped read-only and its header validated strictly before any tensor is used
// (header length bound, JSON, known dtypes, shape × dtype size = byte span with overflow-checked arithmetic, offsets
// in bounds, sorted spans that cover the data buffer exactly with no overlap and no gap).
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {str: str}}, then the data buffer; offsets are relative to the buffer's start.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/core/status.h"

namespace zi {

// Headers larger than this are refused before they are read (the reference implementation's bound).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;   // byte offset in the data buffer
  uint64_t nbytes = 0;  // = product(shape) × dtype_size(dtype)
  const uint8_t* data = nullptr;  // into the mapping (no alignment guaranteed); valid while the file is open
  std::string file;     // path of the file holding it (for error messages)

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// Parses and validates a whole safetensors file image. `file_name` is only used in error messages.
// The returned TensorInfo::data point into `bytes`. Exposed separately from the mmap for tests and fuzzing.
StatusOr<std::vector<TensorInfo>> parse_safetensors(std::span<const uint8_t> bytes, const std::string& file_name,
                                                    std::map<std::string, std::string>* metadata = nullptr);

// One mmapped safetensors file. Thread-safe after Open (read-only).
class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
  // Error naming the file and the tensor when absent.
  StatusOr<const TensorInfo*> get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a Hugging Face checkpoint folder: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` ({"weight_map": {tensor: shard file}}). Every shard is opened and validated up front;
// a tensor the index maps to a shard must be in that shard. Thread-safe after Open.
class Checkpoint {
 public:
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // Error naming the tensor (and the file it was expected in) when absent. A name under "model." or
  // "transformer." is also found without that prefix (checkpoints saved from the base model, e.g. OPT-30B, BLOOM).
  StatusOr<const TensorInfo*> get(const std::string& name) const;
  const TensorInfo* find(const std::string& name) const;
  std::vector<std::string> names() const;
  // Description for errors: "DIR/model.safetensors" or "DIR/model.safetensors.index.json".
  const std::string& source() const { return source_; }

 private:
  std::string dir_;
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> by_name_;
};

}  // namespace zi
