#include "model/generate.h"

#include <algorithm>
#include <iostream>
#include <memory>

#include "model/graph_decode.h"
#include "util/error.h"

namespace judgeq {

torch::Tensor prefill(const LlamaModel& model, const std::vector<std::vector<int64_t>>& prompts,
                      KVCache& cache, int64_t chunk) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  check(B > 0, "no prompts to prefill");
  int64_t T = 0;
  for (auto& p : prompts) {
    check(!p.empty(), "empty prompt; give at least one token");
    T = std::max<int64_t>(T, static_cast<int64_t>(p.size()));
  }
  const int64_t max_pos = model.config().max_position_embeddings;
  check(T <= max_pos, "prompt too long (got ", T, " tokens, expected at most max_position_embeddings = ", max_pos,
        "); shorten or truncate the prompt");
  for (auto& p : prompts)
    for (auto id : p)
      check(id >= 0 && id < model.config().vocab_size, "token id out of range (got ", id, ", expected 0..",
            model.config().vocab_size - 1, "); use ids from this model's tokenizer");
  auto ids = torch::zeros({B, T}, torch::kInt64);
  auto pos = torch::zeros({B, T}, torch::kInt64);
  auto valid = torch::ones({B, T}, torch::kBool);
  bool ragged = false;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size()), pad = T - n;
    ragged |= pad > 0;
    for (int64_t t = 0; t < n; ++t) {
      ids[b][pad + t] = prompts[b][t];
      pos[b][pad + t] = t;
    }
    for (int64_t t = 0; t < pad; ++t) valid[b][t] = false;
  }
  ForwardOptions fo;
  fo.positions = pos;
  if (ragged) fo.token_valid = valid;
  fo.chunk = chunk;
  auto logits = model.forward(ids, cache, fo);  // [B, 1, V]
  return logits.select(1, 0);
}

GenerateResult decode_greedy(const LlamaModel& model, KVCache& cache, torch::Tensor next_logits,
                             const GenerateOptions& opt) {
  return decode_greedy(model, std::vector<KVCache*>{&cache}, std::move(next_logits), opt);
}

GenerateResult decode_greedy(const LlamaModel& model, const std::vector<KVCache*>& caches, torch::Tensor next_logits,
                             const GenerateOptions& opt) {
  const int64_t B = next_logits.size(0);
  int64_t rows = 0;
  for (auto* c : caches) rows += c->batch();
  check(rows == B, "decode_greedy: ", B, " rows of logits for caches of ", rows, " rows");
  GenerateResult r;
  r.tokens.assign(B, {});
  r.finish.assign(B, "length");
  std::vector<bool> done(B, false);
  int64_t n_done = 0;
  // On CUDA each step is one replayed CUDA graph (model/graph_decode.h); eager forward() otherwise.
  std::unique_ptr<StaticDecoder> fast;
  bool all_static = opt.static_decode && model.device().is_cuda() && opt.max_new_tokens > 1;
  for (auto* c : caches) all_static = all_static && StaticDecoder::available(model, *c, opt.max_new_tokens - 1);
  if (all_static) {
    try {
      fast = std::make_unique<StaticDecoder>(model, caches, opt.max_new_tokens - 1);
    } catch (const std::exception& e) {
      static bool warned = false;
      if (!warned) std::cerr << "warning: CUDA-graph decoding unavailable, decoding eagerly (" << e.what() << ")\n";
      warned = true;
    }
  }
  for (int64_t step = 0; step < opt.max_new_tokens && n_done < B; ++step) {
    auto next = next_logits.argmax(-1).to(torch::kCPU);  // [B]
    auto acc = next.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      r.tokens[b].push_back(acc[b]);
      if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), acc[b]) != opt.stop_ids.end()) {
        done[b] = true;
        r.finish[b] = "stop";
        ++n_done;
      }
    }
    if (n_done == B || step + 1 == opt.max_new_tokens) break;
    if (fast) {
      next_logits = fast->step(next).clone();  // own copy: the graph's output buffer dies with it
      continue;
    }
    ForwardOptions fo;
    fo.chunk = opt.chunk;
    std::vector<torch::Tensor> parts;  // each cache's rows on their own
    int64_t r0 = 0;
    for (auto* c : caches) {
      const int64_t b = c->batch();
      parts.push_back(model.forward(next.narrow(0, r0, b).view({b, 1}), *c, fo).select(1, 0));
      r0 += b;
    }
    next_logits = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
  }
  if (fast) fast->commit();
  return r;
}

GenerateResult generate(const LlamaModel& model, const std::vector<std::vector<int64_t>>& prompts,
                        const GenerateOptions& opt) {
  KVCache cache = model.new_cache(static_cast<int64_t>(prompts.size()));
  torch::NoGradGuard ng;
  auto logits = prefill(model, prompts, cache, opt.chunk);
  return decode_greedy(model, cache, logits, opt);
}

}  // namespace judgeq
