#include "eval/run.h"
#include "judgeq_git_commit.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "data/longbench.h"
#include "data/niah.h"
#include "data/ruler.h"
#include "eval/grid.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "util/cli.h"
#include "util/compat.h"
#include "util/distributed.h"
#include "util/error.h"
#include "util/files.h"
#include "util/progress.h"
#include "util/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace judgeq {

json RunOptions::to_json() const {
  return {{"model", model},       {"bench", bench},         {"tasks", tasks},
          {"lengths", lengths},   {"depths", depths},       {"data_dir", data_dir},
          {"squad", squad},       {"hotpotqa", hotpotqa},
          {"methods", methods},   {"budgets", budgets},     {"soft_tokens", soft_tokens},
          {"method_options", method_options},               {"protocol", protocol},
          {"chat_template", chat_template},                 {"limit", limit},
          {"seed", seed},         {"hit_rate", hit_rate},   {"max_batch", max_batch},
          {"device", device},     {"dtype", dtype},         {"out", out}};
}

void RunOptions::merge_json(const json& j, const std::vector<std::string>& set_on_cli) {
  check(j.is_object(), "--config must hold a JSON object");
  json cur = to_json();
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key().rfind("_", 0) == 0) continue;  // comments such as "_doc"
    check(cur.contains(it.key()), "unknown key '", it.key(), "' in --config (valid: the long flags of `judgeq-eval run`, ",
          "with '_' for '-')");
    if (std::find(set_on_cli.begin(), set_on_cli.end(), it.key()) != set_on_cli.end()) continue;
    cur[it.key()] = it.value();
  }
  try {
    model = cur["model"];
    bench = cur["bench"];
    tasks = cur["tasks"].get<std::vector<std::string>>();
    lengths = cur["lengths"].get<std::vector<int64_t>>();
    depths = cur["depths"].get<std::vector<double>>();
    data_dir = cur["data_dir"];
    squad = cur["squad"];
    hotpotqa = cur["hotpotqa"];
    methods = cur["methods"].get<std::vector<std::string>>();
    budgets.clear();
    for (auto& b : cur["budgets"]) budgets.push_back(b.is_string() ? b.get<std::string>() : b.dump());
    soft_tokens = cur["soft_tokens"];
    method_options = cur["method_options"];
    protocol = cur["protocol"];
    chat_template = cur["chat_template"];
    limit = cur["limit"];
    seed = cur["seed"];
    hit_rate = cur["hit_rate"];
    max_batch = cur["max_batch"];
    device = cur["device"];
    dtype = cur["dtype"];
    out = cur["out"];
  } catch (const json::exception& e) {
    fail("a value in --config has the wrong type (", e.what(), "); compare with configs/paper.json");
  }
}

namespace {

std::vector<BenchSample> load_samples(const RunOptions& o, const Tokenizer& tok, ChatTemplate chat, int64_t max_pos) {
  std::vector<BenchSample> all;
  const std::string root = o.data_dir.empty() ? default_data_root() : o.data_dir;
  auto count = [&](const std::string& s) { return tok.encode(s, false, false).size(); };
  if (o.bench == "ruler" || o.bench == "niah")
    for (auto len : o.lengths) {
      check(len > 0, "bad context length (got ", len, "); use positive --lengths in tokens, e.g. 4096");
      check(len <= max_pos, "length ", len, " is beyond the model's maximum position ", max_pos,
            "; use --lengths up to ", max_pos);
    }
  if (o.bench == "niah")
    for (double d : o.depths)
      check(d >= 0 && d <= 100, "bad NIAH depth (got ", d, "); use --depths between 0 and 100 (percent)");
  if (o.bench == "ruler") {
    std::vector<std::string> tasks = o.tasks;
    if (tasks.empty()) {  // the synthetic tasks, plus QA where its file is given
      tasks = ruler_tasks();
      if (!o.squad.empty()) tasks.push_back("qa_1");
      if (!o.hotpotqa.empty()) tasks.push_back("qa_2");
    }
    // Tokens the chat template adds around the prompt (the generator leaves room for them).
    const size_t extra = apply_chat_template(tok, chat, {{"user", ""}}, true).size();
    for (auto& t : tasks) {
      const bool qa = std::find(ruler_qa_tasks().begin(), ruler_qa_tasks().end(), t) != ruler_qa_tasks().end();
      check(qa || std::find(ruler_tasks().begin(), ruler_tasks().end(), t) != ruler_tasks().end(), "unknown RULER task '", t,
            "'; valid: niah_single_1..3, niah_multikey_1..3, niah_multivalue, niah_multiquery, vt, cwe, fwe, qa_1 (--squad), "
            "qa_2 (--hotpotqa)");
      for (auto len : o.lengths) {
        RulerOptions ro;
        ro.data_root = root;
        ro.max_seq_length = static_cast<size_t>(len);
        ro.num_samples = o.limit > 0 ? static_cast<size_t>(o.limit) : 500;
        ro.seed = o.seed;
        ro.template_tokens = extra;
        ro.squad_file = o.squad;
        ro.hotpotqa_file = o.hotpotqa;
        auto v = generate_ruler(t, ro, count);
        all.insert(all.end(), v.begin(), v.end());
      }
    }
  } else if (o.bench == "niah") {
    NiahOptions no;
    no.data_root = root;
    no.lengths.assign(o.lengths.begin(), o.lengths.end());
    if (!o.depths.empty()) no.depths = o.depths;
    auto v = generate_niah(no, tok);
    if (o.limit > 0 && static_cast<int64_t>(v.size()) > o.limit) v.resize(o.limit);
    all = v;
  } else if (o.bench == "longbench") {
    std::vector<std::string> tasks = o.tasks.empty() ? std::vector<std::string>{"multi_news"} : o.tasks;
    LongBenchOptions lo;
    if (!o.data_dir.empty()) lo.data_dir = o.data_dir;
    lo.limit = o.limit > 0 ? static_cast<size_t>(o.limit) : 0;
    // Room for the answer: prompts are truncated to the model's window minus the task's
    // max_new_tokens (LongBench's dataset2maxlen.json).
    const std::string maxlen_path = lo.data_root + "/longbench/config/dataset2maxlen.json";
    json maxlen;
    try {
      maxlen = json::parse(read_file(maxlen_path));
    } catch (const json::exception& e) {
      fail("cannot parse ", maxlen_path, " (", e.what(), ")");
    }
    for (auto& t : tasks) {
      const int64_t gen = maxlen.value(t, int64_t(0));
      lo.max_prompt_tokens = static_cast<size_t>(std::max<int64_t>(256, max_pos - gen - 64));
      auto v = load_longbench(t, lo, tok);
      all.insert(all.end(), v.begin(), v.end());
    }
  } else {
    fail("unknown bench '", o.bench, "' (valid: ruler, niah, longbench)");
  }
  return all;
}

std::string result_key(const std::string& id, const std::string& method, const std::string& budget) {
  return id + "|" + method + "|" + budget;
}

std::set<std::string> finished_keys(const std::string& path) {
  std::set<std::string> done;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      auto j = json::parse(line);
      done.insert(result_key(j.at("id").get<std::string>(), j.at("method").get<std::string>(),
                             j.at("budget").get<std::string>()));
    } catch (const std::exception&) {
      // A partial last line from an interrupted run: that sample is redone.
    }
  }
  return done;
}

// The predictions parts of a sharded run (one per rank, any earlier world size included).
std::vector<std::string> part_files(const std::string& parts_dir) {
  std::vector<std::string> parts;
  if (fs::is_directory(parts_dir))
    for (auto& e : fs::directory_iterator(parts_dir))
      if (e.path().extension() == ".jsonl") parts.push_back(e.path().string());
  std::sort(parts.begin(), parts.end());
  return parts;
}

// Folds predictions.jsonl and the parts into predictions.jsonl in the order one process writes:
// samples in order, each with its variants in grid order (lines of variants outside the grid, from
// an earlier run with another grid, first, as they were). Atomic; then the parts go.
void merge_parts(const std::string& pred_path, const std::string& parts_dir, const std::vector<BenchSample>& samples,
                 const std::vector<GridVariant>& variants) {
  std::vector<std::string> files = part_files(parts_dir);
  if (fs::exists(pred_path)) files.insert(files.begin(), pred_path);
  std::map<std::string, std::string> line_of;
  std::vector<std::string> keys;
  for (auto& f : files) {
    std::ifstream in(f);
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j.contains("method") || !j.contains("budget"))
        continue;  // a partial line: its sample was redone
      const std::string k = result_key(j["id"].get<std::string>(), j["method"].get<std::string>(), j["budget"].get<std::string>());
      if (line_of.emplace(k, line).second) keys.push_back(k);
    }
  }
  std::set<std::string> grid;
  for (auto& s : samples)
    for (auto& v : variants) grid.insert(result_key(s.id, v.method, v.budget_label));
  std::string text;
  for (auto& k : keys)
    if (!grid.count(k)) text += line_of[k] + "\n";
  for (auto& s : samples)
    for (auto& v : variants) {
      auto it = line_of.find(result_key(s.id, v.method, v.budget_label));
      if (it != line_of.end()) text += it->second + "\n";
    }
  write_file_atomic(pred_path, text);
  remove_tree(parts_dir);
}

}  // namespace

int64_t run_eval(const RunOptions& o) {
  check(!o.out.empty(), "no output folder; pass --out DIR");
  check(o.protocol == "paper" || o.protocol == "kvpress" || o.protocol == "question-first", "unknown protocol '",
        o.protocol, "' (valid: paper, kvpress, question-first)");
  // Validate methods and budgets before any heavy work.
  json mopts = o.method_options.is_object() ? o.method_options : json::object();
  if (!o.soft_tokens.empty()) mopts["judgeq"]["soft_tokens"] = o.soft_tokens;
  auto variants = make_grid(o.methods, o.budgets, mopts);
  const ChatTemplate chat = parse_chat_template(o.chat_template);

  fs::create_directories(o.out);
  const std::string pred_path = (fs::path(o.out) / "predictions.jsonl").string();
  // Under torchrun, sample i goes to rank i % world, each rank appends to its own part and rank 0
  // merges the parts into predictions.jsonl at the end. Parts left by an interrupted sharded run
  // are taken up by any later --resume, whatever its number of processes.
  const std::string parts_dir = (fs::path(o.out) / "predictions.parts").string();
  if ((fs::exists(pred_path) || fs::exists(parts_dir)) && !o.resume)
    fail("output folder ", o.out, " already holds results; pass --resume to continue it or choose another --out");

  const torch::Device requested = resolve_device(o.device);
  const Dist& dist = Dist::from_env(requested);
  dist.barrier();  // every rank has looked at the folder before any part is written
  const bool sharded = dist.world > 1 || fs::exists(parts_dir);
  auto device = dist.device;
  auto dtype = resolve_dtype(o.dtype, device);
  auto cfg = ModelConfig::load(o.model);
  auto tok = Tokenizer::load(o.model);
  auto samples = load_samples(o, *tok, chat, cfg.max_position_embeddings);
  if (o.protocol == "question-first")
    for (auto& s : samples) question_first_text(s);  // every sample can be moved, before any work
  check(!samples.empty(), "no samples to evaluate (bench ", o.bench, "); check --tasks, --limit and --data-dir");
  auto model = LlamaModel::load(o.model, device, dtype);

  json meta = {{"format", "judgeq-eval-run"},
               {"version", 1},
               {"tool", version_string()},
               {"git_commit", JUDGEQ_GIT_COMMIT},
               {"libtorch", compat::torch_version()},
               {"device", device.str()},
               {"dtype", dtype_name(dtype)},
               {"model", cfg.name},
               {"model_config_hash", cfg.hash()},
               {"seed", o.seed},
               {"protocol", o.protocol},
               {"samples", samples.size()},
               {"variants", variants.size()}};  // no world size: a sharded run's tables are one process's
  if (dist.is_root()) {
    write_file_atomic((fs::path(o.out) / "run_meta.json").string(), meta.dump(2) + "\n");
    json resolved = o.to_json();
    resolved["format"] = "judgeq-eval-config";
    resolved["version"] = 1;
    write_file_atomic((fs::path(o.out) / "config.json").string(), resolved.dump(2) + "\n");
    std::cerr << "judgeq-eval run: " << samples.size() << " samples x " << variants.size() << " variants, "
              << o.protocol << " protocol, " << cfg.name << " on " << device.str() << " (" << dtype_name(dtype) << ")"
              << (dist.world > 1 ? ", " + std::to_string(dist.world) + " processes" : "") << "\n";
  }

  auto done = finished_keys(pred_path);
  for (auto& part : part_files(parts_dir))
    for (auto& k : finished_keys(part)) done.insert(k);
  // This process appends to predictions.jsonl, or to its part in a sharded run.
  const std::string out_path =
      sharded ? (fs::path(parts_dir) / ("rank" + std::to_string(dist.rank) + ".jsonl")).string() : pred_path;
  if (sharded) fs::create_directories(parts_dir);
  if (fs::exists(out_path)) {
    // Cut a partial last line left by an interruption, so appended lines stay one per line.
    const std::string text = read_file(out_path);
    const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (keep != text.size()) truncate_file(out_path, keep);
  }
  std::ofstream pred(out_path, std::ios::app);
  check(static_cast<bool>(pred), "cannot write ", out_path);
  GridOptions go;
  go.protocol = o.protocol;
  go.chat = chat;
  go.hit_rate = o.hit_rate;
  go.max_batch = o.max_batch;
  int64_t written = 0;
  auto mine = [&](size_t i) { return !sharded || static_cast<int>(i % size_t(dist.world)) == dist.rank; };
  int64_t n_mine = 0;
  for (size_t i = 0; i < samples.size(); ++i) n_mine += mine(i) ? 1 : 0;
  std::optional<Progress> bar;  // rank 0's share stands for the whole run
  if (dist.is_root()) bar.emplace("eval " + o.bench, n_mine, "samples");
  for (size_t i = 0; i < samples.size(); ++i) {
    if (!mine(i)) continue;
    const BenchSample& s = samples[i];
    std::vector<GridVariant> todo;
    for (auto& v : variants)
      if (!done.count(result_key(s.id, v.method, v.budget_label))) todo.push_back(v);
    if (todo.empty()) {
      if (bar) bar->update(1, "(resumed)");
      continue;
    }
    auto outs = run_sample(*model, *tok, s, todo, go);
    const int64_t prompt_tokens = static_cast<int64_t>(build_sample_ids(*tok, s, chat, o.protocol).ids.size());
    std::string lines;
    for (auto& r : outs) {
      json j = {{"bench", s.bench},
                {"task", s.task},
                {"id", s.id},
                {"length", s.bench == "ruler" ? s.meta.value("max_seq_length", json(nullptr))
                           : s.bench == "niah" ? s.meta.value("length", json(nullptr)) : json(nullptr)},
                {"depth", s.meta.contains("depth") ? s.meta["depth"] : json(nullptr)},
                {"method", r.method},
                {"budget", r.budget},
                {"protocol", o.protocol},
                {"prediction", r.prediction},
                {"references", s.references},
                {"metric", s.metric},
                {"score", metrics::score_sample(s, r.prediction)},
                {"kept_mean", r.kept_mean},
                {"cache_bytes", r.cache_bytes},
                {"hit_rate", r.hit_rate ? json(*r.hit_rate) : json(nullptr)},
                {"prompt_tokens", prompt_tokens},
                {"new_tokens", r.tokens.size()}};
      lines += j.dump() + "\n";
      ++written;
    }
    pred << lines << std::flush;  // one write per sample: an interruption loses at most this sample
    if (bar) bar->update(1);
  }
  if (bar) bar->finish();
  pred.close();
  if (sharded) {
    dist.barrier();  // every part is complete
    if (dist.active()) {
      auto n = torch::tensor({double(written)}, torch::kFloat64);
      dist.all_reduce_sum(n);
      written = static_cast<int64_t>(n.item<double>());
    }
    if (dist.is_root()) merge_parts(pred_path, parts_dir, samples, variants);
  }
  if (dist.is_root()) {
    write_report(o.out);
    std::cerr << "wrote " << o.out << "/results.md, metrics.json, predictions.jsonl\n";
  }
  dist.barrier();  // every rank returns once the run folder is complete
  return written;
}

}  // namespace judgeq
