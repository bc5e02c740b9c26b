// tova (Oren et al. 2024): the last prompt token's attention, averaged over all heads of a layer,
// picks one set of entries shared by the layer's heads.
#include "kv/methods.h"
#include "kv/scoring.h"

namespace judgeq {
namespace {
class Tova : public Method {
 public:
  explicit Tova(const nlohmann::json& o) : opt_("tova", info_tova().defaults, o) {}
  std::string name() const override { return "tova"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  Needs needs() const override { return {1, false}; }
  int64_t protected_tokens() const override { return 1; }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    Selection s;
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) {
      const auto& q = st.q_window.at(l);
      auto p = attention_rows(q.narrow(2, q.size(2) - 1, 1), st.cache->keys(l), 1);  // [B, H, 1, T]
      auto sc = p.select(2, 0).narrow(-1, 0, st.n_ctx).mean(1, true).expand({-1, st.cache->n_kv_heads(), -1});
      s.idx.push_back(select_topk(sc.contiguous(), keep, 0, 1));
    }
    return s;
  }

 private:
  Options opt_;
};
}  // namespace
MethodInfo info_tova() {
  return {"tova", "last-token attention averaged over the layer's heads; one shared set per layer",
          nlohmann::json::object(), nlohmann::json::object()};
}
std::unique_ptr<Method> make_tova(const nlohmann::json& o) { return std::make_unique<Tova>(o); }
}  // namespace judgeq
