#include "engine/worker/control_store.h"

#include <gloo/common/error.h>

#include "absl/strings/str_join.h"

namespace zi::worker {

pb::StoreReply ControlStore::call(pb::StoreRequest request, std::chrono::milliseconds timeout,
                                  const std::string& what) {
  auto reply = client_->call_store(std::move(request), timeout);
  if (!reply.ok()) throw gloo::IoException(absl::StrCat(what, ": ", reply.status().message()));
  return *std::move(reply);
}

void ControlStore::set(const std::string& key, const std::vector<char>& data) {
  pb::StoreRequest req;
  req.set_op(pb::StoreRequest::SET);
  req.add_keys(key);
  req.set_value(std::string(data.begin(), data.end()));
  call(std::move(req), timeout_, absl::StrCat("rendezvous set '", key, "'"));
}

std::vector<char> ControlStore::get(const std::string& key) {
  pb::StoreRequest req;
  req.set_op(pb::StoreRequest::GET);
  req.add_keys(key);
  pb::StoreReply reply = call(std::move(req), timeout_, absl::StrCat("rendezvous get '", key, "'"));
  return std::vector<char>(reply.value().begin(), reply.value().end());
}

void ControlStore::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  pb::StoreRequest req;
  req.set_op(pb::StoreRequest::WAIT);
  for (const auto& k : keys) req.add_keys(k);
  call(std::move(req), timeout, absl::StrCat("rendezvous wait for '", absl::StrJoin(keys, "', '"), "'"));
}

}  // namespace zi::worker
