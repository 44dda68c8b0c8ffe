// The bundled demo model (tools/demo_model/kjv-llama, what `make run` serves) against transformers: the prompts are
// tokenized as transformers did and the greedy continuations are the same token ids and text
// (tests/data/demo_reference.json, written by tools/demo_model/train.py on the GPU machine).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/runtime/engine_options.h"
#include "engine/tokenizer/tokenizer.h"

namespace zi {
namespace {

TEST(DemoModel, GreedyContinuationsEqualTransformers) {
  std::ifstream in(std::string(ZI_TEST_DATA) + "/demo_reference.json");
  ASSERT_TRUE(in);
  const nlohmann::json ref = nlohmann::json::parse(in);
  const std::string dir = std::string(ZI_SOURCE_DIR) + "/" + ref["model_dir"].get<std::string>();
  auto tok = Tokenizer::FromDir(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EngineOptions o;
  o.model_dir = dir;
  o.device = Device::kCpu;
  o.max_batch_size = 3;
  auto ex = create_executor(o);
  ASSERT_TRUE(ex.ok()) << ex.status();
  const auto& cases = ref["cases"];
  ASSERT_EQ(cases.size(), 3u);
  // All three prompts decode together in one batch, as the server would run them.
  StepInput in0;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto ids = (*tok)->encode(cases[i]["prompt"].get<std::string>(), true);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, cases[i]["prompt_ids"].get<std::vector<int32_t>>()) << cases[i]["prompt"];
    SeqStep s;
    s.seq_id = i + 1;
    s.first = true;
    s.tokens = *ids;
    in0.seqs.push_back(s);
  }
  std::vector<std::vector<int32_t>> got(cases.size());
  StepInput step = in0;
  const size_t n = ref["max_new_tokens"].get<size_t>();
  for (size_t t = 0; t < n; ++t) {
    auto out = (*ex)->step(step);
    ASSERT_TRUE(out.ok()) << out.status();
    for (size_t i = 0; i < cases.size(); ++i) {
      got[i].push_back(out->results[i].token);
      step.seqs[i].first = false;
      step.seqs[i].tokens = {out->results[i].token};
    }
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto want = cases[i]["greedy_ids"].get<std::vector<int32_t>>();
    const auto margin = cases[i]["top2_logit_margin"].get<std::vector<double>>();
    // Compare up to the first step where transformers' top two logits were closer than float32 noise.
    for (size_t t = 0; t < want.size(); ++t) {
      if (margin[t] < 1e-3) break;
      ASSERT_EQ(got[i][t], want[t]) << cases[i]["prompt"] << " step " << t;
    }
    EXPECT_EQ((*tok)->decode(got[i], false), cases[i]["text"].get<std::string>());
  }
}

}  // namespace
}  // namespace zi
