// Engine layering (issue 18): every include in engine/ points down the order in engine/layers.txt. This library
// parses that table and scans a tree's engine sources; check_layers (CTest layering_check) is its command line and
// tests/unit/layering_test.cc plants one upward include per layer pair to see each caught.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace zi::layering {

// The checked-in table: which lower layers each layer may include.
struct Table {
  std::string source;                                   // how messages name the table, e.g. "engine/layers.txt"
  std::vector<std::string> layers;                      // in table order, lowest first
  std::map<std::string, std::vector<std::string>> lower;  // layer → the lower layers it lists, as written

  bool has(std::string_view layer) const;
  // A layer may always include itself; otherwise only what its line lists.
  bool allows(std::string_view from, std::string_view to) const;
};

// Parses the table's text; `source` names it in errors ("engine/layers.txt:7: ..."). False with *error set on a
// malformed line, a duplicate layer, or a lower layer not declared on an earlier line (which keeps it acyclic).
bool parse_table(std::string_view text, std::string source, Table* table, std::string* error);
bool load_table(const std::filesystem::path& path, std::string source, Table* table, std::string* error);

enum class Kind {
  kNotAllowed,          // an include of a known layer the table does not allow: upward or sideways
  kUnknownIncludedLayer,  // an include of engine/<x>/... where x is not in the table
  kUnknownSourceLayer,  // a source in an engine folder not in the table (or directly in engine/)
};

struct Violation {
  Kind kind = Kind::kNotAllowed;
  std::string file;     // relative to the root, '/'-separated: engine/model/model.h
  int line = 0;         // 1-based; 0 for kUnknownSourceLayer, which is about the whole file
  std::string from;     // the source's layer
  std::string to;       // the included layer ("" for kUnknownSourceLayer, or an include of a file directly in engine/)
  std::string include;  // the directive, normalised: #include "engine/runtime/kv_cache.h"
};

struct Report {
  int files = 0;     // engine sources scanned (*.h, *.cc, *.cu, *.cuh)
  int includes = 0;  // includes that reach into engine/, by "engine/..." or by a path relative to the source
  std::vector<Violation> violations;  // in file order, then line order
};

// Scans root/engine recursively. False with *error set when root/engine is not a directory or a source can't be read.
bool scan(const std::filesystem::path& root, const Table& table, Report* report, std::string* error);

// One line for a violation, e.g.
//   engine/model/model.h:12: model -> runtime (#include "engine/runtime/kv_cache.h") is not an allowed edge
//   (engine/layers.txt: model may include core io quant backend)
std::string describe(const Violation& v, const Table& table);

// The whole of `check_layers ROOT [TABLE]` (args without the program name): the summary to `out`, each violation
// to `err`. Returns the exit status: 0 clean, 1 violations, 2 bad usage, a missing root or a bad table.
int run_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace zi::layering
