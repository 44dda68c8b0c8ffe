// NCCL between GPU workers. libnccl is opened with dlopen on first use (nccl.h gives the types only), so the
// CUDA build starts on machines without NCCL or a driver, and the device bundle need not carry it.
#include <dlfcn.h>
#include <nccl.h>

#include <cstdio>
#include <mutex>

#include "engine/comm/communicator.h"
#include "engine/core/log.h"

namespace zi {
namespace {

struct NcclLib {
  ncclResult_t (*GetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  std::string error;
};

const NcclLib& nccl() {
  static NcclLib lib;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = nullptr;
    for (const char* name : {"libnccl.so.2", "libnccl.so"})
      if ((h = dlopen(name, RTLD_NOW | RTLD_GLOBAL))) break;
    if (!h) {
      lib.error = absl::StrCat("cannot load libnccl.so.2 (", dlerror(), "); install NCCL or use --num_gpus 1");
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn && lib.error.empty()) lib.error = absl::StrCat("libnccl.so.2 lacks ", name);
    };
    sym(lib.GetUniqueId, "ncclGetUniqueId");
    sym(lib.CommInitRank, "ncclCommInitRank");
    sym(lib.AllGather, "ncclAllGather");
    sym(lib.CommDestroy, "ncclCommDestroy");
    sym(lib.CommAbort, "ncclCommAbort");
    sym(lib.CommGetAsyncError, "ncclCommGetAsyncError");
    sym(lib.GetErrorString, "ncclGetErrorString");
  });
  return lib;
}

Status nccl_error(const char* what, ncclResult_t r) {
  return absl::InternalError(absl::StrCat(what, ": ", nccl().GetErrorString ? nccl().GetErrorString(r) : "?",
                                          " (NCCL error ", static_cast<int>(r), ")"));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int world) : comm_(comm), rank_(rank), world_(world) {}
  ~NcclCommunicator() override {
    // Destroy waits for outstanding work; after a failure abort instead so the worker can exit.
    ncclResult_t async = ncclSuccess;
    nccl().CommGetAsyncError(comm_, &async);
    if (async != ncclSuccess && async != ncclInProgress) nccl().CommAbort(comm_);
    else nccl().CommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return world_; }
  std::string kind() const override { return "nccl"; }

  Status all_gather(void* buf, size_t partition_bytes, void* stream) override {
    char* base = static_cast<char*>(buf);
    // In place: the send buffer is this rank's partition inside the receive buffer.
    ncclResult_t r = nccl().AllGather(base + rank_ * partition_bytes, base, partition_bytes, ncclUint8, comm_,
                                      static_cast<cudaStream_t>(stream));
    if (r != ncclSuccess) return nccl_error("ncclAllGather", r);
    return absl::OkStatus();
  }

 private:
  ncclComm_t comm_;
  int rank_, world_;
};

}  // namespace

StatusOr<std::string> create_nccl_comm_id() {
  const NcclLib& lib = nccl();
  if (!lib.error.empty()) return absl::FailedPreconditionError(lib.error);
  ncclUniqueId id;
  if (ncclResult_t r = lib.GetUniqueId(&id); r != ncclSuccess) return nccl_error("ncclGetUniqueId", r);
  std::string out = "nccl:";
  char hex[3];
  for (unsigned char c : id.internal) {
    std::snprintf(hex, sizeof(hex), "%02x", c);
    out += hex;
  }
  return out;
}

StatusOr<std::unique_ptr<Communicator>> connect_nccl_communicator(const std::string& id, int rank, int world) {
  const NcclLib& lib = nccl();
  if (!lib.error.empty()) return absl::FailedPreconditionError(lib.error);
  if (id.rfind("nccl:", 0) != 0 || id.size() != 5 + 2 * NCCL_UNIQUE_ID_BYTES)
    return absl::InvalidArgumentError(absl::StrCat("communicator id is not an NCCL unique id (", id.size(), " chars)"));
  ncclUniqueId uid;
  for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; ++i)
    uid.internal[i] = static_cast<char>(std::stoi(id.substr(5 + 2 * i, 2), nullptr, 16));
  ncclComm_t comm = nullptr;
  ZI_LOG(INFO) << "rank " << rank << " of " << world << ": joining the NCCL communicator";
  if (ncclResult_t r = lib.CommInitRank(&comm, world, uid, rank); r != ncclSuccess)
    return nccl_error(absl::StrCat("ncclCommInitRank (rank ", rank, " of ", world, ")").c_str(), r);
  return std::unique_ptr<Communicator>(new NcclCommunicator(comm, rank, world));
}

}  // namespace zi
