// streamingllm (Xiao et al. 2023): the first `sinks` entries (attention sinks) + the most recent.
#include "kv/methods.h"
#include "kv/scoring.h"

namespace judgeq {
namespace {
class StreamingLlm : public Method {
 public:
  explicit StreamingLlm(const nlohmann::json& o) : opt_("streamingllm", info_streamingllm().defaults, o) {}
  std::string name() const override { return "streamingllm"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  int64_t protected_tokens() const override { return opt_.integer("sinks"); }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    const int64_t sinks = std::min(opt_.integer("sinks"), keep);
    auto zeros = torch::zeros({st.cache->batch(), st.cache->n_kv_heads(), st.n_ctx}, torch::kFloat32);
    auto idx = select_topk(zeros, keep, sinks, keep - sinks).to(st.cache->device());
    Selection s;
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) s.idx.push_back(idx);
    return s;
  }

 private:
  Options opt_;
};
}  // namespace
MethodInfo info_streamingllm() {
  return {"streamingllm", "attention sinks + most recent entries", {{"sinks", 4}},
          {{"sinks", "first entries always kept"}}};
}
std::unique_ptr<Method> make_streamingllm(const nlohmann::json& o) { return std::make_unique<StreamingLlm>(o); }
}  // namespace judgeq
