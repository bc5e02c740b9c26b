// Needle in a Haystack, pressure-test style (gkamradt/LLMTest_NeedleInAHaystack), as the
// KV-eviction papers run it (FranxYao/Long-Context-Data-Engineering, PyramidKV/KVCache-Factory
// run_needle_in_haystack.py):
// * haystack: the Paul Graham essays (<data_root>/niah/PaulGrahamEssays/*.txt, sorted names)
//   concatenated, repeated until long enough, tokenised without BOS;
// * per (length L, depth d): the first L tokens, cut to L - buffer - |needle| tokens; the needle's
//   tokens go in at int(n * d / 100), backed off to just after the nearest preceding token whose
//   text ends with '.' (PyramidKV hard-codes those ids per model; decoding single tokens is the
//   tokenizer-generic equivalent); d = 100 appends; the result is decoded (special tokens skipped);
// * prompt: "<|im_start|> This is a very long story book: <book> {context} </book>.\n Based on the
//   content of the book, Question: {question}\nAnswer:" as plain text, no chat template;
// * scoring: niah_rouge1 (ROUGE-1 F x 10 against the needle) and `contains` (meta.contains_ref).
// Differences: the essay files are read with Python's universal newlines (CRLF -> LF), so the
// CRLF copy of worked.txt in niah/variants/ gives the same haystack and is not needed; the trimmed
// context is not decoded and re-encoded before insertion (PyramidKV does, which can shift a token
// at the cut).
#pragma once
#include <string>
#include <vector>

#include "data/sample.h"

namespace judgeq {

class Tokenizer;

inline constexpr const char* kNiahNeedle =
    "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n";
// gkamradt / FranxYao question; PyramidKV uses kNiahQuestionPyramidKV.
inline constexpr const char* kNiahQuestion = "What is the best thing to do in San Francisco?";
inline constexpr const char* kNiahQuestionPyramidKV = "The best thing to do in San Francisco is: ";
inline constexpr const char* kNiahAnswer = "eat a sandwich and sit in Dolores Park on a sunny day";

struct NiahOptions {
  std::string data_root = default_data_root();  // holds niah/PaulGrahamEssays/
  std::vector<size_t> lengths = {1000, 2000, 4000, 8000};  // context lengths in tokens
  std::vector<double> depths = {0, 11, 22, 33, 44, 56, 67, 78, 89, 100};  // PyramidKV's 10 depths, %
  size_t buffer = 200;  // final_context_length_buffer: tokens left for the wrapper and the answer
  std::string needle = kNiahNeedle;
  std::string question = kNiahQuestion;
  std::string answer = kNiahAnswer;  // what `contains` looks for
  bool period_backoff = true;        // false: insert at the exact token position (kvpress)
  int max_new_tokens = 50;           // FranxYao 50, PyramidKV 30
};

// Evenly spaced depths, rounded to integers as np.round(np.linspace(0, 100, n)) does.
std::vector<double> niah_depths(size_t n);
// Evenly spaced lengths from lo to hi inclusive, rounded like np.round(np.linspace(lo, hi, n)).
std::vector<size_t> niah_lengths(size_t lo, size_t hi, size_t n);

// The essays as one string (sorted file names, CRLF -> LF). Missing folder -> judgeq::Error.
std::string niah_haystack_text(const std::string& data_root);

// Every (length, depth) cell, lengths outer. The haystack is tokenised once.
std::vector<BenchSample> generate_niah(const NiahOptions& options, const Tokenizer& tokenizer);

}  // namespace judgeq
