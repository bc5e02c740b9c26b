#include "kv/compress.h"

#include "kv/scoring.h"
#include "model/generate.h"
#include "util/compat.h"
#include "util/error.h"

namespace judgeq {

namespace {

#if JUDGEQ_HAVE_SDPA
// Causal attention q k^T * scale against values v on a fused kernel that also returns each query
// row's log-sum-exp ([B, H, Tq] float32) and never holds the scores. kernel "auto": cuDNN where
// it takes the inputs, else FlashAttention (values as wide as the queries), else the
// memory-efficient kernel; "flash", "efficient" or "cudnn" to force one. v [B, H, Tk, Dv]:
// cuDNN and the memory-efficient kernel take a narrow Dv; Flash gets v padded to the head size.
std::pair<torch::Tensor, torch::Tensor> causal_attention_lse_on(const torch::Tensor& q, const torch::Tensor& k,
                                                                const torch::Tensor& v, double scale,
                                                                const std::string& kernel) {
  check(kernel == "auto" || kernel == "flash" || kernel == "efficient" || kernel == "cudnn", "unknown H2O kernel '",
        kernel, "' (expected flash, efficient, cudnn or auto)");
  if (kernel == "cudnn" || kernel == "auto") {
    auto r = compat::causal_attention_with_lse(q, k, v, scale, compat::LseKernel::cudnn);
    if (r.second.defined()) return r;
    check(kernel == "auto", "cuDNN attention does not take H2O's pass here; use another kernel");
  }
  if (kernel == "flash" || kernel == "auto") {
    const int64_t D = q.size(3), Dv = v.size(3);
    auto vf = Dv == D ? v : torch::constant_pad_nd(v, {0, D - Dv});
    auto r = compat::causal_attention_with_lse(q, k, vf, scale, compat::LseKernel::flash);
    if (r.second.defined()) return {r.first.narrow(-1, 0, Dv), r.second};
    check(kernel == "auto", "FlashAttention does not take H2O's pass here; use another kernel");
  }
  auto r = at::_scaled_dot_product_efficient_attention(q, k, v, c10::nullopt, true, 0.0, true, scale);
  return {std::get<0>(r), compat::row_lse_of(std::get<1>(r), q.size(2))};
}

// The row log-sum-exps alone (the output is computed against an 8-wide zero value, thrown away).
torch::Tensor causal_row_lse(const torch::Tensor& q, const torch::Tensor& k, double scale,
                             const std::string& kernel = "auto") {
  auto v = torch::zeros({q.size(0), q.size(1), k.size(2), 8}, q.options());
  return causal_attention_lse_on(q, k, v, scale, kernel).second;
}

// H2O's column sums on CUDA from fused attention passes, never materialising scores: (1) the
// row log-sum-exps lse_i of the causal prefill attention (from the prefill's own kernel when it
// gave them); (2) the transposed attention, keys as queries and queries as keys, both sequences
// reversed so that "query i >= key j" becomes an ordinary causal mask. Column j's sum is
// sum_{i >= j} exp(s_ij - lse_i), which pass (2) gets in one of two forms:
//   "dims": two extra dimensions subtract lse_i from every score (split in a high and a low
//     half-precision part, so the subtraction keeps float32 accuracy); the pass's own
//     log-sum-exp for key j is then log of the column sum. Head size D + 8.
//   "value": the head size stays D; each transposed key i carries the value w_i = exp(c - lse_i)
//     (c: the middle of the head's lse range), so the output is sum_i softmax_j(i) w_i and the
//     column sum is that times exp(L_j - c), L_j the pass's log-sum-exp. The probabilities and
//     the output are rounded to the half-precision type: 6e-3 to 7e-3 relative error in bf16
//     (docs/performance.md), so H2O itself uses "dims"; "value" measures the cheapest pass.
// q [1, H, T, D], k [1, H_kv, T, D] (prompt only, all valid). Returns [1, H, T] float32.
torch::Tensor h2o_fused(const torch::Tensor& q, const torch::Tensor& k, torch::Tensor row_lse,
                        const std::string& kernel, const std::string& form = "dims") {
  check(form == "dims" || form == "value", "unknown H2O pass form '", form, "' (expected dims or value)");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), G = H / k.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto kh = G == 1 ? k : k.repeat_interleave(G, 1);  // [B, H, T, D]
  if (!row_lse.defined()) row_lse = causal_row_lse(q, kh, scale, kernel);
  auto lse = row_lse.to(torch::kFloat32);
  if (form == "value") {
    auto c = (lse.amax(-1, true) + lse.amin(-1, true)) / 2;  // [B, H, 1]
    auto v = torch::zeros({B, H, T, 8}, q.options());
    v.select(-1, 0).copy_((c - lse).exp().flip(2));
    auto r = causal_attention_lse_on(kh.flip(2), q.flip(2), v, scale, kernel);
    return (r.first.select(-1, 0).to(torch::kFloat32) * (r.second - c).exp()).flip(2);
  }
  auto x = lse / scale;
  auto hi = x.to(q.scalar_type());
  auto lo = (x - hi.to(torch::kFloat32)).to(q.scalar_type());
  const int64_t E = 8;  // extra dims, keeps the head size a multiple of 8
  auto tq = torch::zeros({B, H, T, D + E}, q.options());  // transposed queries: [k_j, 1, 1, 0...]
  tq.narrow(-1, 0, D).copy_(kh.flip(2));
  tq.narrow(-1, D, 2).fill_(1.0);
  kh = torch::Tensor();
  auto tk = torch::zeros({B, H, T, D + E}, q.options());  // transposed keys: [q_i, -hi_i, -lo_i, 0...]
  tk.narrow(-1, 0, D).copy_(q.flip(2));
  tk.select(-1, D).copy_(-hi.flip(2));
  tk.select(-1, D + 1).copy_(-lo.flip(2));
  return causal_row_lse(tq, tk, scale, kernel).exp().flip(2);
}
#endif

}  // namespace

torch::Tensor h2o_column_sums_blockwise(const torch::Tensor& q, const torch::Tensor& k) {
  const int64_t B = q.size(0), H = q.size(1), Tk = k.size(2), T = q.size(2);
  const int64_t rows = std::max<int64_t>(1, score_block_elements(q.device()) / std::max<int64_t>(1, B * H * Tk));
  auto acc = torch::zeros({B, H, Tk}, q.options().dtype(torch::kFloat32));
  const int64_t past = Tk - T;
  for (int64_t r0 = 0; r0 < T; r0 += rows) {
    const int64_t r1 = std::min(T, r0 + rows);
    auto lim = torch::arange(r0, r1, torch::kInt64) + past + 1;
    // Keys beyond the block's last row get zero weight; trimming them saves the work.
    const int64_t kmax = past + r1;
    acc.narrow(2, 0, kmax) += attention_rows(q.narrow(2, r0, r1 - r0), k.narrow(2, 0, kmax), lim).sum(2);
  }
  return acc;
}

namespace {
bool fused_h2o_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& key_valid) {
  const bool half = q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kHalf;
  return JUDGEQ_HAVE_SDPA && q.is_cuda() && half && q.size(0) == 1 && !key_valid.defined() && k.size(2) == q.size(2);
}
}  // namespace

torch::Tensor h2o_column_sums(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& key_valid,
                              const torch::Tensor& row_lse) {
#if JUDGEQ_HAVE_SDPA
  if (fused_h2o_applies(q, k, key_valid)) return h2o_fused(q, k, row_lse, "auto");
#endif
  (void)row_lse;
  (void)key_valid;
  return h2o_column_sums_blockwise(q, k);
}

torch::Tensor h2o_column_sums_given_lse(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& row_lse,
                                        const std::string& kernel, const std::string& form) {
  check(fused_h2o_applies(q, k, torch::Tensor()) && row_lse.defined(),
        "the fused H2O pass needs CUDA, bf16 or fp16, one unpadded prompt and the row log-sum-exps");
#if JUDGEQ_HAVE_SDPA
  return h2o_fused(q, k, row_lse, kernel, form);
#else
  (void)kernel;
  (void)form;
  return torch::Tensor();
#endif
}

void PrefillProbe::on_layer(int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor&,
                            const torch::Tensor& key_valid) {
  const int64_t T = q.size(2);
  if (static_cast<int64_t>(q_window.size()) <= layer) q_window.resize(layer + 1);
  const int64_t w = std::min(needs_.window, T);
  if (w > 0) q_window[layer] = q.narrow(2, T - w, w).detach().clone();
  if (!needs_.h2o) return;
  // The column sums wait for the layer's attention, which may hand over its row log-sum-exps.
  q_ = q;
  k_ = k;
  key_valid_ = key_valid;
}

void PrefillProbe::on_row_lse(int64_t layer, const torch::Tensor& lse) {
  if (!needs_.h2o) return;
  check(q_.defined(), "internal: on_row_lse without on_layer for layer ", layer);
  if (static_cast<int64_t>(h2o.size()) <= layer) h2o.resize(layer + 1);
  h2o[layer] = h2o_column_sums(q_, k_, key_valid_, lse);
  if (lse.defined()) ++layers_with_row_lse;
  q_ = k_ = key_valid_ = torch::Tensor();
}

void QueryRecorder::on_layer(int64_t layer, const torch::Tensor& q, const torch::Tensor&, const torch::Tensor&,
                             const torch::Tensor&) {
  if (static_cast<int64_t>(rows_.size()) <= layer) rows_.resize(layer + 1);
  rows_[layer].push_back(q.detach());
}

std::vector<torch::Tensor> QueryRecorder::queries() const {
  std::vector<torch::Tensor> out;
  for (auto& r : rows_) out.push_back(torch::cat(r, 2));
  return out;
}

namespace {
class TraceProbe : public AttentionProbe {
 public:
  explicit TraceProbe(int64_t n_ctx) : n_ctx_(n_ctx) {}
  void on_layer(int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor&,
                const torch::Tensor&) override {
    if (static_cast<int64_t>(q_.size()) <= layer) {
      q_.resize(layer + 1);
      sum_.resize(layer + 1);
    }
    q_[layer].push_back(q.detach());
    auto p = attention_rows(q, k, q.size(2)).narrow(-1, 0, n_ctx_).sum(2);  // [B, H, n_ctx]
    sum_[layer] = sum_[layer].defined() ? sum_[layer] + p : p;
  }
  std::vector<std::vector<torch::Tensor>> q_;
  std::vector<torch::Tensor> sum_;

 private:
  int64_t n_ctx_;
};
}  // namespace

DecodeTrace trace_greedy(const LlamaModel& model, KVCache& cache, torch::Tensor next_logits, int64_t n,
                         const std::vector<int64_t>& stop_ids, int64_t n_ctx) {
  check(cache.batch() == 1, "trace_greedy decodes one sequence at a time");
  TraceProbe probe(n_ctx);
  DecodeTrace tr;
  torch::NoGradGuard ng;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t tok = next_logits.argmax(-1).item<int64_t>();
    tr.tokens.push_back(tok);
    ForwardOptions fo;
    fo.probe = &probe;
    next_logits = model.forward(torch::tensor({tok}, torch::kInt64).view({1, 1}), cache, fo).select(1, 0);
    if (std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end()) break;
  }
  for (auto& q : probe.q_) tr.queries.push_back(torch::cat(q, 2));
  tr.attn_sum = std::move(probe.sum_);
  return tr;
}

const DecodeTrace& oracle_trace(const PromptState& st, int64_t n) {
  struct Memo {
    int64_t n;
    DecodeTrace trace;
  };
  auto* memo = static_cast<Memo*>(st.oracle_trace.get());
  if (!memo || memo->n != n) {
    auto fresh = std::make_shared<Memo>();
    fresh->n = n;
    auto cache = st.cache->clone();
    fresh->trace = trace_greedy(*st.model, cache, st.last_logits, n, st.stop_ids, st.n_ctx);
    st.oracle_trace = fresh;
    memo = fresh.get();
  }
  return memo->trace;
}

PromptState prefill_for_compression(const LlamaModel& model, const std::vector<int64_t>& ids, KVCache& cache,
                                    const Needs& needs, int64_t chunk) {
  check(!ids.empty(), "empty prompt");
  const int64_t T = static_cast<int64_t>(ids.size());
  check(T <= model.config().max_position_embeddings, "prompt too long (got ", T,
        " tokens, expected at most max_position_embeddings = ", model.config().max_position_embeddings, ")");
  PrefillProbe probe(needs);
  ForwardOptions fo;
  fo.probe = &probe;
  fo.chunk = chunk;
  auto logits = model.forward(torch::tensor(ids, torch::kInt64).view({1, T}), cache, fo);
  PromptState st;
  st.model = &model;
  st.cache = &cache;
  st.n_ctx = cache.len(0);
  st.q_window = std::move(probe.q_window);
  st.h2o = std::move(probe.h2o);
  st.last_logits = logits.select(1, 0);
  st.stop_ids = model.config().eos_token_ids;
  return st;
}

Needs merge_needs(const std::vector<const Method*>& methods) {
  Needs n;
  for (auto* m : methods) {
    auto x = m->needs();
    n.window = std::max(n.window, x.window);
    n.h2o = n.h2o || x.h2o;
  }
  return n;
}

namespace {
// The prompt cache with K/V copied per query head (query-head selection mode).
KVCache expand_to_query_heads(const KVCache& c, int64_t n_heads) {
  const int64_t G = n_heads / c.n_kv_heads();
  KVCache e(c.n_layers(), c.batch(), n_heads, c.head_dim(), c.dtype(), c.device());
  for (int64_t l = 0; l < c.n_layers(); ++l) {
    auto pos = c.positions(l).select(1, 0);  // [B, T]: identical across heads before eviction
    e.append(l, c.keys(l).repeat_interleave(G, 1), c.values(l).repeat_interleave(G, 1), pos);
  }
  e.set_next_positions(c.next_positions());
  return e;
}
}  // namespace

KVCache apply_selection(const KVCache& prompt, const Selection& sel) {
  check(static_cast<int64_t>(sel.idx.size()) == prompt.n_layers(), "selection has ", sel.idx.size(),
        " layers, the cache ", prompt.n_layers());
  // Every layer is replaced by its gather (new buffers), so a shallow copy suffices: the prompt's
  // buffers are read, never written, and no full copy of the cache is made.
  KVCache out = sel.query_head ? expand_to_query_heads(prompt, sel.idx[0].size(1)) : KVCache(prompt);
  for (int64_t l = 0; l < out.n_layers(); ++l)
    out.gather(l, sel.idx[l], sel.valid.size() > static_cast<size_t>(l) ? sel.valid[l] : torch::Tensor());
  return out;
}

KVCache mask_selection(const KVCache& prompt, const Selection& sel) {
  KVCache out = sel.query_head ? expand_to_query_heads(prompt, sel.idx[0].size(1)) : prompt.clone();
  for (int64_t l = 0; l < out.n_layers(); ++l) {
    const auto& idx = sel.idx[l];
    auto src = torch::ones(idx.sizes(), torch::TensorOptions().dtype(torch::kInt32).device(idx.device()));
    if (sel.valid.size() > static_cast<size_t>(l) && sel.valid[l].defined()) src = sel.valid[l].to(torch::kInt32);
    // scatter_add, not scatter: padding rows of ragged selections may repeat an index.
    auto keep = torch::zeros({idx.size(0), idx.size(1), out.len(l)}, src.options()).scatter_add_(2, idx, src) > 0;
    out.restrict(l, keep);
  }
  return out;
}

HitRate hit_rate(const Selection& method, const Selection& oracle, int64_t n_ctx, int64_t n_heads) {
  HitRate h;
  double total = 0;
  for (size_t l = 0; l < oracle.idx.size(); ++l) {
    auto to_mask = [&](const Selection& s, int64_t heads_out) {
      const auto& idx = s.idx[l];
      auto src = s.valid.size() > l && s.valid[l].defined() ? s.valid[l].to(torch::kCPU, torch::kInt32)
                                                             : torch::ones(idx.sizes(), torch::kInt32);
      auto m = torch::zeros({idx.size(0), idx.size(1), n_ctx}, torch::kInt32).scatter_add_(2, idx.to(torch::kCPU), src) > 0;
      if (m.size(1) != heads_out) m = m.repeat_interleave(heads_out / m.size(1), 1);
      return m;
    };
    const int64_t heads = method.query_head || oracle.query_head ? n_heads : method.idx[l].size(1);
    auto mm = to_mask(method, heads), om = to_mask(oracle, heads);
    const double hit = (mm & om).sum().item<double>(), want = om.sum().item<double>();
    h.per_layer.push_back(want > 0 ? hit / want : 1.0);
    total += h.per_layer.back();
  }
  h.overall = h.per_layer.empty() ? 0 : total / h.per_layer.size();
  return h;
}

}  // namespace judgeq
