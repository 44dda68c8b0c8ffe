// `zeroinfer`: one binary, subcommands (serve, worker, generate, tokenize, client, plan, bench, convert).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "server/cli/commands.h"

namespace {

// Every flag accepts `_` and `-` spellings (--quant_bits = --quant-bits): options are declared with `-`,
// and the name part of each `--long_flag[=value]` argument is rewritten before parsing.
std::vector<std::string> normalize_flags(int argc, char** argv) {
  std::vector<std::string> out;
  bool after_dashdash = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") after_dashdash = true;
    if (!after_dashdash && i > 0 && a.size() > 2 && a[0] == '-' && a[1] == '-') {
      size_t end = a.find('=');
      if (end == std::string::npos) end = a.size();
      for (size_t k = 2; k < end; ++k)
        if (a[k] == '_') a[k] = '-';
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zeroinfer: serve LLMs larger than GPU memory (ZeRO-Inference style weight streaming)"};
  app.require_subcommand(1);
  int rc = 0;
  zi::cli::register_serve(app, &rc);
  zi::cli::register_worker(app, &rc);
  zi::cli::register_generate(app, &rc);
  zi::cli::register_tokenize(app, &rc);
  zi::cli::register_client(app, &rc);
  zi::cli::register_plan(app, &rc);
  zi::cli::register_bench(app, &rc);
  zi::cli::register_convert(app, &rc);

  std::vector<std::string> args = normalize_flags(argc, argv);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  try {
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "zeroinfer: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zeroinfer: error: %s\n", e.what());
    return 1;
  }
  return rc;
}
