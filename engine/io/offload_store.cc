#include "engine/io/offload_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/io/crc32c.h"
#include "engine/io/direct_reader.h"

namespace zi {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "zeroinfer-offload-store";
constexpr int kVersion = 1;

uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

std::string rank_file_name(uint32_t r, uint32_t n) { return absl::StrFormat("rank-%d-of-%d.bin", r, n); }

Status write_all(int fd, const void* data, uint64_t n, uint64_t offset, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  uint64_t done = 0;
  while (done < n) {
    ssize_t w = ::pwrite(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      // ENOSPC names the disk-full case plainly: the user must free space or move offload.dir.
      return absl::ResourceExhaustedError(absl::StrFormat("%s: write of %d bytes at offset %d failed: %s", path,
                                                          n - done, offset + done, std::strerror(errno)));
    }
    done += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

json shard_to_json(const StoreShard& s) {
  json t = json::array();
  for (const auto& x : s.tensors)
    t.push_back({{"name", x.name}, {"dtype", std::string(dtype_safetensors_name(x.dtype))}, {"shape", x.shape},
                 {"offset", x.offset}, {"nbytes", x.nbytes}});
  return {{"name", s.name}, {"bytes", s.bytes}, {"partition_bytes", s.partition_bytes}, {"tensors", t},
          {"file_offsets", s.file_offsets}, {"crc32c", s.crc32c}};
}

// Manifest field access with errors naming the key path.
template <class T>
StatusOr<T> get(const json& j, const std::string& key, const std::string& where) {
  if (!j.is_object() || !j.contains(key))
    return absl::DataLossError(absl::StrCat(where, ": missing key \"", key, "\""));
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    return absl::DataLossError(absl::StrCat(where, ".", key, ": wrong type"));
  }
}

}  // namespace

StatusOr<std::string> config_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return absl::StrFormat("%08x", crc32c(s.data(), s.size()));
}

// ---------------------------------------------------------------- writer

StoreShard OffloadStoreWriter::layout(const std::string& name, const std::vector<TensorBytes>& tensors,
                                      uint32_t num_ranks) {
  StoreShard s;
  s.name = name;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    off = round_up(off, kTensorAlignment);
    s.tensors.push_back({t.name, t.dtype, t.shape, off, t.nbytes});
    off += t.nbytes;
  }
  s.bytes = off;
  s.partition_bytes = round_up((off + num_ranks - 1) / num_ranks, kPartitionAlignment);
  if (s.partition_bytes == 0) s.partition_bytes = kPartitionAlignment;
  return s;
}

StatusOr<std::unique_ptr<OffloadStoreWriter>> OffloadStoreWriter::Create(const std::string& dir,
                                                                          const StoreIdentity& id) {
  if (id.num_ranks == 0 || id.num_ranks > 1024)
    return absl::InvalidArgumentError(absl::StrFormat("parallel.num_gpus: must be 1..1024, got %d", id.num_ranks));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create the offload store: ", ec.message()));
  fs::remove(fs::path(dir) / "manifest.json", ec);  // the store is invalid until finish() writes it again
  std::unique_ptr<OffloadStoreWriter> w(new OffloadStoreWriter());
  w->dir_ = dir;
  w->id_ = id;
  for (uint32_t r = 0; r < id.num_ranks; ++r) {
    std::string path = w->rank_file(r);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(errno)));
    w->fds_.push_back(fd);
    w->file_sizes_.push_back(0);
  }
  return w;
}

OffloadStoreWriter::~OffloadStoreWriter() {
  for (int fd : fds_)
    if (fd >= 0) ::close(fd);
}

Status OffloadStoreWriter::add_shard(const std::string& name, const std::vector<TensorBytes>& tensors) {
  ZI_CHECK(!finished_);
  const uint32_t n = id_.num_ranks;
  StoreShard s = layout(name, tensors, n);
  // The packed shard, zero-padded to N partitions (one layer: at most a few GB).
  std::vector<char> packed(s.partition_bytes * n, 0);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].nbytes) std::memcpy(packed.data() + s.tensors[i].offset, tensors[i].data, tensors[i].nbytes);
  for (uint32_t r = 0; r < n; ++r) {
    const char* part = packed.data() + r * s.partition_bytes;
    const uint64_t off = file_sizes_[r];  // already 4 KiB aligned: every partition is a multiple of 4 KiB
    ZI_RETURN_IF_ERROR(write_all(fds_[r], part, s.partition_bytes, off, rank_file(r)));
    s.file_offsets.push_back(off);
    s.crc32c.push_back(crc32c(part, s.partition_bytes));
    file_sizes_[r] = off + s.partition_bytes;
  }
  shards_.push_back(std::move(s));
  return absl::OkStatus();
}

std::string OffloadStoreWriter::rank_file(uint32_t rank) const {
  return (fs::path(dir_) / rank_file_name(rank, id_.num_ranks)).string();
}

Status OffloadStoreWriter::finish() {
  ZI_CHECK(!finished_);
  finished_ = true;
  for (size_t r = 0; r < fds_.size(); ++r) {
    if (::fsync(fds_[r]) != 0)
      return absl::DataLossError(absl::StrCat(rank_file(r), ": fsync: ", std::strerror(errno)));
    ::close(fds_[r]);
    fds_[r] = -1;
  }
  json shards = json::array();
  for (const auto& s : shards_) shards.push_back(shard_to_json(s));
  json m = {{"format", kFormat},
            {"version", kVersion},
            {"architecture", id_.architecture},
            {"config_digest", id_.config_digest},
            {"dtype", id_.dtype},
            {"quant_bits", id_.quant_bits},
            {"quant_group_size", id_.quant_group_size},
            {"num_ranks", id_.num_ranks},
            {"shards", shards}};
  std::string tmp = (fs::path(dir_) / "manifest.json.tmp").string();
  std::string dst = (fs::path(dir_) / "manifest.json").string();
  std::string text = m.dump(1);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(tmp, ": ", std::strerror(errno)));
  Status st = write_all(fd, text.data(), text.size(), 0, tmp);
  if (st.ok() && ::fsync(fd) != 0) st = absl::DataLossError(absl::StrCat(tmp, ": fsync failed"));
  ::close(fd);
  ZI_RETURN_IF_ERROR(st);
  if (::rename(tmp.c_str(), dst.c_str()) != 0)
    return absl::DataLossError(absl::StrCat(dst, ": rename failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace zi

namespace zi {

// ---------------------------------------------------------------- reader

StatusOr<std::unique_ptr<OffloadStore>> OffloadStore::Open(const std::string& dir, const StoreIdentity& expected) {
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(mpath);
  if (!in)
    return absl::NotFoundError(absl::StrCat(mpath, ": no offload store here (run `zeroinfer convert` or let the "
                                            "server build it at load)"));
  json m;
  try {
    m = json::parse(in);
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(mpath, ": not valid JSON: ", e.what()));
  }
  std::unique_ptr<OffloadStore> st(new OffloadStore());
  st->dir_ = dir;
  ZI_ASSIGN_OR_RETURN(std::string format, get<std::string>(m, "format", mpath));
  ZI_ASSIGN_OR_RETURN(int version, get<int>(m, "version", mpath));
  if (format != kFormat || version != kVersion)
    return absl::DataLossError(absl::StrFormat("%s: format \"%s\" version %d; this zeroinfer reads \"%s\" version %d",
                                               mpath, format, version, kFormat, kVersion));
  StoreIdentity& id = st->id_;
  ZI_ASSIGN_OR_RETURN(id.architecture, get<std::string>(m, "architecture", mpath));
  ZI_ASSIGN_OR_RETURN(id.config_digest, get<std::string>(m, "config_digest", mpath));
  ZI_ASSIGN_OR_RETURN(id.dtype, get<std::string>(m, "dtype", mpath));
  ZI_ASSIGN_OR_RETURN(id.quant_bits, get<uint32_t>(m, "quant_bits", mpath));
  ZI_ASSIGN_OR_RETURN(id.quant_group_size, get<uint32_t>(m, "quant_group_size", mpath));
  ZI_ASSIGN_OR_RETURN(id.num_ranks, get<uint32_t>(m, "num_ranks", mpath));

  auto mismatch = [&](const char* key, const std::string& have, const std::string& want) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: the store was made for %s %s, this deployment has %s %s: re-run `zeroinfer convert` or point "
        "offload.dir elsewhere",
        mpath, key, have, key, want));
  };
  if (id.num_ranks != expected.num_ranks)
    return mismatch("num_gpus", std::to_string(id.num_ranks), std::to_string(expected.num_ranks));
  if (id.architecture != expected.architecture) return mismatch("architecture", id.architecture, expected.architecture);
  if (id.config_digest != expected.config_digest)
    return mismatch("config.json digest", id.config_digest, expected.config_digest);
  if (id.dtype != expected.dtype) return mismatch("dtype", id.dtype, expected.dtype);
  if (id.quant_bits != expected.quant_bits)
    return mismatch("quant_bits", std::to_string(id.quant_bits), std::to_string(expected.quant_bits));
  if (id.quant_bits != 16 && id.quant_group_size != expected.quant_group_size)
    return mismatch("quant_group_size", std::to_string(id.quant_group_size),
                    std::to_string(expected.quant_group_size));

  if (!m.contains("shards") || !m["shards"].is_array())
    return absl::DataLossError(absl::StrCat(mpath, ": missing key \"shards\""));
  const uint32_t n = id.num_ranks;
  std::vector<uint64_t> needed(n, 0);
  for (size_t i = 0; i < m["shards"].size(); ++i) {
    const json& js = m["shards"][i];
    const std::string where = absl::StrCat(mpath, ": shards[", i, "]");
    StoreShard s;
    ZI_ASSIGN_OR_RETURN(s.name, get<std::string>(js, "name", where));
    ZI_ASSIGN_OR_RETURN(s.bytes, get<uint64_t>(js, "bytes", where));
    ZI_ASSIGN_OR_RETURN(s.partition_bytes, get<uint64_t>(js, "partition_bytes", where));
    ZI_ASSIGN_OR_RETURN(s.file_offsets, get<std::vector<uint64_t>>(js, "file_offsets", where));
    ZI_ASSIGN_OR_RETURN(s.crc32c, get<std::vector<uint32_t>>(js, "crc32c", where));
    const std::string sw = absl::StrCat(mpath, ": shard ", s.name);
    if (s.file_offsets.size() != n || s.crc32c.size() != n)
      return absl::DataLossError(absl::StrCat(sw, ": file_offsets/crc32c must have ", n, " entries"));
    if (s.partition_bytes % OffloadStoreWriter::kPartitionAlignment || s.partition_bytes == 0 ||
        s.partition_bytes > (uint64_t{1} << 40) / n || s.partition_bytes * n < s.bytes)
      return absl::DataLossError(absl::StrCat(sw, ": partition_bytes ", s.partition_bytes, " inconsistent with bytes ",
                                              s.bytes));
    if (!js.contains("tensors") || !js["tensors"].is_array())
      return absl::DataLossError(absl::StrCat(sw, ": missing key \"tensors\""));
    for (size_t k = 0; k < js["tensors"].size(); ++k) {
      const json& jt = js["tensors"][k];
      const std::string tw = absl::StrCat(sw, ": tensors[", k, "]");
      StoreTensor t;
      ZI_ASSIGN_OR_RETURN(t.name, get<std::string>(jt, "name", tw));
      ZI_ASSIGN_OR_RETURN(std::string dt, get<std::string>(jt, "dtype", tw));
      auto d = parse_safetensors_dtype(dt);
      if (!d) return absl::DataLossError(absl::StrCat(tw, ": unknown dtype \"", dt, "\""));
      t.dtype = *d;
      ZI_ASSIGN_OR_RETURN(t.shape, get<std::vector<int64_t>>(jt, "shape", tw));
      ZI_ASSIGN_OR_RETURN(t.offset, get<uint64_t>(jt, "offset", tw));
      ZI_ASSIGN_OR_RETURN(t.nbytes, get<uint64_t>(jt, "nbytes", tw));
      if (t.offset > s.bytes || t.nbytes > s.bytes - t.offset)
        return absl::DataLossError(absl::StrCat(tw, " (", t.name, "): bytes [", t.offset, ", +", t.nbytes,
                                                ") lie outside the shard's ", s.bytes, " bytes"));
      s.tensors.push_back(std::move(t));
    }
    for (uint32_t r = 0; r < n; ++r) {
      if (s.file_offsets[r] % OffloadStoreWriter::kPartitionAlignment)
        return absl::DataLossError(absl::StrCat(sw, ": file offset for rank ", r, " is not 4 KiB aligned"));
      // offset + partition_bytes must not wrap, or the size check below would pass for any file.
      if (s.file_offsets[r] > UINT64_MAX - s.partition_bytes)
        return absl::DataLossError(absl::StrCat(sw, ": file offset ", s.file_offsets[r], " for rank ", r,
                                                " is past any file size"));
      needed[r] = std::max(needed[r], s.file_offsets[r] + s.partition_bytes);
    }
    st->shards_.push_back(std::move(s));
  }
  // Every partition must be in its file: a truncated file is refused naming the first shard it lacks.
  for (uint32_t r = 0; r < n; ++r) {
    const std::string path = st->rank_file(r);
    struct stat sb{};
    if (::stat(path.c_str(), &sb) != 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
    const uint64_t size = static_cast<uint64_t>(sb.st_size);
    if (size >= needed[r]) continue;
    for (const auto& s : st->shards_)
      if (s.file_offsets[r] + s.partition_bytes > size)
        return absl::DataLossError(absl::StrFormat(
            "%s: truncated: shard %s needs bytes [%d, %d) but the file has %d bytes", path, s.name,
            s.file_offsets[r], s.file_offsets[r] + s.partition_bytes, size));
  }
  return st;
}

std::string OffloadStore::rank_file(uint32_t rank) const {
  return (fs::path(dir_) / rank_file_name(rank, id_.num_ranks)).string();
}

const StoreShard* OffloadStore::find(const std::string& name) const {
  for (const auto& s : shards_)
    if (s.name == name) return &s;
  return nullptr;
}

Status OffloadStore::read_partition(const StoreShard& shard, uint32_t rank, DirectReader& reader, void* dst,
                                    bool verify) const {
  ZI_CHECK(rank < id_.num_ranks);
  ZI_RETURN_IF_ERROR(reader.read(shard.file_offsets[rank], shard.partition_bytes, dst));
  if (verify) {
    uint32_t c = crc32c(dst, shard.partition_bytes);
    if (c != shard.crc32c[rank])
      return absl::DataLossError(absl::StrFormat("%s: shard %s: checksum mismatch (crc32c %08x, manifest %08x): the "
                                                 "file is damaged; re-run `zeroinfer convert`",
                                                 reader.path(), shard.name, c, shard.crc32c[rank]));
  }
  return absl::OkStatus();
}

}  // namespace zi
