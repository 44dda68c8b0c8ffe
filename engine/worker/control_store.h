// Gloo's rendezvous store (gloo::rendezvous::Store) over the worker's control channel: the coordinator keeps the
// keys (server/worker_pool/rendezvous_store.h), so ranks on different hosts meet with no store service of their
// own (Debian's Gloo ships only file, hash and redis stores). Gloo calls it while a group connects, from the
// thread that connects; a failure or a timeout throws gloo::IoException, as Gloo's own stores do.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

#include "engine/worker/control_client.h"

namespace zi::worker {

class ControlStore final : public gloo::rendezvous::Store {
 public:
  // `client` must outlive the store. `timeout`: how long get() waits for its key (Gloo gives it none).
  ControlStore(ControlClient* client, std::chrono::milliseconds timeout) : client_(client), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override;
  // Waits (up to the store's timeout) until the key exists.
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  pb::StoreReply call(pb::StoreRequest request, std::chrono::milliseconds timeout, const std::string& what);

  ControlClient* client_;
  std::chrono::milliseconds timeout_;
};

}  // namespace zi::worker
