// Benchmark metrics: RULER string matching, LongBench v1 (English + retrieval_zh), NIAH ROUGE-1.
// Each metric re-implements the reference Python code's behaviour, quirks included; the few
// known differences are listed at each function. Per-metric functions return [0, 1] (NIAH
// ROUGE-1 too); `score` returns the scale the benchmark reports (see its table).
#pragma once
#include <string>
#include <vector>

namespace judgeq {

struct BenchSample;

namespace metrics {

// ---- RULER (scripts/eval/synthetic/constants.py; kvpress re-implements the same) ----

// RULER's prediction clean-up: strip, replace control characters [\x00-\x1f] by '\n', strip.
std::string ruler_postprocess(const std::string& prediction);
// Fraction of references contained (case-insensitively) in the prediction. Applies
// ruler_postprocess first. Empty refs -> judgeq::Error.
double string_match_all(const std::string& prediction, const std::vector<std::string>& refs);
// 1 if any reference is contained (case-insensitively), else 0. Applies ruler_postprocess.
double string_match_part(const std::string& prediction, const std::vector<std::string>& refs);

// ---- LongBench v1 (LongBench/metrics.py), one ground truth each ----

// SQuAD normalisation: lowercase, drop ASCII punctuation, drop the words a/an/the, collapse
// whitespace. Python's Unicode lower()/\b/split() are approximated: case folding covers ASCII,
// Latin-1, Greek and Cyrillic; non-ASCII punctuation blocks count as non-word characters.
std::string normalize_answer(const std::string& s);
// Bag-of-tokens F1 of the normalised strings.
double qa_f1(const std::string& prediction, const std::string& ground_truth);
// ROUGE-L F of the Python `rouge` package 1.0.1 (pltrdy), as LongBench calls it:
// case-sensitive; sentences = split on '.', whitespace-collapsed, words = split on ' ';
// summary-level union LCS over *unique* words (exclusive mode); F = 2PR/(P+R+1e-8); 0 when
// either side has no sentence (the package raises, LongBench returns 0).
// Not reproduced: Python's RecursionError (-> 0) for sentence pairs whose LCS walk-back
// exceeds ~990 steps, i.e. sentences of many hundreds of words without a '.'.
double rouge_l(const std::string& prediction, const std::string& ground_truth);
// Class names (from all_classes) found in the prediction; names that are proper substrings of
// the ground truth are dropped (with metrics.py's skip-next-element quirk of removing from a list
// while iterating it); 1/|found| if the ground truth was found, else 0.
double classification(const std::string& prediction, const std::string& ground_truth,
                      const std::vector<std::string>& all_classes);
// Share of the prediction's digit runs equal to N in the ground truth's "Paragraph N".
// A ground truth without "Paragraph N" -> judgeq::Error (metrics.py raises IndexError).
double retrieval(const std::string& prediction, const std::string& ground_truth);
// Same with "段落N" (passage_retrieval_zh).
double retrieval_zh(const std::string& prediction, const std::string& ground_truth);
// Share of the prediction's digit runs equal to the ground truth (passage_count).
double count(const std::string& prediction, const std::string& ground_truth);
// fuzzywuzzy fuzz.ratio(first code line, ground truth) / 100. The first line (after stripping
// leading '\n') that contains no '`', '#' or "//" is used ("" if none).
double code_sim(const std::string& prediction, const std::string& ground_truth);
// fuzzywuzzy fuzz.ratio with python-Levenshtein installed (as KVCache-Factory's requirements
// pin): 100 if equal, 0 if either is empty, else round-half-even(100 * 2*LCS/(|a|+|b|)) over
// Unicode code points. Without python-Levenshtein fuzzywuzzy falls back to difflib's
// SequenceMatcher, whose ratio can be lower (Ratcliff-Obershelp blocks, autojunk); not modelled.
int fuzz_ratio(const std::string& a, const std::string& b);
// LongBench's first-line rule (trec, triviaqa, samsum, lsht): lstrip('\n'), first line.
std::string first_line(const std::string& prediction);

// ---- NIAH ----

// nltk PorterStemmer (default NLTK_EXTENSIONS mode, nltk >= 3.2.2), as rouge_score uses it.
std::string porter_stem(const std::string& word);
// rouge_score tokenizer: lowercase, runs of [^a-z0-9] -> ' ', split, Porter-stem tokens longer
// than 3 characters (when stem), keep non-empty [a-z0-9]+ tokens.
std::vector<std::string> rouge_tokenize(const std::string& text, bool stem);
// rouge_score RougeScorer(['rouge1'], use_stemmer=True).score(target, prediction).fmeasure.
double rouge1_f(const std::string& target, const std::string& prediction, bool stem = true);
// 1 if any reference, lowercased and whitespace-collapsed, occurs in the prediction treated the
// same way; else 0.
double contains(const std::string& prediction, const std::vector<std::string>& refs);

// ---- Dispatcher ----
//
// metric              | per sample (max over refs unless noted)          | scale
// string_match_all    | RULER, refs all together                         | 0..100
// string_match_part   | RULER, refs all together                         | 0..100
// qa_f1               | LongBench qa_f1_score (alias qa_f1_score)         | 0..100
// rouge_l             | LongBench rouge_score (aliases rouge, rouge_score)| 0..100
// classification      | LongBench classification_score                   | 0..100
// retrieval           | LongBench retrieval_score                         | 0..100
// retrieval_zh        | LongBench retrieval_zh_score                      | 0..100
// count               | LongBench count_score                             | 0..100
// code_sim            | LongBench code_sim_score                          | 0..100
// niah_rouge1         | ROUGE-1 F (stemmed) x 10, PyramidKV's NIAH cell    | 0..10
// contains            | needle/answer substring present                   | 0 or 100
// The benchmark's task score is the plain mean of these per-sample values (LongBench and RULER
// then round to 2 decimals). qa_f1_zh and rouge_zh need the jieba segmenter: judgeq::Error.
// Unknown metric or empty refs -> judgeq::Error.
double score(const std::string& metric, const std::string& prediction,
             const std::vector<std::string>& refs, const std::vector<std::string>& all_classes = {});

// score() with the sample's metric, references and classes, after its first-line rule.
double score_sample(const BenchSample& sample, const std::string& prediction);

// The metric names score() accepts (canonical names only).
const std::vector<std::string>& metric_names();

}  // namespace metrics
}  // namespace judgeq
