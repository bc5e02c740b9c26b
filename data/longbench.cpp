#include "data/longbench.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "model/tokenizer.h"
#include "util/error.h"
#include "util/hash.h"

namespace judgeq {
namespace {

namespace fs = std::filesystem;

const char* const kHowToGetLongBench =
    "download data.zip from the Hugging Face dataset THUDM/LongBench, unzip it and pass the folder holding "
    "{task}.jsonl as judgeq-eval's --data-dir (LongBenchOptions::data_dir in the library)";

std::string read_text(const std::string& path, const char* what_to_do) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "missing LongBench file (got no readable ", path, ", expected the file); ", what_to_do);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json read_json(const std::string& path, const char* what_to_do) {
  try {
    return nlohmann::json::parse(read_text(path, what_to_do));
  } catch (const nlohmann::json::exception& e) {
    fail("cannot parse ", path, " (got ", e.what(), ", expected JSON); ", what_to_do);
  }
}

// Python str.format over "{name}" fields in one pass; values are never re-scanned.
std::string format(const std::string& tmpl, const nlohmann::json& fields) {
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] == '{') {
      size_t e = tmpl.find('}', i);
      if (e != std::string::npos) {
        const std::string name = tmpl.substr(i + 1, e - i - 1);
        if (fields.contains(name) && fields[name].is_string()) {
          out += fields[name].get<std::string>();
          i = e + 1;
          continue;
        }
      }
    }
    out.push_back(tmpl[i++]);
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// LongBench metric function names -> eval/metrics.h names.
std::string metric_name(const std::string& longbench_name) {
  static const std::map<std::string, std::string> kNames = {
      {"qa_f1_score", "qa_f1"},           {"qa_f1_zh_score", "qa_f1_zh"},   {"rouge_score", "rouge_l"},
      {"rouge_zh_score", "rouge_zh"},     {"classification_score", "classification"},
      {"retrieval_score", "retrieval"},   {"retrieval_zh_score", "retrieval_zh"},
      {"count_score", "count"},           {"code_sim_score", "code_sim"}};
  auto it = kNames.find(longbench_name);
  return it == kNames.end() ? longbench_name : it->second;
}

bool listed(const nlohmann::json& list, const std::string& task) {
  return list.is_array() && std::find(list.begin(), list.end(), task) != list.end();
}

}  // namespace

const std::vector<std::string>& longbench_tasks() {
  static const std::vector<std::string> kTasks = {
      "narrativeqa", "qasper",  "multifieldqa_en", "hotpotqa", "2wikimqa",      "musique",
      "gov_report",  "qmsum",   "multi_news",      "trec",     "triviaqa",      "samsum",
      "passage_count", "passage_retrieval_en", "lcc", "repobench-p"};
  return kTasks;
}

std::string longbench_crlf_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "cannot open ", path, " for hashing (got no readable file); check the path");
  Sha256 h;
  std::vector<char> buf(1 << 16);
  std::string out;
  char prev = 0;
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    out.clear();
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      char c = buf[size_t(i)];
      if (c == '\n' && prev != '\r') out.push_back('\r');
      out.push_back(c);
      prev = c;
    }
    h.update(out);
  }
  return h.hex_digest();
}

std::string longbench_truncate_middle(const std::string& prompt, size_t max_tokens, const Tokenizer& tok, bool add_bos) {
  check(max_tokens >= 2, "LongBench max prompt length too small (got ", max_tokens, ", expected >= 2 tokens); raise it");
  std::vector<int64_t> ids = tok.encode(prompt, add_bos, false);
  if (ids.size() <= max_tokens) return prompt;
  const size_t half = max_tokens / 2;
  std::vector<int64_t> head(ids.begin(), ids.begin() + long(half)), tail(ids.end() - long(half), ids.end());
  return tok.decode(head, true) + tok.decode(tail, true);
}

std::vector<BenchSample> load_longbench(const std::string& task, const LongBenchOptions& opt, const Tokenizer* tok) {
  const std::string data_dir = opt.data_dir.empty() ? opt.data_root + "/longbench/data" : opt.data_dir;
  const std::string config_dir = opt.config_dir.empty() ? opt.data_root + "/longbench/config" : opt.config_dir;
  const char* get_config = "copy THUDM/LongBench's LongBench/config/*.json (and judgeq's tasks.json) there, or set "
                           "LongBenchOptions::config_dir";
  const nlohmann::json prompts = read_json(config_dir + "/dataset2prompt.json", get_config);
  const nlohmann::json maxlen = read_json(config_dir + "/dataset2maxlen.json", get_config);
  const nlohmann::json tasks = read_json(config_dir + "/tasks.json", get_config);

  if (!prompts.contains(task) || !tasks.contains("tasks") || !tasks["tasks"].contains(task)) {
    std::string known;
    for (const auto& t : longbench_tasks()) known += (known.empty() ? "" : ", ") + t;
    fail("unknown LongBench task (got \"", task, "\", expected one of ", known, " or a Chinese task); check the name");
  }
  check(opt.max_prompt_tokens == 0 || tok != nullptr, "LongBench truncation to ", opt.max_prompt_tokens,
        " tokens needs a tokenizer (got none); pass the model's Tokenizer or set max_prompt_tokens = 0");

  const std::string tmpl = prompts[task].get<std::string>();
  const size_t ctx_end = tmpl.find("{context}");
  check(ctx_end != std::string::npos, "LongBench prompt for ", task, " has no {context} (got \"", tmpl, "\"); ", get_config);
  const std::string context_tmpl = tmpl.substr(0, ctx_end + 9), question_tmpl = tmpl.substr(ctx_end + 9);
  const std::string metric = metric_name(tasks["tasks"][task].at("metric").get<std::string>());
  const int max_new = maxlen.at(task).get<int>();
  const bool chat = !listed(tasks.value("no_chat_template", nlohmann::json::array()), task);
  const bool first_line = listed(tasks.value("first_line_only_before_scoring", nlohmann::json::array()), task);

  const std::string file_task = opt.longbench_e ? task + "_e" : task;
  const std::string path = data_dir + "/" + file_task + ".jsonl";
  check(fs::exists(path), "LongBench file not found (got no ", path, "); ", kHowToGetLongBench);

  // Integrity against the published hashes of data.zip.
  nlohmann::json hash_ok = nullptr;
  if (opt.verify != HashCheck::kOff) {
    std::string hashes = opt.hashes_path;
    if (hashes.empty()) {
      hashes = data_dir + "/ORIGINAL_FILE_HASHES.json";
      if (!fs::exists(hashes)) hashes = opt.data_root + "/longbench/data/ORIGINAL_FILE_HASHES.json";
    }
    if (fs::exists(hashes)) {
      const nlohmann::json table = read_json(hashes, "restore ORIGINAL_FILE_HASHES.json or set LongBenchOptions::verify = kOff");
      if (table.contains("files") && table["files"].contains(file_task)) {
        const std::string expected = table["files"][file_task].at("sha256_crlf").get<std::string>();
        const std::string got = longbench_crlf_sha256(path);
        hash_ok = got == expected;
        if (got != expected) {
          std::ostringstream msg;
          msg << "LongBench file " << path << " differs from the original data.zip (got sha256 " << got << " after LF->CRLF, expected "
              << expected << "); re-download it if this copy was not modified on purpose";
          if (opt.verify == HashCheck::kError) fail(msg.str());
          std::cerr << "warning: " << msg.str() << "\n";
        }
      }
    }
  }

  std::ifstream in(path, std::ios::binary);
  check(bool(in), "cannot read LongBench file ", path, " (got an unreadable file); check permissions");
  std::vector<BenchSample> out;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (opt.limit && out.size() >= opt.limit) break;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(path, ":", line_no, ": malformed JSON (got ", e.what(), ", expected one LongBench sample object per line); "
           "fix or re-download the file");
    }
    auto field = [&](const char* name) -> const nlohmann::json& {
      if (!j.is_object() || !j.contains(name))
        fail(path, ":", line_no, ": missing field \"", name, "\" (got ", j.is_object() ? "an object without it" : j.type_name(),
             ", expected a LongBench sample with input, context, answers); fix or re-download the file");
      return j[name];
    };
    const auto& answers = field("answers");
    check(answers.is_array() && field("context").is_string() && field("input").is_string(), path, ":", line_no,
          ": wrong field types (got answers ", answers.type_name(), ", expected a list of strings and string input/context); "
          "fix or re-download the file");

    BenchSample s;
    s.bench = "longbench";
    s.task = task;
    s.id = j.value("_id", task + "-" + std::to_string(out.size()));
    for (const auto& a : answers) s.references.push_back(a.is_string() ? a.get<std::string>() : a.dump());
    if (j.contains("all_classes") && j["all_classes"].is_array())
      for (const auto& c : j["all_classes"]) s.all_classes.push_back(c.get<std::string>());
    s.max_new_tokens = max_new;
    s.metric = metric;
    s.use_chat_template = chat;
    s.first_line_only = first_line;
    s.context = format(context_tmpl, j);
    s.question = format(question_tmpl, j);
    s.meta["index"] = out.size();
    s.meta["line"] = line_no;
    if (j.contains("length")) s.meta["length"] = j["length"];
    if (j.contains("language")) s.meta["language"] = j["language"];
    s.meta["hash_ok"] = hash_ok;
    s.meta["truncated"] = false;

    if (opt.max_prompt_tokens > 0) {
      const std::string prompt = s.context + s.question;
      const std::string cut = longbench_truncate_middle(prompt, opt.max_prompt_tokens, *tok, opt.add_bos);
      if (cut != prompt) {
        s.meta["truncated"] = true;
        if (ends_with(cut, s.question)) {
          s.context = cut.substr(0, cut.size() - s.question.size());
        } else {
          s.context = cut;
          s.question.clear();
          s.meta["question_split"] = false;
        }
      }
    }
    out.push_back(std::move(s));
  }
  check(!out.empty(), "LongBench file ", path, " holds no samples (got 0 lines); ", kHowToGetLongBench);
  return out;
}

}  // namespace judgeq
