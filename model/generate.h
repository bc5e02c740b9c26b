// Greedy generation: batched prompts of different lengths (left-padded), stop ids,
// max_new_tokens; and greedy decoding from an existing (possibly compressed) cache.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/llama.h"

namespace judgeq {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  std::vector<int64_t> stop_ids;  // generation of a row ends after it emits one of these
  int64_t chunk = 4096;           // prefill chunk (see ForwardOptions::chunk)
  bool static_decode = true;      // on CUDA: one CUDA graph per step (model/graph_decode.h)
};

struct GenerateResult {
  std::vector<std::vector<int64_t>> tokens;  // per row, generated ids (stop id included)
  std::vector<std::string> finish;           // "stop" | "length"
};

// Prefills the prompts (one batch, left-padded) and decodes greedily.
GenerateResult generate(const LlamaModel& model, const std::vector<std::vector<int64_t>>& prompts,
                        const GenerateOptions& opt);

// Greedy decoding from `cache`, whose next-token logits are `next_logits` [B, V]. The cache grows
// by the generated tokens.
GenerateResult decode_greedy(const LlamaModel& model, KVCache& cache, torch::Tensor next_logits,
                             const GenerateOptions& opt);
// The same over several caches as one batch (rows in the order of the caches; next_logits holds
// them all): on CUDA one graph step serves every cache (model/graph_decode.h), each attending over
// its own length; elsewhere each cache's rows run forward() on their own. Row results equal
// decoding each cache alone.
GenerateResult decode_greedy(const LlamaModel& model, const std::vector<KVCache*>& caches, torch::Tensor next_logits,
                             const GenerateOptions& opt);

// Prefill of one batch of prompts into a fresh cache; returns the last-position logits [B, V].
torch::Tensor prefill(const LlamaModel& model, const std::vector<std::vector<int64_t>>& prompts,
                      KVCache& cache, int64_t chunk = 4096);

}  // namespace judgeq
