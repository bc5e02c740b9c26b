// Decoding-time compression for long generations (reasoning traces): every `every` generated
// tokens the whole cache (prompt + generated so far) is compressed back to `budget` entries per
// layer with a scorer that needs no prompt window (streamingllm, knorm, random). Positions survive.
#pragma once
#include <memory>

#include "kv/method.h"
#include "model/generate.h"

namespace judgeq {

struct DecodePolicy {
  std::shared_ptr<Method> method;
  Budget budget;
  int64_t every = 64;
};

// Greedy decoding like decode_greedy (B = 1), re-compressing the cache by `policy`.
GenerateResult decode_with_policy(const LlamaModel& model, KVCache& cache, torch::Tensor next_logits,
                                  const GenerateOptions& opt, const DecodePolicy& policy);

// Checks that `method` can run at decoding time; one-line error otherwise.
void check_decode_policy(const DecodePolicy& policy);

}  // namespace judgeq
