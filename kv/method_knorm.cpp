// knorm (Devoto et al. 2024): keys with the smallest L2 norm draw the most attention; keep those.
#include "kv/methods.h"
#include "kv/scoring.h"

namespace judgeq {
namespace {
class KNorm : public Method {
 public:
  explicit KNorm(const nlohmann::json& o) : opt_("knorm", info_knorm().defaults, o) {}
  std::string name() const override { return "knorm"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  int64_t protected_tokens() const override { return opt_.integer("window"); }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    Selection s;
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) {
      auto sc = -st.cache->keys(l).narrow(2, 0, st.n_ctx).to(torch::kFloat32).norm(2, -1);  // [B, H_kv, T]
      s.idx.push_back(select_topk(sc, keep, 0, opt_.integer("window")));
    }
    return s;
  }

 private:
  Options opt_;
};
}  // namespace
MethodInfo info_knorm() {
  return {"knorm", "keep the keys of smallest L2 norm", {{"window", 0}}, {{"window", "most recent entries always kept"}}};
}
std::unique_ptr<Method> make_knorm(const nlohmann::json& o) { return std::make_unique<KNorm>(o); }
}  // namespace judgeq
