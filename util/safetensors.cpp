#include "util/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace judgeq {

namespace {

size_t element_size(const std::string& dt) {
  if (dt == "F64" || dt == "I64" || dt == "U64") return 8;
  if (dt == "F32" || dt == "I32" || dt == "U32") return 4;
  if (dt == "F16" || dt == "BF16" || dt == "I16" || dt == "U16") return 2;
  if (dt == "I8" || dt == "U8" || dt == "BOOL" || dt == "F8_E4M3" || dt == "F8_E5M2") return 1;
  return 0;
}

const char* kCorrupt = "; the file is truncated or corrupt: re-download or re-export it";

}  // namespace

torch::Dtype dtype_from_safetensors(const std::string& name, const std::string& context) {
  if (name == "F32") return torch::kFloat32;
  if (name == "F16") return torch::kFloat16;
  if (name == "BF16") return torch::kBFloat16;
  if (name == "F64") return torch::kFloat64;
  if (name == "I64") return torch::kInt64;
  if (name == "I32") return torch::kInt32;
  if (name == "I16") return torch::kInt16;
  if (name == "I8") return torch::kInt8;
  if (name == "U8") return torch::kUInt8;
  if (name == "BOOL") return torch::kBool;
  fail("unsupported safetensors dtype in ", context, " (got ", name,
       ", expected one of F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL); convert the file");
}

std::string dtype_to_safetensors(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return "F32";
    case torch::kFloat16: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kFloat64: return "F64";
    case torch::kInt64: return "I64";
    case torch::kInt32: return "I32";
    case torch::kInt16: return "I16";
    case torch::kInt8: return "I8";
    case torch::kUInt8: return "U8";
    case torch::kBool: return "BOOL";
    default: fail("cannot write dtype ", c10::toString(dtype), " to safetensors");
  }
}

torch::Dtype parse_dtype(const std::string& n) {
  if (n == "bf16" || n == "bfloat16") return torch::kBFloat16;
  if (n == "fp16" || n == "float16" || n == "half") return torch::kFloat16;
  if (n == "fp32" || n == "float32" || n == "float") return torch::kFloat32;
  if (n == "fp64" || n == "float64" || n == "double") return torch::kFloat64;
  fail("unknown dtype (got '", n, "', expected bf16, fp16, fp32 or fp64)");
}

std::string dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "fp16";
    case torch::kFloat32: return "fp32";
    case torch::kFloat64: return "fp64";
    default: return c10::toString(d);
  }
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open safetensors file ", path, " (", std::strerror(errno), "); check the path");
  struct stat st {};
  ::fstat(fd, &st);
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    fail("safetensors file ", path, " is too short (got ", map_size_, " bytes, expected at least 8)", kCorrupt);
  }
  map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail("cannot map safetensors file ", path, " (", std::strerror(errno), ")");
  }
  const auto* bytes = static_cast<const uint8_t*>(map_);
  uint64_t n_header = 0;
  for (int i = 7; i >= 0; --i) n_header = (n_header << 8) | bytes[i];
  if (n_header > map_size_ - 8 || n_header > (100u << 20)) {
    unmap();
    fail("safetensors header of ", path, " is out of range (got header length ", n_header,
         ", file has ", map_size_, " bytes)", kCorrupt);
  }
  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(bytes + 8),
                         reinterpret_cast<const char*>(bytes + 8 + n_header));
  } catch (const std::exception& e) {
    unmap();
    fail("safetensors header of ", path, " is not valid JSON (", e.what(), ")", kCorrupt);
  }
  data_ = bytes + 8 + n_header;
  const size_t n_data = map_size_ - 8 - n_header;
  try {
    check(header.is_object(), "header is not a JSON object");
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        for (auto m = it.value().begin(); m != it.value().end(); ++m)
          metadata_[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
        continue;
      }
      const json& e = it.value();
      TensorInfo info;
      info.dtype = e.at("dtype").get<std::string>();
      info.shape = e.at("shape").get<std::vector<int64_t>>();
      auto off = e.at("data_offsets").get<std::vector<size_t>>();
      check(off.size() == 2, "tensor ", it.key(), ": data_offsets must have 2 entries");
      info.begin = off[0];
      info.end = off[1];
      size_t es = element_size(info.dtype);
      check(es > 0, "tensor ", it.key(), ": unknown dtype ", info.dtype);
      size_t numel = 1;
      for (auto s : info.shape) {
        check(s >= 0, "tensor ", it.key(), ": negative dimension");
        numel *= static_cast<size_t>(s);
      }
      check(info.begin <= info.end && info.end <= n_data, "tensor ", it.key(), ": data [", info.begin,
            ", ", info.end, ") lies beyond the ", n_data, " data bytes");
      check(info.end - info.begin == numel * es, "tensor ", it.key(), ": ", info.end - info.begin,
            " bytes for ", numel, " elements of ", info.dtype);
      tensors_[it.key()] = std::move(info);
    }
  } catch (const Error& e) {
    std::string msg = e.what();
    unmap();
    fail("safetensors file ", path, " is invalid: ", msg, kCorrupt);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    unmap();
    fail("safetensors file ", path, " has a malformed header entry (", msg, ")", kCorrupt);
  }
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() {
  if (map_) ::munmap(map_, map_size_);
  map_ = nullptr;
}

torch::Tensor SafetensorsFile::get(const std::string& name, std::optional<torch::Dtype> dtype) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("tensor ", name, " not found in ", path_);
  const TensorInfo& info = it->second;
  auto src_dtype = dtype_from_safetensors(info.dtype, path_ + ":" + name);
  auto view = torch::from_blob(const_cast<uint8_t*>(data_ + info.begin), info.shape,
                               torch::TensorOptions().dtype(src_dtype));
  if (dtype && *dtype != src_dtype) return view.to(*dtype);
  return view.clone();
}

Checkpoint::Checkpoint(const std::string& dir) {
  fs::path d(dir);
  fs::path index = d / "model.safetensors.index.json";
  fs::path single = d / "model.safetensors";
  std::vector<std::string> shard_files;
  if (fs::exists(index)) {
    json j;
    try {
      j = json::parse(read_file(index.string()));
    } catch (const nlohmann::json::exception& e) {
      fail("cannot parse ", index.string(), " (", e.what(), "); re-download the checkpoint index");
    }
    check(j.contains("weight_map") && j["weight_map"].is_object(), index.string(),
          " has no weight_map object; re-download the checkpoint index");
    std::map<std::string, size_t> file_id;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      const std::string f = it.value().get<std::string>();
      if (!file_id.count(f)) {
        file_id[f] = shard_files.size();
        shard_files.push_back((d / f).string());
      }
    }
    std::vector<std::string> missing;
    for (auto& f : shard_files)
      if (!fs::exists(f)) missing.push_back(f);
    if (!missing.empty()) {
      std::string all;
      for (auto& m : missing) all += (all.empty() ? "" : ", ") + m;
      fail("shards listed in ", index.string(), " are missing: ", all, "; download all shards");
    }
  } else if (fs::exists(single)) {
    shard_files.push_back(single.string());
  } else {
    fail("no weights in ", dir, " (expected model.safetensors or model.safetensors.index.json); ",
         "point --model at a Hugging Face checkpoint folder");
  }
  for (auto& f : shard_files) {
    files_.push_back(std::make_unique<SafetensorsFile>(f));
    for (auto& kv : files_.back()->tensors()) where_[kv.first] = files_.size() - 1;
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (auto& kv : where_) out.push_back(kv.first);
  return out;
}

TensorInfo Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  check(it != where_.end(), "tensor ", name, " not in checkpoint");
  return files_[it->second]->tensors().at(name);
}

torch::Tensor Checkpoint::get(const std::string& name, std::optional<torch::Dtype> dtype) const {
  auto it = where_.find(name);
  check(it != where_.end(), "tensor ", name, " not in checkpoint");
  return files_[it->second]->get(name, dtype);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read ", path, "; check that the file exists and is readable");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
std::string temp_name(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}
void commit_temp(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    fail("cannot move ", tmp, " to ", path, " (", ec.message(), ")");
  }
}
void write_all(std::FILE* f, const void* p, size_t n, const std::string& tmp) {
  if (n && std::fwrite(p, 1, n, f) != n) {
    std::fclose(f);
    fs::remove(tmp);
    fail("cannot write ", tmp, " (disk full?)");
  }
}
}  // namespace

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = temp_name(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot create ", tmp, " (", std::strerror(errno), "); check that the folder exists and is writable");
  write_all(f, content.data(), content.size(), tmp);
  std::fflush(f);
  ::fsync(fileno(f));
  std::fclose(f);
  commit_temp(tmp, path);
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> cpu;
  size_t offset = 0;
  for (auto& [name, t] : tensors) {
    check(!header.contains(name), "duplicate tensor name ", name);
    auto c = t.detach().to(torch::kCPU).contiguous();
    size_t n = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype_to_safetensors(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
    cpu.push_back(c);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h.push_back(' ');  // keep the data section 8-byte aligned
  const std::string tmp = temp_name(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot create ", tmp, " (", std::strerror(errno), "); check that the folder exists and is writable");
  uint8_t len[8];
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  write_all(f, len, 8, tmp);
  write_all(f, h.data(), h.size(), tmp);
  for (auto& c : cpu) write_all(f, c.data_ptr(), c.numel() * c.element_size(), tmp);
  std::fflush(f);
  ::fsync(fileno(f));
  std::fclose(f);
  commit_temp(tmp, path);
}

}  // namespace judgeq
