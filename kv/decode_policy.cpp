#include "kv/decode_policy.h"

#include <algorithm>

#include "kv/compress.h"
#include "util/error.h"

namespace judgeq {

void check_decode_policy(const DecodePolicy& p) {
  check(p.method != nullptr, "decoding-time compression needs a method");
  const Needs n = p.method->needs();
  check(n.window == 0 && !n.h2o, "method ", p.method->name(),
        " scores with the prompt's last window or prefill attention, which decoding-time compression does not ",
        "have; use streamingllm, knorm or random");
  check(p.every >= 1, "re-compression interval must be >= 1 (got ", p.every, ")");
}

GenerateResult decode_with_policy(const LlamaModel& model, KVCache& cache, torch::Tensor next_logits,
                                  const GenerateOptions& opt, const DecodePolicy& policy) {
  check_decode_policy(policy);
  check(cache.batch() == 1, "decoding-time compression runs one sequence at a time");
  torch::NoGradGuard ng;
  GenerateResult r;
  r.tokens.assign(1, {});
  r.finish.assign(1, "length");
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    const int64_t tok = next_logits.argmax(-1).item<int64_t>();
    r.tokens[0].push_back(tok);
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), tok) != opt.stop_ids.end()) {
      r.finish[0] = "stop";
      break;
    }
    if (step + 1 == opt.max_new_tokens) break;
    next_logits = model.forward(torch::tensor({tok}, torch::kInt64).view({1, 1}), cache).select(1, 0);
    if ((step + 1) % policy.every == 0 && cache.len(0) > policy.budget.tokens(cache.len(0))) {
      PromptState st;
      st.model = &model;
      st.cache = &cache;
      st.n_ctx = cache.len(0);
      st.last_logits = next_logits;
      cache = apply_selection(cache, policy.method->select(st, policy.budget));
    }
  }
  return r;
}

}  // namespace judgeq
