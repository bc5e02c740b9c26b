// oracle: the attention that the model's own greedy answer, generated with the full cache, pays
// to the prompt. An upper bound for prefill-time methods and the reference for hit rates.
#include "kv/compress.h"
#include "kv/methods.h"
#include "kv/scoring.h"

namespace judgeq {
namespace {
class Oracle : public Method {
 public:
  explicit Oracle(const nlohmann::json& o) : opt_("oracle", info_oracle().defaults, o) {}
  std::string name() const override { return "oracle"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  int64_t protected_tokens() const override { return opt_.integer("window"); }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    const int64_t n = opt_.integer("answer_tokens") > 0 ? opt_.integer("answer_tokens") : st.answer_tokens;
    const DecodeTrace& tr = oracle_trace(st, n);
    return select_from_query_head_scores([&](int64_t l) { return tr.attn_sum[l]; }, st.cache->n_layers(),
                                         st.cache->n_kv_heads(), opt_.text("gqa"), keep, opt_.integer("window"));
  }

 private:
  Options opt_;
};
}  // namespace
MethodInfo info_oracle() {
  return {"oracle", "attention of the model's own full-KV greedy answer over the prompt (upper bound)",
          {{"window", 0}, {"gqa", "mean"}, {"answer_tokens", 0}},
          {{"window", "most recent entries always kept"},
           {"gqa", "mean | max | sum | query-head"},
           {"answer_tokens", "answer tokens to score with (0: the benchmark's max_new_tokens)"}}};
}
std::unique_ptr<Method> make_oracle(const nlohmann::json& o) { return std::make_unique<Oracle>(o); }
}  // namespace judgeq
