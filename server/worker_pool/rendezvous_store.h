// The coordinator's half of Gloo's rendezvous (engine/worker/control_store.h is the workers' half): a key-value
// table the ranks fill and read over their control channels while a Gloo group connects. A GET or WAIT for a key
// not set yet is parked and answered by the SET that completes it. No timeouts here: the asking worker times its
// own request out. Not thread-safe (the worker pool's I/O thread owns it).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "zeroinfer/v1/worker.pb.h"

namespace zi::server {

class RendezvousStore {
 public:
  struct Reply {
    uint32_t rank;  // whom to send it to
    ::zeroinfer::v1::worker::StoreReply reply;
  };
  // One request from `rank`: the replies now due (its own, and those of parked requests a SET completes).
  std::vector<Reply> handle(uint32_t rank, const ::zeroinfer::v1::worker::StoreRequest& request);
  // Forgets `rank`'s parked requests (its channel closed).
  void drop(uint32_t rank);
  size_t parked() const { return parked_.size(); }

 private:
  struct Parked {
    uint32_t rank;
    ::zeroinfer::v1::worker::StoreRequest request;
  };
  bool ready(const ::zeroinfer::v1::worker::StoreRequest& request) const;
  Reply answer(uint32_t rank, const ::zeroinfer::v1::worker::StoreRequest& request) const;

  std::map<std::string, std::string> values_;
  std::vector<Parked> parked_;
};

}  // namespace zi::server
