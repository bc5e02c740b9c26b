#include "model/graph_decode.h"

#include <array>
#include <cmath>
#include <limits>
#include <map>

#include "model/rope.h"
#include "util/error.h"

// CUDA graphs where LibTorch has CUDA (the GPU machine); plain eager steps elsewhere.
#if defined(__has_include)
#if __has_include(<cuda_runtime_api.h>) && __has_include(<ATen/cuda/CUDAGraph.h>)
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define JUDGEQ_HAVE_CUDA_GRAPHS 1
#endif
#endif
#ifndef JUDGEQ_HAVE_CUDA_GRAPHS
#define JUDGEQ_HAVE_CUDA_GRAPHS 0
#endif

namespace judgeq {


struct StaticDecoder::Impl {
  // One cache of the batch: its rows and the per-layer views the step reads.
  struct Segment {
    KVCache* cache = nullptr;
    int64_t r0 = 0, B = 0;                  // rows r0 .. r0 + B - 1 of the batch
    std::vector<torch::Tensor> ck, cv;      // per layer cache views [B*Hc, len, D]
    // Split reduction of probabilities x values over the cache: one [G, len] x [len, D] product
    // per head runs as a slow batched GEMV on GPUs (one block per head walks all of len), so the
    // cache's whole buffer (capacity cap, zero past len) is cut into nc chunks of c rows:
    // [B*Hc*nc, G, c] x [B*Hc*nc, c, D], summed over the chunks. Undefined: one product.
    std::vector<torch::Tensor> cv_chunks;   // per layer [B*Hc*nc, c, D] views of the buffer
    std::vector<torch::Tensor> p_pad;       // per layer [B*Hc, G, cap] probabilities, zero past len
    std::vector<torch::Tensor> cmask;       // per layer additive [B*Hc, 1, len], or undefined
  };
  const LlamaModel& model;
  std::vector<Segment> segs;
  int64_t B = 0, H = 0, Hkv = 0, Hc = 0, G = 0, D = 0, max_steps = 0, n_steps = 0;
  double scale = 1.0;
  std::vector<int64_t> base_pos;
  // Weights (views of the model's).
  torch::Tensor embed, norm, lm_head;
  std::vector<std::array<torch::Tensor, 6>> layers;  // qkv, o, gate_up, down, norm_attn, norm_mlp
  // Static state read and written by the step.
  torch::Tensor tok_in;    // [B, 1] int64
  torch::Tensor step_idx;  // [1] int64: where this step's K/V go in the scratch buffers
  torch::Tensor cos_tab, ssin_tab;          // [B, max_steps, D] model dtype; sin with its first half negated
  torch::Tensor zero1;                      // [1, 1, 1]: the additive mask of a cache without one
  std::vector<torch::Tensor> new_k, new_v;  // per layer [B, Hc, max_steps, D]
  torch::Tensor logits;                     // [B, V] float32 (output of the last step)
  bool use_graph = false;
#if JUDGEQ_HAVE_CUDA_GRAPHS
  std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif

  Impl(const LlamaModel& m, int64_t steps) : model(m), max_steps(steps) {}

  // One decoding step on the static buffers; every op has fixed shapes and no host sync. About 20
  // kernels per layer: RMSNorm fused where LibTorch has it; RoPE on queries and keys at once
  // (x * cos + roll(x, D/2) * signed sin); scaling and masks inside the score GEMMs (baddbmm); the
  // residual adds inside the output GEMMs (addmm); softmax reads and writes the model dtype while
  // accumulating in float32.
  torch::Tensor body() {
    const ModelConfig& cfg = model.config();
    const double eps = cfg.rms_norm_eps;
    const int64_t hidden = cfg.hidden_size;
    auto h = torch::embedding(embed, tok_in).view({B, hidden});
    auto cs = cos_tab.index_select(1, step_idx).view({B, 1, 1, D});
    auto sn = ssin_tab.index_select(1, step_idx).view({B, 1, 1, D});
    // New entries 0..step are visible: additive [1, 1, max_steps] in the model dtype.
    auto ar = torch::arange(max_steps, step_idx.options());
    auto new_mask = torch::zeros({max_steps}, h.options())
                        .masked_fill(ar > step_idx, -std::numeric_limits<float>::infinity())
                        .view({1, 1, max_steps});
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& W = layers[l];
      auto qkv = torch::linear(fast_rms_norm(h, W[4], eps), W[0]);  // [B, (H + 2 Hkv) D]
      auto qk = qkv.narrow(-1, 0, (H + Hkv) * D).view({B, 1, H + Hkv, D});
      auto r = torch::roll(qk, D / 2, -1).mul_(sn).addcmul_(qk, cs);  // rotated q and k, contiguous
      auto q = r.narrow(2, 0, H);                                      // [B, 1, H, D]
      auto k = r.narrow(2, H, Hkv).transpose(1, 2);                    // [B, Hkv, 1, D]
      auto v = qkv.narrow(-1, (H + Hkv) * D, Hkv * D).view({B, 1, Hkv, D}).transpose(1, 2);
      if (Hc != Hkv) {
        k = k.repeat_interleave(H / Hkv, 1);
        v = v.repeat_interleave(H / Hkv, 1);
      }
      new_k[l].index_copy_(2, step_idx, k);
      new_v[l].index_copy_(2, step_idx, v);
      // Grouped attention without repeat_kv: [B*Hc, G, D] queries against each head's keys, one
      // segment (cache) of rows at a time, each over its own length.
      auto qg_all = q.reshape({B * Hc, G, D});
      auto nk_all = new_k[l].view({B * Hc, max_steps, D}), nv_all = new_v[l].view({B * Hc, max_steps, D});
      std::vector<torch::Tensor> parts;
      for (auto& S : segs) {
        auto qg = qg_all.narrow(0, S.r0 * Hc, S.B * Hc);
        auto nk = nk_all.narrow(0, S.r0 * Hc, S.B * Hc);
        auto nv = nv_all.narrow(0, S.r0 * Hc, S.B * Hc);
        auto s1 = torch::baddbmm(S.cmask[l].defined() ? S.cmask[l] : zero1, qg, S.ck[l].transpose(1, 2), 1.0, scale);
        auto s2 = torch::baddbmm(new_mask, qg, nk.transpose(1, 2), 1.0, scale);
        const int64_t len = S.ck[l].size(1);
        auto p = torch::softmax(torch::cat({s1, s2}, -1), -1);
        torch::Tensor pv;  // [B*Hc, G, D]: the cache's share of the attention output
        if (S.cv_chunks[l].defined()) {
          const int64_t c = S.cv_chunks[l].size(1), nc = S.cv_chunks[l].size(0) / (S.B * Hc);
          S.p_pad[l].narrow(-1, 0, len).copy_(p.narrow(-1, 0, len));
          auto pc = S.p_pad[l].view({S.B * Hc, G, nc, c}).transpose(1, 2).reshape({S.B * Hc * nc, G, c});
          pv = torch::bmm(pc, S.cv_chunks[l]).view({S.B * Hc, nc, G, D}).sum(1);
        } else {
          pv = torch::bmm(p.narrow(-1, 0, len), S.cv[l]);
        }
        parts.push_back(torch::baddbmm(pv, p.narrow(-1, len, max_steps), nv));
      }
      auto a = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
      h = torch::addmm(h, a.view({B, H * D}), W[1].t());
      auto gu = torch::linear(fast_rms_norm(h, W[5], eps), W[2]).chunk(2, -1);
      h = torch::addmm(h, torch::silu(gu[0]).mul_(gu[1]), W[3].t());
    }
    auto out = torch::linear(fast_rms_norm(h, norm, eps), lm_head).to(torch::kFloat32);  // [B, V]
    step_idx.add_(1);
    return out;
  }
};

bool StaticDecoder::available(const LlamaModel& model, const KVCache& cache, int64_t max_steps) {
  if (cache.n_layers() == 0 || max_steps <= 0) return false;
  for (int64_t l = 0; l < cache.n_layers(); ++l)
    if (cache.len(l) == 0) return false;
  const auto& sw = model.config().sliding_window;
  if (sw) {
    int64_t far = 0;
    for (auto p : cache.next_positions()) far = std::max(far, p + max_steps);
    if (far > *sw) return false;
  }
  return true;
}

StaticDecoder::StaticDecoder(const LlamaModel& model, KVCache& cache, int64_t max_steps, bool use_graph)
    : StaticDecoder(model, std::vector<KVCache*>{&cache}, max_steps, use_graph) {}

StaticDecoder::StaticDecoder(const LlamaModel& model, const std::vector<KVCache*>& caches, int64_t max_steps,
                             bool use_graph)
    : impl_(std::make_unique<Impl>(model, max_steps)) {
  check(!caches.empty(), "static decoding needs at least one cache");
  Impl& I = *impl_;
  const ModelConfig& c = model.config();
  I.H = c.n_heads;
  I.Hkv = c.n_kv_heads;
  I.Hc = caches[0]->n_kv_heads();
  I.G = I.H / I.Hc;
  I.D = c.head_dim;
  I.scale = 1.0 / std::sqrt(static_cast<double>(I.D));
  for (KVCache* cache : caches) {
    check(cache != nullptr && available(model, *cache, max_steps),
          "static decoding needs non-empty caches and no sliding window in reach");
    check(cache->n_kv_heads() == I.Hc, "static decoding: caches of ", cache->n_kv_heads(), " and ", I.Hc,
          " heads cannot share a batch");
    Impl::Segment S;
    S.cache = cache;
    S.r0 = I.B;
    S.B = cache->batch();
    I.B += S.B;
    for (auto p : cache->next_positions()) I.base_pos.push_back(p);
    I.segs.push_back(std::move(S));
  }
  std::map<std::string, torch::Tensor> w;
  for (auto& [name, t] : model.named_weights()) w[name] = t;
  I.embed = w.at("embed");
  I.norm = w.at("norm");
  I.lm_head = w.at("lm_head");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "layer" + std::to_string(l) + ".";
    I.layers.push_back({w.at(p + "qkv"), w.at(p + "o"), w.at(p + "gate_up"), w.at(p + "down"), w.at(p + "norm_attn"),
                        w.at(p + "norm_mlp")});
  }
  const auto dev = model.device();
  const auto dt = model.dtype();
  auto iopt = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  I.tok_in = torch::zeros({I.B, 1}, iopt);
  I.step_idx = torch::zeros({1}, iopt);
  // cos/sin of every position the steps will use, as forward() computes them.
  auto pos = torch::tensor(I.base_pos, torch::kInt64).view({I.B, 1}) + torch::arange(max_steps, torch::kInt64).view({1, max_steps});
  auto freqs = pos.to(dev).to(torch::kFloat32).unsqueeze(-1) * rope_inv_freq(c).to(dev).view({1, 1, -1});
  auto emb = torch::cat({freqs, freqs}, -1);
  I.cos_tab = emb.cos().to(dt);
  auto sin = emb.sin().to(dt);
  I.ssin_tab = torch::cat({-sin.narrow(-1, 0, I.D / 2), sin.narrow(-1, I.D / 2, I.D / 2)}, -1);
  auto fopt = torch::TensorOptions().dtype(dt).device(dev);
  I.zero1 = torch::zeros({1, 1, 1}, fopt);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    I.new_k.push_back(torch::zeros({I.B, I.Hc, max_steps, I.D}, fopt));
    I.new_v.push_back(torch::zeros({I.B, I.Hc, max_steps, I.D}, fopt));
  }
  for (auto& S : I.segs) {
    KVCache& cache = *S.cache;
    const int64_t Bs = S.B;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const int64_t len = cache.len(l);
      {
        // A long cache in an exact-size buffer (a clone, a gather) moves once into a buffer of a
        // multiple of 256 rows, so that the reduction below can be split into chunks.
        auto vv = cache.values(l);
        const bool rows = vv.stride(3) == 1 && vv.stride(2) == I.D;
        if (len >= 2048 && rows && (vv.stride(1) / I.D) % 256 != 0) cache.reserve(l, (len + 255) / 256 * 256, true);
      }
      // Views of the cache buffers (no copy: [B, Hc] merge into one batch dimension).
      S.ck.push_back(cache.keys(l).reshape({Bs * I.Hc, len, I.D}));
      S.cv.push_back(cache.values(l).reshape({Bs * I.Hc, len, I.D}));
      // The split reduction needs the buffer as [B*Hc, cap, D] with one stride per head and a chunk
      // size c in [16, 1024] dividing cap, with at least 2 chunks.
      auto vv = cache.values(l);
      const int64_t cap = vv.stride(2) == I.D && vv.stride(3) == 1 ? vv.stride(1) / I.D : 0;
      int64_t ch = 0;
      const bool uniform = cap > 0 && vv.stride(1) == cap * I.D && vv.stride(0) == I.Hc * cap * I.D;
      for (int64_t cand = std::min<int64_t>(1024, cap / 2); uniform && cand >= 16 && ch == 0; --cand)
        if (cap % cand == 0) ch = cand;
      if (ch > 0 && len >= ch) {
        auto full = vv.as_strided({Bs * I.Hc, cap, I.D}, {cap * I.D, I.D, 1});
        if (cap > len) full.narrow(1, len, cap - len).zero_();  // unused capacity: weight 0 must not meet NaN
        S.cv_chunks.push_back(full.view({Bs * I.Hc * (cap / ch), ch, I.D}));
        S.p_pad.push_back(torch::zeros({Bs * I.Hc, I.G, cap}, fopt));
      } else {
        S.cv_chunks.push_back(torch::Tensor());
        S.p_pad.push_back(torch::Tensor());
      }
      auto valid = cache.valid(l);
      if (valid.defined())
        S.cmask.push_back(torch::zeros({Bs * I.Hc, 1, len}, fopt)
                              .masked_fill(valid.reshape({Bs * I.Hc, 1, len}).logical_not(),
                                           -std::numeric_limits<float>::infinity()));
      else
        S.cmask.push_back(torch::Tensor());
    }
  }
#if JUDGEQ_HAVE_CUDA_GRAPHS
  I.use_graph = use_graph && dev.is_cuda();
  if (I.use_graph) {
    // Warm up on a side stream (cuBLAS handles and workspaces), then capture one step.
    auto stream = c10::cuda::getStreamFromPool(false, dev.index());
    // The side stream starts after everything the caller's stream has queued (the cache's copy, the
    // buffers' fills above), as PyTorch's capture recipe has it (side.wait_stream(current)).
    // Without this wait the warm-up could read a cache copy still in flight (garbage, possibly NaN)
    // and write what it computed into the scratch K/V rows 0 and 1; a masked score is -inf + q.k,
    // so a NaN left there makes every later step's logits NaN. That fits the empty full-KV outputs
    // once seen in the grid on a GPU (first token right, then 127 <unk>).
    at::cuda::CUDAEvent queued;
    queued.record(c10::cuda::getCurrentCUDAStream(dev.index()));
    queued.block(stream);
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      for (int i = 0; i < 2; ++i) I.body();
      // The warm-up's rows go: the replays start from zeroed scratch K/V, whatever it computed.
      for (size_t l = 0; l < I.new_k.size(); ++l) {
        I.new_k[l].zero_();
        I.new_v[l].zero_();
      }
      stream.synchronize();
      I.step_idx.zero_();
      I.graph = std::make_unique<at::cuda::CUDAGraph>();
      I.graph->capture_begin();
      I.logits = I.body();
      I.graph->capture_end();
      I.step_idx.zero_();
    }
    stream.synchronize();
  }
#else
  (void)use_graph;
#endif
}

StaticDecoder::~StaticDecoder() = default;

torch::Tensor StaticDecoder::step(const torch::Tensor& tokens) {
  Impl& I = *impl_;
  check(I.n_steps < I.max_steps, "static decoder: more steps than the ", I.max_steps, " it was built for");
  I.tok_in.copy_(tokens.view({I.B, 1}));
#if JUDGEQ_HAVE_CUDA_GRAPHS
  if (I.use_graph) {
    I.graph->replay();
    ++I.n_steps;
    return I.logits;
  }
#endif
  I.logits = I.body();
  ++I.n_steps;
  return I.logits;
}

int64_t StaticDecoder::steps() const { return impl_->n_steps; }
bool StaticDecoder::graphed() const { return impl_->use_graph; }

void StaticDecoder::commit() {
  Impl& I = *impl_;
  const int64_t n = I.n_steps;
  if (n == 0) return;
  for (auto& S : I.segs) {
    std::vector<int64_t> base(I.base_pos.begin() + S.r0, I.base_pos.begin() + S.r0 + S.B);
    auto pos = torch::tensor(base, torch::kInt64).view({S.B, 1}) + torch::arange(n, torch::kInt64).view({1, n});
    for (int64_t l = 0; l < S.cache->n_layers(); ++l) {
      S.cache->append(l, I.new_k[l].narrow(0, S.r0, S.B).narrow(2, 0, n), I.new_v[l].narrow(0, S.r0, S.B).narrow(2, 0, n),
                      pos);
      // The cache may have moved its buffers: views taken before are stale now.
      S.ck[l] = torch::Tensor();
      S.cv[l] = torch::Tensor();
      S.cv_chunks[l] = torch::Tensor();
    }
    for (auto& p : base) p += n;
    S.cache->set_next_positions(base);
  }
  I.n_steps = I.max_steps;  // no more steps after a commit
}

}  // namespace judgeq
