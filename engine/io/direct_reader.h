// Reads byte ranges of one file into caller-owned (ideally pinned, 4 KiB-aligned) memory at the disk's speed:
// O_DIRECT (no page cache) with io_uring keeping `queue_depth` requests of `block_size` bytes in flight; a pread
// fallback where io_uring is refused (docker's default seccomp profile returns EPERM) or O_DIRECT is not supported
// (tmpfs). The NVMe offload tier reads layer shards through this.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/status.h"

struct io_uring;

namespace zi {

struct DirectReaderOptions {
  uint64_t block_size = 1 << 20;  // bytes per request; a multiple of 4096
  uint32_t queue_depth = 8;       // requests in flight
  bool use_io_uring = true;       // false forces the pread path (also: env ZEROINFER_NO_IO_URING=1)
  bool use_o_direct = true;       // false reads through the page cache
};

class DirectReader {
 public:
  static constexpr uint64_t kAlignment = 4096;  // O_DIRECT: offset, length and buffer address

  // Opens `path` read-only. Errors name the file.
  static StatusOr<std::unique_ptr<DirectReader>> Open(const std::string& path, const DirectReaderOptions& opts);
  ~DirectReader();
  DirectReader(const DirectReader&) = delete;
  DirectReader& operator=(const DirectReader&) = delete;

  // Reads [offset, offset + length) into dst. With O_DIRECT, offset, length and dst must be multiples of
  // kAlignment (the offload store aligns every shard). A short file or an I/O error is an error naming the
  // file, offset and errno. Not thread-safe: one reader per thread.
  Status read(uint64_t offset, uint64_t length, void* dst);

  uint64_t file_size() const { return file_size_; }
  bool using_o_direct() const { return o_direct_; }
  const std::string& path() const { return path_; }

 private:
  DirectReader() = default;
  Status read_uring(uint64_t offset, uint64_t length, char* dst);
  Status read_pread(uint64_t offset, uint64_t length, char* dst);

  std::string path_;
  int fd_ = -1;
  bool o_direct_ = false;
  uint64_t file_size_ = 0;
  DirectReaderOptions opts_;
  io_uring* ring_ = nullptr;
};

}  // namespace zi

namespace zi {

// Reads up to `max_bytes` of the files (in order) with O_DIRECT, io_uring and `opts`; returns bytes/second.
// What the NVMe tier and a cold start can expect from this disk.
StatusOr<double> probe_read_bandwidth(const std::vector<std::string>& paths, uint64_t max_bytes,
                                      const DirectReaderOptions& opts = {});

}  // namespace zi
