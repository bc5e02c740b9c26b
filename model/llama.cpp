#include "model/llama.h"

#include <cmath>
#include <limits>
#include <tuple>
#include <array>
#include <map>

#include "model/rope.h"
#include "util/compat.h"
#include "util/error.h"
#include "util/safetensors.h"

namespace judgeq {

namespace {
// Half precision on CUDA takes the fused normalisation; float32 and CPU keep HF's op order.
bool fused_half(const torch::Tensor& x) { return x.is_cuda() && x.scalar_type() != torch::kFloat32 && x.scalar_type() != torch::kFloat64; }
}  // namespace

// HF's inverse frequencies, in float32 exactly as transformers computes them.
torch::Tensor rope_inv_freq(const ModelConfig& c) {
  auto idx = torch::arange(0, c.head_dim, 2, torch::kInt64).to(torch::kFloat32);
  auto inv = 1.0 / torch::pow(torch::tensor(c.rope_theta, torch::kFloat32), idx / static_cast<double>(c.head_dim));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") return inv / s.factor;
  if (s.type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    auto wavelen = 2.0 * M_PI / inv;
    auto scaled = torch::where(wavelen > low_wavelen, inv / s.factor, inv);
    auto smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    auto smoothed = (1.0 - smooth) * scaled / s.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    return torch::where(medium, smoothed, scaled);
  }
  return inv;
}

torch::Tensor rope_signed_sin(const torch::Tensor& sin) {
  auto halves = sin.chunk(2, -1);
  return torch::cat({-halves[0], halves[1]}, -1);
}

torch::Tensor apply_rope_signed(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin_signed) {
  auto halves = x.chunk(2, -1);
  auto out = x * cos;
  return out.add_(torch::cat({halves[1], halves[0]}, -1) * sin_signed);
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, true) + eps);
  return w * h.to(x.scalar_type());
}

torch::Tensor rms_norm_then_weight(const torch::Tensor& x, const torch::Tensor& w, double eps) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (x.is_cuda()) return w * at::rms_norm(x, {x.size(-1)}, c10::nullopt, eps);
#endif
  return rms_norm(x, w, eps);
}

torch::Tensor fast_rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (x.is_cuda()) return at::rms_norm(x, {x.size(-1)}, w, eps);
#endif
  return rms_norm(x, w, eps);
}

int64_t score_block_elements(const torch::Device& device) {
  return device.is_cuda() ? int64_t(1) << 26 : int64_t(1) << 22;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> LlamaModel::expected_weights(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> e;
  const int64_t qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  e.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    e.push_back({p + "self_attn.q_proj.weight", {qd, c.hidden_size}});
    e.push_back({p + "self_attn.k_proj.weight", {kvd, c.hidden_size}});
    e.push_back({p + "self_attn.v_proj.weight", {kvd, c.hidden_size}});
    e.push_back({p + "self_attn.o_proj.weight", {c.hidden_size, qd}});
    e.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, c.hidden_size}});
    e.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, c.hidden_size}});
    e.push_back({p + "mlp.down_proj.weight", {c.hidden_size, c.intermediate_size}});
    e.push_back({p + "input_layernorm.weight", {c.hidden_size}});
    e.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}});
  }
  e.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_word_embeddings) e.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return e;
}

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& dir, torch::Device device, torch::Dtype dtype) {
  const ModelConfig c = ModelConfig::load(dir);
  Checkpoint ckpt(dir);
  // Tensor names are data: one table of expected names and shapes, checked all at once.
  std::map<std::string, std::vector<int64_t>> expected;
  for (auto& [name, shape] : expected_weights(c)) expected[name] = shape;
  std::vector<std::string> missing, unexpected, misshaped;
  for (auto& [name, shape] : expected) {
    if (!ckpt.contains(name)) {
      missing.push_back(name);
      continue;
    }
    auto info = ckpt.info(name);
    if (info.shape != shape) {
      std::string got, want;
      for (auto s : info.shape) got += (got.empty() ? "" : ",") + std::to_string(s);
      for (auto s : shape) want += (want.empty() ? "" : ",") + std::to_string(s);
      misshaped.push_back(name + " [" + got + "] vs [" + want + "]");
    }
  }
  for (auto& name : ckpt.names()) {
    const bool ignorable = name.find("rotary_emb.inv_freq") != std::string::npos ||
                           (c.tie_word_embeddings && name == "lm_head.weight");
    if (!expected.count(name) && !ignorable) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty()) {
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      const size_t show = std::min<size_t>(v.size(), 8);
      for (size_t i = 0; i < show; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > show) s += ", ... (" + std::to_string(v.size()) + " in all)";
      return s;
    };
    std::string msg = "weights in " + dir + " do not match config.json:";
    if (!missing.empty()) msg += " missing " + join(missing) + ";";
    if (!misshaped.empty()) msg += " wrong shape " + join(misshaped) + ";";
    if (!unexpected.empty()) msg += " unexpected " + join(unexpected) + ";";
    fail(msg, " re-download the checkpoint or fix config.json");
  }
  auto m = from_weights(c, [&](const std::string& name, const std::vector<int64_t>&) { return ckpt.get(name, dtype); },
                        device, dtype);
  m->dir_ = dir;
  return m;
}

std::unique_ptr<LlamaModel> LlamaModel::from_weights(const ModelConfig& c, const WeightSource& src,
                                                     torch::Device device, torch::Dtype dtype) {
  auto m = std::unique_ptr<LlamaModel>(new LlamaModel());
  m->config_ = c;
  m->device_ = device;
  m->dtype_ = dtype;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (auto& [name, shape] : expected_weights(c)) shapes[name] = shape;
  auto get = [&](const std::string& name) {
    auto t = src(name, shapes.at(name)).to(device, dtype);
    TORCH_CHECK(t.sizes().vec() == shapes.at(name), "weight ", name, " has the wrong shape");
    return t;
  };
  m->embed_ = get("model.embed_tokens.weight");
  m->norm_ = get("model.norm.weight");
  m->lm_head_ = c.tie_word_embeddings ? m->embed_ : get("lm_head.weight");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    L.w_qkv = torch::cat({get(p + "self_attn.q_proj.weight"), get(p + "self_attn.k_proj.weight"),
                          get(p + "self_attn.v_proj.weight")}, 0);
    L.w_o = get(p + "self_attn.o_proj.weight");
    L.w_gate_up = torch::cat({get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")}, 0);
    L.w_down = get(p + "mlp.down_proj.weight");
    L.norm_attn = get(p + "input_layernorm.weight");
    L.norm_mlp = get(p + "post_attention_layernorm.weight");
    m->layers_.push_back(std::move(L));
  }
  m->inv_freq_ = rope_inv_freq(c).to(device);
  return m;
}

KVCache LlamaModel::new_cache(int64_t batch) const {
  return KVCache(config_.n_layers, batch, config_.n_kv_heads, config_.head_dim, dtype_, device_);
}

torch::Tensor LlamaModel::embed(const torch::Tensor& ids) const {
  return torch::embedding(embed_, compat::to_device(ids, device_, torch::kInt64));
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaModel::named_weights() const {
  std::vector<std::pair<std::string, torch::Tensor>> out = {{"embed", embed_}, {"norm", norm_}, {"lm_head", lm_head_}};
  for (size_t l = 0; l < layers_.size(); ++l) {
    const std::string p = "layer" + std::to_string(l) + ".";
    const Layer& L = layers_[l];
    out.insert(out.end(), {{p + "qkv", L.w_qkv}, {p + "o", L.w_o}, {p + "gate_up", L.w_gate_up},
                           {p + "down", L.w_down}, {p + "norm_attn", L.norm_attn}, {p + "norm_mlp", L.norm_mlp}});
  }
  return out;
}

// HF LlamaRMSNorm: statistics in float32, scale applied after casting back. In half precision on
// CUDA, the normalisation is LibTorch's fused kernel (one pass over x instead of ~6), rounded to
// the model dtype and then multiplied by the weight, as HF rounds; float32 keeps HF's exact op
// order, so float32 results do not depend on the device.
torch::Tensor LlamaModel::rms_norm(const torch::Tensor& x, const torch::Tensor& w) const {
  if (fused_half(x)) return judgeq::rms_norm_then_weight(x, w, config_.rms_norm_eps);
  return judgeq::rms_norm(x, w, config_.rms_norm_eps);
}

#if JUDGEQ_HAVE_SDPA
namespace {
// The row log-sum-exps of causal attention computed directly for three rows (first, middle,
// last) agree with `lse` [B, H, T]: the kernel reports what H2O needs (natural log, scaled scores).
bool lse_agrees(const torch::Tensor& q, const torch::Tensor& k, double scale, const torch::Tensor& lse) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1), G = H / Hkv;
  auto rows = torch::tensor({int64_t(0), T / 2, T - 1}, torch::TensorOptions().dtype(torch::kInt64).device(q.device()));
  auto qr = q.index_select(2, rows).to(torch::kFloat32).reshape({B, Hkv, G * 3, D});
  auto s = torch::matmul(qr, k.to(torch::kFloat32).transpose(2, 3)).mul_(scale).view({B, H, 3, T});
  auto future = torch::arange(T, rows.options()).view({1, T}) > rows.view({3, 1});  // key after the row
  auto want = s.masked_fill_(future, -std::numeric_limits<float>::infinity()).logsumexp(-1);
  return (want - lse.index_select(2, rows)).abs().max().item<double>() < 1e-2;
}

// Which kernel that returns log-sum-exps gives, on these inputs, exactly what SDPA gives. `out` is
// SDPA's output; `lse` is set when a kernel matches.
compat::LseKernel pick_lse_kernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  double scale, torch::Tensor& out, torch::Tensor& lse) {
  out = compat::fused_attention(q, k, v, torch::Tensor(), true, scale);
  for (auto kind : {compat::LseKernel::cudnn, compat::LseKernel::flash}) {
    auto r = compat::causal_attention_with_lse(q, k, v, scale, kind);
    if (r.first.defined() && torch::equal(r.first, out) && lse_agrees(q, k, scale, r.second)) {
      lse = r.second;
      return kind;
    }
  }
  return compat::LseKernel::none;
}
}  // namespace
#endif

// q [B, H, Tq, D]; k, v [B, H_kv, Tk, D] with the Tq new keys last; key_valid [B, H_kv, Tk] or
// undefined; q_pos [B, Tq], k_pos [B, H_kv, Tk] (sliding window only). Returns [B, H, Tq, D].
torch::Tensor LlamaModel::attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& key_valid, const torch::Tensor& q_pos,
                                    const torch::Tensor& k_pos, bool manual) const {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), G = H / Hkv, past = Tk - Tq;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const bool window = config_.sliding_window && Tk > *config_.sliding_window;
  const bool plain_causal = past == 0 && !key_valid.defined() && !window;
  // One new token that may see every key (decoding): no mask at all, so the fused kernel runs.
  const bool see_all = Tq == 1 && !key_valid.defined() && !window;

  // allowed(b, h_kv, i, j) for query rows [r0, r1): causal by index, key validity, window; a
  // query may always see itself so padded rows never turn into NaN.
  auto allowed = [&](int64_t r0, int64_t r1) {
    auto opt = torch::TensorOptions().device(q.device()).dtype(torch::kInt64);
    auto qi = torch::arange(r0, r1, opt).unsqueeze(1) + past;  // [r, 1] key index of the query
    auto kj = torch::arange(Tk, opt).unsqueeze(0);              // [1, Tk]
    auto m = (kj <= qi).view({1, 1, r1 - r0, Tk});
    if (key_valid.defined()) m = m.logical_and(key_valid.unsqueeze(2));
    if (window) {
      auto qp = q_pos.narrow(1, r0, r1 - r0).view({B, 1, r1 - r0, 1});
      m = m.logical_and(k_pos.unsqueeze(2) > qp - *config_.sliding_window);
    }
    return m.logical_or((kj == qi).view({1, 1, r1 - r0, Tk}));  // [B|1, H_kv|1, r, Tk]
  };

#if JUDGEQ_HAVE_SDPA
  if (!manual) {
    if (plain_causal) return compat::fused_attention(q, k, v, torch::Tensor(), true, scale);
    if (see_all) return compat::fused_attention(q, k, v, torch::Tensor(), false, scale);
    auto m = allowed(0, Tq);  // [B|1, H_kv|1, Tq, Tk]
    if (m.size(1) > 1) m = m.repeat_interleave(G, 1);
    return compat::fused_attention(q, k, v, m.expand({B, m.size(1), Tq, Tk}), false, scale);
  }
#endif
  (void)plain_causal;
  (void)see_all;
  (void)manual;
  // Reference/fallback path: batched matmuls over (batch, KV head) with the G query heads of a group
  // stacked as rows, reading K and V as stored (no repeat_kv or broadcast copies); query rows in
  // chunks so that the score block stays small.
  auto qg = q.view({B, Hkv, G, Tq, D});
  auto out = torch::empty_like(q).view({B, Hkv, G, Tq, D});
  const int64_t rows = std::max<int64_t>(1, score_block_elements(q.device()) / std::max<int64_t>(1, B * H * Tk));
  auto kb = k.reshape({B * Hkv, Tk, D}).transpose(1, 2);  // [B*H_kv, D, Tk]
  auto vb = v.reshape({B * Hkv, Tk, D});
  for (int64_t r0 = 0; r0 < Tq; r0 += rows) {
    const int64_t r1 = std::min(Tq, r0 + rows), n = r1 - r0;
    auto qb = qg.narrow(3, r0, n).reshape({B * Hkv, G * n, D});
    auto s = torch::bmm(qb, kb).view({B, Hkv, G, n, Tk}).to(torch::kFloat32) * scale;
    auto m = allowed(r0, r1).unsqueeze(2);
    s = s.masked_fill(m.logical_not(), -std::numeric_limits<float>::infinity());
    auto p = torch::softmax(s, -1).to(q.scalar_type()).view({B * Hkv, G * n, Tk});
    out.narrow(3, r0, n).copy_(torch::bmm(p, vb).view({B, Hkv, G, n, D}));
  }
  return out.view({B, H, Tq, D});
}

torch::Tensor LlamaModel::logits_rows(const torch::Tensor& h, const ForwardOptions& opt) const {
  const int64_t T = h.size(1);
  torch::Tensor sel;
  if (opt.all_logits) {
    sel = h;
  } else {
    if (opt.logit_rows.empty()) return torch::empty({h.size(0), 0, config_.vocab_size}, h.options().dtype(torch::kFloat32));
    std::vector<int64_t> rows;
    for (auto r : opt.logit_rows) {
      const int64_t rr = r < 0 ? T + r : r;
      TORCH_CHECK(rr >= 0 && rr < T, "logit row ", r, " out of range for ", T, " tokens");
      rows.push_back(rr);
    }
    sel = h.index_select(1, compat::to_device(torch::tensor(rows, torch::kInt64), h.device(), torch::kInt64));
  }
  return torch::linear(rms_norm(sel, norm_), lm_head_).to(torch::kFloat32);
}

torch::Tensor LlamaModel::forward(const torch::Tensor& ids, KVCache& cache, const ForwardOptions& opt) const {
  const ModelConfig& c = config_;
  torch::Tensor h = opt.inputs_embeds.defined() ? compat::to_device(opt.inputs_embeds, device_, dtype_) : embed(ids);
  TORCH_CHECK(h.dim() == 3 && h.size(2) == c.hidden_size, "forward: input must be [B, T, hidden]");
  const int64_t B = h.size(0), T = h.size(1), H = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim;
  TORCH_CHECK(B == cache.batch(), "forward: batch ", B, " does not match the cache's ", cache.batch());
  auto ipt = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor pos = opt.positions;
  if (!pos.defined()) {
    auto start = torch::tensor(cache.next_positions(), ipt).view({B, 1});
    pos = start + torch::arange(T, ipt).view({1, T});
  }
  // The next positions are bookkept on the host: from a host copy when there is one, so that
  // decoding does not wait for the device in the middle of a step.
  const torch::Tensor last_pos_host = pos.device().is_cpu() ? pos.select(1, T - 1).to(torch::kInt64) : torch::Tensor();
  pos = compat::to_device(pos, device_, torch::kInt64);
  torch::Tensor tok_valid = opt.token_valid.defined() ? compat::to_device(opt.token_valid, device_, torch::kBool) : torch::Tensor();

  // cos/sin [B, 1, T, D], float32 then the model dtype, as HF does.
  auto freqs = pos.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.view({1, 1, -1});
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos().to(dtype_).unsqueeze(1), sin = emb.sin().to(dtype_).unsqueeze(1);
  sin = rope_signed_sin(sin);
  const bool manual = opt.force_manual_attention || !compat::kHaveFusedAttention;
  const int64_t chunk = std::max<int64_t>(1, opt.chunk);
  // Long prompts appended to the cache run in token chunks end to end: the projections write
  // K/V straight into the cache, the residual stream is updated in place, and the only
  // full-length activations are h, the queries and the attention output.
  const bool chunked = opt.append && T > chunk;
  const bool in_place = !h.requires_grad();
  if (in_place && T > chunk && opt.inputs_embeds.defined()) h = h.clone();  // never edit the caller's tensor
  const bool head_layout = cache.n_kv_heads() != Hkv;
  TORCH_CHECK(!head_layout || cache.n_kv_heads() == H, "forward: cache has ", cache.n_kv_heads(), " heads, expected ",
              Hkv, " or ", H);

  // Projections and RoPE of token rows [t0, t0 + n): q [B, H, n, D], k, v [B, H_cache, n, D].
  auto project = [&](const Layer& L, int64_t t0, int64_t n) {
    auto x = n == T ? h : h.narrow(1, t0, n);
    auto qkv = torch::linear(rms_norm(x, L.norm_attn), L.w_qkv);  // [B, n, (H + 2 H_kv) D]
    auto parts = qkv.split({H * D, Hkv * D, Hkv * D}, -1);
    auto cs = n == T ? cos : cos.narrow(2, t0, n), sn = n == T ? sin : sin.narrow(2, t0, n);
    auto q = parts[0].view({B, n, H, D}).transpose(1, 2);
    auto k = parts[1].view({B, n, Hkv, D}).transpose(1, 2);
    auto v = parts[2].view({B, n, Hkv, D}).transpose(1, 2);
    q = apply_rope_signed(q, cs, sn);
    k = apply_rope_signed(k, cs, sn);
    if (head_layout) {
      // A cache in query-head layout (one entry set per query head, KVCache-Factory style).
      k = k.repeat_interleave(H / Hkv, 1);
      v = v.repeat_interleave(H / Hkv, 1);
    }
    return std::array<torch::Tensor, 3>{q, k, v};
  };
  // h[rows] += f(rows) over token chunks (in place when nothing needs the old h).
  auto residual = [&](const std::function<torch::Tensor(int64_t, int64_t)>& f) {
    if (T <= chunk) {
      h = h + f(0, T);
    } else if (in_place) {
      for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t n = std::min(chunk, T - t0);
        h.narrow(1, t0, n).add_(f(t0, n));
      }
    } else {
      auto out = torch::empty_like(h);
      for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t n = std::min(chunk, T - t0);
        out.narrow(1, t0, n).copy_(h.narrow(1, t0, n) + f(t0, n));
      }
      h = out;
    }
  };

#if JUDGEQ_HAVE_SDPA
  bool lse_checked = false;
  compat::LseKernel lse_kernel = compat::LseKernel::none;
#endif
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const Layer& L = layers_[l];
    torch::Tensor q, K, V, kvalid, kpos;
    if (chunked) {
      cache.reserve(l, cache.len(l) + T);
      auto qbuf = torch::empty({B, T, H, D}, h.options());
      for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t n = std::min(chunk, T - t0);
        auto qkv = project(L, t0, n);
        qbuf.narrow(1, t0, n).copy_(qkv[0].transpose(1, 2));
        cache.append(l, qkv[1], qkv[2], pos.narrow(1, t0, n), tok_valid.defined() ? tok_valid.narrow(1, t0, n) : tok_valid);
      }
      q = qbuf.transpose(1, 2);
    } else {
      auto qkv = project(L, 0, T);
      q = qkv[0];
      if (opt.append) {
        cache.append(l, qkv[1], qkv[2], pos, tok_valid);
      } else {
        K = torch::cat({cache.keys(l), qkv[1]}, 2);
        V = torch::cat({cache.values(l), qkv[2]}, 2);
        auto cv = cache.valid(l);
        if (cv.defined() || tok_valid.defined()) {
          const int64_t hc = cache.n_kv_heads();
          if (!cv.defined()) cv = torch::ones({B, hc, cache.len(l)}, ipt.dtype(torch::kBool).device(device_));
          auto nv = tok_valid.defined() ? tok_valid.unsqueeze(1).expand({B, hc, T})
                                        : torch::ones({B, hc, T}, ipt.dtype(torch::kBool).device(device_));
          kvalid = torch::cat({cv, nv}, 2);
        }
        if (c.sliding_window) kpos = torch::cat({cache.positions(l), pos.unsqueeze(1).expand({B, cache.n_kv_heads(), T})}, 2);
      }
    }
    if (opt.append) {
      K = cache.keys(l);
      V = cache.values(l);
      kvalid = cache.valid(l);
      if (c.sliding_window) kpos = cache.positions(l);
    }
    if (opt.probe) opt.probe->on_layer(l, q, K, V, kvalid);
    torch::Tensor a;
    if (opt.probe && opt.probe->wants_row_lse()) {
      torch::Tensor lse;
#if JUDGEQ_HAVE_SDPA
      // A plain causal prompt in half precision on CUDA (where H2O's fused passes run): the kernel SDPA picks computes each row's log-sum-exp
      // anyway (H2O's first pass). Called directly it hands them over, provided it is the very
      // kernel SDPA runs: checked bit for bit on the first layer, so the prefill, and every
      // method derived from it, is the same whether or not a method asked for them.
      const bool window = c.sliding_window && K.size(2) > *c.sliding_window;
      const bool half = q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kHalf;
      if (!manual && q.is_cuda() && half && !kvalid.defined() && !window && K.size(2) == T) {
        const double scale = 1.0 / std::sqrt(static_cast<double>(D));
        if (!lse_checked) {
          lse_checked = true;
          lse_kernel = pick_lse_kernel(q, K, V, scale, a, lse);
        } else if (lse_kernel != compat::LseKernel::none) {
          std::tie(a, lse) = compat::causal_attention_with_lse(q, K, V, scale, lse_kernel);
        }
      }
#endif
      opt.probe->on_row_lse(l, lse);
    }
    if (!a.defined()) a = attention(q, K, V, kvalid, pos, kpos, manual);
    a = a.transpose(1, 2);  // [B, T, H, D]
    residual([&](int64_t t0, int64_t n) {
      auto an = n == T ? a : a.narrow(1, t0, n);
      return torch::linear(an.reshape({B, n, H * D}), L.w_o);
    });
    // SwiGLU MLP in token chunks: the [T, 2I] intermediate is the largest activation.
    residual([&](int64_t t0, int64_t n) {
      auto x = n == T ? h : h.narrow(1, t0, n);
      auto gu = torch::linear(rms_norm(x, L.norm_mlp), L.w_gate_up).chunk(2, -1);
      return torch::linear(torch::silu(gu[0]) * gu[1], L.w_down);
    });
  }
  if (opt.append) {
    auto next = cache.next_positions();
    auto last = last_pos_host.defined() ? last_pos_host : pos.select(1, T - 1).to(torch::kCPU);
    auto acc = last.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; ++b) next[b] = acc[b] + 1;
    cache.set_next_positions(next);
  }
  return logits_rows(h, opt);
}

}  // namespace judgeq
