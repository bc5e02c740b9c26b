// KVCache: per layer, post-RoPE keys and values at KV-head granularity [B, H_kv, T, D], each
// entry's original position [B, H_kv, T], and an optional validity mask [B, H_kv, T] (padding of
// ragged batches, per-head budgets). Kept apart from the model: eviction edits it from outside.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace judgeq {

class KVCache {
 public:
  struct Layer {
    torch::Tensor k, v;   // [B, H_kv, cap, D] buffers; entries [0, len) are in use
    torch::Tensor pos;    // [B, H_kv, cap] int64 original positions
    torch::Tensor valid;  // [B, H_kv, cap] bool, or undefined when every entry in use is valid
    int64_t len = 0;
  };

  KVCache() = default;
  KVCache(int64_t n_layers, int64_t batch, int64_t n_kv_heads, int64_t head_dim,
          torch::Dtype dtype, torch::Device device);

  int64_t n_layers() const { return static_cast<int64_t>(layers_.size()); }
  int64_t batch() const { return batch_; }
  int64_t n_kv_heads() const { return n_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  torch::Dtype dtype() const { return dtype_; }
  torch::Device device() const { return device_; }
  int64_t len(int64_t layer) const { return layers_.at(layer).len; }

  torch::Tensor keys(int64_t layer) const;       // [B, H_kv, T, D]
  torch::Tensor values(int64_t layer) const;     // [B, H_kv, T, D]
  torch::Tensor positions(int64_t layer) const;  // [B, H_kv, T] int64
  torch::Tensor valid(int64_t layer) const;      // [B, H_kv, T] bool, or undefined (all valid)
  const Layer& layer(int64_t l) const { return layers_.at(l); }

  // Appends new entries: k, v [B, H_kv, T, D]; pos [B, T] int64; valid [B, T] bool or undefined.
  void append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& pos,
              const torch::Tensor& valid = {});
  // Keeps, per (batch, head), the entries at idx [B, H_kv, K] (in that order). keep_valid
  // [B, H_kv, K] bool marks padding rows of ragged selections (undefined: all kept).
  void gather(int64_t layer, const torch::Tensor& idx, const torch::Tensor& keep_valid = {});
  // Marks entries outside keep [B, H_kv, T] (bool) invalid: the masking reference of eviction.
  void restrict(int64_t layer, const torch::Tensor& keep);
  // Makes room for cap entries in layer l without reallocating later (long prefills in chunks).
  // exact: no amortised growth beyond cap (still rounded up to a multiple of 256 rows from 2048
  // on, as every buffer of that size is).
  void reserve(int64_t layer, int64_t cap, bool exact = false);
  // Drops every entry at index >= len in all layers (e.g. soft tokens appended after a prompt).
  void truncate(int64_t len);

  // Position the next token of each sequence gets (positions survive eviction).
  const std::vector<int64_t>& next_positions() const { return next_pos_; }
  void set_next_positions(std::vector<int64_t> p) { next_pos_ = std::move(p); }

  KVCache clone() const;
  // The cache of sequences `rows` (a copy).
  KVCache select_batch(const std::vector<int64_t>& rows) const;
  // Concatenates caches along the batch; shorter layers are padded with invalid entries. Each
  // layer's buffer has a multiple of 64 rows past 64 (see graph_decode.cpp's split reduction).
  static KVCache cat_batch(const std::vector<const KVCache*>& caches);

  // Bytes of the K/V entries in use (what attention reads), and of everything allocated.
  int64_t bytes_in_use() const;
  int64_t bytes_reserved() const;
  // Number of valid entries per (layer, batch, head): [L, B, H_kv] int64 on CPU.
  torch::Tensor kept_counts() const;

 private:
  std::vector<Layer> layers_;
  int64_t batch_ = 0, n_kv_heads_ = 0, head_dim_ = 0;
  torch::Dtype dtype_ = torch::kFloat32;
  torch::Device device_ = torch::kCPU;
  std::vector<int64_t> next_pos_;
};

}  // namespace judgeq
