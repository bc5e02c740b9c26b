// LongBench v1 (THUDM/LongBench @ 2e00731, LongBench/pred.py + eval.py): reads the official
// {task}.jsonl files and builds prompts from config/dataset2prompt.json, generation lengths from
// dataset2maxlen.json, metrics and the chat/first-line rules from config/tasks.json.
//
// Prompt split for the kvpress protocol: `context` is the prompt template up to and including
// {context}; `question` is the rest (the trailing instruction, {input} and "Answer:"), so
// context + question is LongBench's prompt. answer_prefix stays empty.
//
// Truncation (max_prompt_tokens > 0): pred.py's middle truncation of the whole prompt: encode
// (with BOS when add_bos, as HF tokenizers do), and if longer keep the first and last
// max/2 ids, decode each half without special tokens and concatenate. The split is then redone:
// when the truncated prompt still ends with the question part it is cut there, otherwise (a
// question longer than max/2 tokens) all of it goes to `context` and meta.question_split = false.
//
// Integrity: each file is hashed (sha256 after LF -> CRLF, the data.zip form) and compared with
// ORIGINAL_FILE_HASHES.json when that file lists the task. Default: a mismatch prints a warning
// to stderr and sets meta.hash_ok = false (modified copies are legitimate for experiments);
// HashCheck::kError turns it into a judgeq::Error. LongBench-E files are not listed, so unchecked.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "data/sample.h"

namespace judgeq {

class Tokenizer;

enum class HashCheck { kOff, kWarn, kError };

struct LongBenchOptions {
  std::string data_root = default_data_root();  // for the defaults below
  std::string data_dir;     // {task}.jsonl; empty: <data_root>/longbench/data
  std::string config_dir;   // dataset2prompt.json etc.; empty: <data_root>/longbench/config
  std::string hashes_path;  // empty: <data_dir>/ORIGINAL_FILE_HASHES.json if present, else
                            // <data_root>/longbench/data/ORIGINAL_FILE_HASHES.json
  size_t max_prompt_tokens = 0;  // 0: no truncation; LongBench/KVCache-Factory: llama3 7500, mistral 31500
  bool add_bos = true;           // count BOS during truncation, as pred.py's tokenizer call does
  HashCheck verify = HashCheck::kWarn;
  bool longbench_e = false;  // read {task}_e.jsonl (LongBench-E)
  size_t limit = 0;          // keep the first `limit` samples; 0 = all
};

// The 16 English tasks KV-eviction papers report, in LongBench's order.
const std::vector<std::string>& longbench_tasks();

// Loads one task. A tokenizer is needed only when max_prompt_tokens > 0 (else it may be null).
// Missing files, unknown tasks and malformed lines ("<file>:<line>: ...") -> judgeq::Error.
std::vector<BenchSample> load_longbench(const std::string& task, const LongBenchOptions& options,
                                        const Tokenizer* tokenizer = nullptr);
inline std::vector<BenchSample> load_longbench(const std::string& task, const LongBenchOptions& options,
                                               const Tokenizer& tokenizer) {
  return load_longbench(task, options, &tokenizer);
}

// pred.py's middle truncation; returns the prompt unchanged when it fits.
std::string longbench_truncate_middle(const std::string& prompt, size_t max_tokens, const Tokenizer& tokenizer,
                                      bool add_bos = true);

// sha256 of a file as data.zip ships it: every '\n' not already preceded by '\r' hashed as "\r\n".
std::string longbench_crlf_sha256(const std::string& path);

}  // namespace judgeq
