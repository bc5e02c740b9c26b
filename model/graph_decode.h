// Greedy decoding with a fixed-shape step, replayed as one CUDA graph per step on CUDA builds.
//
// Decoding one token is ~45 small kernels per layer; on a GPU the launches, not the arithmetic,
// set the time per token. StaticDecoder runs the step on fixed-size buffers so that the whole
// step can be captured once and replayed: the prompt cache is read-only while decoding, the new
// tokens' keys and values go to scratch buffers [B, H_cache, max_steps, D] at a device-side step
// index, and attention is the exact softmax over (valid cache entries, new entries so far).
// commit() appends the fed tokens to the cache afterwards, so the cache ends up exactly as
// token-by-token forward() would leave it. The same code runs eagerly on CPU (tests compare it
// with forward()); sliding-window models are not supported (available() says so).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "model/kv_cache.h"
#include "model/llama.h"

namespace judgeq {

class StaticDecoder {
 public:
  // Whether this model and cache can use it (no sliding window in reach, non-empty cache).
  static bool available(const LlamaModel& model, const KVCache& cache, int64_t max_steps);
  // use_graph: capture the step as a CUDA graph (CUDA builds and CUDA tensors only; otherwise
  // the step runs eagerly).
  StaticDecoder(const LlamaModel& model, KVCache& cache, int64_t max_steps, bool use_graph = true);
  // Several caches decoded as one batch (rows in the order of the caches): the weights are read
  // once per step for all of them, and each cache's rows attend over its own length, without
  // padding to the longest. Each cache must be available() on its own.
  StaticDecoder(const LlamaModel& model, const std::vector<KVCache*>& caches, int64_t max_steps,
                bool use_graph = true);
  ~StaticDecoder();
  StaticDecoder(const StaticDecoder&) = delete;
  StaticDecoder& operator=(const StaticDecoder&) = delete;

  // Feeds tokens [B] (int64, any device) and returns the next-token logits [B, V] float32 (a
  // buffer reused by the next step: copy it to keep it).
  torch::Tensor step(const torch::Tensor& tokens);
  int64_t steps() const;
  bool graphed() const;
  // Appends the fed tokens' keys and values to the cache(s) and advances their positions.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace judgeq
