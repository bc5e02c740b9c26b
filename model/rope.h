// The decoder's small shared pieces (model/llama.cpp and the static decoding step use the same
// ones): RoPE's inverse frequencies and rotation, and HF's RMSNorm.
#pragma once
#include <torch/torch.h>

#include "model/config.h"

namespace judgeq {
// [D/2] float32, as transformers computes them (with llama3/linear scaling).
torch::Tensor rope_inv_freq(const ModelConfig& config);
// HF's x * cos + rotate_half(x) * sin, bit for bit, in one kernel fewer (no negation of x; the
// in-place add needs no new buffer): x * cos + swap_halves(x) * sin_signed, where sin_signed is
// sin with its first half negated (rope_signed_sin) and negation is exact.
torch::Tensor apply_rope_signed(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin_signed);
torch::Tensor rope_signed_sin(const torch::Tensor& sin);
// HF LlamaRMSNorm: statistics in float32, the weight applied after casting back.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps);
// The same through LibTorch's own rms_norm (one fused kernel on CUDA in recent versions) on CUDA
// with LibTorch >= 2.4; rms_norm above elsewhere.
torch::Tensor fast_rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps);
// HF's rounding with the fused kernel: the normalisation fused (float32 inside, rounded to x's
// dtype), then the weight multiplied, as HF does (on CUDA with LibTorch >= 2.4; rms_norm elsewhere).
torch::Tensor rms_norm_then_weight(const torch::Tensor& x, const torch::Tensor& w, double eps);
}  // namespace judgeq
