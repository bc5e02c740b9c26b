// adakv (Feng et al. 2024): SnapKV scores, but a layer's candidate budget H_kv * (budget - window)
// is shared across heads by one global top-k, each head keeping at least a floor of
// floor_alpha * (budget - window). Ragged per-head counts: the cache stores valid entries only
// up to the largest head (padding masked), and kept counts are reported per head.
#include "kv/methods.h"
#include "kv/scoring.h"
#include "util/error.h"

namespace judgeq {
namespace {
class AdaKv : public Method {
 public:
  explicit AdaKv(const nlohmann::json& o) : opt_("adakv", info_adakv().defaults, o) {
    sc_.read(opt_);
    check(!sc_.query_head(), "adakv allocates per KV head; gqa query-head is not supported");
    alpha_ = opt_.number("floor_alpha");
    check(alpha_ >= 0 && alpha_ <= 1, "adakv floor_alpha must be in [0, 1] (got ", alpha_, ")");
  }
  std::string name() const override { return "adakv"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  Needs needs() const override { return {sc_.window, false}; }
  int64_t protected_tokens() const override { return sc_.window; }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    if (keep >= st.n_ctx) return keep_all(st);
    const int64_t w = std::min(sc_.window, st.n_ctx), C = st.n_ctx - w, per_head = keep - w;
    const int64_t B = st.cache->batch(), Hkv = st.cache->n_kv_heads();
    const int64_t floor_n = static_cast<int64_t>(alpha_ * per_head);
    Selection s;
    const auto& layer_scores = sc_.window_scores(st, "adakv");
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) {
      auto scores = layer_scores[l].narrow(2, 0, C).to(torch::kCPU, torch::kFloat32);  // [B, H_kv, C]
      auto mask = adakv_allocate(scores, per_head, floor_n);  // [B, H_kv, C]
      auto counts = mask.sum(-1);  // [B, H_kv]
      const int64_t kmax = counts.max().item<int64_t>() + w;
      auto idx = torch::zeros({B, Hkv, kmax}, torch::kInt64);
      auto valid = torch::zeros({B, Hkv, kmax}, torch::kBool);
      for (int64_t bb = 0; bb < B; ++bb)
        for (int64_t h = 0; h < Hkv; ++h) {
          auto sel = torch::cat({mask[bb][h].nonzero().view({-1}), torch::arange(C, st.n_ctx, torch::kInt64)});
          const int64_t n = sel.size(0);
          idx[bb][h].narrow(0, 0, n).copy_(sel);
          valid[bb][h].narrow(0, 0, n).fill_(true);
        }
      s.idx.push_back(idx.to(st.cache->device()));
      s.valid.push_back(valid.to(st.cache->device()));
    }
    return s;
  }

 private:
  Options opt_;
  WindowScorer sc_;
  double alpha_ = 0.2;
};
}  // namespace
MethodInfo info_adakv() {
  auto d = window_scorer_defaults(32, 7, "max");
  d["floor_alpha"] = 0.2;
  auto h = window_scorer_help();
  h["floor_alpha"] = "each KV head keeps at least this fraction of (budget - window)";
  h["gqa"] = "mean | max | sum over the query heads of a KV group";
  return {"adakv", "SnapKV scores with head-adaptive budgets inside each layer (per-head floor)", d, h};
}
std::unique_ptr<Method> make_adakv(const nlohmann::json& o) { return std::make_unique<AdaKv>(o); }
}  // namespace judgeq
