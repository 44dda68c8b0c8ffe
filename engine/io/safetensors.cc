#include "engine/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <string_view>

#include <nlohmann/json.hpp>

namespace zi {

static_assert(std::endian::native == std::endian::little, "safetensors offsets are read as little-endian");

namespace {

using json = nlohmann::json;

Status err(const std::string& file, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

// Parses `text` as JSON, refusing duplicate keys in any object (nlohmann would silently keep the last one).
StatusOr<json> parse_json_strict(std::string_view text, const std::string& file) {
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto cb = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) keys_per_object.emplace_back();
    if (event == json::parse_event_t::object_end && !keys_per_object.empty()) keys_per_object.pop_back();
    if (event == json::parse_event_t::key && !keys_per_object.empty() && duplicate.empty() &&
        !keys_per_object.back().insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    return err(file, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!duplicate.empty()) return err(file, absl::StrCat("header has the key '", duplicate, "' twice"));
  return j;
}

}  // namespace

StatusOr<std::vector<TensorInfo>> parse_safetensors(std::span<const uint8_t> bytes, const std::string& file,
                                                    std::map<std::string, std::string>* metadata) {
  if (bytes.size() < 8)
    return err(file, absl::StrCat("truncated: ", bytes.size(), " bytes, but the 8-byte header length is missing"));
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kSafetensorsMaxHeaderBytes)
    return err(file, absl::StrCat("header length ", header_len, " exceeds the limit of ", kSafetensorsMaxHeaderBytes,
                                  " bytes"));
  if (header_len > bytes.size() - 8)
    return err(file, absl::StrCat("truncated: header length ", header_len, " but only ", bytes.size() - 8,
                                  " bytes follow the length field"));
  if (header_len == 0 || bytes[8] != '{')
    return err(file, "header is not a JSON object (it must start with '{')");
  std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  ZI_ASSIGN_OR_RETURN(json header, parse_json_strict(text, file));
  if (!header.is_object()) return err(file, "header is not a JSON object");

  const uint8_t* buffer = bytes.data() + 8 + header_len;
  const uint64_t buffer_size = bytes.size() - 8 - header_len;
  std::vector<TensorInfo> tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return err(file, "__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return err(file, absl::StrCat("__metadata__ value of '", m.key(), "' is not a string"));
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (!v.is_object()) return err(file, absl::StrCat(where, ": entry is not an object"));
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        return err(file, absl::StrCat(where, ": unknown field '", f.key(), "'"));
    if (!v.contains("dtype") || !v["dtype"].is_string()) return err(file, absl::StrCat(where, ": missing dtype"));
    if (!v.contains("shape") || !v["shape"].is_array()) return err(file, absl::StrCat(where, ": missing shape"));
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      return err(file, absl::StrCat(where, ": data_offsets must be [begin, end]"));
    TensorInfo t;
    t.name = name;
    t.file = file;
    const std::string dtype_name = v["dtype"].get<std::string>();
    auto dtype = parse_safetensors_dtype(dtype_name);
    if (!dtype) return err(file, absl::StrCat(where, ": unknown dtype '", dtype_name, "'"));
    t.dtype = *dtype;
    // numel × element size, overflow-checked: a header may claim absurd shapes.
    uint64_t expect = dtype_size(t.dtype);
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        return err(file, absl::StrCat(where, ": shape entries must be non-negative integers"));
      const uint64_t dim = d.get<uint64_t>();
      if (__builtin_mul_overflow(expect, dim, &expect))
        return err(file, absl::StrCat(where, ": shape ", v["shape"].dump(), " overflows 64-bit byte counts"));
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const json& offs = v["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      return err(file, absl::StrCat(where, ": data_offsets must be non-negative integers"));
    const uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (end < begin) return err(file, absl::StrCat(where, ": data_offsets [", begin, ", ", end, "] end before begin"));
    if (end > buffer_size)
      return err(file, absl::StrCat(where, ": data_offsets [", begin, ", ", end, "] are out of range (data buffer is ",
                                    buffer_size, " bytes)"));
    if (end - begin != expect)
      return err(file, absl::StrCat(where, ": shape ", v["shape"].dump(), " of ", dtype_name, " needs ", expect,
                                    " bytes but data_offsets [", begin, ", ", end, "] span ", end - begin));
    t.begin = begin;
    t.nbytes = expect;
    t.data = buffer + begin;
    tensors.push_back(std::move(t));
  }

  // Spans sorted by offset must tile the buffer exactly: no overlap, no gap, nothing after the last one.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : tensors) by_offset.push_back(&t);
  std::stable_sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->nbytes < b->nbytes;
  });
  uint64_t covered = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo* t : by_offset) {
    if (t->begin < covered)
      return err(file, absl::StrCat("tensor '", t->name, "' (bytes ", t->begin, "..", t->begin + t->nbytes,
                                    ") overlaps tensor '", prev->name, "' (bytes ", prev->begin, "..", covered, ")"));
    if (t->begin > covered)
      return err(file, absl::StrCat("data buffer bytes ", covered, "..", t->begin, " before tensor '", t->name,
                                    "' are not covered by any tensor"));
    covered = t->begin + t->nbytes;
    prev = t;
  }
  if (covered != buffer_size)
    return err(file, absl::StrCat("data buffer bytes ", covered, "..", buffer_size,
                                  " are not covered by any tensor (trailing data or a missing tensor)"));
  return tensors;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot stat: ", std::strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_size_ = static_cast<size_t>(st.st_size);
  if (f->map_size_ > 0) {
    void* m = ::mmap(nullptr, f->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(e)));
    }
    f->map_ = m;
  }
  ::close(fd);  // the mapping keeps the file alive
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(f->map_), f->map_size_);
  ZI_ASSIGN_OR_RETURN(f->tensors_, parse_safetensors(bytes, path, &f->metadata_));
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->by_name_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

StatusOr<const TensorInfo*> SafetensorsFile::get(const std::string& name) const {
  if (const TensorInfo* t = find(name)) return t;
  return absl::NotFoundError(absl::StrCat(path_, ": tensor '", name, "' is missing"));
}

namespace {

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

StatusOr<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s;
}

}  // namespace

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  auto ck = std::make_unique<Checkpoint>();
  ck->dir_ = dir;
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  if (file_exists(index)) {
    ck->source_ = index;
    ZI_ASSIGN_OR_RETURN(std::string text, read_text_file(index));
    ZI_ASSIGN_OR_RETURN(json j, parse_json_strict(text, index));
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return err(index, "missing the object 'weight_map'");
    std::map<std::string, size_t> shard_of_file;
    std::map<std::string, size_t> shard_of_tensor;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return err(index, absl::StrCat("weight_map['", it.key(), "'] is not a file name"));
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
        return err(index, absl::StrCat("weight_map['", it.key(), "'] = '", shard,
                                       "' is not a file name in the checkpoint folder"));
      auto [pos, inserted] = shard_of_file.emplace(shard, ck->files_.size());
      if (inserted) {
        ZI_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(dir + "/" + shard));
        ck->files_.push_back(std::move(f));
      }
      shard_of_tensor[it.key()] = pos->second;
    }
    for (const auto& [name, shard] : shard_of_tensor) {
      const SafetensorsFile& f = *ck->files_[shard];
      const TensorInfo* t = f.find(name);
      if (!t)
        return absl::NotFoundError(absl::StrCat(f.path(), ": tensor '", name, "' is missing (", index,
                                                " maps it to this file)"));
      ck->by_name_[name] = t;
    }
    return ck;
  }
  if (!file_exists(single))
    return absl::NotFoundError(
        absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json (only safetensors checkpoints "
                          "are supported)"));
  ck->source_ = single;
  ZI_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single));
  for (const auto& t : f->tensors()) ck->by_name_[t.name] = &t;
  ck->files_.push_back(std::move(f));
  return ck;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it != by_name_.end()) return it->second;
  // Checkpoints saved from the bare base model lack the *ForCausalLM wrapper's prefix (facebook/opt-350m and
  // opt-6.7b..30b: "decoder.layers.0...", bigscience/bloom*: "h.0..."); transformers strips it on load too.
  for (const std::string_view prefix : {std::string_view("model."), std::string_view("transformer.")}) {
    if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) {
      it = by_name_.find(name.substr(prefix.size()));
      if (it != by_name_.end()) return it->second;
    }
  }
  return nullptr;
}

StatusOr<const TensorInfo*> Checkpoint::get(const std::string& name) const {
  if (const TensorInfo* t = find(name)) return t;
  return absl::NotFoundError(absl::StrCat(source_, ": tensor '", name, "' is missing"));
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, t] : by_name_) out.push_back(n);
  return out;
}

}  // namespace zi
