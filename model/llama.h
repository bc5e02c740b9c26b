// The Llama/Mistral decoder: embeddings, RMSNorm, RoPE (HF rotate-half, llama3/linear scaling),
// GQA attention, SwiGLU MLP, LM head. Runs in bf16/fp16/fp32 on CPU or CUDA. The KV cache is
// passed in and edited from outside; scorers see attention through AttentionProbe only.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/kv_cache.h"

namespace judgeq {

// The narrow hook through which scorers and the trainer see attention. Called once per layer
// after the new keys are in place.
class AttentionProbe {
 public:
  virtual ~AttentionProbe() = default;
  // q: post-RoPE queries of the new tokens [B, H, Tq, D]; k, v: every key/value the new tokens
  // attend to (cache + new) [B, H_kv, Tk, D], new tokens last; key_valid [B, H_kv, Tk] bool or
  // undefined (all valid). Tensors may require grad (training).
  virtual void on_layer(int64_t layer, const torch::Tensor& q, const torch::Tensor& k,
                        const torch::Tensor& v, const torch::Tensor& key_valid) = 0;
  // A probe that wants each query row's log-sum-exp gets on_row_lse after every layer's
  // attention: [B, H, Tq] float32 (natural log of the sum of exp(scaled scores)) where the fused
  // kernel gave it for free (a fresh, unpadded prompt in half precision on CUDA, when the cuDNN or
  // Flash kernel that returns it is the one SDPA runs), else undefined.
  virtual bool wants_row_lse() const { return false; }
  virtual void on_row_lse(int64_t /*layer*/, const torch::Tensor& /*lse*/) {}
};

// Score elements per block where attention scores are materialised a block of query rows at a
// time: 64M on CUDA (few, large kernels); 4M (16 MiB in float32) on CPU, where blocks that size
// are reused from the heap instead of being mapped and page-faulted in afresh each time (and the
// results per row do not depend on the block).
int64_t score_block_elements(const torch::Device& device);

struct ForwardOptions {
  torch::Tensor positions;      // [B, T] int64; default: cache.next_positions() + arange(T)
  torch::Tensor inputs_embeds;  // [B, T, hidden]: used instead of token ids when defined
  torch::Tensor token_valid;    // [B, T] bool; false marks padding (left-padded batches)
  bool append = true;           // false: attend to cache + new tokens but leave the cache unchanged
  // Which new-token rows get logits: empty = none; -1 = the last row. all_logits: every row.
  std::vector<int64_t> logit_rows = {-1};
  bool all_logits = false;
  AttentionProbe* probe = nullptr;
  int64_t chunk = 4096;         // tokens per projection/MLP chunk: bounds activation memory
  bool force_manual_attention = false;  // the chunked reference path even where SDPA exists
};

class LlamaModel {
 public:
  // Loads DIR (config.json, safetensors weights) onto device in dtype. Missing, unexpected and
  // mis-shaped tensors are all reported in one error.
  static std::unique_ptr<LlamaModel> load(const std::string& dir, torch::Device device,
                                          torch::Dtype dtype);
  // Builds the model from any source of weights: get(hf_name, shape) returns that tensor (e.g.
  // seeded random weights for benchmarks at real shapes, without a checkpoint on disk).
  using WeightSource = std::function<torch::Tensor(const std::string&, const std::vector<int64_t>&)>;
  static std::unique_ptr<LlamaModel> from_weights(const ModelConfig& config, const WeightSource& get,
                                                  torch::Device device, torch::Dtype dtype);
  // The HF tensor names and shapes this config needs, in a fixed order.
  static std::vector<std::pair<std::string, std::vector<int64_t>>> expected_weights(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  torch::Device device() const { return device_; }
  torch::Dtype dtype() const { return dtype_; }
  const std::string& dir() const { return dir_; }

  KVCache new_cache(int64_t batch) const;
  // ids [B, T] int64 (ignored when opt.inputs_embeds is defined). Returns float32 logits
  // [B, R, V] for the requested rows (R = 0 when none). Advances cache.next_positions() by T when
  // opt.append.
  torch::Tensor forward(const torch::Tensor& ids, KVCache& cache, const ForwardOptions& opt = {}) const;
  // Token embeddings [B, T, hidden] in the model dtype.
  torch::Tensor embed(const torch::Tensor& ids) const;
  const torch::Tensor& embedding_table() const { return embed_; }  // [V, hidden]
  // Every parameter tensor by HF name (for checks that weights are untouched).
  std::vector<std::pair<std::string, torch::Tensor>> named_weights() const;

 private:
  struct Layer {
    torch::Tensor w_qkv;      // [(H + 2 H_kv) D, hidden]
    torch::Tensor w_o;        // [hidden, H D]
    torch::Tensor w_gate_up;  // [2 I, hidden]
    torch::Tensor w_down;     // [hidden, I]
    torch::Tensor norm_attn, norm_mlp;  // [hidden]
  };
  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) const;
  torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& key_valid, const torch::Tensor& q_pos,
                          const torch::Tensor& k_pos, bool manual) const;
  torch::Tensor logits_rows(const torch::Tensor& h, const ForwardOptions& opt) const;

  ModelConfig config_;
  std::string dir_;
  torch::Device device_ = torch::kCPU;
  torch::Dtype dtype_ = torch::kFloat32;
  torch::Tensor embed_, norm_, lm_head_;  // lm_head_ aliases embed_ when tied
  torch::Tensor inv_freq_;                // [D/2] float32
  std::vector<Layer> layers_;
};

}  // namespace judgeq
