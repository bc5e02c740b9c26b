// RULER synthetic tasks (NVIDIA/RULER @ c3f5e3b, scripts/data/synthetic/*.py), generated in C++:
// niah_single_1..3, niah_multikey_1..3, niah_multivalue, niah_multiquery, vt, cwe, fwe.
// Templates, answer prefixes, tokens_to_generate and task arguments come from
// <data_root>/ruler/templates.json; haystacks from PaulGrahamEssays.json and the wonderwords lists.
//
// Length: the haystack size (words, lines, list words) is the largest that a binary search finds
// with  count(context + question + answer_prefix) + tokens_to_generate + template_tokens
// <= max_seq_length, `count` being the caller's tokenizer. Each sample's random content (needle
// lengths, FWE's coded words) moves its length away from the probe's, so its size is corrected
// proportionally (at most 4 times) and then stepped down by 0.5% until it fits: samples end
// within ~1% below the target. RULER only steps down, by 500 essay words or 25 lines.
//
// Sample layout (kvpress's split of RULER inputs): `context` = the task text up to the question
// (for VT and CWE preceded by the in-context example), `question` = from "What ..."/"Question:"
// on, `answer_prefix` = RULER's answer prefix, appended after the chat template.
//
// Differences from RULER, all deliberate or forced:
// * Random streams: std::mt19937_64 seeded from (seed, task, sample index), so any sample can be
//   regenerated alone; RULER threads one Python `random`/numpy stream through all samples. The
//   content follows the same distributions but is not byte-identical to RULER's files.
// * The base template is used for the task text and the chat template is left to the model
//   layer (template_tokens reserves its tokens, like RULER's model_template_token). RULER embeds
//   the chat-wrapped template inside the CWE few-shot example too; here the example holds the
//   plain task text.
// * Essay sentences: RULER uses nltk Punkt (English). Its ortho_context table is not available,
//   so PunktLite (a port of Punkt) runs with the three parameter files we have and an empty
//   orthographic context: identical to nltk with those parameters, different from the full
//   model after some abbreviations, initials and numbers. This only moves where needles can go.
// * FWE uses the same binary search as the other tasks (RULER grows the word count in steps of
//   max_len/32 tokens, leaving up to ~3% of the budget unused).
// * CWE beyond ~8.7K distinct words needs RULER's english_words.json (not bundled): put it at
//   <data_root>/ruler/english_words.json, else such lengths throw judgeq::Error.
// * qa_1 / qa_2 (SQuAD, HotpotQA) are not generated: their source files are not bundled.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/sample.h"

namespace judgeq {

// Number of tokens of a text under the model's tokenizer (no BOS).
using TokenCounter = std::function<size_t(const std::string&)>;

struct RulerOptions {
  std::string data_root = default_data_root();  // holds ruler/templates.json etc.
  size_t max_seq_length = 4096;  // prompt + tokens_to_generate + template_tokens <= this
  size_t num_samples = 500;
  uint64_t seed = 42;
  size_t template_tokens = 0;  // tokens the chat template adds around the prompt
  // qa_1 / qa_2 read these user-supplied files (not bundled): SQuAD v2.0 dev (dev-v2.0.json) and
  // HotpotQA dev distractor (hotpot_dev_distractor_v1.json).
  std::string squad_file, hotpotqa_file;
};

// The 11 synthetic task names, in RULER's order.
const std::vector<std::string>& ruler_tasks();
// RULER's two QA tasks (qa_1: SQuAD v2 dev, qa_2: HotpotQA dev), generated from user-supplied
// files (RulerOptions::squad_file / hotpotqa_file).
const std::vector<std::string>& ruler_qa_tasks();

// nltk's Punkt sentence tokenizer (PunktSentenceTokenizer: word tokenisation, first and second
// annotation passes, candidate contexts, slices and boundary realignment), ported with the English
// parameters we have: abbreviations, collocations and sentence starters, and an *empty*
// orthographic context because ortho_context.tab is missing. On the RULER essay text it gives
// exactly what nltk gives with those parameters (checked against nltk 3.8). Against the full
// English model it differs where Punkt consults orthographic evidence: after abbreviations,
// initials and numbers. Without evidence an abbreviation ends a sentence only before a
// capitalised frequent sentence starter, an initial never ends one before a word, and a number
// ends one unless a lower-case word follows.
class PunktLite {
 public:
  // dir holds abbrev_types.txt, collocations.tab, sent_starters.txt.
  explicit PunktLite(const std::string& dir);
  // Sentence [begin, end) byte offsets, as span_tokenize(text) with realign_boundaries.
  std::vector<std::pair<size_t, size_t>> spans(const std::string& text) const;
  std::vector<std::string> split(const std::string& text) const;

  struct Params;

 private:
  std::shared_ptr<const Params> params_;
};

// Generates one task's samples; loads the data it needs once and can be reused across tasks.
class RulerGenerator {
 public:
  explicit RulerGenerator(RulerOptions options);
  ~RulerGenerator();
  RulerGenerator(RulerGenerator&&) noexcept;
  RulerGenerator& operator=(RulerGenerator&&) noexcept;

  // Samples 0..num_samples-1. Unknown task or missing data files -> judgeq::Error.
  std::vector<BenchSample> generate(const std::string& task, const TokenCounter& count);
  // One sample at a given haystack size (no length search): the building block of generate().
  BenchSample sample(const std::string& task, size_t index, size_t haystack_size, const TokenCounter& count);
  // The haystack size generate() would use for this task (binary search).
  size_t haystack_size(const std::string& task, const TokenCounter& count);

  const RulerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience: RulerGenerator(options).generate(task, count).
std::vector<BenchSample> generate_ruler(const std::string& task, const RulerOptions& options,
                                        const TokenCounter& count);

}  // namespace judgeq
