// judgeq (Judge Q, arXiv 2509.10798): trained soft tokens appended after the prompt at positions
// T..T+S-1 score the prompt's keys with their queries (pooled and reduced as SnapKV); an optional
// recent window is kept too. Their own KV never enters the cache (append = false), so decoding
// starts from the prefill's last-position logits exactly as without them.
#include <atomic>
#include <map>

#include "kv/methods.h"
#include "kv/scoring.h"
#include "trainer/soft_tokens.h"
#include "util/error.h"

namespace judgeq {
namespace {
class SoftScoreProbe : public AttentionProbe {
 public:
  SoftScoreProbe(const WindowScorer& sc, int64_t n_ctx, int64_t n_kv_heads) : sc_(sc), n_ctx_(n_ctx), hkv_(n_kv_heads) {}
  void on_layer(int64_t, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor&, const torch::Tensor&) override {
    // Soft rows are the last S keys: causal among themselves, full view of the prompt.
    scores.push_back(sc_.score(q, k, n_ctx_, q.size(2), hkv_));
  }
  std::vector<torch::Tensor> scores;

 private:
  const WindowScorer& sc_;
  int64_t n_ctx_, hkv_;
};

class JudgeQ : public Method {
 public:
  explicit JudgeQ(const nlohmann::json& o) : opt_("judgeq", info_judgeq().defaults, o) {
    sc_.read(opt_);
    path_ = opt_.text("soft_tokens");
    check(!path_.empty(), "method judgeq needs its soft tokens: pass --soft-tokens FILE (made by judgeq-train)");
  }
  // Soft tokens held in memory (the trainer's validation); "soft_tokens" must stay unset.
  JudgeQ(const torch::Tensor& soft, const nlohmann::json& o) : opt_("judgeq", info_judgeq().defaults, o) {
    sc_.read(opt_);
    check(opt_.text("soft_tokens").empty(), "method judgeq got both in-memory soft tokens and a soft_tokens file");
    check(soft.defined() && soft.dim() == 2 && soft.size(0) >= 1, "method judgeq needs soft tokens [S, hidden] (got ",
          soft.defined() ? soft.sizes() : torch::IntArrayRef{}, ")");
    soft_ = soft.detach();
  }
  std::string name() const override { return "judgeq"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  int64_t protected_tokens() const override { return sc_.window; }
  Selection select(const PromptState& st, const Budget& b) override {
    const int64_t keep = resolve_budget(*this, b, st.n_ctx);
    if (keep >= st.n_ctx) return keep_all(st, sc_.query_head());
    const LlamaModel& m = *st.model;
    if (!soft_.defined()) soft_ = load_soft_tokens(path_, m.config()).embeddings;
    check(soft_.size(1) == m.config().hidden_size, "method judgeq: soft tokens of width ", soft_.size(1),
          " do not fit the model (expected hidden_size ", m.config().hidden_size, ")");
    if (soft_.device() != m.device() || soft_.scalar_type() != m.dtype()) soft_ = soft_.to(m.device(), m.dtype());
    const int64_t B = st.cache->batch(), S = soft_.size(0);
    check(st.n_ctx + S <= m.config().max_position_embeddings, "prompt of ", st.n_ctx, " tokens + ", S,
          " soft tokens exceeds max_position_embeddings ", m.config().max_position_embeddings);
    // The soft tokens' scores do not depend on the budget: one pass per prompt and instance.
    const std::vector<torch::Tensor> scores = memo_layers(st, "judgeq#" + std::to_string(id_) + " " + sc_.key(), [&] {
      SoftScoreProbe probe(sc_, st.n_ctx, st.cache->n_kv_heads());
      ForwardOptions fo;
      fo.inputs_embeds = soft_.unsqueeze(0).expand({B, S, soft_.size(1)});
      fo.positions = soft_token_positions(st.cache->next_positions(), S);
      fo.append = false;
      fo.logit_rows = {};
      fo.probe = &probe;
      // S queries against the whole prompt: batched matmuls beat the fused kernels' masked path.
      fo.force_manual_attention = true;
      torch::NoGradGuard ng;
      m.forward(torch::Tensor(), const_cast<KVCache&>(*st.cache), fo);  // append = false: the cache is not modified
      return probe.scores;
    });
    Selection s;
    s.query_head = sc_.query_head();
    const int64_t w = std::min(sc_.window, st.n_ctx);
    for (auto& sc : scores) s.idx.push_back(select_topk(sc, keep, 0, w));
    return s;
  }

 private:
  Options opt_;
  WindowScorer sc_;
  std::string path_;
  torch::Tensor soft_;  // [S, hidden]
  // Names this instance's soft tokens in the prompt state's memo.
  const uint64_t id_ = next_id_.fetch_add(1);
  static inline std::atomic<uint64_t> next_id_{0};
};
}  // namespace
MethodInfo info_judgeq() {
  auto d = window_scorer_defaults(32, 7, "max");
  d["soft_tokens"] = "";
  auto h = window_scorer_help();
  h["window"] = "most recent prompt entries kept besides the soft tokens' choice (0: none)";
  h["soft_tokens"] = "safetensors file of trained soft tokens (judgeq-train export); --soft-tokens sets it";
  return {"judgeq", "Judge Q: trained soft tokens after the prompt score its entries; their KV is dropped", d, h};
}
std::unique_ptr<Method> make_judgeq(const nlohmann::json& o) { return std::make_unique<JudgeQ>(o); }
std::unique_ptr<Method> make_judgeq_method(const torch::Tensor& soft_embeddings, const nlohmann::json& options) {
  return std::make_unique<JudgeQ>(soft_embeddings, options);
}
}  // namespace judgeq
