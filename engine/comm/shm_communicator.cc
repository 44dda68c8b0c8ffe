// Shared-memory all-gather between CPU worker processes: one POSIX shared-memory segment per group holding a
// header (barrier counter, futex word, each rank's pid) and one staging chunk per rank. An all-gather moves a
// partition chunk by chunk: every rank copies its chunk into its staging area, all meet at a barrier, every rank
// copies the others' chunks out, all meet again. The barrier sleeps on a futex; while waiting it checks that the
// peers' processes still exist, so a dead rank turns into an error instead of a hang.
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>

#include "engine/comm/communicator.h"

namespace zi {
namespace {

constexpr uint32_t kMagic = 0x7a69636d;  // "zicm"
constexpr int kMaxRanks = 64;
constexpr size_t kHeaderBytes = 4096;

struct Header {
  uint32_t magic;
  uint32_t world;
  uint64_t chunk_bytes;
  std::atomic<uint32_t> arrived;     // ranks at the current barrier
  std::atomic<uint32_t> generation;  // bumped by the last arrival; waiters sleep on it (futex)
  std::atomic<int32_t> pids[kMaxRanks];
};
static_assert(sizeof(Header) <= kHeaderBytes);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

size_t segment_bytes(int world, size_t chunk) { return kHeaderBytes + static_cast<size_t>(world) * chunk; }

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>((timeout.count() % 1000) * 1000000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

// True while process `pid` exists and is not a zombie (a worker the coordinator has not reaped yet is dead).
bool process_alive(pid_t pid) {
  if (pid <= 0) return true;  // not joined yet: the join timeout covers it
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return true;
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  const char* paren = std::strrchr(buf, ')');  // "pid (comm) S ..."
  return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

class ShmCommunicator final : public Communicator {
 public:
  ShmCommunicator(std::string name, void* base, size_t bytes, int rank, int world, ShmCommOptions opts)
      : name_(std::move(name)), base_(base), bytes_(bytes), rank_(rank), world_(world), opts_(opts) {}
  ~ShmCommunicator() override {
    munmap(base_, bytes_);
    if (rank_ == 0 && !unlinked_) shm_unlink(name_.c_str());
  }

  int rank() const override { return rank_; }
  int size() const override { return world_; }
  std::string kind() const override { return "shm"; }

  Status join() {
    header()->pids[rank_].store(getpid(), std::memory_order_release);
    ZI_RETURN_IF_ERROR(barrier(opts_.join_timeout, "joining"));
    // Everyone has it mapped: the name is no longer needed, and unlinking now leaves nothing behind in /dev/shm
    // however the processes end.
    if (rank_ == 0) {
      shm_unlink(name_.c_str());
      unlinked_ = true;
    }
    return absl::OkStatus();
  }

  Status all_gather(void* buf, size_t partition_bytes, void*) override {
    char* out = static_cast<char*>(buf);
    const size_t chunk = header()->chunk_bytes;
    for (size_t off = 0; off < partition_bytes; off += chunk) {
      const size_t n = std::min(chunk, partition_bytes - off);
      std::memcpy(staging(rank_), out + rank_ * partition_bytes + off, n);
      ZI_RETURN_IF_ERROR(barrier(opts_.op_timeout, "all-gather"));
      for (int r = 0; r < world_; ++r)
        if (r != rank_) std::memcpy(out + r * partition_bytes + off, staging(r), n);
      ZI_RETURN_IF_ERROR(barrier(opts_.op_timeout, "all-gather"));
    }
    return absl::OkStatus();
  }

 private:
  Header* header() const { return static_cast<Header*>(base_); }
  char* staging(int r) const {
    return static_cast<char*>(base_) + kHeaderBytes + static_cast<size_t>(r) * header()->chunk_bytes;
  }

  Status barrier(std::chrono::milliseconds timeout, const char* what) {
    Header* h = header();
    if (broken_) return absl::UnavailableError(absl::StrCat("shared-memory communicator rank ", rank_,
                                                            ": the group failed earlier"));
    const uint32_t gen = h->generation.load(std::memory_order_acquire);
    if (h->arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(world_)) {
      h->arrived.store(0, std::memory_order_relaxed);
      h->generation.fetch_add(1, std::memory_order_release);
      futex_wake_all(&h->generation);
      return absl::OkStatus();
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (h->generation.load(std::memory_order_acquire) == gen) {
      futex_wait(&h->generation, gen, std::chrono::milliseconds(100));
      if (h->generation.load(std::memory_order_acquire) != gen) break;
      for (int r = 0; r < world_; ++r) {
        const pid_t pid = h->pids[r].load(std::memory_order_acquire);
        if (r != rank_ && !process_alive(pid)) {
          broken_ = true;
          return absl::UnavailableError(absl::StrCat("shared-memory communicator rank ", rank_, ": rank ", r,
                                                     " (pid ", pid, ") exited during ", what));
        }
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        broken_ = true;
        std::string missing;
        for (int r = 0; r < world_; ++r)
          if (h->pids[r].load() <= 0) absl::StrAppend(&missing, missing.empty() ? "" : ", ", r);
        return absl::DeadlineExceededError(absl::StrCat(
            "shared-memory communicator rank ", rank_, ": ", what, " timed out after ", timeout.count(), " ms",
            missing.empty() ? "" : absl::StrCat(" (ranks ", missing, " never joined)")));
      }
    }
    return absl::OkStatus();
  }

  std::string name_;
  void* base_;
  size_t bytes_;
  int rank_, world_;
  ShmCommOptions opts_;
  bool unlinked_ = false;
  bool broken_ = false;
};

Status check_world(int world) {
  if (world < 1 || world > kMaxRanks)
    return absl::InvalidArgumentError(absl::StrCat("communicator: world size must be 1..", kMaxRanks, ", got ", world));
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::string> create_shm_comm_id(int world, const ShmCommOptions& options) {
  ZI_RETURN_IF_ERROR(check_world(world));
  std::random_device rd;
  const std::string name = absl::StrCat("/zeroinfer-", getpid(), "-", absl::Hex(rd(), absl::kZeroPad8));
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("shm_open ", name, ": ", std::strerror(errno)));
  const size_t bytes = segment_bytes(world, options.chunk_bytes);
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    close(fd);
    shm_unlink(name.c_str());
    return absl::ResourceExhaustedError(absl::StrCat("shared memory segment ", name, " of ", bytes,
                                                     " bytes: ", std::strerror(err), " (is /dev/shm large enough?)"));
  }
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    shm_unlink(name.c_str());
    return absl::InternalError(absl::StrCat("mmap ", name, ": ", std::strerror(errno)));
  }
  auto* h = new (base) Header();
  h->world = static_cast<uint32_t>(world);
  h->chunk_bytes = options.chunk_bytes;
  for (auto& p : h->pids) p.store(0);
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kMagic;
  munmap(base, bytes);
  return absl::StrCat("shm:", name);
}

StatusOr<std::unique_ptr<Communicator>> connect_shm_communicator(const std::string& id, int rank, int world,
                                                                 const ShmCommOptions& options) {
  ZI_RETURN_IF_ERROR(check_world(world));
  if (rank < 0 || rank >= world)
    return absl::InvalidArgumentError(absl::StrCat("communicator: rank ", rank, " outside 0..", world - 1));
  if (id.rfind("shm:", 0) != 0)
    return absl::InvalidArgumentError(absl::StrCat("communicator id '", id, "' is not a shared-memory id"));
  const std::string name = id.substr(4);
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("shm_open ", name, ": ", std::strerror(errno)));
  const size_t bytes = segment_bytes(world, options.chunk_bytes);
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < kHeaderBytes) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat("communicator ", name, " is not initialised"));
  }
  // Map what exists (a segment made for another world size is smaller or larger); the check below refuses it.
  const size_t mapped = std::min(bytes, static_cast<size_t>(st.st_size));
  void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap ", name, ": ", std::strerror(errno)));
  const auto* h = static_cast<const Header*>(base);
  const uint32_t magic = h->magic, made_for = h->world;
  const uint64_t chunk = h->chunk_bytes;
  if (magic != kMagic || made_for != static_cast<uint32_t>(world) || chunk != options.chunk_bytes) {
    munmap(base, mapped);
    if (magic != kMagic) return absl::FailedPreconditionError(absl::StrCat("communicator ", name, " is not initialised"));
    if (made_for != static_cast<uint32_t>(world))
      return absl::FailedPreconditionError(absl::StrCat("communicator ", name, " was made for ", made_for,
                                                        " ranks, this rank expects ", world));
    return absl::FailedPreconditionError(absl::StrCat("communicator ", name, " stages ", chunk,
                                                      " bytes per rank, this rank expects ", options.chunk_bytes));
  }
  auto comm = std::make_unique<ShmCommunicator>(name, base, bytes, rank, world, options);
  ZI_RETURN_IF_ERROR(comm->join());
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace zi
