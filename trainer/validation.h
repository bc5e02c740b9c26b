// Validation of soft tokens with the eviction library: on held-out prompts, the critical-KV hit
// rate of judgeq (the soft tokens being trained, in memory) and of SnapKV against the oracle (the
// attention of the model's own full-KV greedy answer), all at the same budget. Plugged into
// `judgeq-train fit` as a FitHooks::validate hook.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/llama.h"
#include "trainer/dataset.h"
#include "trainer/soft_tokens.h"
#include "trainer/trainer.h"

namespace judgeq {

struct HitRateValidation {
  std::string budget = "128";  // Budget::parse: entries kept per layer ("128") or a kvpress ratio ("cr0.75")
  int64_t max_samples = 0;     // first samples of the set used (0: all)
  int64_t window = 32;         // recent window of snapkv and judgeq (their default), always kept
  int64_t answer_tokens = 0;   // oracle answer length (0: each sample's response length)
  // Pooling of snapkv's and judgeq's scores along the prompt (avg | max | none). The methods
  // default to max (kernel 7), which blurs every selection alike: on the testbed model it held
  // judgeq, trained or not, and snapkv at the same hit rate. The oracle's selection and the
  // training loss are unpooled, so validation defaults to none.
  std::string pooling = "none";
  int64_t chunk = 4096;        // prefill chunk
};

// Throws a one-line error for a bad budget (unparsable, or fewer tokens than the window) or
// negative counts.
void check_hit_rate_validation(const HitRateValidation& opt);

// Per prompt of `val` (its prompt ids; the response only sets the oracle's answer length): one
// prefill capturing what oracle, snapkv and judgeq need, the three selections at the budget, and
// the hit rates of judgeq and snapkv against the oracle's. Prompts the budget keeps whole (or
// ratio budgets below the window) are skipped. Returns
//   {"val_hit_rate_judgeq": mean over prompts, "val_hit_rate_snapkv": ..., "val_hit_budget": "128",
//    "val_hit_pooling": "none", "val_hit_samples": prompts used}
// (the two rates are null when no prompt was usable).
nlohmann::json validation_hit_rates(const LlamaModel& model, const SoftTokens& soft, const TrainSet& val,
                                    const HitRateValidation& opt);

// The FitHooks::validate hook computing validation_hit_rates with `opt`.
ValidationHook hit_rate_validation_hook(const HitRateValidation& opt);

}  // namespace judgeq
