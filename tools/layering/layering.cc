#include "tools/layering/layering.h"

#include <algorithm>
#include <fstream>
#include <ostream>
#include <sstream>
#include <system_error>

namespace zi::layering {
namespace fs = std::filesystem;

namespace {

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Layer names are folder names; anything else on a line is a typo worth stopping on.
bool valid_name(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

std::string at(const std::string& source, int line) { return source + ":" + std::to_string(line) + ": "; }

// An #include directive: '#', optional blanks, "include", optional blanks, then "path" or <path>.
struct Directive {
  std::string path;
  bool quoted = false;
};

bool parse_include(std::string_view line, Directive* d) {
  size_t i = line.find_first_not_of(" \t");
  if (i == std::string_view::npos || line[i] != '#') return false;
  i = line.find_first_not_of(" \t", i + 1);
  if (i == std::string_view::npos || line.substr(i, 7) != "include") return false;
  i = line.find_first_not_of(" \t", i + 7);
  if (i == std::string_view::npos || (line[i] != '"' && line[i] != '<')) return false;
  char close = line[i] == '"' ? '"' : '>';
  size_t end = line.find(close, i + 1);
  if (end == std::string_view::npos) return false;
  d->path = std::string(line.substr(i + 1, end - i - 1));
  d->quoted = close == '"';
  return true;
}

// The layer of a root-relative path engine/<layer>/...; "" for a file directly in engine/. False when the path is
// not under engine/ at all.
bool layer_of(const fs::path& rel, std::string* layer) {
  auto it = rel.begin();
  if (it == rel.end() || *it != "engine") return false;
  ++it;
  if (it == rel.end()) return false;
  fs::path first = *it;
  layer->clear();
  if (++it != rel.end()) *layer = first.string();  // more below it: `first` is a folder, the layer
  return true;
}

// Where an include lands inside the tree: "engine/..." by the project's include root, or (quoted only) a path the
// compiler would find beside the source first, e.g. "../runtime/x.h", which must not slip past the check.
bool included_layer(const Directive& d, const fs::path& source_dir, const fs::path& canon_root, std::string* layer) {
  if (d.path.rfind("engine/", 0) == 0) return layer_of(fs::path(d.path).lexically_normal(), layer);
  if (!d.quoted) return false;
  std::error_code ec;
  fs::path candidate = source_dir / d.path;
  if (!fs::is_regular_file(candidate, ec)) return false;
  fs::path canon = fs::weakly_canonical(candidate, ec);
  if (ec) return false;
  return layer_of(canon.lexically_relative(canon_root), layer);
}

bool is_source(const fs::path& p) {
  std::string ext = p.extension().string();
  return ext == ".h" || ext == ".cc" || ext == ".cu" || ext == ".cuh";
}

}  // namespace

bool Table::has(std::string_view layer) const { return lower.find(std::string(layer)) != lower.end(); }

bool Table::allows(std::string_view from, std::string_view to) const {
  if (from == to) return true;
  auto it = lower.find(std::string(from));
  if (it == lower.end()) return false;
  return std::find(it->second.begin(), it->second.end(), to) != it->second.end();
}

bool parse_table(std::string_view text, std::string source, Table* table, std::string* error) {
  Table t;
  t.source = std::move(source);
  std::map<std::string, int> declared_on;  // layer → its line, to name both lines of a duplicate
  int n = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view raw = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++n;
    std::string_view line = trim(raw.substr(0, raw.find('#')));
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      *error = at(t.source, n) + "expected 'layer: lower layers...', got '" + std::string(line) + "'";
      return false;
    }
    std::string name(trim(line.substr(0, colon)));
    if (!valid_name(name)) {
      *error = at(t.source, n) + "'" + name + "' is not a layer name (a folder under engine/)";
      return false;
    }
    if (auto d = declared_on.find(name); d != declared_on.end()) {
      *error = at(t.source, n) + "layer " + name + " is declared twice (first on line " + std::to_string(d->second) +
               ")";
      return false;
    }
    std::vector<std::string> deps;
    std::istringstream words{std::string(line.substr(colon + 1))};
    for (std::string dep; words >> dep;) {
      std::string why;
      if (!valid_name(dep)) {
        why = "'" + dep + "' is not a layer name";
      } else if (dep == name) {
        why = name + " lists itself; a layer may always include its own files, so leave it out";
      } else if (!declared_on.count(dep)) {
        // Only earlier lines may be listed: that is what keeps the order one-way (no cycle can be written).
        why = name + " lists " + dep +
              ", which is not declared on an earlier line (a layer lists only layers below it)";
      } else if (std::find(deps.begin(), deps.end(), dep) != deps.end()) {
        why = name + " lists " + dep + " twice";
      }
      if (!why.empty()) {
        *error = at(t.source, n) + why;
        return false;
      }
      deps.push_back(dep);
    }
    declared_on[name] = n;
    t.layers.push_back(name);
    t.lower[name] = std::move(deps);
  }
  if (t.layers.empty()) {
    *error = t.source + ": declares no layers";
    return false;
  }
  *table = std::move(t);
  return true;
}

bool load_table(const fs::path& path, std::string source, Table* table, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = source + ": cannot be read (" + path.string() + ")";
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_table(text.str(), std::move(source), table, error);
}

bool scan(const fs::path& root, const Table& table, Report* report, std::string* error) {
  std::error_code ec;
  fs::path engine = root / "engine";
  if (!fs::is_directory(engine, ec)) {
    *error = engine.string() + ": not a directory";
    return false;
  }
  fs::path canon_root = fs::weakly_canonical(root, ec);
  if (ec) {
    *error = root.string() + ": " + ec.message();
    return false;
  }
  std::vector<fs::path> files;
  for (fs::recursive_directory_iterator it(engine, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && is_source(it->path())) files.push_back(it->path());
  }
  if (ec) {
    *error = engine.string() + ": " + ec.message();
    return false;
  }
  std::sort(files.begin(), files.end());  // stable output whatever order the file system lists

  Report r;
  for (const fs::path& path : files) {
    std::string rel = path.lexically_relative(root).generic_string();
    std::string from;
    layer_of(fs::path(rel), &from);
    // A source outside any known layer is one error for the file; its includes have no row to be checked against.
    bool known = table.has(from);
    if (!known) r.violations.push_back({Kind::kUnknownSourceLayer, rel, 0, from, "", ""});
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      *error = rel + ": cannot be read";
      return false;
    }
    ++r.files;
    int n = 0;
    for (std::string line; std::getline(in, line);) {
      ++n;
      Directive d;
      std::string to;
      if (!parse_include(line, &d) || !included_layer(d, path.parent_path(), canon_root, &to)) continue;
      ++r.includes;
      if (!known || table.allows(from, to)) continue;
      Kind kind = table.has(to) ? Kind::kNotAllowed : Kind::kUnknownIncludedLayer;
      std::string directive = d.quoted ? "#include \"" + d.path + "\"" : "#include <" + d.path + ">";
      r.violations.push_back({kind, rel, n, from, to, directive});
    }
  }
  *report = std::move(r);
  return true;
}

std::string describe(const Violation& v, const Table& table) {
  switch (v.kind) {
    case Kind::kNotAllowed: {
      std::string may;
      for (const std::string& l : table.lower.at(v.from)) may += " " + l;
      if (may.empty()) may = " no other layer";
      return at(v.file, v.line) + v.from + " -> " + v.to + " (" + v.include + ") is not an allowed edge (" +
             table.source + ": " + v.from + " may include" + may + ")";
    }
    case Kind::kUnknownIncludedLayer:
      if (v.to.empty()) {
        return at(v.file, v.line) + v.from + " -> ? (" + v.include +
               ") names a file directly in engine/, which is in no layer; engine files live in engine/<layer>/";
      }
      return at(v.file, v.line) + v.from + " -> " + v.to + " (" + v.include + "): " + v.to + " is not a layer in " +
             table.source + "; add its folder to the table at its place in the order";
    case Kind::kUnknownSourceLayer:
      if (v.from.empty()) return v.file + ": a source directly in engine/ is in no layer; move it into engine/<layer>/";
      return v.file + ": " + v.from + " is not a layer in " + table.source +
             "; add the folder to the table at its place in the order";
  }
  return v.file;
}

int run_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.size() != 1 && args.size() != 2) {
    err << "usage: check_layers ROOT [TABLE]   (TABLE defaults to ROOT/engine/layers.txt)\n";
    return 2;
  }
  fs::path root = args[0];
  std::error_code ec;
  if (!fs::is_directory(root / "engine", ec)) {
    err << "check_layers: " << (root / "engine").string() << " is not a directory\n";
    return 2;
  }
  // Name the default table as the tree does, so messages read the same whatever ROOT was given as.
  fs::path table_path = args.size() == 2 ? fs::path(args[1]) : root / "engine" / "layers.txt";
  std::string source = args.size() == 2 ? args[1] : "engine/layers.txt";
  Table table;
  Report report;
  std::string error;
  if (!load_table(table_path, source, &table, &error) || !scan(root, table, &report, &error)) {
    err << "check_layers: " << error << "\n";
    return 2;
  }
  size_t upward = std::count_if(report.violations.begin(), report.violations.end(),
                                [](const Violation& v) { return v.kind == Kind::kNotAllowed; });
  size_t unknown = report.violations.size() - upward;
  out << "layering: " << report.files << " engine sources, " << report.includes << " engine includes, " << upward
      << " upward";
  if (unknown) out << ", " << unknown << " in unknown layers";
  out << "\n";
  for (const Violation& v : report.violations) err << describe(v, table) << "\n";
  return report.violations.empty() ? 0 : 1;
}

}  // namespace zi::layering
