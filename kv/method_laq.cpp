// laq (Lookahead Q-Cache): SnapKV-compress, greedily decode up to n_pseudo pseudo tokens on the
// compressed cache, then re-score the full prompt cache with their queries plus the prompt's
// last window; the pseudo tokens are dropped.
#include "kv/compress.h"
#include "kv/methods.h"
#include "kv/scoring.h"
#include "util/error.h"

namespace judgeq {
namespace {
class Laq : public Method {
 public:
  explicit Laq(const nlohmann::json& o) : opt_("laq", info_laq().defaults, o) {
    sc_.read(opt_);
    n_pseudo_ = opt_.integer("n_pseudo");
    check(n_pseudo_ >= 1, "laq n_pseudo must be >= 1 (got ", n_pseudo_, ")");
    snap_ = make_method("snapkv", {{"window", sc_.window}, {"kernel", sc_.kernel}, {"pooling", sc_.pooling},
                                   {"reduce", sc_.reduce}, {"gqa", sc_.gqa}});
  }
  std::string name() const override { return "laq"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  Needs needs() const override { return {sc_.window, false}; }
  int64_t protected_tokens() const override { return sc_.window; }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    if (keep >= st.n_ctx) return keep_all(st, sc_.query_head());
    auto draft = apply_selection(*st.cache, snap_->select(st, b));
    auto tr = trace_greedy(*st.model, draft, st.last_logits, n_pseudo_, st.stop_ids, draft.len(0));
    const int64_t w = std::min(sc_.window, st.n_ctx);
    Selection s;
    s.query_head = sc_.query_head();
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) {
      const auto& qw = st.q_window.at(l);
      auto q = torch::cat({qw.narrow(2, qw.size(2) - w, w), tr.queries[l].to(qw.scalar_type())}, 2);
      // Window rows are causal inside the prompt; pseudo rows see the whole prompt.
      auto lim = torch::full({q.size(2)}, st.n_ctx, torch::kInt64);
      for (int64_t i = 0; i < w; ++i) lim[i] = st.n_ctx - w + i + 1;
      auto scores = sc_.score_limits(q, st.cache->keys(l), st.n_ctx, lim, st.cache->n_kv_heads());
      s.idx.push_back(select_topk(scores, keep, 0, w));
    }
    return s;
  }

 private:
  Options opt_;
  WindowScorer sc_;
  int64_t n_pseudo_ = 8;
  std::unique_ptr<Method> snap_;
};
}  // namespace
MethodInfo info_laq() {
  auto d = window_scorer_defaults(32, 7, "max");
  d["n_pseudo"] = 8;
  auto h = window_scorer_help();
  h["n_pseudo"] = "pseudo tokens decoded on the SnapKV-compressed cache whose queries re-score the prompt";
  return {"laq", "Lookahead Q-Cache: pseudo answer tokens decoded on a SnapKV draft re-score the full prompt", d, h};
}
std::unique_ptr<Method> make_laq(const nlohmann::json& o) { return std::make_unique<Laq>(o); }
}  // namespace judgeq
