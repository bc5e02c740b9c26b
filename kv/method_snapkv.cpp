// snapkv (Li et al. 2024): the last `window` prompt queries score the rest; pooled; top entries
// + the window.
#include "kv/methods.h"
#include "kv/scoring.h"
#include "util/error.h"

namespace judgeq {
namespace {
class SnapKv : public Method {
 public:
  explicit SnapKv(const nlohmann::json& o) : opt_("snapkv", info_snapkv().defaults, o) { sc_.read(opt_); }
  std::string name() const override { return "snapkv"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  Needs needs() const override { return {sc_.window, false}; }
  int64_t protected_tokens() const override { return sc_.window; }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    if (keep >= st.n_ctx) return keep_all(st, sc_.query_head());
    Selection s;
    s.query_head = sc_.query_head();
    const int64_t w = std::min(sc_.window, st.n_ctx);
    for (const auto& scores : sc_.window_scores(st, "snapkv")) s.idx.push_back(select_topk(scores, keep, 0, w));
    return s;
  }

 private:
  Options opt_;
  WindowScorer sc_;
};
}  // namespace
MethodInfo info_snapkv() {
  return {"snapkv", "observation-window attention (pooled) selects the prompt entries; window kept",
          window_scorer_defaults(32, 7, "max"), window_scorer_help()};
}
std::unique_ptr<Method> make_snapkv(const nlohmann::json& o) { return std::make_unique<SnapKv>(o); }
}  // namespace judgeq
