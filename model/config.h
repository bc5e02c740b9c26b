// ModelConfig: everything the decoder needs, read from a Hugging Face config.json (+
// generation_config.json). Dispatches on model_type; unknown types fail with the supported list.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace judgeq {

struct RopeScaling {
  std::string type = "default";  // "default" (none), "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string model_type;  // "llama" | "mistral"
  std::string name;        // _name_or_path or the folder name
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  std::optional<int64_t> sliding_window;
  int64_t max_position_embeddings = 0;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;  // config.json's, then generation_config.json's, merged
  std::string torch_dtype = "float32";

  static const std::vector<std::string>& supported_types();
  // Parses a config.json object; `source` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  // Reads DIR/config.json and, if present, DIR/generation_config.json.
  static ModelConfig load(const std::string& dir);

  int64_t group_size() const { return n_heads / n_kv_heads; }
  // Canonical JSON of the fields that change what the model computes.
  nlohmann::json to_json() const;
  // Short stable hash (hex) of to_json(), used to tie files to the model they were made for.
  std::string hash() const;
};

// FNV-1a 64-bit of a string, as 16 hex digits.
std::string fnv1a_hex(const std::string& s);

}  // namespace judgeq
