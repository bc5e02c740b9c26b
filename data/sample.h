// One benchmark sample, as every generator/loader in data/ returns it and eval/ consumes it.
// Plain data: the prompt fed to the model is chat_template(context + question) + answer_prefix
// (chat template only when use_chat_template); under the kvpress protocol only `context` is
// compressed and `question` is appended after compression.
#pragma once
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace judgeq {

struct BenchSample {
  std::string bench;          // "ruler" | "niah" | "longbench"
  std::string task;           // e.g. "niah_single_1", "niah", "multi_news"
  std::string id;             // stable id (task + index, or LongBench _id)
  std::string context;        // instruction + context: the part compressed under the kvpress protocol
  std::string question;       // appended after the context (may be empty); prompt = context + question
  std::string answer_prefix;  // appended after the chat template (RULER), empty otherwise
  std::vector<std::string> references;
  std::vector<std::string> all_classes;  // LongBench classification only
  int max_new_tokens = 0;
  std::string metric;               // a metric name understood by eval/metrics.h
  bool use_chat_template = true;    // LongBench: false for trec, triviaqa, samsum, lsht, lcc, repobench-p
  bool first_line_only = false;     // LongBench: score only the first line (trec, triviaqa, samsum, lsht)
  nlohmann::json meta = nlohmann::json::object();  // length target, depth, seed, ...

  std::string prompt() const { return context + question; }
};

// The shared data folder (holding ruler/, niah/, longbench/, tokenizers/): $JUDGEQ_DATA, else
// $JUDGEQ_SHARED/data, else ../shared/data (the layout beside a checkout).
inline std::string default_data_root() {
  if (const char* d = std::getenv("JUDGEQ_DATA")) return d;
  if (const char* s = std::getenv("JUDGEQ_SHARED")) return std::string(s) + "/data";
  return "../shared/data";
}

}  // namespace judgeq
