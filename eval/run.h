// `judgeq-eval run`: benchmark samples x (method, budget) grid -> a run folder with predictions,
// metrics, tables and plots. Resumable; every file versioned.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace judgeq {

struct RunOptions {
  std::string model;
  std::string bench = "ruler";            // ruler | niah | longbench
  std::vector<std::string> tasks;         // empty: the bench's default set
  std::vector<int64_t> lengths = {4096};  // RULER / NIAH target lengths in tokens
  std::vector<double> depths;             // NIAH depths in %; empty: 10 depths 0..100
  std::string data_dir;                   // shared data root (ruler/, niah/) or LongBench jsonl folder
  std::string squad, hotpotqa;            // RULER qa_1 / qa_2 source files (user-supplied)
  std::vector<std::string> methods = {"full", "snapkv"};
  std::vector<std::string> budgets = {"128", "256"};
  std::string soft_tokens;
  nlohmann::json method_options = nlohmann::json::object();  // {"snapkv": {"window": 32}, ...}
  std::string protocol = "paper";         // paper | kvpress
  std::string chat_template = "none";     // none | llama3 | mistral
  int64_t limit = 0;                      // samples per task and length (0: the bench's default)
  uint64_t seed = 42;
  bool resume = false;
  bool hit_rate = true;
  int64_t max_batch = 16;
  std::string device = "auto";
  std::string dtype = "auto";
  std::string out;

  nlohmann::json to_json() const;
  // Fields present in j override this (used for --config files under CLI flags).
  void merge_json(const nlohmann::json& j, const std::vector<std::string>& set_on_cli);
};

// Runs the evaluation; returns the number of (sample, variant) results written.
int64_t run_eval(const RunOptions& opt);

}  // namespace judgeq
