// Shared helpers of the fuzz targets (tests/fuzz/*_fuzz.cc). Each target defines LLVMFuzzerTestOneInput and is
// built twice: as a libFuzzer binary (clang, -DZEROINFER_FUZZ=ON, `make fuzz`) and as a plain replay driver
// (replay_main.cc, any compiler) that `make test` runs over tests/fuzz/corpus/<target>/.
//
// A target checks more than "no crash": where the code under test promises something (an accepted safetensors
// header describes bytes inside the file, decode() is valid UTF-8, ...), FUZZ_CHECK aborts when it does not hold,
// so libFuzzer records the input and the replay test fails.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                             \
      std::fprintf(stderr, "\n");                                                    \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

namespace zi::fuzz {

// A private folder under $TMPDIR made once per process (fuzzers run millions of inputs: no mkdtemp each time),
// removed at exit.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "zi_fuzz_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    static std::string keep = tmpl;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return tmpl;
  }();
  return dir;
}

inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  FUZZ_CHECK(out.good(), "cannot write %s", path.c_str());
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// Splits `in` at the first occurrence of `sep`: {before, after}; after is empty (and *found false) without one.
inline std::pair<std::string_view, std::string_view> split_once(std::string_view in, std::string_view sep,
                                                                bool* found = nullptr) {
  size_t p = in.find(sep);
  if (found) *found = p != std::string_view::npos;
  if (p == std::string_view::npos) return {in, std::string_view()};
  return {in.substr(0, p), in.substr(p + sep.size())};
}

}  // namespace zi::fuzz
