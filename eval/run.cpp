#include "eval/run.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "data/longbench.h"
#include "data/niah.h"
#include "data/ruler.h"
#include "eval/grid.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "util/cli.h"
#include "util/compat.h"
#include "util/error.h"
#include "util/progress.h"
#include "util/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace judgeq {

json RunOptions::to_json() const {
  return {{"model", model},       {"bench", bench},         {"tasks", tasks},
          {"lengths", lengths},   {"depths", depths},       {"data_dir", data_dir},
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
    for (auto len : o.lengths)
      check(len > 0 && len <= max_pos, "length ", len, " is beyond the model's maximum position ", max_pos,
            "; use --lengths up to ", max_pos);
  if (o.bench == "ruler") {
    std::vector<std::string> tasks = o.tasks.empty() ? ruler_tasks() : o.tasks;
    // Tokens the chat template adds around the prompt (the generator leaves room for them).
    const size_t extra = apply_chat_template(tok, chat, {{"user", ""}}, true).size();
    for (auto& t : tasks) {
      check(std::find(ruler_tasks().begin(), ruler_tasks().end(), t) != ruler_tasks().end(), "unknown RULER task '", t,
            "'; valid: niah_single_1..3, niah_multikey_1..3, niah_multivalue, niah_multiquery, vt, cwe, fwe");
      for (auto len : o.lengths) {
        RulerOptions ro;
        ro.data_root = root;
        ro.max_seq_length = static_cast<size_t>(len);
        ro.num_samples = o.limit > 0 ? static_cast<size_t>(o.limit) : 500;
        ro.seed = o.seed;
        ro.template_tokens = extra;
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

std::set<std::string> finished_keys(const std::string& path) {
  std::set<std::string> done;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      auto j = json::parse(line);
      done.insert(j.at("id").get<std::string>() + "|" + j.at("method").get<std::string>() + "|" +
                  j.at("budget").get<std::string>());
    } catch (const std::exception&) {
      // A partial last line from an interrupted run: that sample is redone.
    }
  }
  return done;
}

}  // namespace

int64_t run_eval(const RunOptions& o) {
  check(!o.out.empty(), "no output folder; pass --out DIR");
  check(o.protocol == "paper" || o.protocol == "kvpress", "unknown protocol '", o.protocol, "' (valid: paper, kvpress)");
  // Validate methods and budgets before any heavy work.
  json mopts = o.method_options.is_object() ? o.method_options : json::object();
  if (!o.soft_tokens.empty()) mopts["judgeq"]["soft_tokens"] = o.soft_tokens;
  auto variants = make_grid(o.methods, o.budgets, mopts);
  const ChatTemplate chat = parse_chat_template(o.chat_template);

  fs::create_directories(o.out);
  const std::string pred_path = (fs::path(o.out) / "predictions.jsonl").string();
  if (fs::exists(pred_path) && !o.resume)
    fail("output folder ", o.out, " already holds results; pass --resume to continue it or choose another --out");

  auto device = resolve_device(o.device);
  auto dtype = resolve_dtype(o.dtype, device);
  auto cfg = ModelConfig::load(o.model);
  auto tok = Tokenizer::load(o.model);
  auto samples = load_samples(o, *tok, chat, cfg.max_position_embeddings);
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
               {"variants", variants.size()}};
  write_file_atomic((fs::path(o.out) / "run_meta.json").string(), meta.dump(2) + "\n");
  json resolved = o.to_json();
  resolved["format"] = "judgeq-eval-config";
  resolved["version"] = 1;
  write_file_atomic((fs::path(o.out) / "config.json").string(), resolved.dump(2) + "\n");
  std::cerr << "judgeq-eval run: " << samples.size() << " samples x " << variants.size() << " variants, "
            << o.protocol << " protocol, " << cfg.name << " on " << device.str() << " (" << dtype_name(dtype) << ")\n";

  auto done = finished_keys(pred_path);
  if (fs::exists(pred_path)) {
    // Cut a partial last line left by an interruption, so appended lines stay one per line.
    const std::string text = read_file(pred_path);
    const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (keep != text.size()) fs::resize_file(pred_path, keep);
  }
  std::ofstream pred(pred_path, std::ios::app);
  check(static_cast<bool>(pred), "cannot write ", pred_path);
  GridOptions go;
  go.protocol = o.protocol;
  go.chat = chat;
  go.hit_rate = o.hit_rate;
  go.max_batch = o.max_batch;
  int64_t written = 0;
  Progress bar("eval " + o.bench, static_cast<int64_t>(samples.size()), "samples");
  for (auto& s : samples) {
    std::vector<GridVariant> todo;
    for (auto& v : variants)
      if (!done.count(s.id + "|" + v.method + "|" + v.budget_label)) todo.push_back(v);
    if (todo.empty()) {
      bar.update(1, "(resumed)");
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
    bar.update(1);
  }
  bar.finish();
  pred.close();
  write_report(o.out);
  std::cerr << "wrote " << o.out << "/results.md, metrics.json, predictions.jsonl\n";
  return written;
}

}  // namespace judgeq
