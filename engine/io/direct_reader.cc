#include "engine/io/direct_reader.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/core/log.h"

namespace zi {
namespace {

Status io_error(const std::string& path, const char* what, uint64_t offset, int err) {
  return absl::DataLossError(absl::StrFormat("%s: %s at offset %d failed: %s", path, what, offset, std::strerror(err)));
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

}  // namespace

StatusOr<std::unique_ptr<DirectReader>> DirectReader::Open(const std::string& path, const DirectReaderOptions& opts) {
  if (opts.block_size == 0 || opts.block_size % kAlignment)
    return absl::InvalidArgumentError(
        absl::StrFormat("offload.aio.block_size: must be a positive multiple of %d bytes, got %d", kAlignment,
                        opts.block_size));
  if (opts.queue_depth == 0 || opts.queue_depth > 4096)
    return absl::InvalidArgumentError(
        absl::StrFormat("offload.aio.queue_depth: must be 1..4096, got %d", opts.queue_depth));
  std::unique_ptr<DirectReader> r(new DirectReader());
  r->path_ = path;
  r->opts_ = opts;
  if (opts.use_o_direct) {
    r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    r->o_direct_ = r->fd_ >= 0;
    // EINVAL: the filesystem (tmpfs, some overlays) has no O_DIRECT; read through the page cache instead.
    if (r->fd_ < 0 && errno != EINVAL) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  if (r->fd_ < 0) {
    r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (r->fd_ < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  struct stat st{};
  if (fstat(r->fd_, &st) != 0) return absl::InternalError(absl::StrCat(path, ": fstat: ", std::strerror(errno)));
  r->file_size_ = static_cast<uint64_t>(st.st_size);

  if (opts.use_io_uring && !env_set("ZEROINFER_NO_IO_URING")) {
    auto* ring = new io_uring;
    int rc = io_uring_queue_init(opts.queue_depth, ring, 0);
    if (rc == 0) {
      r->ring_ = ring;
    } else {
      delete ring;
      ZI_LOG(WARNING) << path << ": io_uring unavailable (" << std::strerror(-rc) << "), using pread";
    }
  }
  return r;
}

DirectReader::~DirectReader() {
  if (ring_) {
    io_uring_queue_exit(ring_);
    delete ring_;
  }
  if (fd_ >= 0) ::close(fd_);
}

Status DirectReader::read(uint64_t offset, uint64_t length, void* dst) {
  if (length == 0) return absl::OkStatus();
  if (offset > file_size_ || length > file_size_ - offset)
    return absl::OutOfRangeError(absl::StrFormat("%s: read of %d bytes at offset %d is past the end (%d bytes): "
                                                 "the file is truncated",
                                                 path_, length, offset, file_size_));
  if (o_direct_ && (offset % kAlignment || length % kAlignment ||
                    reinterpret_cast<uintptr_t>(dst) % kAlignment))
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: O_DIRECT read needs offset, length and buffer aligned to %d bytes (offset %d, length %d)", path_,
        kAlignment, offset, length));
  char* out = static_cast<char*>(dst);
  return ring_ ? read_uring(offset, length, out) : read_pread(offset, length, out);
}

Status DirectReader::read_pread(uint64_t offset, uint64_t length, char* dst) {
  uint64_t done = 0;
  while (done < length) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(opts_.block_size, length - done));
    ssize_t n = ::pread(fd_, dst + done, want, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(path_, "pread", offset + done, errno);
    }
    if (n == 0) return io_error(path_, "pread (unexpected end of file)", offset + done, EIO);
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

// Keeps up to queue_depth block reads in flight; a short read (allowed by the kernel) is resubmitted for
// the remainder of its block.
Status DirectReader::read_uring(uint64_t offset, uint64_t length, char* dst) {
  struct Req {
    uint64_t off;  // relative to `offset`
    uint64_t len;
  };
  const uint64_t nblocks = (length + opts_.block_size - 1) / opts_.block_size;
  std::vector<Req> reqs(opts_.queue_depth);
  std::vector<uint32_t> free_slots;
  for (uint32_t i = 0; i < opts_.queue_depth; ++i) free_slots.push_back(i);
  uint64_t next_block = 0, inflight = 0;
  Status status = absl::OkStatus();

  auto submit = [&](uint32_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_);
    ZI_CHECK(sqe != nullptr);  // never more in flight than the ring's entries
    io_uring_prep_read(sqe, fd_, dst + reqs[slot].off, static_cast<unsigned>(reqs[slot].len),
                       offset + reqs[slot].off);
    io_uring_sqe_set_data64(sqe, slot);
    ++inflight;
  };

  while ((next_block < nblocks && status.ok()) || inflight > 0) {
    while (status.ok() && next_block < nblocks && !free_slots.empty()) {
      uint32_t slot = free_slots.back();
      free_slots.pop_back();
      uint64_t off = next_block * opts_.block_size;
      reqs[slot] = {off, std::min<uint64_t>(opts_.block_size, length - off)};
      submit(slot);
      ++next_block;
    }
    int rc = io_uring_submit(ring_);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      if (status.ok()) status = io_error(path_, "io_uring_submit", offset, -rc);
    }
    io_uring_cqe* cqe = nullptr;
    rc = io_uring_wait_cqe(ring_, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) return io_error(path_, "io_uring_wait_cqe", offset, -rc);
    uint32_t slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
    int res = cqe->res;
    io_uring_cqe_seen(ring_, cqe);
    --inflight;
    Req& r = reqs[slot];
    if (res < 0) {
      if ((res == -EAGAIN || res == -EINTR) && status.ok()) {
        submit(slot);
        continue;
      }
      if (status.ok()) status = io_error(path_, "read", offset + r.off, -res);
      free_slots.push_back(slot);
    } else if (res == 0) {
      if (status.ok()) status = io_error(path_, "read (unexpected end of file)", offset + r.off, EIO);
      free_slots.push_back(slot);
    } else if (static_cast<uint64_t>(res) < r.len && status.ok()) {
      r.off += static_cast<uint64_t>(res);
      r.len -= static_cast<uint64_t>(res);
      submit(slot);
    } else {
      free_slots.push_back(slot);
    }
  }
  return status;
}

}  // namespace zi

namespace zi {

StatusOr<double> probe_read_bandwidth(const std::vector<std::string>& paths, uint64_t max_bytes,
                                      const DirectReaderOptions& opts) {
  const uint64_t chunk = 64ull << 20;
  void* buf = nullptr;
  if (posix_memalign(&buf, DirectReader::kAlignment, chunk) != 0) return absl::ResourceExhaustedError("probe buffer");
  std::unique_ptr<void, void (*)(void*)> owner(buf, std::free);
  uint64_t done = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const std::string& p : paths) {
    ZI_ASSIGN_OR_RETURN(auto r, DirectReader::Open(p, opts));
    const uint64_t usable = r->file_size() / DirectReader::kAlignment * DirectReader::kAlignment;
    for (uint64_t off = 0; off < usable && done < max_bytes; off += chunk) {
      const uint64_t n = std::min(chunk, usable - off);
      ZI_RETURN_IF_ERROR(r->read(off, n, buf));
      done += n;
    }
    if (done >= max_bytes) break;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (done == 0) return absl::InvalidArgumentError("read probe: no data to read");
  return done / std::max(s, 1e-9);
}

}  // namespace zi
