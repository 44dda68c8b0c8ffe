// `zeroinfer tokenize --model DIR --text STR [--no-special]`: prints one JSON line
// {"ids": [...], "decoded": "..."} — ids as transformers' encode(text) (special tokens of the
// post-processor added unless --no-special), decoded as decode(ids, skip_special_tokens=False).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/tokenizer.h"
#include "server/cli/commands.h"

namespace zi::cli {

void register_tokenize(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("tokenize", "Tokenize text with a model folder's tokenizer.json");
  auto model = std::make_shared<std::string>();
  auto text = std::make_shared<std::string>();
  auto no_special = std::make_shared<bool>(false);
  cmd->add_option("--model", *model, "Model folder holding tokenizer.json (and tokenizer_config.json)")->required();
  cmd->add_option("--text", *text, "Text to encode")->required();
  cmd->add_flag("--no-special", *no_special, "Do not add the special tokens of the post-processor");
  cmd->callback([rc, model, text, no_special] {
    auto tok = Tokenizer::FromDir(*model);
    if (!tok.ok()) {
      std::fprintf(stderr, "zeroinfer: %s\n", std::string(tok.status().message()).c_str());
      *rc = 1;
      return;
    }
    auto ids = (*tok)->encode(*text, !*no_special);
    if (!ids.ok()) {
      std::fprintf(stderr, "zeroinfer: %s\n", std::string(ids.status().message()).c_str());
      *rc = 1;
      return;
    }
    nlohmann::ordered_json out;  // keys in the documented order: ids, then decoded
    out["ids"] = *ids;
    out["decoded"] = (*tok)->decode(*ids, /*skip_special_tokens=*/false);
    std::string line = out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    std::printf("%s\n", line.c_str());
    *rc = 0;
  });
}

}  // namespace zi::cli
