#include "server/worker_pool/rendezvous_store.h"

#include <algorithm>

namespace zi::server {

namespace pb = ::zeroinfer::v1::worker;

bool RendezvousStore::ready(const pb::StoreRequest& request) const {
  return std::all_of(request.keys().begin(), request.keys().end(), [this](const std::string& k) {
    return values_.count(k) > 0;
  });
}

RendezvousStore::Reply RendezvousStore::answer(uint32_t rank, const pb::StoreRequest& request) const {
  Reply r{rank, {}};
  r.reply.set_request_id(request.request_id());
  if (request.op() == pb::StoreRequest::GET && request.keys_size() == 1)
    r.reply.set_value(values_.at(request.keys(0)));
  return r;
}

std::vector<RendezvousStore::Reply> RendezvousStore::handle(uint32_t rank, const pb::StoreRequest& request) {
  std::vector<Reply> out;
  if (request.op() == pb::StoreRequest::SET) {
    for (const auto& k : request.keys()) values_[k] = request.value();
    out.push_back(answer(rank, request));
    // Whatever this SET completes is answered now, in the order it was asked.
    auto still = std::stable_partition(parked_.begin(), parked_.end(), [this](const Parked& p) {
      return !ready(p.request);
    });
    for (auto it = still; it != parked_.end(); ++it) out.push_back(answer(it->rank, it->request));
    parked_.erase(still, parked_.end());
    return out;
  }
  if (ready(request)) out.push_back(answer(rank, request));
  else parked_.push_back({rank, request});
  return out;
}

void RendezvousStore::drop(uint32_t rank) {
  parked_.erase(std::remove_if(parked_.begin(), parked_.end(), [rank](const Parked& p) { return p.rank == rank; }),
                parked_.end());
}

}  // namespace zi::server
