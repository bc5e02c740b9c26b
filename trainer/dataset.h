// Training data for Judge Q: prompt text from JSONL (ShareGPT conversations or
// {"prompt", "response"} lines) and the tokenised training sets that `judgeq-train prepare`
// writes to HDF5 (prompt ids + the model's own greedy response ids).
#pragma once
#include <cstdint>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"

namespace judgeq {

// ---- JSONL ----------------------------------------------------------------------------------

// The first exchange of one JSONL line.
struct TextExample {
  int64_t line = 0;       // 1-based line number in the source file
  std::string system;     // ShareGPT "system" turn before the first human turn, or "system" field
  std::string prompt;     // first human turn, or "prompt"
  std::string response;   // the reference answer when the line has one (prepare regenerates it)
};

// Parses one line: {"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}
// (also "user"/"assistant" roles) or {"prompt": ..., "response": ...}. Throws Error naming
// `source`, the line number and what is wrong.
TextExample parse_example(const std::string& line, int64_t line_no, const std::string& source);

// Streams examples from a JSONL file. Blank lines are skipped; a malformed line is reported
// through on_warning (with its line number) and skipped, or throws when strict.
class JsonlExampleReader {
 public:
  JsonlExampleReader(const std::string& path, bool strict);
  // Next well-formed example; false at the end of the file.
  bool next(TextExample& ex);
  // Consumes up to n lines without parsing them (resuming after lines already done).
  void skip(int64_t n);
  int64_t line() const { return line_; }  // lines consumed so far
  int64_t n_malformed() const { return n_malformed_; }
  std::function<void(const std::string&)> on_warning;  // default: "warning: ..." on stderr

 private:
  std::string path_;
  std::ifstream in_;
  bool strict_;
  int64_t line_ = 0, n_malformed_ = 0;
};

// Number of lines in a file (a final line without '\n' counts).
int64_t count_lines(const std::string& path);

// ---- HDF5 training sets ---------------------------------------------------------------------

inline constexpr const char* kTrainSetFormat = "judgeq-train-set";
inline constexpr int64_t kTrainSetFormatVersion = 1;

struct TrainSample {
  std::vector<int64_t> prompt;    // [T] ids, BOS and chat template included
  std::vector<int64_t> response;  // [R] the model's greedy answer, stop token excluded
  int64_t source_line = 0;        // line of the JSONL file it came from
};

// A training set held in memory. Layout on disk (format "judgeq-train-set", version 1):
//   /tokens            int32 [N_tok]  per sample its prompt then its response, concatenated
//   /offsets           int64 [N + 1]  sample i is tokens[offsets[i] : offsets[i+1]]
//   /prompt_lengths    int32 [N]
//   /response_lengths  int32 [N]
//   /source_lines      int64 [N]
// and root attributes: format, format_version, model_config_hash, model_name, tool_version,
// git_commit, n_samples, plus whatever `attributes` holds (strings, integers, floats; objects as
// JSON text).
class TrainSet {
 public:
  void add(const TrainSample& s);
  void append(const TrainSet& other);  // samples of `other` after ours (attributes unchanged)
  int64_t size() const { return static_cast<int64_t>(source_line_.size()); }
  TrainSample get(int64_t i) const;
  int64_t prompt_length(int64_t i) const { return prompt_len_.at(i); }
  int64_t response_length(int64_t i) const { return response_len_.at(i); }
  int64_t source_line(int64_t i) const { return source_line_.at(i); }
  int64_t n_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  // SHA-256 over ids and lengths: names the data a run was trained on.
  std::string content_hash() const;

  // Written atomically (temp file + rename). `attributes` must hold model_config_hash.
  void write(const std::string& path) const;
  // Reads and validates a file (format, version, consistent offsets); one-line errors saying how
  // to regenerate it.
  static TrainSet read(const std::string& path);
  // read(), then refuses a set made for another model (config hash).
  static TrainSet read_for_model(const std::string& path, const ModelConfig& config);

  nlohmann::json attributes = nlohmann::json::object();

 private:
  std::vector<int32_t> tokens_;
  std::vector<int64_t> offsets_ = {0};
  std::vector<int32_t> prompt_len_, response_len_;
  std::vector<int64_t> source_line_;
};

}  // namespace judgeq
