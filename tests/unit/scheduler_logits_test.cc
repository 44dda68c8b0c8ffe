// Logits through the scheduler (GenerationRequest::want_logits, for `generate --logits-out`) against a scripted
// executor whose row for position p is [p × 1000 + v]: every appended position's row arrives once, complete and in
// order (the prompt's with the first token, then one per appended token); a prompt chunk is cut so that a rank's
// logits in one step stay within max_logits_bytes_per_step; requests without logits get none and are not cut.
#include <map>

#include "server/scheduler/scheduler.h"
#include "tests/unit/scheduler_harness.h"

namespace zi::server {
namespace {

using namespace scheduler_testing;
using testing::CharTokenizer;
using testing::ScriptedExecutor;

constexpr size_t kVocab = CharTokenizer::kVocab;
constexpr uint64_t kRowBytes = kVocab * sizeof(float);

GenerationRequest prompt_of(uint64_t seed, size_t len, uint32_t max_new_tokens, bool want_logits) {
  GenerationRequest r = make_request(seed, max_new_tokens);
  r.prompt.assign(len, CharTokenizer::id_of('x'));
  r.want_logits = want_logits;
  return r;
}

// The rows every chunk carried, in order: position numbers (checking each row is whole and [p × 1000 + v]).
std::vector<std::vector<size_t>> rows_per_chunk(RecordingSink& sink) {
  std::vector<std::vector<size_t>> out;
  for (const GenerationChunk& c : sink.chunks()) {
    EXPECT_EQ(c.logits.size() % kVocab, 0u) << "rows are whole";
    std::vector<size_t> positions;
    for (size_t row = 0; row < c.logits.size() / kVocab; ++row) {
      const size_t p = static_cast<size_t>(c.logits[row * kVocab]) / 1000;
      for (size_t v = 0; v < kVocab; ++v) EXPECT_EQ(c.logits[row * kVocab + v], ScriptedExecutor::logit(p, v));
      positions.push_back(p);
    }
    out.push_back(positions);
  }
  return out;
}

std::vector<size_t> range(size_t from, size_t to) {
  std::vector<size_t> v;
  for (size_t p = from; p < to; ++p) v.push_back(p);
  return v;
}

TEST(SchedulerLogits, EveryAppendedPositionsRowArrivesInOrderWithAPromptCutToTheLogitsBudget) {
  SchedulerOptions opts;
  opts.max_batch_size = 4;
  opts.max_logits_bytes_per_step = 4 * kRowBytes;  // 4 rows a step: an 11-token prompt goes in 4 + 4 + 3
  Harness h(opts);
  h.executor.hold();
  auto a = h.submit(prompt_of(0, 11, 3, true));
  auto b = h.submit(prompt_of(1, 11, 3, false));  // no logits: prefilled whole
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(b->wait());
  EXPECT_EQ(a->text(), "abc");
  EXPECT_EQ(b->text(), "bcd");
  // Chunk 1 ('a'): the 11 prompt rows, gathered over three prefill steps; then the row of each appended token.
  EXPECT_EQ(rows_per_chunk(*a), (std::vector<std::vector<size_t>>{range(0, 11), {11}, {12}}));
  for (const GenerationChunk& c : b->chunks()) EXPECT_TRUE(c.logits.empty());

  const uint64_t a_id = h.executor.steps()[0].seq_ids[0];
  std::vector<size_t> a_steps, b_steps;
  for (auto& st : h.executor.steps())
    for (size_t i = 0; i < st.seq_ids.size(); ++i) {
      if (st.seq_ids[i] == a_id) {
        EXPECT_TRUE(st.want_logits[i]);
        a_steps.push_back(st.n_tokens[i]);
      } else {
        EXPECT_FALSE(st.want_logits[i]);
        b_steps.push_back(st.n_tokens[i]);
      }
    }
  EXPECT_EQ(a_steps, (std::vector<size_t>{4, 4, 3, 1, 1}));
  EXPECT_EQ(b_steps, (std::vector<size_t>{11, 1, 1}));
  EXPECT_TRUE(h.executor.protocol_errors().empty());
}

TEST(SchedulerLogits, AnEosEndingGenerationBringsTheRowItWasSampledFrom) {
  auto eos_at_2 = [](const SamplingParams& sp, size_t i) { return i == 2 ? CharTokenizer::kEos : letters(sp, i); };
  Harness h({}, eos_at_2);
  auto a = h.submit(prompt_of(0, 3, 10, true));
  ASSERT_TRUE(a->wait());
  EXPECT_EQ(a->last().finish, FinishReason::kEos);
  EXPECT_EQ(a->text(), "ab");
  // 'a' from the prompt's last row, 'b' from a's row, EOS from b's: prompt + completion rows in all.
  EXPECT_EQ(rows_per_chunk(*a), (std::vector<std::vector<size_t>>{range(0, 3), {3}, {4}}));
}

TEST(SchedulerLogits, PromptsOnOneRankShareItsBudgetAndNoneStarves) {
  SchedulerOptions opts;
  opts.max_batch_size = 4;
  opts.max_logits_bytes_per_step = 4 * kRowBytes;
  Harness h(opts);
  h.executor.hold();
  auto a = h.submit(prompt_of(0, 6, 4, true));
  auto c = h.submit(prompt_of(2, 6, 4, true));
  h.executor.release_hold();
  ASSERT_TRUE(a->wait());
  ASSERT_TRUE(c->wait());
  EXPECT_EQ(rows_per_chunk(*a), (std::vector<std::vector<size_t>>{range(0, 6), {6}, {7}, {8}}));
  EXPECT_EQ(rows_per_chunk(*c), (std::vector<std::vector<size_t>>{range(0, 6), {6}, {7}, {8}}));
  // Every step's rows (both want logits) within the 4-row budget.
  for (auto& st : h.executor.steps()) {
    size_t rows = 0;
    for (size_t n : st.n_tokens) rows += n;
    EXPECT_LE(rows, 4u);
  }
  EXPECT_TRUE(h.executor.protocol_errors().empty());
}

}  // namespace
}  // namespace zi::server
