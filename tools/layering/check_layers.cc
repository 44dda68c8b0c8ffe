// check_layers ROOT [TABLE]: fails (exit 1) when an engine source includes a layer its row in TABLE (default
// ROOT/engine/layers.txt) does not allow. `make test` runs it on the tree as CTest layering_check (issue 18).
#include <iostream>
#include <string>
#include <vector>

#include "tools/layering/layering.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return zi::layering::run_check(args, std::cout, std::cerr);
}
