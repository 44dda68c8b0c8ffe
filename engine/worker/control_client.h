// The worker's end of its control channel: a Unix socket to the coordinator that spawned it, or TLS over TCP to
// one it joined (`zeroinfer worker --coordinator HOST:PORT`). One I/O thread owns the connection: it reads frames
// as they arrive (even while the main thread runs a long step), sends heartbeats, answers nothing itself, and
// watches the coordinator's own heartbeats.
//
// When the channel closes or the coordinator falls silent for the heartbeat timeout, a main thread waiting in
// receive() gets UNAVAILABLE and the worker ends normally. Once exit_when_unheard() was called, a main thread busy
// elsewhere (loading, a step, an all-gather that waits for a dead peer) cannot be interrupted, so the process exits
// from the I/O thread. Without this a worker on another host, which is not the coordinator's child, would outlive it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/core/status.h"
#include "engine/worker/control_tls.h"
#include "zeroinfer/v1/worker.pb.h"

namespace zi::worker {

namespace pb = ::zeroinfer::v1::worker;

class ControlClient {
 public:
  // Connects to a spawning coordinator's Unix socket.
  static StatusOr<std::unique_ptr<ControlClient>> ConnectUnix(const std::string& path);
  // Dials HOST:PORT (retrying a refused connection until `retry_for` has passed: the coordinator may start after
  // its workers) and completes a mutual-TLS handshake; the coordinator's certificate must match `host`.
  static StatusOr<std::unique_ptr<ControlClient>> ConnectTls(const std::string& host, uint16_t port,
                                                             const ControlTlsFiles& tls,
                                                             std::chrono::milliseconds retry_for);
  virtual ~ControlClient() = default;

  // Any thread. Queued for the I/O thread; UNAVAILABLE once the channel has closed.
  virtual Status send(const pb::FromWorker& msg) = 0;
  // Main thread. Blocks for the next message (heartbeats and store replies are consumed by the I/O thread);
  // UNAVAILABLE naming why once the channel has closed.
  virtual Status receive(pb::ToWorker* msg) = 0;
  // Any thread. A store request and its reply (worker.proto StoreRequest); DEADLINE_EXCEEDED after `timeout`.
  virtual StatusOr<pb::StoreReply> call_store(pb::StoreRequest request, std::chrono::milliseconds timeout) = 0;
  // Heartbeats go out every `interval`; coordinator silence for `timeout` ends the channel (see above). Until the
  // first call: every second and 60 s.
  virtual void set_heartbeat(std::chrono::milliseconds interval, std::chrono::milliseconds timeout) = 0;
  // From now on, a channel that ends while the main thread is not in receive() ends the process (see above).
  virtual void exit_when_unheard() = 0;
  // The address this host reaches the coordinator from ("" over a Unix socket).
  virtual std::string local_address() const = 0;
};

}  // namespace zi::worker
