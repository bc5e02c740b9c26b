// pyramidkv (Cai et al. 2024): SnapKV scoring with per-layer budgets falling linearly with depth
// (more in lower layers), the schedule of the original code with beta = 20.
#include "kv/methods.h"
#include "kv/scoring.h"
#include "util/error.h"

namespace judgeq {

namespace {
class PyramidKv : public Method {
 public:
  explicit PyramidKv(const nlohmann::json& o) : opt_("pyramidkv", info_pyramidkv().defaults, o) {
    sc_.read(opt_);
    check(opt_.integer("beta") >= 1, "pyramidkv beta must be >= 1 (got ", opt_.integer("beta"), ")");
  }
  std::string name() const override { return "pyramidkv"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  Needs needs() const override { return {sc_.window, false}; }
  int64_t protected_tokens() const override { return sc_.window; }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    if (keep >= st.n_ctx) return keep_all(st, sc_.query_head());
    const int64_t w = std::min(sc_.window, st.n_ctx);
    auto budgets = pyramid_budgets(keep, w, st.n_ctx, st.cache->n_layers(), opt_.integer("beta"));
    Selection s;
    s.query_head = sc_.query_head();
    const auto& scores = sc_.window_scores(st, "pyramidkv");
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) s.idx.push_back(select_topk(scores[l], budgets[l] + w, 0, w));
    return s;
  }

 private:
  Options opt_;
  WindowScorer sc_;
};
}  // namespace
MethodInfo info_pyramidkv() {
  auto d = window_scorer_defaults(32, 7, "max");
  d["beta"] = 20;
  auto h = window_scorer_help();
  h["beta"] = "pyramid steepness: the top layer keeps (budget - window) / beta candidates";
  return {"pyramidkv", "SnapKV scoring, per-layer budgets decreasing linearly with depth (mean = budget)", d, h};
}
std::unique_ptr<Method> make_pyramidkv(const nlohmann::json& o) { return std::make_unique<PyramidKv>(o); }
}  // namespace judgeq
