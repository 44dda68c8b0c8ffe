// One Generate RPC: the ServerWriteReactor that gRPC drives, and the ResponseSink the scheduler writes to.
//
// Lifetime: gRPC owns the reactor until OnDone (it then deletes itself). The scheduler and the intake pool hold
// the GenerateStream by shared_ptr; once the reactor is done the stream drops whatever is sent to it. Messages
// are queued and written one at a time (one write in flight, as gRPC requires); Finish is called exactly once,
// after the queued writes, by whichever thread completes the last of them. No lock is held while calling into
// gRPC, so a reaction that runs inline cannot deadlock.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "server/scheduler/request.h"
#include "zeroinfer/v1/generate.grpc.pb.h"

namespace zi::server {

class GenerateStream final : public ResponseSink {
 public:
  using Reactor = grpc::ServerWriteReactor<::zeroinfer::v1::GenerateResponse>;

  GenerateStream(Reactor* reactor, std::string request_id) : reactor_(reactor), request_id_(std::move(request_id)) {}

  const std::string& request_id() const { return request_id_; }
  // Called once the client is gone (OnCancel, or a failed write): wakes the scheduler.
  void set_cancel_hook(std::function<void()> hook);

  // ResponseSink (any thread).
  void send(GenerationChunk chunk) override;
  void fail(const Status& status) override;
  bool cancelled() const override { return cancelled_.load(); }
  // Ends the RPC with `status` without going through the scheduler (rejections before admission).
  void finish_now(const grpc::Status& status);

  // Reactor callbacks.
  void on_write_done(bool ok);
  void on_cancel();
  void on_done();

 private:
  // Starts the next write or the Finish when due; releases `lock` before calling into gRPC.
  void pump(std::unique_lock<std::mutex>& lock);

  std::mutex mu_;
  Reactor* reactor_;                                  // null after OnDone; guarded by mu_
  std::string request_id_;
  std::deque<::zeroinfer::v1::GenerateResponse> queue_;  // front() is in flight while writing_; guarded by mu_
  bool writing_ = false;                              // guarded by mu_
  std::optional<grpc::Status> finish_;                // the RPC's final status once known; guarded by mu_
  bool finish_called_ = false;                        // guarded by mu_
  std::function<void()> cancel_hook_;                 // guarded by mu_
  std::atomic<bool> cancelled_{false};
};

// The reactor: forwards gRPC's callbacks to its stream.
class GenerateReactor final : public GenerateStream::Reactor {
 public:
  explicit GenerateReactor(std::string request_id)
      : stream_(std::make_shared<GenerateStream>(this, std::move(request_id))) {}
  const std::shared_ptr<GenerateStream>& stream() const { return stream_; }

  void OnWriteDone(bool ok) override { stream_->on_write_done(ok); }
  void OnCancel() override { stream_->on_cancel(); }
  void OnDone() override {
    stream_->on_done();
    delete this;
  }

 private:
  std::shared_ptr<GenerateStream> stream_;
};

// absl::Status → grpc::Status (same numeric codes).
grpc::Status to_grpc(const Status& status);

}  // namespace zi::server
