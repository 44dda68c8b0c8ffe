// Fuzz target: the safetensors reader (engine/io/safetensors.h) on arbitrary file images, from a buffer
// (parse_safetensors) and from a file (SafetensorsFile::Open: fstat + mmap + the same parse).
// Promises checked on every accepted image: each tensor's bytes lie inside the data buffer, its byte count is
// numel × dtype size, the tensors tile the buffer exactly, and the file path finds the same tensors.
#include <cstdint>
#include <cstring>
#include <map>
#include <numeric>
#include <span>
#include <string>

#include "engine/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zi;
  std::span<const uint8_t> bytes(data, size);
  std::map<std::string, std::string> metadata;
  auto parsed = parse_safetensors(bytes, "fuzz.safetensors", &metadata);
  if (parsed.ok()) {
    uint64_t header_len = 0;
    std::memcpy(&header_len, data, 8);
    const uint8_t* buffer = data + 8 + header_len;
    const uint64_t buffer_size = size - 8 - header_len;
    uint64_t covered = 0;
    for (const TensorInfo& t : *parsed) {
      FUZZ_CHECK(t.data == buffer + t.begin, "tensor %s: data pointer is not buffer + begin", t.name.c_str());
      FUZZ_CHECK(t.begin <= buffer_size && t.nbytes <= buffer_size - t.begin, "tensor %s: [%llu, +%llu) outside %llu",
                 t.name.c_str(), (unsigned long long)t.begin, (unsigned long long)t.nbytes,
                 (unsigned long long)buffer_size);
      unsigned __int128 numel = 1;
      for (int64_t d : t.shape) {
        FUZZ_CHECK(d >= 0, "tensor %s: negative dimension", t.name.c_str());
        numel *= static_cast<uint64_t>(d);
      }
      // numel can exceed 2^64 only when a dimension is 0 somewhere else; then nbytes is 0 as well.
      FUZZ_CHECK(numel * dtype_size(t.dtype) == t.nbytes || t.nbytes == 0, "tensor %s: nbytes %llu != numel x size",
                 t.name.c_str(), (unsigned long long)t.nbytes);
      covered += t.nbytes;
      // Touch every byte: an out-of-bounds span is an ASan report here rather than later in a forward pass.
      volatile uint8_t sink = 0;
      for (uint64_t i = 0; i < t.nbytes; ++i) sink = sink ^ t.data[i];
      (void)sink;
    }
    FUZZ_CHECK(covered == buffer_size, "tensors cover %llu of %llu buffer bytes", (unsigned long long)covered,
               (unsigned long long)buffer_size);
  }

  // The file path: the same verdict and the same tensors through the mmap.
  const std::string path = zi::fuzz::scratch_dir() + "/model.safetensors";
  zi::fuzz::write_file(path, zi::fuzz::as_text(data, size));
  auto file = SafetensorsFile::Open(path);
  FUZZ_CHECK(file.ok() == parsed.ok(), "buffer parse %s but file open %s", parsed.status().ToString().c_str(),
             file.status().ToString().c_str());
  if (file.ok()) {
    FUZZ_CHECK((*file)->tensors().size() == parsed->size(), "tensor counts differ");
    for (const TensorInfo& t : *parsed) {
      const TensorInfo* f = (*file)->find(t.name);
      FUZZ_CHECK(f && f->begin == t.begin && f->nbytes == t.nbytes && f->shape == t.shape && f->dtype == t.dtype,
                 "tensor %s differs between buffer and file", t.name.c_str());
      FUZZ_CHECK(std::memcmp(f->data, t.data, t.nbytes) == 0, "tensor %s: bytes differ", t.name.c_str());
    }
    FUZZ_CHECK((*file)->metadata() == metadata, "metadata differs between buffer and file");
  }
  return 0;
}
