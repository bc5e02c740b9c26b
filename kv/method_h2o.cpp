// h2o (Zhang et al. 2023): heavy hitters by attention accumulated over every prompt query
// (column sums computed block by block during the prefill) + the most recent entries.
#include "kv/methods.h"
#include "kv/scoring.h"
#include "util/error.h"

namespace judgeq {
namespace {
class H2o : public Method {
 public:
  explicit H2o(const nlohmann::json& o) : opt_("h2o", info_h2o().defaults, o) {}
  std::string name() const override { return "h2o"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  Needs needs() const override { return {0, true}; }
  int64_t protected_tokens() const override { return opt_.integer("window"); }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    check(st.h2o.size() == static_cast<size_t>(st.cache->n_layers()), "h2o needs the prefill's attention sums");
    return select_from_query_head_scores([&](int64_t l) { return st.h2o[l].narrow(2, 0, st.n_ctx); },
                                         st.cache->n_layers(), st.cache->n_kv_heads(), opt_.text("gqa"), keep,
                                         opt_.integer("window"));
  }

 private:
  Options opt_;
};
}  // namespace
MethodInfo info_h2o() {
  return {"h2o", "heavy hitters by accumulated attention of all prompt queries + recent window",
          {{"window", 32}, {"gqa", "mean"}},
          {{"window", "most recent entries always kept"}, {"gqa", "mean | max | sum | query-head"}}};
}
std::unique_ptr<Method> make_h2o(const nlohmann::json& o) { return std::make_unique<H2o>(o); }
}  // namespace judgeq
