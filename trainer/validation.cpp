#include "trainer/validation.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "kv/compress.h"
#include "kv/method.h"
#include "util/error.h"

namespace judgeq {

void check_hit_rate_validation(const HitRateValidation& opt) {
  const Budget budget = Budget::parse(opt.budget);
  check(opt.window >= 1, "hit-rate validation: window must be >= 1 (got ", opt.window, "; snapkv scores with it)");
  check(opt.pooling == "none" || opt.pooling == "max" || opt.pooling == "avg", "hit-rate validation: unknown pooling (got '",
        opt.pooling, "', expected none, max or avg)");
  check(opt.max_samples >= 0 && opt.answer_tokens >= 0, "hit-rate validation: max_samples and answer_tokens must be >= 0");
  check(budget.kind != Budget::Kind::Tokens || budget.value >= double(opt.window), "hit-rate validation: budget ",
        budget.str(), " (--val-hit-budget) is smaller than the window of ", opt.window,
        " entries (--val-hit-window) that snapkv and judgeq always keep; use a larger budget or a smaller window");
}

nlohmann::json validation_hit_rates(const LlamaModel& model, const SoftTokens& soft, const TrainSet& val,
                                    const HitRateValidation& opt) {
  check_hit_rate_validation(opt);
  const Budget budget = Budget::parse(opt.budget);
  torch::NoGradGuard no_grad;
  const nlohmann::json scorer = {{"window", opt.window}, {"pooling", opt.pooling}};
  auto oracle = make_method("oracle");  // window 0, mean over KV groups: the evaluator's reference
  auto snapkv = make_method("snapkv", scorer);
  auto judgeq = make_judgeq_method(soft.embeddings, scorer);
  const Needs needs = merge_needs({oracle.get(), snapkv.get(), judgeq.get()});
  const ModelConfig& cfg = model.config();

  const int64_t n = opt.max_samples > 0 ? std::min(opt.max_samples, val.size()) : val.size();
  double sum_jq = 0, sum_snap = 0;
  int64_t used = 0;
  for (int64_t i = 0; i < n; ++i) {
    const TrainSample s = val.get(i);
    const int64_t T = static_cast<int64_t>(s.prompt.size());
    const int64_t keep = budget.tokens(T);
    if (keep >= T || keep < std::min(opt.window, T)) continue;  // nothing evicted, or below the window
    const int64_t want = opt.answer_tokens > 0 ? opt.answer_tokens : static_cast<int64_t>(s.response.size());
    const int64_t answer = std::min(std::max<int64_t>(1, want), cfg.max_position_embeddings - T);
    if (answer < 1) continue;
    KVCache cache = model.new_cache(1);
    PromptState st = prefill_for_compression(model, s.prompt, cache, needs, opt.chunk);
    st.answer_tokens = answer;
    const Selection ref = oracle->select(st, budget);
    sum_jq += hit_rate(judgeq->select(st, budget), ref, st.n_ctx, cfg.n_heads).overall;
    sum_snap += hit_rate(snapkv->select(st, budget), ref, st.n_ctx, cfg.n_heads).overall;
    ++used;
  }
  nlohmann::json out = {{"val_hit_budget", budget.str()}, {"val_hit_samples", used}, {"val_hit_pooling", opt.pooling}};
  out["val_hit_rate_judgeq"] = used > 0 ? nlohmann::json(sum_jq / used) : nlohmann::json();
  out["val_hit_rate_snapkv"] = used > 0 ? nlohmann::json(sum_snap / used) : nlohmann::json();
  return out;
}

ValidationHook hit_rate_validation_hook(const HitRateValidation& opt) {
  return [opt](const LlamaModel& model, const SoftTokens& soft, const TrainSet& val) {
    return validation_hit_rates(model, soft, val, opt);
  };
}

}  // namespace judgeq
