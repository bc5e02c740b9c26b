// Shared by the GPU benchmarks: the seeded random weights of bench/seeded_weights.md (identical to
// bench/hf_reference.py's) and timing/memory helpers on the current CUDA device.
#pragma once
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/llama.h"
#include "trainer/dataset.h"

namespace judgeq::bench {

// The i-th tensor of LlamaModel::expected_weights(c), named `name` (bench/seeded_weights.md).
inline torch::Tensor seeded_weight(const std::string& name, const std::vector<int64_t>& shape, int64_t i, int64_t seed,
                                   torch::Device dev) {
  torch::manual_seed(seed + i);
  auto r = torch::randn(shape, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  auto w = name.find("norm") != std::string::npos ? 1.0 + 0.1 * r : r * 0.02;
  return w.to(torch::kBFloat16);
}

// A training sample of random token ids (the current torch seed): T prompt tokens, R response tokens.
inline TrainSample random_train_sample(int64_t vocab, int64_t T, int64_t R) {
  auto ids = torch::randint(1, vocab, {T + R}, torch::kInt64);
  TrainSample s;
  s.prompt.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
  s.response.assign(ids.data_ptr<int64_t>() + T, ids.data_ptr<int64_t>() + T + R);
  return s;
}

// S soft tokens to train in the benchmarks: copies of embedding rows 1000.., float32, with gradient.
inline torch::Tensor bench_soft_tokens(const LlamaModel& model, int64_t S) {
  return model.embedding_table().narrow(0, 1000, S).to(torch::kFloat32).clone().requires_grad_(true);
}

inline std::unique_ptr<LlamaModel> seeded_model(const ModelConfig& c, int64_t seed, torch::Device dev) {
  auto names = LlamaModel::expected_weights(c);
  std::map<std::string, int64_t> order;
  for (size_t i = 0; i < names.size(); ++i) order[names[i].first] = static_cast<int64_t>(i);
  return LlamaModel::from_weights(
      c,
      [&](const std::string& name, const std::vector<int64_t>& shape) {
        return seeded_weight(name, shape, order.at(name), seed, dev);
      },
      dev, torch::kBFloat16);
}

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline void gpu_sync() { c10::cuda::device_synchronize(); }
inline double peak_gib() {
  auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return st.allocated_bytes[0].peak / double(1 << 30);
}
inline void reset_peak() { c10::cuda::CUDACachingAllocator::resetPeakStats(0); }

}  // namespace judgeq::bench
