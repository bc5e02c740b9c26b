// Judge Q training: prepare (the frozen model answers the prompts itself), the attention-matching
// loss, fit (AdamW on the soft embeddings only, checkpoints, exact resume) and export.
//
// Per sample (batch of one; --batch accumulates gradients over samples):
//   1. the prompt [T] is prefilled without autograd into a cache;
//   2. TARGET: the response tokens [R] run on that cache (append = false) and a probe takes, per
//      layer and query head, the mean over response tokens of their attention over the T prompt
//      keys -> [L][H, T] (or [L][H_kv, T] with map = per-group);
//   3. STUDENT: the S soft embeddings run on the same cache at positions T..T+S-1 (append = false,
//      with autograd) and a probe takes the mean over soft tokens of softmax(q kᵀ/√d) (causal over
//      the soft keys) restricted to the prompt keys -> same shape;
//   4. loss: per layer and head, the squared L2 distance (mse) or generalised KL between the two
//      rows over the prompt keys, averaged over layers and heads.
// The prompt's KV does not depend on what follows it, so one prefill serves both passes and only
// the [S, hidden] parameter needs gradients; model weights are never touched.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/llama.h"
#include "trainer/dataset.h"
#include "trainer/soft_tokens.h"

namespace judgeq {

// ---- prepare --------------------------------------------------------------------------------

struct PrepareOptions {
  std::string model;                // HF checkpoint folder
  std::string data;                 // .jsonl: ShareGPT or {"prompt", "response"} lines
  std::string out;                  // .h5 training set
  std::string chat_template = "none";
  int64_t max_new_tokens = 256;     // response length cap (greedy, stops at EOS / end of turn)
  int64_t min_prompt_tokens = 1;
  int64_t max_prompt_tokens = 0;    // 0: as long as the model allows (max_position_embeddings - max_new_tokens)
  int64_t batch = 8;                // prompts generated together
  int64_t checkpoint_every = 256;   // accepted samples between checkpoints (resumable parts)
  int64_t limit = 0;                // stop after this many accepted samples (0: all)
  int64_t stop_after = 0;           // pause after ~this many samples in this run, keeping the parts
                                    // for --resume (time-limited jobs; 0: never)
  int64_t log_every = 100;          // samples between progress lines when not on a terminal
  bool resume = false;
  bool strict = false;              // malformed lines are errors instead of warnings
  bool quiet = false;
  std::string device = "auto", dtype = "auto";

  nlohmann::json to_json() const;
};

struct PrepareStats {
  int64_t lines = 0, written = 0, malformed = 0, empty_responses = 0, too_short = 0, too_long = 0;
  int64_t resumed_after_line = 0;
  bool finished = true;  // false when paused by stop_after (nothing written to out yet)
};

// Reads the JSONL, regenerates every response greedily with the frozen model and writes the HDF5
// training set atomically. Progress is kept in OUT.parts/ (one atomically written part per
// checkpoint) so that --resume skips the lines already done; the folder is removed at the end.
PrepareStats prepare_train_set(const PrepareOptions& opt);

// ---- the loss -------------------------------------------------------------------------------

struct LossOptions {
  std::string loss = "mse";        // "mse" | "kl"
  std::string map = "per-head";    // "per-head" | "per-group" (mean over a KV group's query heads)
  bool renormalize = false;        // renormalise each attention row over the prompt keys
  int64_t max_response_tokens = 0; // response tokens used for the target (0: all)
  int64_t chunk = 4096;            // ForwardOptions::chunk
};

// [L][H, T] (or [L][H_kv, T] for per-group) float32/float64 rows without autograd: the mean over
// the response tokens of their attention over the T prompt keys in `prompt_cache` (batch 1).
std::vector<torch::Tensor> response_attention_target(const LlamaModel& model, KVCache& prompt_cache,
                                                     const std::vector<int64_t>& response,
                                                     const LossOptions& opt);

// The same target from one pass: prompt and response prefilled together into the empty `cache`
// (no autograd), the response rows' attention over the prompt keys read in that pass, then the
// cache cut back to the prompt (next position T). Saves the separate response forward (its own
// weight reads and a concatenation of every layer's cache) of response_attention_target.
std::vector<torch::Tensor> prefill_with_response_target(const LlamaModel& model, KVCache& cache,
                                                        const std::vector<int64_t>& prompt,
                                                        const std::vector<int64_t>& response,
                                                        const LossOptions& opt);

// The student's rows, same shapes as the target: soft [S, hidden] (any float dtype; the graph to
// it is kept when it requires grad) at positions T..T+S-1 after prompt_cache (batch 1). The cache
// is left unchanged.
std::vector<torch::Tensor> soft_token_attention(const LlamaModel& model, KVCache& prompt_cache,
                                                const torch::Tensor& soft, const LossOptions& opt);

// Scalar loss between student and target rows (mse or kl, averaged over layers and heads).
torch::Tensor attention_matching_loss(const std::vector<torch::Tensor>& student,
                                      const std::vector<torch::Tensor>& target, const LossOptions& opt);

// Prefill (no autograd), target, student and loss for one sample; soft [S, hidden].
torch::Tensor sample_loss(const LlamaModel& model, const TrainSample& sample, const torch::Tensor& soft,
                          const LossOptions& opt);

// ---- fit ------------------------------------------------------------------------------------

struct FitOptions {
  std::string model, train, val, out;
  int64_t soft_tokens = 32;
  int64_t steps = 0;                 // 0: from epochs
  double epochs = 0;                 // used when steps == 0 (default one epoch)
  int64_t batch = 1;                 // samples per optimizer step (gradient accumulation)
  double lr = 1e-3;
  double min_lr_ratio = 0.1;         // cosine decays to lr * min_lr_ratio
  int64_t warmup_steps = -1;         // -1: 5% of the steps
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  double clip = 1.0;                 // max gradient norm (0: off)
  std::string loss = "mse", map = "per-head";
  bool renormalize = false;
  int64_t max_response_tokens = 0;
  std::string init = "mean";         // "mean" | "random" | "tokens"
  std::vector<int64_t> init_tokens;  // ids copied into the rows (cycled) when init = tokens
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t log_every = 1;
  int64_t val_every = 100;
  int64_t val_samples = 64;          // 0: the whole validation set
  int64_t checkpoint_every = 100;
  int64_t stop_after = 0;            // stop (with a checkpoint) after this many steps in this run
  bool resume = false;
  bool quiet = false;
  std::string device = "auto", dtype = "auto";

  nlohmann::json to_json() const;
  // Every key of to_json() may appear; unknown keys throw with the list of valid ones.
  static FitOptions from_json(const nlohmann::json& j);
  LossOptions loss_options() const;
};

// Keys that may differ between a run and its --resume (everything else must match).
const std::vector<std::string>& fit_resume_free_keys();

// Extra validation metrics, e.g. the hit rate against the oracle from the eviction library: called
// at every validation with the current soft tokens (model dtype) and the validation set; the
// returned object's fields are logged beside val_loss.
using ValidationHook = std::function<nlohmann::json(const LlamaModel& model, const SoftTokens& soft, const TrainSet& val)>;

struct FitHooks {
  ValidationHook validate;
  std::function<void(const nlohmann::json& record)> on_log;  // every record written to log.jsonl
};

struct FitResult {
  int64_t step = 0;          // steps done in all (this run and those it resumed)
  double last_loss = 0;
  bool finished = false;     // false when stopped early by stop_after
  std::string soft_tokens;   // path of the exported file ("" when not finished)
};

// Trains into opt.out: config.json, log.jsonl, checkpoint.safetensors and, at the end,
// judgeq.safetensors.
FitResult fit(const FitOptions& opt, const FitHooks& hooks = {});

// ---- export ---------------------------------------------------------------------------------

inline constexpr const char* kCheckpointFormat = "judgeq-train-checkpoint";
inline constexpr int64_t kCheckpointFormatVersion = 1;

// The soft tokens of a run folder's checkpoint, in the training dtype, with full metadata.
SoftTokens soft_tokens_from_checkpoint(const std::string& run_dir);
// Writes them to `out` atomically.
void export_soft_tokens(const std::string& run_dir, const std::string& out);

}  // namespace judgeq
