// Building blocks shared by the scorers: attention rows for a few queries (never an n x n
// matrix), pooling, KV-group reduction, protected-window top-k selection.
#pragma once
#include <torch/torch.h>

#include <functional>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kv/method.h"

namespace judgeq {

// Softmax rows of queries q [B, H, R, D] over keys k [B, H_kv, Tk, D] (grouped, no repeat_kv
// copy). The last `causal_tail` rows are the last keys themselves: row i of them sees keys up to
// Tk - causal_tail + i. Returns float32 [B, H, R, Tk].
torch::Tensor attention_rows(const torch::Tensor& q, const torch::Tensor& k, int64_t causal_tail);
// Same, with an explicit limit per row: row r sees keys [0, row_limit[r]). row_limit [R] int64.
torch::Tensor attention_rows(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& row_limit);

// 1D pooling along the last dim (stride 1, same length): "avg" (zero padding counted, as
// F.avg_pool1d with padding k/2), "max", or "none". scores [..., T].
torch::Tensor pool_scores(const torch::Tensor& scores, int64_t kernel, const std::string& pooling);

// Query-head scores [B, H, T] -> per KV head [B, H_kv, T] by "mean" | "max" | "sum".
torch::Tensor reduce_groups(const torch::Tensor& scores, int64_t n_kv_heads, const std::string& how);

// Keeps `sinks` first and `window` last entries of [0, n_ctx) plus the top (keep - sinks - window)
// of the rest by score. scores [B, Hs, n_ctx] float. Returns idx [B, Hs, keep] ascending.
torch::Tensor select_topk(const torch::Tensor& scores, int64_t keep, int64_t sinks, int64_t window);

// A selection from query-head scores per layer (scores(l) -> [B, H, n_ctx]): reduced per KV group
// by `gqa` (mean | max | sum), or kept per query head when gqa is "query-head"; then the top
// `keep` per head with the last `window` entries always kept.
Selection select_from_query_head_scores(const std::function<torch::Tensor(int64_t)>& scores, int64_t n_layers,
                                        int64_t n_kv_heads, const std::string& gqa, int64_t keep, int64_t window);

// PyramidKV's candidate (non-window) entries per layer for a mean budget `keep` (window
// included), as KVCache-Factory computes them.
std::vector<int64_t> pyramid_budgets(int64_t keep, int64_t window, int64_t n_ctx, int64_t n_layers, int64_t beta);

// AdaKV's head-adaptive allocation inside one layer: scores [B, H_kv, C] of the candidates; every
// head keeps its top floor_n, one top-k over all heads fills the rest of H_kv * per_head.
// Returns the kept mask [B, H_kv, C] (bool, CPU).
torch::Tensor adakv_allocate(const torch::Tensor& scores, int64_t per_head, int64_t floor_n);

// A selection that keeps everything.
Selection keep_all(const PromptState& st, bool query_head = false);

// Options: reads `opts` over `defaults`, failing on unknown keys with the valid list.
class Options {
 public:
  Options(const std::string& method, const nlohmann::json& defaults, const nlohmann::json& given);
  int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;
  std::string text(const std::string& key) const;
  bool flag(const std::string& key) const;
  const nlohmann::json& resolved() const { return resolved_; }

 private:
  std::string method_;
  nlohmann::json resolved_;
};

// Checks budget >= the method's protected entries; one-line error otherwise.
int64_t resolve_budget(const Method& m, const Budget& b, int64_t n_ctx);

// Common scorer options of the SnapKV family.
struct WindowScorer {
  int64_t window = 32;
  int64_t kernel = 7;
  std::string pooling = "max";  // avg | max | none
  std::string reduce = "sum";   // sum | mean over the observation rows
  std::string gqa = "mean";     // mean | max | sum | query-head
  void read(const Options& o);
  // Scores [B, Hs, n_ctx] of the prompt entries from query rows q [B, H, R, D] over keys
  // k [B, H_kv, Tk, D] (Tk >= n_ctx; the first n_ctx are the prompt), the last causal_tail rows
  // being the last causal_tail keys. Pooled and reduced per group (or per query head).
  torch::Tensor score(const torch::Tensor& q, const torch::Tensor& k, int64_t n_ctx, int64_t causal_tail,
                      int64_t n_kv_heads) const;
  // Same with an explicit key limit per row (row r sees keys [0, row_limit[r])).
  torch::Tensor score_limits(const torch::Tensor& q, const torch::Tensor& k, int64_t n_ctx,
                             const torch::Tensor& row_limit, int64_t n_kv_heads) const;
  bool query_head() const { return gqa == "query-head"; }
  // Per layer, score() of the prefill's last-window queries over the prompt (the SnapKV family),
  // memoised in the prompt state under these options: one computation per prompt whatever the
  // number of budgets and methods sharing them. `method` names the caller in errors.
  const std::vector<torch::Tensor>& window_scores(const PromptState& st, const std::string& method) const;
  // The options that determine the scores, as a memo key.
  std::string key() const;

 private:
  // Reduces, pools and groups softmax rows [B, H, R, Tk] into the scores of the first n_ctx keys.
  torch::Tensor finish(const torch::Tensor& rows, int64_t n_ctx, int64_t n_kv_heads) const;
};
// st.memo[key], computed by `compute` on first use.
const std::vector<torch::Tensor>& memo_layers(const PromptState& st, const std::string& key,
                                              const std::function<std::vector<torch::Tensor>()>& compute);

nlohmann::json window_scorer_defaults(int64_t window, int64_t kernel, const std::string& pooling);
nlohmann::json window_scorer_help();

}  // namespace judgeq
