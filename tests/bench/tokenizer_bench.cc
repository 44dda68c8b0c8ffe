// Tokenizer throughput (Google Benchmark): encode and decode of ~4 MiB of mixed text (English prose,
// C++/Python code, CJK, emoji, numbers), generated deterministically here; the 1 MiB repeated-character
// inputs; streaming detokenization per token. Bytes/s are of the UTF-8 text.
//   build-tok/tests/tokenizer_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace zi {
namespace {

constexpr size_t kMixedBytes = 4 << 20;
constexpr size_t kLongBytes = 1 << 20;

const Tokenizer& tokenizer(const std::string& name) {
  static std::unique_ptr<Tokenizer> gpt2, spbpe;
  auto& slot = name == "gpt2" ? gpt2 : spbpe;
  if (!slot) {
    auto t = Tokenizer::FromDir(std::string(ZI_TEST_DATA) + "/tokenizers/" + name);
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
      std::abort();
    }
    slot = std::move(t).value();
  }
  return *slot;
}

// Paragraphs drawn with a fixed seed from four kinds of text, until `bytes` are reached.
std::string mixed_text(size_t bytes) {
  static const char* kEnglish[] = {"the", "model", "streams", "weights", "from", "NVMe", "to", "GPU", "memory",
                                   "while", "tokens", "are", "generated", "quickly", "and", "batched", "requests",
                                   "wait", "in", "a", "queue", "Inference", "ZeRO", "offload", "layer", "by"};
  static const char* kCode[] = {
      "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n",
      "def forward(self, x):\n    return self.proj(torch.relu(x)) + x\n",
      "if (!status.ok()) return status;  // propagate\n",
      "    std::vector<int32_t> ids = tok->encode(text, true).value();\n",
      "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;\n"};
  static const char* kCjk[] = {"日本語のテキストです。", "中文字符测试，模型推理。", "한국어 문장입니다.",
                               "東京は大きな都市です。", "我们在GPU上运行大模型。"};
  static const char* kEmoji[] = {"👍🏽", "🚀", "✨", "👨‍👩‍👧", "😀", "🇯🇵", "🔥", "❤️"};
  std::mt19937 rng(20261125);
  std::string out;
  out.reserve(bytes + 256);
  while (out.size() < bytes) {
    switch (rng() % 4) {
      case 0:
        for (int w = 0, n = 8 + rng() % 24; w < n; ++w) {
          out += kEnglish[rng() % std::size(kEnglish)];
          out += (rng() % 9 == 0) ? ", " : " ";
        }
        out += std::to_string(rng() % 100000) + ".\n";
        break;
      case 1: out += kCode[rng() % std::size(kCode)]; break;
      case 2: out += kCjk[rng() % std::size(kCjk)]; break;
      default:
        out += kEmoji[rng() % std::size(kEmoji)];
        out += ' ';
    }
  }
  return out;
}

const std::string& mixed() {
  static const std::string s = mixed_text(kMixedBytes);
  return s;
}

void BM_Encode(benchmark::State& state, const std::string& name, const std::string* text) {
  const Tokenizer& tok = tokenizer(name);
  size_t n_ids = 0;
  for (auto _ : state) {
    auto ids = tok.encode(*text, true);
    if (!ids.ok()) state.SkipWithError("encode failed");
    n_ids = ids->size();
    benchmark::DoNotOptimize(ids->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text->size()));
  state.counters["tokens"] = static_cast<double>(n_ids);
}

void BM_Decode(benchmark::State& state, const std::string& name) {
  const Tokenizer& tok = tokenizer(name);
  const std::vector<int32_t> ids = tok.encode(mixed(), true).value();
  for (auto _ : state) {
    std::string s = tok.decode(ids, false);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * mixed().size()));
}

// Streaming: one push() per token over the first 64 KiB of the mixed text.
void BM_StreamDecode(benchmark::State& state, const std::string& name) {
  const Tokenizer& tok = tokenizer(name);
  const std::string text = mixed().substr(0, 64 << 10);
  const std::vector<int32_t> ids = tok.encode(text, false).value();
  for (auto _ : state) {
    IncrementalDetokenizer d(tok, false);
    size_t n = 0;
    for (int32_t id : ids) n += d.push(id).size();
    n += d.flush().size();
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * ids.size()),
                                                  benchmark::Counter::kIsRate);
}

const std::string* repeated(const char* unit) {
  static std::vector<std::unique_ptr<std::string>> keep;
  auto s = std::make_unique<std::string>();
  while (s->size() < kLongBytes) *s += unit;
  keep.push_back(std::move(s));
  return keep.back().get();
}

BENCHMARK_CAPTURE(BM_Encode, gpt2_mixed_4MiB, std::string("gpt2"), &mixed())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, spbpe_mixed_4MiB, std::string("spbpe"), &mixed())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, gpt2_mixed_4MiB, std::string("gpt2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, spbpe_mixed_4MiB, std::string("spbpe"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_StreamDecode, gpt2_64KiB, std::string("gpt2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_StreamDecode, spbpe_64KiB, std::string("spbpe"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, gpt2_1MiB_of_a, std::string("gpt2"), repeated("a"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, spbpe_1MiB_of_a, std::string("spbpe"), repeated("a"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, gpt2_1MiB_of_space, std::string("gpt2"), repeated(" "))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, spbpe_1MiB_of_cjk, std::string("spbpe"), repeated("日"))->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace zi
