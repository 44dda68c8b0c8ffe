#include "server/grpc/generate_stream.h"

namespace zi::server {

namespace pb = ::zeroinfer::v1;

grpc::Status to_grpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void GenerateStream::set_cancel_hook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  cancel_hook_ = std::move(hook);
}

void GenerateStream::send(GenerationChunk chunk) {
  pb::GenerateResponse msg;
  msg.set_request_id(request_id_);
  msg.mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
  msg.set_text(std::move(chunk.text));
  msg.mutable_logprobs()->Add(chunk.logprobs.begin(), chunk.logprobs.end());
  if (chunk.finish != FinishReason::kNone) {
    switch (chunk.finish) {
      case FinishReason::kLength: msg.set_finish_reason(pb::FINISH_REASON_LENGTH); break;
      case FinishReason::kEos: msg.set_finish_reason(pb::FINISH_REASON_EOS); break;
      case FinishReason::kStop: msg.set_finish_reason(pb::FINISH_REASON_STOP); break;
      case FinishReason::kNone: break;
    }
    msg.mutable_usage()->set_prompt_tokens(chunk.prompt_tokens);
    msg.mutable_usage()->set_completion_tokens(chunk.completion_tokens);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (finish_ || !reactor_) return;
  queue_.push_back(std::move(msg));
  if (chunk.finish != FinishReason::kNone) finish_ = grpc::Status::OK;
  pump(lock);
}

void GenerateStream::fail(const Status& status) { finish_now(to_grpc(status)); }

void GenerateStream::finish_now(const grpc::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  if (finish_) return;
  finish_ = status;
  pump(lock);
}

void GenerateStream::pump(std::unique_lock<std::mutex>& lock) {
  Reactor* reactor = reactor_;
  if (!reactor || writing_ || finish_called_) return;
  if (!queue_.empty()) {
    writing_ = true;
    // deque::push_back never moves existing elements: front() stays valid until OnWriteDone pops it.
    const pb::GenerateResponse* msg = &queue_.front();
    lock.unlock();
    reactor->StartWrite(msg);
    return;
  }
  if (finish_) {
    finish_called_ = true;
    grpc::Status st = *finish_;
    lock.unlock();
    reactor->Finish(st);
  }
}

void GenerateStream::on_write_done(bool ok) {
  std::unique_lock<std::mutex> lock(mu_);
  queue_.pop_front();
  writing_ = false;
  if (!ok) {
    // The client is gone: drop what is queued; the scheduler stops the sequence and calls fail().
    queue_.clear();
    if (!cancelled_.exchange(true) && cancel_hook_) {
      auto hook = cancel_hook_;
      lock.unlock();
      hook();
      lock.lock();
    }
  }
  pump(lock);
}

void GenerateStream::on_cancel() {
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancelled_.exchange(true)) hook = cancel_hook_;
  }
  if (hook) hook();
}

void GenerateStream::on_done() {
  std::lock_guard<std::mutex> lock(mu_);
  reactor_ = nullptr;
  queue_.clear();
  cancelled_.store(true);
}

}  // namespace zi::server
