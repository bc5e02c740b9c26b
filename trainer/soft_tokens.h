// Judge Q soft tokens on disk: S trained embedding rows plus the metadata that ties them to the
// model they were trained for. One safetensors file: tensor `soft_embeddings` [S, hidden] in the
// model dtype and a `__metadata__` block (string values, as the format requires).
//
// At inference the rows are fed through ForwardOptions::inputs_embeds after the prompt's cache,
// at positions T..T+S-1 (T = the prompt's next position), with append = false; their queries score
// the prompt's KV entries and their own KV never enters the cache.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"

namespace judgeq {

inline constexpr const char* kSoftTokensFormat = "judgeq-soft-tokens";
inline constexpr int64_t kSoftTokensFormatVersion = 1;
inline constexpr const char* kSoftTokensTensor = "soft_embeddings";
inline constexpr const char* kSoftTokensPositionRule = "T..T+S-1";

struct SoftTokens {
  torch::Tensor embeddings;  // [S, hidden], model dtype
  // Typed metadata (numbers are numbers, "scorer" is an object). Keys written by the trainer:
  //   format, format_version, tool_version, git_commit, base_model, config_hash, model_type,
  //   hidden_size, vocab_size, n_layers, n_heads, n_kv_heads, n_soft_tokens, position_rule, dtype,
  //   loss, map, renormalize, init, training_data_hash, steps, scorer {soft_reduce, head_reduce,
  //   renormalize}, train_config (the resolved training config).
  nlohmann::json metadata = nlohmann::json::object();

  int64_t n() const { return embeddings.defined() ? embeddings.size(0) : 0; }
};

// The model-identity part of the metadata (format, version, tool version, git commit, base model
// name, config hash, sizes, S, position rule). The trainer adds the training fields.
nlohmann::json soft_tokens_metadata(const ModelConfig& config, int64_t n_soft);

// Writes `st` atomically. Throws when the embeddings are not [S, hidden] or the metadata lacks the
// identity fields (build it with soft_tokens_metadata).
void save_soft_tokens(const std::string& path, const SoftTokens& st);

// Reads a soft-tokens file made for `config`. Refuses other formats, unknown format versions and
// files made for another model (hidden size or config hash differ), with a one-line error naming
// the model the file was made for. Embeddings come back on CPU in the stored dtype.
SoftTokens load_soft_tokens(const std::string& path, const ModelConfig& config);

// Reads any valid soft-tokens file without checking it against a model (inspection tools).
SoftTokens read_soft_tokens(const std::string& path);

// Positions of the soft tokens after prompts whose next positions are `next_positions`:
// [B, S] int64, row b = next_positions[b] + 0..S-1 (the "T..T+S-1" rule).
torch::Tensor soft_token_positions(const std::vector<int64_t>& next_positions, int64_t n_soft);

}  // namespace judgeq
