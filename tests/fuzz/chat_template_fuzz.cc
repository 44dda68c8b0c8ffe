// Fuzz target: chat templates (engine/tokenizer/chat_template.h), parsed and then rendered.
// Input: the template text, optionally followed by the line "#messages" and a JSON array of messages.
// Promises checked: an error names the template's source; a template that parses renders a few fixed
// conversations (and the input's own) either to valid UTF-8 within the output cap or to an error with a message,
// the same way twice (rendering is deterministic with a fixed clock), within a small step budget.
#include <cstdint>
#include <string>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/utf8.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using OJson = nlohmann::ordered_json;

void check_render(const zi::tok::ChatTemplate& t, const OJson& messages) {
  zi::tok::ChatRenderOptions o;
  o.bos_token = "<s>";
  o.eos_token = "</s>";
  o.max_steps = 50000;  // keeps each input fast; the cap itself is what is being exercised
  o.now = [] {
    std::tm tm{};
    tm.tm_year = 124;
    tm.tm_mon = 6;
    tm.tm_mday = 26;
    return tm;
  };
  auto a = t.Render(messages, o);
  auto b = t.Render(messages, o);
  FUZZ_CHECK(a.ok() == b.ok(), "render is not deterministic");
  if (!a.ok()) {
    FUZZ_CHECK(!a.status().message().empty(), "a render error without a message");
    FUZZ_CHECK(a.status().message() == b.status().message(), "render error is not deterministic");
    return;
  }
  FUZZ_CHECK(*a == *b, "render output is not deterministic");
  FUZZ_CHECK(zi::tok::is_valid_utf8(*a), "rendered prompt is not valid UTF-8");
  FUZZ_CHECK(a->size() <= (64u << 20), "rendered prompt over the output cap: %zu bytes", a->size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto [text, messages_text] = zi::fuzz::split_once(zi::fuzz::as_text(data, size), "\n#messages\n");
  auto t = zi::tok::ChatTemplate::Parse(text, "fuzz.jinja");
  if (!t.ok()) {
    FUZZ_CHECK(t.status().message().find("fuzz.jinja") != std::string::npos, "parse error does not name the source");
    return 0;
  }
  static const OJson kConversations[] = {
      OJson::array(),
      OJson::parse(R"([{"role": "user", "content": "Hello"}])"),
      OJson::parse(R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "caf\u00e9 \ud83d\ude00"},
                       {"role": "assistant", "content": "  ok  "}, {"role": "user", "content": "{{ x }}"}])"),
  };
  for (const OJson& m : kConversations) check_render(*t, m);
  if (!messages_text.empty()) {
    OJson m = OJson::parse(messages_text.begin(), messages_text.end(), nullptr, /*allow_exceptions=*/false);
    if (!m.is_discarded()) check_render(*t, m);
  }
  return 0;
}
