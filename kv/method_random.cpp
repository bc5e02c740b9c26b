// random: uniformly random entries (seeded), plus an optional recent window.
#include "kv/methods.h"
#include "kv/scoring.h"

namespace judgeq {
namespace {
class Random : public Method {
 public:
  explicit Random(const nlohmann::json& o) : opt_("random", info_random().defaults, o) {}
  std::string name() const override { return "random"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  int64_t protected_tokens() const override { return opt_.integer("window"); }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    Selection s;
    auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(opt_.integer("seed")));
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) {
      auto scores = torch::rand({st.cache->batch(), st.cache->n_kv_heads(), st.n_ctx}, gen, torch::kFloat32);
      s.idx.push_back(select_topk(scores, keep, 0, opt_.integer("window")).to(st.cache->device()));
    }
    return s;
  }

 private:
  Options opt_;
};
}  // namespace
MethodInfo info_random() {
  return {"random", "uniformly random entries per layer and KV head (seeded)", {{"seed", 0}, {"window", 0}},
          {{"seed", "random seed"}, {"window", "most recent entries always kept"}}};
}
std::unique_ptr<Method> make_random(const nlohmann::json& o) { return std::make_unique<Random>(o); }
}  // namespace judgeq
