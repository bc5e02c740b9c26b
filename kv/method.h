// The eviction interface: scorer -> selector -> cache edit. A Method turns what a prefill left
// behind (PromptState) and a Budget into a Selection of prompt-cache entries per layer and head;
// kv/compress.h applies it with one gather per layer. Methods never touch the model or cache code.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/llama.h"

namespace judgeq {

// How many entries each layer keeps. Tokens: absolute entries per layer, window and sinks
// included (the paper / KVCache-Factory protocol). Ratio: kvpress's compression ratio, the
// fraction of the context's entries removed.
struct Budget {
  enum class Kind { Tokens, Ratio };
  Kind kind = Kind::Tokens;
  double value = 0;
  // "256" -> 256 tokens; "cr0.75" -> remove 75% (kvpress). Throws on anything else.
  static Budget parse(const std::string& s);
  std::string str() const;
  // Entries kept per layer for a compressible context of n_ctx entries (never more than n_ctx).
  int64_t tokens(int64_t n_ctx) const;
};

// What a prefill leaves for the scorers. The cache holds exactly the n_ctx compressible entries
// of the prompt (B = 1 or more identical-length rows).
struct PromptState {
  const LlamaModel* model = nullptr;
  const KVCache* cache = nullptr;
  int64_t n_ctx = 0;
  std::vector<torch::Tensor> q_window;  // per layer [B, H, w, D]: post-RoPE queries of the last w prompt tokens
  std::vector<torch::Tensor> h2o;       // per layer [B, H, n_ctx] float32 attention column sums (when captured)
  torch::Tensor last_logits;            // [B, V] logits of the last prompt position
  int64_t answer_tokens = 64;           // oracle: tokens of the full-KV answer to score with
  std::vector<int64_t> stop_ids;        // oracle / LAQ decoding stops
  // The oracle's full-KV greedy answer trace, computed once per prompt and shared by every budget
  // (an opaque DecodeTrace, see kv/compress.h).
  mutable std::shared_ptr<void> oracle_trace;
  // What methods compute from this prompt independently of the budget (e.g. per-layer scores),
  // keyed by what determines it: computed by the first select() and reused by every other budget
  // and by methods with the same key (kv/scoring.h, memo_layers).
  mutable std::map<std::string, std::shared_ptr<std::vector<torch::Tensor>>> memo;
};

// Per layer: indices [B, Hs, K] (ascending) into the prompt cache, Hs = H_kv, or H in
// query-head mode; valid [B, Hs, K] marks padding of ragged (per-head) selections.
struct Selection {
  std::vector<torch::Tensor> idx;
  std::vector<torch::Tensor> valid;
  bool query_head = false;
};

// What a method needs captured during the prefill.
struct Needs {
  int64_t window = 0;  // last-w queries per layer
  bool h2o = false;    // column sums of the prompt's attention
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  virtual nlohmann::json options() const = 0;  // resolved options (for result identity)
  virtual Needs needs() const { return {}; }
  // Entries the method always keeps (window + sinks): a smaller budget is an error.
  virtual int64_t protected_tokens() const { return 0; }
  virtual Selection select(const PromptState& st, const Budget& budget) = 0;
};

struct MethodInfo {
  std::string name;
  std::string summary;
  nlohmann::json defaults;  // option -> default value
  nlohmann::json help;      // option -> description
};

// Every registered method, in a stable order.
const std::vector<MethodInfo>& method_infos();
// Builds a method from its name and options (unknown names/options fail with the valid ones).
std::unique_ptr<Method> make_method(const std::string& name, const nlohmann::json& options = nlohmann::json::object());
// Judge Q with soft tokens held in memory ([S, hidden], any device and dtype; moved to the
// model's on first use) instead of the "soft_tokens" file option, e.g. the trainer's validation.
std::unique_ptr<Method> make_judgeq_method(const torch::Tensor& soft_embeddings,
                                           const nlohmann::json& options = nlohmann::json::object());

}  // namespace judgeq
