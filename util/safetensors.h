// safetensors I/O: a memory-mapped reader for one file, a checkpoint view over a single file or
// shards listed in model.safetensors.index.json, and an atomic writer.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace judgeq {

struct TensorInfo {
  std::string dtype;           // safetensors name: F32, BF16, F16, I64, ...
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;   // byte offsets inside the data section
};

class SafetensorsFile {
 public:
  // Maps the file and validates the header (length, JSON, dtypes, offsets). Throws judgeq::Error
  // naming the file when it is missing, truncated or corrupt.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  // A copy of the named tensor, converted to `dtype` if given.
  torch::Tensor get(const std::string& name, std::optional<torch::Dtype> dtype = {}) const;

 private:
  void unmap();
  std::string path_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  const uint8_t* data_ = nullptr;  // start of the data section
  void* map_ = nullptr;
  size_t map_size_ = 0;
};

// A HF checkpoint folder's weights: model.safetensors, or the shards named by
// model.safetensors.index.json.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  TensorInfo info(const std::string& name) const;
  torch::Tensor get(const std::string& name, std::optional<torch::Dtype> dtype = {}) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;
};

torch::Dtype dtype_from_safetensors(const std::string& name, const std::string& context);
std::string dtype_to_safetensors(torch::Dtype dtype);
torch::Dtype parse_dtype(const std::string& name);  // "bf16"/"bfloat16", "fp16"/"float16", "fp32"/"float32"
std::string dtype_name(torch::Dtype dtype);         // "bf16", "fp16", "fp32", ...

// Writes tensors (in the given order) to `path` atomically: a temp file in the same folder,
// fsync'ed and renamed.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Write `content` to `path` atomically (temp file + rename).
void write_file_atomic(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);

}  // namespace judgeq
