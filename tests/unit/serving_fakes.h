// Test doubles for the serving unit tests: a character-level Tokenizer and a scripted Executor.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "engine/runtime/executor.h"
#include "engine/tokenizer/tokenizer.h"

namespace zi::testing {

// ids: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS), then one id per printable ASCII character (' ' = 3 ... '~' = 97).
class CharTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kBos = 1, kEos = 2, kVocab = 98;
  static int32_t id_of(char c) { return static_cast<int32_t>(c - ' ') + 3; }

  StatusOr<std::vector<int32_t>> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens) ids.push_back(kBos);
    for (char c : text) {
      if (c < ' ' || c > '~') return absl::InvalidArgumentError("CharTokenizer: only printable ASCII");
      ids.push_back(id_of(c));
    }
    return ids;
  }
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string out;
    for (int32_t id : ids) {
      if (is_special(id)) {
        if (!skip_special_tokens) out += id_to_token(id);
      } else if (id >= 3 && id < kVocab) {
        out += static_cast<char>(id - 3 + ' ');
      }
    }
    return out;
  }
  std::string id_to_token(int32_t id) const override {
    if (id == 0) return "<unk>";
    if (id == kBos) return "<s>";
    if (id == kEos) return "</s>";
    if (id >= 3 && id < kVocab) return std::string(1, static_cast<char>(id - 3 + ' '));
    return "";
  }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (token == "<s>") return kBos;
    if (token == "</s>") return kEos;
    if (token.size() == 1 && token[0] >= ' ' && token[0] <= '~') return id_of(token[0]);
    return std::nullopt;
  }
  int32_t vocab_size() const override { return kVocab; }
  bool is_special(int32_t id) const override { return id >= 0 && id < 3; }
};

// An executor whose "model" is a script: sequence s's i-th sampled token is next_token(seed, i). It checks the
// protocol the scheduler must follow (first step creates state, no step after release, one result per SeqStep; a
// sequence stays on the rank it started on and is released there; no rank holds more KV blocks than
// summary().kv_num_blocks) and records every step. With hold(), steps block until the test lets them run.
// want_logits: row p of a sequence (its p-th appended position) is [p × 1000 + v for v in 0..vocab).
class ScriptedExecutor final : public Executor {
 public:
  using TokenFn = std::function<int32_t(const SamplingParams& sp, size_t index)>;
  explicit ScriptedExecutor(TokenFn fn) : fn_(std::move(fn)) {
    summary_.name = "scripted";
    summary_.vocab_size = CharTokenizer::kVocab;
    summary_.max_context = 64;
    summary_.eos_token_ids = {CharTokenizer::kEos};
  }

  struct Recorded {
    std::vector<uint64_t> seq_ids;
    std::vector<uint32_t> ranks;
    std::vector<bool> first;
    std::vector<size_t> n_tokens;
    std::vector<bool> sample;
    std::vector<bool> want_logits;
    std::vector<uint64_t> release;        // ids
    std::vector<uint32_t> release_ranks;  // the rank of each
  };

  // The logits row of position p (want_logits).
  static float logit(size_t position, size_t v) { return static_cast<float>(position * 1000 + v); }

  StatusOr<StepOutput> step(const StepInput& in) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !held_ || permits_ > 0; });
    if (held_) --permits_;
    Recorded rec;
    for (const SeqRelease& rel : in.release) {
      auto it = live_.find(rel.seq_id);
      if (it == live_.end()) protocol_errors_.push_back("release of unknown seq " + std::to_string(rel.seq_id));
      else if (it->second.rank != rel.rank)
        protocol_errors_.push_back("release of seq " + std::to_string(rel.seq_id) + " on the wrong rank");
      if (it != live_.end()) live_.erase(it);
      released_.insert(rel.seq_id);
      rec.release.push_back(rel.seq_id);
      rec.release_ranks.push_back(rel.rank);
    }
    if (fail_next_.has_value()) {
      Status st = *fail_next_;
      fail_next_.reset();
      steps_.push_back(rec);
      cv_.notify_all();
      return st;
    }
    StepOutput out;
    for (const SeqStep& s : in.seqs) {
      rec.seq_ids.push_back(s.seq_id);
      rec.ranks.push_back(s.rank);
      rec.first.push_back(s.first);
      rec.n_tokens.push_back(s.tokens.size());
      rec.sample.push_back(s.sample);
      rec.want_logits.push_back(s.want_logits);
      if (s.rank >= std::max<uint32_t>(1, summary_.num_ranks))
        protocol_errors_.push_back("seq " + std::to_string(s.seq_id) + " on rank " + std::to_string(s.rank) +
                                   " of " + std::to_string(summary_.num_ranks));
      if (s.first) {
        if (live_.count(s.seq_id) || released_.count(s.seq_id))
          protocol_errors_.push_back("first step twice for seq " + std::to_string(s.seq_id));
        live_[s.seq_id] = {s.sampling, 0, s.rank, 0};
      } else if (!live_.count(s.seq_id)) {
        protocol_errors_.push_back("step of unknown seq " + std::to_string(s.seq_id));
        live_[s.seq_id] = {};
      } else if (live_[s.seq_id].rank != s.rank) {
        protocol_errors_.push_back("seq " + std::to_string(s.seq_id) + " moved between ranks");
      }
      auto& st = live_[s.seq_id];
      SeqResult r;
      r.seq_id = s.seq_id;
      if (s.want_logits)
        for (size_t p = st.length; p < st.length + s.tokens.size(); ++p)
          for (size_t v = 0; v < summary_.vocab_size; ++v) r.logits.push_back(logit(p, v));
      st.length += s.tokens.size();
      if (!s.sample) {  // a prompt chunk that is not the last: no token
        out.results.push_back(r);
        continue;
      }
      r.token = fn_(st.sampling, st.generated++);
      r.logprob = -0.5f * static_cast<float>(st.generated);
      out.results.push_back(r);
    }
    check_kv_locked();
    steps_.push_back(rec);
    cv_.notify_all();
    return out;
  }
  const ModelSummary& summary() const override { return summary_; }
  // Before a scheduler is built over it (e.g. a paged KV cache: kv_block_size, kv_num_blocks).
  ModelSummary& mutable_summary() { return summary_; }

  // Steps block until allow(n) lets n of them through.
  void hold() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = true;
  }
  void allow(int n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      permits_ += n;
    }
    cv_.notify_all();
  }
  void release_hold() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  void fail_next_step(Status st) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_next_ = std::move(st);
  }
  // Waits until at least `n` steps have run.
  void wait_steps(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return steps_.size() >= n; });
  }
  // Waits until at least `n` steps have started (a held step counts once it is waiting for its permit).
  void wait_entered(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_ >= n; });
  }
  std::vector<Recorded> steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_;
  }
  std::vector<std::string> protocol_errors() const {
    std::lock_guard<std::mutex> lock(mu_);
    return protocol_errors_;
  }
  std::set<uint64_t> released() const {
    std::lock_guard<std::mutex> lock(mu_);
    return released_;
  }
  size_t live() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.size();
  }
  // The most sequences held at once after a step, all ranks together.
  size_t max_live() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_live_;
  }

 private:
  struct SeqState {
    SamplingParams sampling;
    size_t generated = 0;
    uint32_t rank = 0;
    size_t length = 0;  // positions appended
  };

  // Like the engine's paged cache: a sequence of n positions holds ceil(n / block_size) blocks of its rank.
  void check_kv_locked() {
    max_live_ = std::max(max_live_, live_.size());
    if (summary_.kv_num_blocks == 0 || summary_.kv_block_size == 0) return;
    std::map<uint32_t, uint64_t> used;
    for (auto& [id, st] : live_) used[st.rank] += (st.length + summary_.kv_block_size - 1) / summary_.kv_block_size;
    for (auto& [rank, blocks] : used)
      if (blocks > summary_.kv_num_blocks)
        protocol_errors_.push_back("rank " + std::to_string(rank) + " holds " + std::to_string(blocks) +
                                   " KV blocks, over kv_num_blocks " + std::to_string(summary_.kv_num_blocks));
  }
  TokenFn fn_;
  ModelSummary summary_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  int permits_ = 0;
  size_t entered_ = 0;
  std::optional<Status> fail_next_;
  std::map<uint64_t, SeqState> live_;
  std::set<uint64_t> released_;
  size_t max_live_ = 0;
  std::vector<Recorded> steps_;
  std::vector<std::string> protocol_errors_;
};

}  // namespace zi::testing
