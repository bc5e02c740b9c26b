// RoPE's inverse frequencies [D/2] float32 (HF's computation, with llama3/linear scaling).
#pragma once
#include <torch/torch.h>

#include "model/config.h"

namespace judgeq {
torch::Tensor rope_inv_freq(const ModelConfig& config);
}  // namespace judgeq
