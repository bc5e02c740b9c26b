// The grid engine: one prefill per sample serves every (method, budget) variant; each variant's
// cache is derived from that prefill and the variants decode together as one batch.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/sample.h"
#include "kv/method.h"
#include "model/chat_template.h"
#include "model/llama.h"
#include "model/tokenizer.h"

namespace judgeq {

struct GridVariant {
  std::string method;
  Budget budget;
  std::string budget_label;  // "full" for the method that ignores budgets
  std::shared_ptr<Method> impl;
};

// Wall time per phase of run_sample, summed over the calls that were given it. Each phase boundary
// waits for the device, so pass it only when measuring (bench/pipeline.cpp --mode grid).
struct GridTimes {
  double prefill_s = 0;   // the prompt's prefill with everything the methods capture (H2O's sums, windows)
  double select_s = 0;    // scoring, selection and gathering the compressed caches
  double hit_rate_s = 0;  // the oracle's decode and the hit rates (GridOptions::hit_rate)
  double decode_s = 0;    // batching the caches and greedy decoding
  int64_t samples = 0, decode_groups = 0;
};

struct GridOptions {
  std::string protocol = "paper";  // paper: whole prompt compressed; kvpress: context only, question after;
                                   // question-first: the question before the context, all compressed
  ChatTemplate chat = ChatTemplate::None;
  bool hit_rate = true;            // critical-KV hit rate of each variant vs the oracle at its budget
  int64_t chunk = 4096;
  int64_t max_batch = 16;          // variants decoded together at most
  GridTimes* times = nullptr;      // where to add phase times (none: no extra device waits)
};

struct VariantOutput {
  std::string method, budget;
  std::vector<int64_t> tokens;  // generated ids (stop id removed)
  std::string prediction;
  double kept_mean = 0;         // entries kept per layer and head, averaged
  int64_t cache_bytes = 0;      // K/V bytes of the compressed prompt cache
  std::optional<double> hit_rate;
};

// Token ids of a sample and how many of them (a prefix) are compressed: all of them under the
// paper and question-first protocols, the context part under kvpress.
struct SampleIds {
  std::vector<int64_t> ids;
  int64_t n_ctx = 0;
};
SampleIds build_sample_ids(const Tokenizer& tok, const BenchSample& s, ChatTemplate chat, const std::string& protocol);
// The question-first prompt text: the question (trimmed), a blank line, then the context; the
// answer prefix still follows. Throws a one-line error for samples without a question or an
// answer prefix (only RULER's tasks have both).
std::string question_first_text(const BenchSample& s);

// The variants of a grid: every method at every budget, `full` once.
std::vector<GridVariant> make_grid(const std::vector<std::string>& methods, const std::vector<std::string>& budgets,
                                   const nlohmann::json& method_options);

// Runs every variant on one sample. decode_alone: one variant at a time, each with its own
// prefill (the kvpress / KVCache-Factory way; the reference the grid must equal).
std::vector<VariantOutput> run_sample(const LlamaModel& model, const Tokenizer& tok, const BenchSample& s,
                                      const std::vector<GridVariant>& variants, const GridOptions& opt,
                                      bool decode_alone = false);

std::vector<int64_t> stop_ids_for(const LlamaModel& model, const Tokenizer& tok, ChatTemplate chat);

}  // namespace judgeq
