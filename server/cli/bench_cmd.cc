// `zeroinfer bench`: not built yet (placeholder until its issue lands; exits 2 so nothing mistakes it for success).
#include <cstdio>

#include "server/cli/commands.h"

namespace zi::cli {

void register_bench(CLI::App& app, int* rc) {
  auto* cmd = app.add_subcommand("bench", "(not available yet)");
  cmd->allow_extras();
  cmd->callback([rc] {
    std::fprintf(stderr, "zeroinfer: 'bench' is not available in this build yet\n");
    *rc = 2;
  });
}

}  // namespace zi::cli
