// Subcommands of the one `zeroinfer` binary. Each register_* adds its subcommand to `app`; when it runs, it
// stores its exit code in `*rc` (0 ok, 1 error, 2 bad usage). Results go to stdout, everything else to stderr.
#pragma once

#include <CLI/CLI.hpp>

namespace zi::cli {

void register_generate(CLI::App& app, int* rc);
void register_tokenize(CLI::App& app, int* rc);
void register_serve(CLI::App& app, int* rc);
void register_worker(CLI::App& app, int* rc);
void register_client(CLI::App& app, int* rc);
void register_plan(CLI::App& app, int* rc);
void register_bench(CLI::App& app, int* rc);
void register_convert(CLI::App& app, int* rc);

}  // namespace zi::cli
