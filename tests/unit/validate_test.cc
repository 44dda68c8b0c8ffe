// Request validation: every bad field is INVALID_ARGUMENT naming the field and the limit; defaults resolve.
#include <gtest/gtest.h>

#include <cmath>

#include "server/grpc/validate.h"
#include "tests/unit/serving_fakes.h"

namespace zi::server {
namespace {

namespace pb = ::zeroinfer::v1;
using testing::CharTokenizer;

class Validate : public ::testing::Test {
 protected:
  Validate() {
    limits.vocab_size = CharTokenizer::kVocab;
    limits.max_context = 32;
    limits.max_prompt_tokens = 0;
    limits.max_new_tokens_default = 10;
  }
  StatusOr<GenerationRequest> check(const pb::GenerateRequest& r) {
    return validate_request(r, &tok, limits, [] { return uint64_t{12345}; });
  }
  // The message of the INVALID_ARGUMENT the request gets ("" when accepted).
  std::string refusal(const pb::GenerateRequest& r) {
    auto v = check(r);
    if (v.ok()) return "";
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << v.status();
    return std::string(v.status().message());
  }
  static pb::GenerateRequest text(const std::string& prompt) {
    pb::GenerateRequest r;
    r.set_prompt(prompt);
    return r;
  }
  CharTokenizer tok;
  RequestLimits limits;
};

TEST_F(Validate, TextPromptIsTokenizedWithSpecialTokensAndDefaultsResolve) {
  auto v = check(text("hey"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->prompt, (std::vector<int32_t>{CharTokenizer::kBos, CharTokenizer::id_of('h'),
                                             CharTokenizer::id_of('e'), CharTokenizer::id_of('y')}));
  EXPECT_EQ(v->max_new_tokens, 10u);  // server default
  EXPECT_EQ(v->sampling.temperature, 0.0f);
  EXPECT_EQ(v->sampling.top_p, 1.0f);
  EXPECT_EQ(v->sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(v->sampling.seed, 12345u);  // picked by the server when absent
}

TEST_F(Validate, DefaultMaxNewTokensIsCappedByTheContextLeft) {
  auto v = check(text(std::string(27, 'a')));  // 28 tokens with BOS: 4 left in a context of 32
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->max_new_tokens, 4u);
}

TEST_F(Validate, TokenIdsAreUsedAsGivenAndCheckedAgainstTheVocab) {
  pb::GenerateRequest r;
  r.mutable_prompt_token_ids()->add_ids(5);
  r.mutable_prompt_token_ids()->add_ids(97);
  r.mutable_sampling()->set_seed(7);
  r.mutable_stopping()->set_max_new_tokens(30);
  auto v = check(r);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->prompt, (std::vector<int32_t>{5, 97}));
  EXPECT_EQ(v->sampling.seed, 7u);
  EXPECT_EQ(v->max_new_tokens, 30u);
  r.mutable_prompt_token_ids()->add_ids(98);
  EXPECT_EQ(refusal(r), "prompt_token_ids[2]: token id 98 is out of range (vocab_size 98)");
}

TEST_F(Validate, EachBadFieldIsNamedWithItsLimit) {
  EXPECT_EQ(refusal(text("")), "prompt: must not be empty");
  EXPECT_EQ(refusal(pb::GenerateRequest()), "input: set prompt, prompt_token_ids or chat");
  pb::GenerateRequest empty_ids;
  empty_ids.mutable_prompt_token_ids();
  EXPECT_EQ(refusal(empty_ids), "prompt_token_ids: must not be empty");

  auto r = text("hi");
  r.mutable_sampling()->set_temperature(-0.5f);
  EXPECT_EQ(refusal(r), "sampling.temperature: must be a finite number >= 0 (0 = greedy), got -0.5");
  r.mutable_sampling()->set_temperature(std::nanf(""));
  EXPECT_EQ(refusal(r).rfind("sampling.temperature: must be a finite number >= 0", 0), 0u);

  r = text("hi");
  r.mutable_sampling()->set_top_p(0.0f);
  EXPECT_EQ(refusal(r), "sampling.top_p: must be in (0, 1], got 0");
  r.mutable_sampling()->set_top_p(1.5f);
  EXPECT_EQ(refusal(r), "sampling.top_p: must be in (0, 1], got 1.5");
  r.mutable_sampling()->set_top_p(std::nanf(""));
  EXPECT_EQ(refusal(r).rfind("sampling.top_p: must be in (0, 1]", 0), 0u);

  r = text("hi");
  r.mutable_sampling()->set_repetition_penalty(0.0f);
  EXPECT_EQ(refusal(r), "sampling.repetition_penalty: must be a finite number > 0, got 0");

  r = text("hi");
  for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop("s" + std::to_string(i));
  EXPECT_EQ(refusal(r), "stopping.stop: at most 16 stop strings, got 17");
  r = text("hi");
  r.mutable_stopping()->add_stop("ok");
  r.mutable_stopping()->add_stop(std::string(257, 'x'));
  EXPECT_EQ(refusal(r), "stopping.stop[1]: at most 256 bytes, got 257");
  r = text("hi");
  r.mutable_stopping()->add_stop("");
  EXPECT_EQ(refusal(r), "stopping.stop[0]: must not be empty");

  r = text("hello");  // 6 tokens
  r.mutable_stopping()->set_max_new_tokens(27);
  EXPECT_EQ(refusal(r),
            "stopping.max_new_tokens: prompt (6 tokens) + max_new_tokens (27) = 33 exceeds the model context of 32 "
            "tokens");
  r.mutable_stopping()->set_max_new_tokens(26);
  EXPECT_EQ(refusal(r), "");

  EXPECT_EQ(refusal(text(std::string(32, 'a'))), "prompt: 33 tokens, over the limit of 32 (the model context)");
  EXPECT_EQ(refusal(text(std::string(31, 'a'))),
            "prompt: 32 tokens leave no room to generate in the model context of 32 tokens");
  limits.max_prompt_tokens = 8;
  EXPECT_EQ(refusal(text(std::string(8, 'a'))), "prompt: 9 tokens, over the limit of 8 (server.max_prompt_tokens)");
}

TEST_F(Validate, SamplingFieldsAreCheckedEvenWhenGreedy) {
  auto r = text("hi");
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_sampling()->set_top_p(-1.0f);
  EXPECT_EQ(refusal(r), "sampling.top_p: must be in (0, 1], got -1");
}

TEST_F(Validate, TextTheTokenizerRejectsIsInvalidArgument) {
  EXPECT_EQ(refusal(text("tab\there")), "prompt: CharTokenizer: only printable ASCII");
}

}  // namespace
}  // namespace zi::server
