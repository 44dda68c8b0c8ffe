// Chat templates (engine/tokenizer/chat_template.h) against the references of tests/data/chat_templates/
// expected.json, written by tools/reference/chat_templates.py (its "generator" field names the engine:
// transformers' apply_chat_template, or jinja2 with transformers' environment replicated):
//   - every fixture template x every conversation of conversations.json, byte for byte (or the same error);
//   - the one-construct templates of constructs.json, byte for byte (or an error where Jinja raised one);
// plus what the references cannot show: refusals at Parse (naming construct, source and line), the
// raise_exception message, strftime_now, and the API's input checks.
#include "engine/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace zi::tok {
namespace {

using OJson = nlohmann::ordered_json;

std::string data_dir() { return std::string(ZI_TEST_DATA) + "/chat_templates"; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

OJson read_json(const std::string& name) { return OJson::parse(read_file(data_dir() + "/" + name)); }

std::string show(const std::string& s) { return OJson(s).dump(); }

// An expected error: the render must fail, and where the template itself raised, with its message.
void expect_error(const StatusOr<std::string>& got, const OJson& error, const std::string& what) {
  ASSERT_FALSE(got.ok()) << what << ": expected " << error.dump() << ", rendered " << show(*got);
  if (error["type"] == "raise_exception") {
    EXPECT_NE(got.status().message().find("raise_exception: " + error["message"].get<std::string>()),
              std::string::npos)
        << what << ": " << got.status();
  }
}

TEST(ChatTemplateFixtures, EveryConversationMatchesTheReference) {
  OJson spec = read_json("conversations.json");
  OJson expected = read_json("expected.json");
  ASSERT_FALSE(expected["generator"].get<std::string>().empty());
  std::map<std::string, OJson> templates, conversations;
  for (const OJson& t : spec["templates"]) templates[t["file"]] = t;
  for (const OJson& c : spec["conversations"]) conversations[c["name"]] = c;
  ASSERT_EQ(expected["cases"].size(), templates.size() * conversations.size()) << "expected.json is stale";

  std::map<std::string, ChatTemplate> parsed;
  for (const auto& [file, t] : templates) {
    auto tmpl = ChatTemplate::Parse(read_file(data_dir() + "/" + file), file);
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    parsed.emplace(file, *tmpl);
  }
  int outputs = 0;
  for (const OJson& c : expected["cases"]) {
    const std::string file = c["template"], name = c["conversation"];
    const std::string what = file + " x " + name;
    ASSERT_TRUE(templates.count(file) && conversations.count(name)) << what;
    const OJson& t = templates[file];
    const OJson& conv = conversations[name];
    ChatRenderOptions o;
    o.bos_token = t["bos_token"].is_null() ? "" : t["bos_token"].get<std::string>();
    o.eos_token = t["eos_token"];
    o.add_generation_prompt = c["add_generation_prompt"];
    if (conv.contains("tools")) o.extra["tools"] = conv["tools"];
    auto got = parsed.at(file).Render(conv["messages"], o);
    if (c.contains("error")) {
      expect_error(got, c["error"], what);
      continue;
    }
    ASSERT_TRUE(got.ok()) << what << ": " << got.status();
    EXPECT_EQ(*got, c["output"].get<std::string>()) << what << "\n got:  " << show(*got)
                                                    << "\n want: " << c["output"].dump();
    ++outputs;
  }
  EXPECT_GE(outputs, 70);
}

TEST(ChatTemplateConstructs, EachMatchesTheReference) {
  OJson spec = read_json("constructs.json");
  OJson expected = read_json("expected.json")["constructs"];
  ASSERT_EQ(spec["constructs"].size(), expected.size()) << "expected.json is stale";
  for (size_t k = 0; k < expected.size(); ++k) {
    const OJson& c = spec["constructs"][k];
    const OJson& want = expected[k];
    const std::string name = c["name"];
    ASSERT_EQ(want["name"], name);
    auto tmpl = ChatTemplate::Parse(c["template"].get<std::string>(), "constructs.json");
    ASSERT_TRUE(tmpl.ok()) << name << ": " << tmpl.status();
    ChatRenderOptions o;
    o.extra = c["context"];
    // The references render constructs with only their own variables: no messages, tokens or tools.
    OJson messages = c["context"].contains("messages") ? c["context"]["messages"] : OJson::array();
    auto got = tmpl->Render(messages, o);
    if (want.contains("error")) {
      expect_error(got, want["error"], name);
      continue;
    }
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    EXPECT_EQ(*got, want["output"].get<std::string>()) << name << "\n got:  " << show(*got)
                                                       << "\n want: " << want["output"].dump();
  }
}

// ------------------------------------------------------------------------------------------------- refusals

void expect_refused(const std::string& text, const std::string& construct, int line) {
  auto t = ChatTemplate::Parse(text, "model/tokenizer_config.json");
  ASSERT_FALSE(t.ok()) << "parsed: " << text;
  const std::string msg(t.status().message());
  EXPECT_NE(msg.find(construct), std::string::npos) << msg;
  EXPECT_NE(msg.find("model/tokenizer_config.json:" + std::to_string(line) + ":"), std::string::npos) << msg;
}

TEST(ChatTemplateRefusals, ConstructsOutsideTheSubsetNameWhatAndWhere) {
  expect_refused("{% macro m(x) %}{{ x }}{% endmacro %}", "unsupported tag 'macro'", 1);
  expect_refused("a\nb\n{% include 'other.jinja' %}", "unsupported tag 'include'", 3);
  expect_refused("{% raw %}{{ x }}{% endraw %}", "unsupported tag 'raw'", 1);
  expect_refused("{% do xs.append(1) %}", "unsupported tag 'do'", 1);
  expect_refused("{% frobnicate %}", "unknown tag 'frobnicate'", 1);
  expect_refused("\n{{ messages | dictsort }}", "unsupported filter 'dictsort'", 2);
  expect_refused("{{ x | nosuchfilter }}", "unsupported filter 'nosuchfilter'", 1);
  expect_refused("{% if x is nosuchtest %}{% endif %}", "unsupported test 'is nosuchtest'", 1);
  expect_refused("{{ 'a'.center(9) }}", "unsupported method '.center()'", 1);
  expect_refused("{% for m in messages %}{{ loop.cycle('a', 'b') }}{% endfor %}", "unsupported method '.cycle()'", 1);
  expect_refused("{{ lipsum(2) }}", "unsupported function 'lipsum()'", 1);
  expect_refused("{% for x in xs recursive %}{% endfor %}", "unsupported recursive for loop", 1);
  expect_refused("{{ f(*args) }}", "unsupported function 'f()'", 1);
}

TEST(ChatTemplateRefusals, SyntaxErrorsNameTheLine) {
  expect_refused("{% if x %}\nno end", "expected 'elif' or 'else' or 'endif'", 2);
  expect_refused("{{ 'unterminated }}", "unterminated string literal", 1);
  expect_refused("\n\n{{ x + }}", "expected an expression", 3);
  expect_refused("{{ (1 }}", "unexpected '}'", 1);
  expect_refused("{{ (1 ] }}", "unexpected ']'", 1);
  expect_refused("{% if (1 %}{% endif %}", "unexpected '}'", 1);
  expect_refused("{# never closed", "missing end of comment tag", 1);
  expect_refused("{% break %}", "'break' outside a for loop", 1);
  expect_refused("{% set true = 1 %}", "cannot assign to 'true'", 1);
  expect_refused("{{ x ! y }}", "unexpected char '!'", 1);
  expect_refused("{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}", "nested too deeply", 1);
  expect_refused("{{ " + std::string(300, '[') + std::string(300, ']') + " }}", "nested too deeply", 1);
  std::string nots;
  for (int k = 0; k < 300; ++k) nots += "not ";
  expect_refused("{{ " + nots + "x }}", "nested too deeply", 1);
  auto bad = ChatTemplate::Parse("caf\xC3", "t.jinja");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not valid UTF-8"), std::string::npos);
}

TEST(ChatTemplateRender, RaiseExceptionNamesTheMessageSourceAndLine) {
  auto t = ChatTemplate::Parse("line one\n{{ raise_exception('Only user and assistant roles are supported!') }}",
                               "mistral/tokenizer_config.json");
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = t->Render(std::vector<ChatMessage>{{"user", "hi"}}, "<s>", "</s>", true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "chat template mistral/tokenizer_config.json:2: raise_exception: Only user and assistant roles are "
            "supported!");
}

TEST(ChatTemplateRender, RuntimeErrorsNameTheLine) {
  auto t = ChatTemplate::Parse("{% for m in messages %}\n{{ m.content + 1 }}\n{% endfor %}", "t.jinja");
  ASSERT_TRUE(t.ok());
  auto r = t->Render(std::vector<ChatMessage>{{"user", "hi"}}, "", "", true);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("t.jinja:2: TypeError: can only concatenate str"), std::string::npos)
      << r.status();
}

TEST(ChatTemplateRender, StrftimeNowFormatsTheClock) {
  auto t = ChatTemplate::Parse("{{ strftime_now('%d %b %Y') }}", "t.jinja");
  ASSERT_TRUE(t.ok());
  ChatRenderOptions o;
  o.now = [] {
    std::tm tm{};
    tm.tm_year = 2024 - 1900;
    tm.tm_mon = 6;
    tm.tm_mday = 26;
    return tm;
  };
  auto r = t->Render(OJson::array(), o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "26 Jul 2024");
  // Without a clock: the local time now (just check the shape).
  auto now = t->Render(OJson::array(), ChatRenderOptions{});
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->size(), 11u) << *now;
}

TEST(ChatTemplateRender, ChatMessagesEqualTheirJson) {
  auto t = ChatTemplate::Parse(read_file(data_dir() + "/qwen2.5-instruct.jinja"), "qwen");
  ASSERT_TRUE(t.ok());
  std::vector<ChatMessage> msgs = {{"system", "S"}, {"user", "héllo"}};
  OJson j = OJson::array({{{"role", "system"}, {"content", "S"}}, {{"role", "user"}, {"content", "héllo"}}});
  auto a = t->Render(msgs, "", "<|im_end|>", true);
  auto b = t->Render(j, "", "<|im_end|>", true);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(*a, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhéllo<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateRender, RejectsBadInput) {
  auto t = ChatTemplate::Parse("{{ messages | length }}", "t");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->Render(OJson::object(), "", "", true).ok());
  EXPECT_FALSE(t->Render(std::vector<ChatMessage>{{"user", "bad \xFF utf8"}}, "", "", true).ok());
  EXPECT_FALSE(t->Render(OJson::array(), "\xC3", "", true).ok());
}

TEST(ChatTemplateRender, BoundedWork) {
  // Nested loops beyond the step budget, and output beyond the size cap, fail instead of running on.
  auto loops = ChatTemplate::Parse(
      "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}", "t");
  ASSERT_TRUE(loops.ok());
  ChatRenderOptions o;
  o.max_steps = 20000;
  auto r = loops->Render(OJson::array(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("too expensive"), std::string::npos) << r.status();
  auto big = ChatTemplate::Parse("{{ 'x' * 100000000 }}", "t");
  ASSERT_TRUE(big.ok());
  EXPECT_FALSE(big->Render(OJson::array(), "", "", true).ok());
}

}  // namespace
}  // namespace zi::tok
