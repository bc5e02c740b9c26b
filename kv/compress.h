// Prefill with capture, applying selections (fast gather and slow masking reference), and the
// critical-KV hit rate against the oracle.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "kv/method.h"

namespace judgeq {

// Captures, during a prefill, the last `window` queries per layer and (optionally) H2O's
// attention column sums, accumulated block by block (never an n x n matrix).
class PrefillProbe : public AttentionProbe {
 public:
  explicit PrefillProbe(const Needs& needs) : needs_(needs) {}
  void on_layer(int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                const torch::Tensor& key_valid) override;
  // H2O reuses the prefill attention's row log-sum-exps where the model has them.
  bool wants_row_lse() const override { return needs_.h2o; }
  void on_row_lse(int64_t layer, const torch::Tensor& lse) override;
  std::vector<torch::Tensor> q_window, h2o;
  int64_t layers_with_row_lse = 0;  // layers whose log-sum-exps came from the prefill's kernel

 private:
  Needs needs_;
  torch::Tensor q_, k_, key_valid_;  // this layer's, until on_row_lse
};

// H2O's score: per query head, the sum over the prompt's queries of their causal attention to
// each key. q [B, H, T, D]; k [B, H_kv, Tk, D] with the T queries' own keys last. Returns
// [B, H, Tk] float32. On CUDA (bf16/fp16, one unpadded prompt) two fused attention kernels give
// it without scores in memory; elsewhere query rows go block by block. The blockwise form is the
// reference the fused one is checked against (bench/real_shape.cpp --mode h2o-check).
// row_lse: each query row's log-sum-exp of its scaled causal scores [B, H, T] float32, when the
// prefill's kernel gave it (saves the first fused pass).
torch::Tensor h2o_column_sums(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& key_valid = {},
                              const torch::Tensor& row_lse = {});
torch::Tensor h2o_column_sums_blockwise(const torch::Tensor& q, const torch::Tensor& k);
// The fused second pass alone (CUDA, bf16/fp16, one unpadded prompt): the transposed attention
// on `kernel` "flash", "efficient", "cudnn" or "auto" (cuDNN, else Flash, else the efficient
// kernel), in `form` "dims" (float32-accurate) or "value" (head size unchanged; see compress.cpp).
torch::Tensor h2o_column_sums_given_lse(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& row_lse,
                                        const std::string& kernel = "auto", const std::string& form = "dims");

// Records the queries of every forward it sees, per layer (decoded tokens, soft tokens).
class QueryRecorder : public AttentionProbe {
 public:
  void on_layer(int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                const torch::Tensor& key_valid) override;
  // Per layer [B, H, R, D], R = every recorded row so far.
  std::vector<torch::Tensor> queries() const;

 private:
  std::vector<std::vector<torch::Tensor>> rows_;
};

// Greedy decoding of up to n tokens from `cache` (B = 1; the tokens are appended), starting from
// next_logits [1, V]. Records, per layer, the queries of each fed token [1, H, n, D] and the sum
// of their attention over the first n_ctx keys [1, H, n_ctx] (float32).
struct DecodeTrace {
  std::vector<int64_t> tokens;
  std::vector<torch::Tensor> queries;
  std::vector<torch::Tensor> attn_sum;
};
DecodeTrace trace_greedy(const LlamaModel& model, KVCache& cache, torch::Tensor next_logits, int64_t n,
                         const std::vector<int64_t>& stop_ids, int64_t n_ctx);

// The oracle's trace of up to n answer tokens for this prompt, computed on a copy of the cache
// once and memoised in st (every budget and the hit-rate reference share it).
const DecodeTrace& oracle_trace(const PromptState& st, int64_t n);

// Prefills one prompt (B = 1) into `cache`, capturing what `needs` asks for. Returns the state
// the methods score from (it points at model and cache).
PromptState prefill_for_compression(const LlamaModel& model, const std::vector<int64_t>& ids, KVCache& cache,
                                    const Needs& needs, int64_t chunk = 4096);

// The union of what several methods need.
Needs merge_needs(const std::vector<const Method*>& methods);

// The compressed cache: one gather per layer over K, V and positions.
KVCache apply_selection(const KVCache& prompt, const Selection& sel);
// Reference: the full cache with the evicted entries masked out (must decode identically).
KVCache mask_selection(const KVCache& prompt, const Selection& sel);

struct HitRate {
  std::vector<double> per_layer;  // fraction of the oracle's entries the method kept
  double overall = 0;
};
// Both selections over the same prompt; query-head selections are compared per query head
// against the oracle's KV-group selection (each query head inherits its group's).
HitRate hit_rate(const Selection& method, const Selection& oracle, int64_t n_ctx, int64_t n_heads);

}  // namespace judgeq
