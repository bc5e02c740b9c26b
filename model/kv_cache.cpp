#include "model/kv_cache.h"

#include "util/compat.h"
#include "util/error.h"

namespace judgeq {

KVCache::KVCache(int64_t n_layers, int64_t batch, int64_t n_kv_heads, int64_t head_dim,
                 torch::Dtype dtype, torch::Device device)
    : layers_(n_layers), batch_(batch), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
      dtype_(dtype), device_(device), next_pos_(batch, 0) {}

torch::Tensor KVCache::keys(int64_t l) const {
  auto& L = layers_.at(l);
  return L.len ? L.k.narrow(2, 0, L.len) : torch::empty({batch_, n_kv_heads_, 0, head_dim_},
                                                       torch::TensorOptions().dtype(dtype_).device(device_));
}
torch::Tensor KVCache::values(int64_t l) const {
  auto& L = layers_.at(l);
  return L.len ? L.v.narrow(2, 0, L.len) : torch::empty({batch_, n_kv_heads_, 0, head_dim_},
                                                       torch::TensorOptions().dtype(dtype_).device(device_));
}
torch::Tensor KVCache::positions(int64_t l) const {
  auto& L = layers_.at(l);
  return L.len ? L.pos.narrow(2, 0, L.len)
               : torch::empty({batch_, n_kv_heads_, 0}, torch::TensorOptions().dtype(torch::kInt64).device(device_));
}
torch::Tensor KVCache::valid(int64_t l) const {
  auto& L = layers_.at(l);
  return L.valid.defined() && L.len ? L.valid.narrow(2, 0, L.len) : torch::Tensor();
}

void KVCache::reserve(int64_t l, int64_t cap, bool exact) {
  Layer& L = layers_.at(l);
  int64_t old = L.k.defined() ? L.k.size(2) : 0;
  if (cap <= old) return;
  int64_t new_cap = exact ? cap : std::max<int64_t>(cap, old + old / 2);  // amortised growth for decoding
  // Long buffers get a multiple of 256 rows: the CUDA-graph decoder splits its reduction over the
  // cache into equal chunks of the buffer (model/graph_decode.cpp), which needs a divisor of the
  // capacity; at most 255 spare rows.
  if (new_cap >= 2048) new_cap = (new_cap + 255) / 256 * 256;
  auto opt = torch::TensorOptions().dtype(dtype_).device(device_);
  auto k = torch::empty({batch_, n_kv_heads_, new_cap, head_dim_}, opt);
  auto v = torch::empty({batch_, n_kv_heads_, new_cap, head_dim_}, opt);
  auto p = torch::zeros({batch_, n_kv_heads_, new_cap}, opt.dtype(torch::kInt64));
  torch::Tensor val;
  if (L.valid.defined()) val = torch::zeros({batch_, n_kv_heads_, new_cap}, opt.dtype(torch::kBool));
  if (L.len) {
    k.narrow(2, 0, L.len).copy_(L.k.narrow(2, 0, L.len));
    v.narrow(2, 0, L.len).copy_(L.v.narrow(2, 0, L.len));
    p.narrow(2, 0, L.len).copy_(L.pos.narrow(2, 0, L.len));
    if (val.defined()) val.narrow(2, 0, L.len).copy_(L.valid.narrow(2, 0, L.len));
  }
  L.k = k;
  L.v = v;
  L.pos = p;
  L.valid = val;
}

void KVCache::append(int64_t l, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& pos,
                     const torch::Tensor& valid) {
  TORCH_CHECK(k.dim() == 4 && k.size(0) == batch_ && k.size(1) == n_kv_heads_ && k.size(3) == head_dim_,
              "KVCache::append: k must be [B, H_kv, T, D]");
  TORCH_CHECK(v.sizes() == k.sizes(), "KVCache::append: v must match k");
  const int64_t t = k.size(2);
  TORCH_CHECK(pos.dim() == 2 && pos.size(0) == batch_ && pos.size(1) == t, "KVCache::append: pos must be [B, T]");
  Layer& L = layers_.at(l);
  reserve(l, L.len + t);
  L.k.narrow(2, L.len, t).copy_(k);
  L.v.narrow(2, L.len, t).copy_(v);
  L.pos.narrow(2, L.len, t).copy_(pos.unsqueeze(1).expand({batch_, n_kv_heads_, t}));
  if (valid.defined() && !L.valid.defined()) {
    L.valid = torch::zeros({batch_, n_kv_heads_, L.k.size(2)}, valid.options().dtype(torch::kBool).device(device_));
    if (L.len) L.valid.narrow(2, 0, L.len).fill_(true);
  }
  if (L.valid.defined()) {
    auto nv = valid.defined() ? valid.to(torch::kBool).unsqueeze(1).expand({batch_, n_kv_heads_, t})
                              : torch::ones({batch_, n_kv_heads_, t}, L.valid.options());
    L.valid.narrow(2, L.len, t).copy_(nv);
  }
  L.len += t;
}

void KVCache::gather(int64_t l, const torch::Tensor& idx, const torch::Tensor& keep_valid) {
  TORCH_CHECK(idx.dim() == 3 && idx.size(0) == batch_ && idx.size(1) == n_kv_heads_,
              "KVCache::gather: idx must be [B, H_kv, K]");
  Layer& L = layers_.at(l);
  const int64_t kk = idx.size(2);
  auto id = compat::to_device(idx, device_, torch::kInt64);
  auto id4 = id.unsqueeze(-1).expand({batch_, n_kv_heads_, kk, head_dim_});
  auto k = keys(l).gather(2, id4);
  auto v = values(l).gather(2, id4);
  auto p = positions(l).gather(2, id);
  torch::Tensor val;
  auto old_valid = valid(l);
  if (old_valid.defined()) val = old_valid.gather(2, id);
  if (keep_valid.defined()) {
    auto kv = compat::to_device(keep_valid, device_, torch::kBool);
    val = val.defined() ? (val & kv) : kv;
  }
  // One gather per tensor; the new buffers hold exactly the kept entries (no hidden copies).
  L.k = k.contiguous();
  L.v = v.contiguous();
  L.pos = p.contiguous();
  L.valid = val.defined() ? val.contiguous() : torch::Tensor();
  L.len = kk;
}

void KVCache::restrict(int64_t l, const torch::Tensor& keep) {
  Layer& L = layers_.at(l);
  TORCH_CHECK(keep.dim() == 3 && keep.size(2) == L.len, "KVCache::restrict: keep must be [B, H_kv, T]");
  auto kv = compat::to_device(keep, device_, torch::kBool);
  auto old = valid(l);
  L.valid = (old.defined() ? old.logical_and(kv) : kv).contiguous();
  L.k = keys(l).contiguous();
  L.v = values(l).contiguous();
  L.pos = positions(l).contiguous();
}

void KVCache::truncate(int64_t len) {
  for (auto& L : layers_) L.len = std::min(L.len, len);
}

KVCache KVCache::clone() const {
  KVCache c(n_layers(), batch_, n_kv_heads_, head_dim_, dtype_, device_);
  c.next_pos_ = next_pos_;
  for (int64_t l = 0; l < n_layers(); ++l) {
    const Layer& L = layers_[l];
    Layer& C = c.layers_[l];
    C.len = L.len;
    if (!L.len) continue;
    C.k = keys(l).clone();
    C.v = values(l).clone();
    C.pos = positions(l).clone();
    auto val = valid(l);
    if (val.defined()) C.valid = val.clone();
  }
  return c;
}

KVCache KVCache::select_batch(const std::vector<int64_t>& rows) const {
  const int64_t n = static_cast<int64_t>(rows.size());
  KVCache c(n_layers(), n, n_kv_heads_, head_dim_, dtype_, device_);
  auto idx = compat::to_device(torch::tensor(rows, torch::kInt64), device_, torch::kInt64);
  for (int64_t r = 0; r < n; ++r) c.next_pos_[r] = next_pos_.at(rows[r]);
  for (int64_t l = 0; l < n_layers(); ++l) {
    const Layer& L = layers_[l];
    Layer& C = c.layers_[l];
    C.len = L.len;
    if (!L.len) continue;
    C.k = keys(l).index_select(0, idx);
    C.v = values(l).index_select(0, idx);
    C.pos = positions(l).index_select(0, idx);
    auto val = valid(l);
    if (val.defined()) C.valid = val.index_select(0, idx);
  }
  return c;
}

KVCache KVCache::cat_batch(const std::vector<const KVCache*>& caches) {
  check(!caches.empty(), "cat_batch needs at least one cache");
  const KVCache& f = *caches[0];
  int64_t b = 0;
  for (auto* c : caches) {
    check(c->n_layers() == f.n_layers() && c->n_kv_heads_ == f.n_kv_heads_ && c->head_dim_ == f.head_dim_,
          "cat_batch: caches of different models");
    b += c->batch_;
  }
  KVCache out(f.n_layers(), b, f.n_kv_heads_, f.head_dim_, f.dtype_, f.device_);
  out.next_pos_.clear();
  for (auto* c : caches) out.next_pos_.insert(out.next_pos_.end(), c->next_pos_.begin(), c->next_pos_.end());
  auto opt = torch::TensorOptions().dtype(f.dtype_).device(f.device_);
  for (int64_t l = 0; l < f.n_layers(); ++l) {
    int64_t t = 0;
    bool ragged = false;
    for (auto* c : caches) t = std::max(t, c->len(l));
    for (auto* c : caches) ragged |= c->len(l) != t || c->valid(l).defined();
    Layer& L = out.layers_[l];
    L.len = t;
    if (!t) continue;
    // One buffer, zero past each cache's length, of a multiple of 64 rows: the CUDA-graph decoder
    // splits its reduction over the cache into equal chunks of the buffer (model/graph_decode.cpp),
    // which needs a divisor of the capacity (a batch of evicted caches often has a prime length).
    const int64_t cap = t > 64 ? (t + 63) / 64 * 64 : t;
    L.k = torch::zeros({b, f.n_kv_heads_, cap, f.head_dim_}, opt);
    L.v = torch::zeros({b, f.n_kv_heads_, cap, f.head_dim_}, opt);
    L.pos = torch::zeros({b, f.n_kv_heads_, cap}, opt.dtype(torch::kInt64));
    if (ragged) L.valid = torch::zeros({b, f.n_kv_heads_, cap}, opt.dtype(torch::kBool));
    int64_t r = 0;
    for (auto* c : caches) {
      const int64_t n = c->len(l), cb = c->batch_;
      if (n) {
        L.k.narrow(0, r, cb).narrow(2, 0, n).copy_(c->keys(l));
        L.v.narrow(0, r, cb).narrow(2, 0, n).copy_(c->values(l));
        L.pos.narrow(0, r, cb).narrow(2, 0, n).copy_(c->positions(l));
        if (ragged) {
          auto cv = c->valid(l);
          if (cv.defined()) L.valid.narrow(0, r, cb).narrow(2, 0, n).copy_(cv);
          else L.valid.narrow(0, r, cb).narrow(2, 0, n).fill_(true);
        }
      }
      r += cb;
    }
  }
  return out;
}

int64_t KVCache::bytes_in_use() const {
  int64_t n = 0;
  const int64_t es = torch::elementSize(dtype_);
  for (auto& L : layers_) n += 2 * batch_ * n_kv_heads_ * L.len * head_dim_ * es;
  return n;
}

int64_t KVCache::bytes_reserved() const {
  int64_t n = 0;
  for (auto& L : layers_) {
    for (auto* t : {&L.k, &L.v, &L.pos, &L.valid})
      if (t->defined()) n += t->numel() * t->element_size();
  }
  return n;
}

torch::Tensor KVCache::kept_counts() const {
  auto out = torch::zeros({n_layers(), batch_, n_kv_heads_}, torch::kInt64);
  for (int64_t l = 0; l < n_layers(); ++l) {
    auto val = valid(l);
    if (val.defined())
      out[l].copy_(val.sum(-1).to(torch::kCPU));
    else
      out[l].fill_(len(l));
  }
  return out;
}

}  // namespace judgeq
