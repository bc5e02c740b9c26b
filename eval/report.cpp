// Run reports: predictions.jsonl -> per-task means -> bench averages -> JSON, Markdown, CSV, plots.
#include "eval/report.h"
#include "judgeq_git_commit.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "eval/plot.h"
#include "util/error.h"
#include "util/safetensors.h"

namespace judgeq {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace {

constexpr const char* kMetricsFormat = "judgeq-eval-metrics";
constexpr int kMetricsVersion = 1;

std::optional<double> parse_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// (rank, value, name): full < tokens < ratios < anything else.
std::tuple<int, double, std::string> budget_key(const std::string& b) {
  if (b == "full") return {0, 0.0, b};
  if (auto v = parse_number(b)) return {1, *v, b};
  if (b.rfind("cr", 0) == 0)
    if (auto v = parse_number(b.substr(2))) return {2, *v, b};
  return {3, 0.0, b};
}

bool is_token_budget(const std::string& b) { return std::get<0>(budget_key(b)) == 1; }

// Python's round(x, 2): printf rounds the exact binary value, ties to even, as CPython does.
double round2(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", x);
  return std::strtod(buf, nullptr);
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Mean of the values present; nullopt when none is.
struct NullableMean {
  double sum = 0;
  int64_t n = 0;
  void add(const std::optional<double>& v) {
    if (v) {
      sum += *v;
      ++n;
    }
  }
  std::optional<double> get() const { return n ? std::optional<double>(sum / n) : std::nullopt; }
};

// ---- reading ----

std::string field_string(const json& j, const char* key, size_t line_no, const std::string& path) {
  check(j.contains(key), path, " line ", line_no, ": missing \"", key, "\"; regenerate the file with judgeq-eval run");
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  // Budgets written as bare numbers (128) read like "128".
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  fail(path, " line ", line_no, ": \"", key, "\" must be a string (got ", v.dump(), "); regenerate the file with judgeq-eval run");
}

std::optional<double> field_number(const json& j, const char* key, size_t line_no, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  check(j[key].is_number(), path, " line ", line_no, ": \"", key, "\" must be a number or null (got ",
        j[key].dump(), "); regenerate the file with judgeq-eval run");
  return j[key].get<double>();
}

PredictionRecord parse_record(const json& j, size_t line_no, const std::string& path) {
  check(j.is_object(), path, " line ", line_no, ": expected a JSON object; regenerate the file with judgeq-eval run");
  PredictionRecord r;
  r.bench = field_string(j, "bench", line_no, path);
  r.task = field_string(j, "task", line_no, path);
  r.method = field_string(j, "method", line_no, path);
  r.budget = field_string(j, "budget", line_no, path);
  r.protocol = field_string(j, "protocol", line_no, path);
  r.metric = j.contains("metric") && j["metric"].is_string() ? j["metric"].get<std::string>() : "";
  const auto score = field_number(j, "score", line_no, path);
  check(score.has_value(), path, " line ", line_no, ": missing \"score\"; regenerate the file with judgeq-eval run");
  r.score = *score;
  if (auto len = field_number(j, "length", line_no, path)) r.length = std::llround(*len);
  r.depth = field_number(j, "depth", line_no, path);
  r.hit_rate = field_number(j, "hit_rate", line_no, path);
  r.kept_mean = field_number(j, "kept_mean", line_no, path);
  r.cache_bytes = field_number(j, "cache_bytes", line_no, path);
  return r;
}

// ---- tables ----

// A table row: one evaluated variant.
struct Variant {
  std::string method, budget, protocol;
  bool operator<(const Variant& o) const {
    // The full-cache reference rows lead; then method, budget (numeric), protocol.
    const bool fa = budget == "full", fb = o.budget == "full";
    if (fa != fb) return fa;
    if (method != o.method) return method < o.method;
    if (budget != o.budget) return budget_less(budget, o.budget);
    return protocol < o.protocol;
  }
};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string opt_text(const std::optional<double>& v, int decimals) { return v ? fixed(*v, decimals) : ""; }

ordered_json opt_json(const std::optional<double>& v) { return v ? ordered_json(*v) : ordered_json(nullptr); }

// One line summarising run_meta.json's scalar fields; empty when the file is absent or unreadable
// (a report is still useful without it).
std::string meta_line(const std::string& run_dir) {
  const fs::path p = fs::path(run_dir) / "run_meta.json";
  std::error_code ec;
  if (!fs::exists(p, ec)) return "";
  json meta;
  try {
    meta = json::parse(read_file(p.string()));
  } catch (const std::exception& e) {
    std::cerr << "warning: cannot read " << p.string() << " (" << e.what() << "); results.md has no run header\n";
    return "";
  }
  if (!meta.is_object()) return "";
  // The fields a reader looks for first, then any other scalar the evaluator adds later.
  std::vector<std::string> keys = {"model", "protocol", "samples", "variants", "device", "dtype", "seed", "tool",
                                   "git_commit"};
  for (auto it = meta.begin(); it != meta.end(); ++it)
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end() && it.key() != "format" && it.key() != "version")
      keys.push_back(it.key());
  std::string line;
  for (const auto& k : keys) {
    if (!meta.contains(k)) continue;
    const json& v = meta[k];
    if (!(v.is_string() || v.is_number() || v.is_boolean())) continue;
    line += (line.empty() ? "" : " · ") + k + ": " + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return line;
}

struct BenchView {
  std::vector<std::string> tasks;  // sorted
  std::set<std::string> metrics;
  std::map<Variant, std::map<std::string, const TaskResult*>> cells;  // variant -> task -> result
  std::map<Variant, const BenchAverage*> avg;
};

std::map<std::string, BenchView> bench_views(const RunSummary& s, const std::vector<PredictionRecord>& records) {
  std::map<std::string, BenchView> views;
  for (const auto& g : s.groups) {
    auto& v = views[g.bench];
    if (v.tasks.empty() || v.tasks.back() != g.task) v.tasks.push_back(g.task);  // groups are sorted by task
    v.cells[{g.method, g.budget, g.protocol}][g.task] = &g;
  }
  for (const auto& a : s.averages) views[a.bench].avg[{a.method, a.budget, a.protocol}] = &a;
  for (const auto& r : records)
    if (!r.metric.empty()) views[r.bench].metrics.insert(r.metric);
  return views;
}

void md_table(std::ostringstream& md, const BenchView& v, bool hit_rates) {
  md << "| method | budget | protocol |";
  for (const auto& t : v.tasks) md << " " << t << " |";
  md << " avg |\n|---|---|---|";
  for (size_t i = 0; i <= v.tasks.size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& [var, by_task] : v.cells) {
    const BenchAverage* a = v.avg.at(var);
    if (hit_rates && !a->hit_rate) continue;  // rows without any hit rate (e.g. full) say nothing here
    md << "| " << var.method << " | " << var.budget << " | " << var.protocol << " |";
    for (const auto& t : v.tasks) {
      auto it = by_task.find(t);
      if (it == by_task.end()) md << " - |";
      else if (hit_rates) md << " " << (it->second->hit_rate ? fixed(*it->second->hit_rate, 3) : "-") << " |";
      else md << " " << fixed(it->second->score, 2) << " |";
    }
    md << " " << (hit_rates ? fixed(*a->hit_rate, 3) : fixed(a->score, 2)) << " |\n";
  }
}

std::string render_markdown(const std::string& run_dir, const RunSummary& s,
                            const std::map<std::string, BenchView>& views, size_t n_records) {
  std::ostringstream md;
  md << "# Evaluation results\n\n";
  const std::string meta = meta_line(run_dir);
  if (!meta.empty()) md << meta << "\n\n";
  md << n_records << " predictions; task score = mean over samples, rounded to 2 decimals; avg = unweighted "
        "mean over tasks. Written by judgeq " << JUDGEQ_VERSION << " (" << JUDGEQ_GIT_COMMIT << ").\n";
  for (const auto& [bench, v] : views) {
    md << "\n## " << bench << "\n\n";
    if (!v.metrics.empty()) {
      md << "Metric:";
      for (const auto& m : v.metrics) md << " " << m;
      md << "\n\n";
    }
    md_table(md, v, false);
    const bool any_hit = std::any_of(s.averages.begin(), s.averages.end(),
                                     [&](const BenchAverage& a) { return a.bench == bench && a.hit_rate; });
    if (any_hit) {
      md << "\nHit rate (fraction of the oracle's kept entries that the method keeps too):\n\n";
      md_table(md, v, true);
    }
  }
  return md.str();
}

// RULER-style runs over several context lengths: the same tables once per length (the main
// tables pool the lengths). NIAH has its heatmaps instead.
std::string per_length_markdown(const std::vector<PredictionRecord>& records) {
  std::map<std::pair<std::string, int64_t>, std::vector<PredictionRecord>> by;
  std::map<std::string, std::set<int64_t>> lengths;
  for (const auto& r : records)
    if (r.length && r.bench != "niah") {
      by[{r.bench, *r.length}].push_back(r);
      lengths[r.bench].insert(*r.length);
    }
  std::ostringstream md;
  for (const auto& [key, recs] : by) {
    if (lengths[key.first].size() < 2) continue;
    const RunSummary s = summarize(recs);
    const auto views = bench_views(s, recs);
    md << "\n## " << key.first << " at " << key.second << " tokens\n\n";
    md_table(md, views.at(key.first), false);
    if (std::any_of(s.averages.begin(), s.averages.end(), [](const BenchAverage& a) { return a.hit_rate.has_value(); })) {
      md << "\nHit rate:\n\n";
      md_table(md, views.at(key.first), true);
    }
  }
  return md.str();
}

std::string render_csv(const RunSummary& s) {
  std::ostringstream csv;
  csv << "bench,task,method,budget,protocol,n,n_tasks,score,hit_rate,kept_mean,cache_bytes_mean\n";
  for (const auto& g : s.groups)
    csv << csv_field(g.bench) << ',' << csv_field(g.task) << ',' << csv_field(g.method) << ','
        << csv_field(g.budget) << ',' << csv_field(g.protocol) << ',' << g.n << ",," << fixed(g.score, 2) << ','
        << opt_text(g.hit_rate, 6) << ',' << opt_text(g.kept_mean, 2) << ',' << opt_text(g.cache_bytes_mean, 0)
        << '\n';
  for (const auto& a : s.averages)
    csv << csv_field(a.bench) << ",avg," << csv_field(a.method) << ',' << csv_field(a.budget) << ','
        << csv_field(a.protocol) << ",," << a.n_tasks << ',' << fixed(a.score, 2) << ','
        << opt_text(a.hit_rate, 6) << ",,\n";
  return csv.str();
}

std::string render_metrics_json(const RunSummary& s, size_t n_records) {
  ordered_json j;
  j["format"] = kMetricsFormat;
  j["version"] = kMetricsVersion;
  j["tool_version"] = JUDGEQ_VERSION;
  j["git_commit"] = JUDGEQ_GIT_COMMIT;
  j["n_predictions"] = n_records;
  j["groups"] = ordered_json::array();
  for (const auto& g : s.groups)
    j["groups"].push_back({{"bench", g.bench}, {"task", g.task}, {"method", g.method}, {"budget", g.budget},
                           {"protocol", g.protocol}, {"n", g.n}, {"score", g.score},
                           {"hit_rate", opt_json(g.hit_rate)}, {"kept_mean", opt_json(g.kept_mean)},
                           {"cache_bytes_mean", opt_json(g.cache_bytes_mean)}});
  j["averages"] = ordered_json::array();
  for (const auto& a : s.averages)
    j["averages"].push_back({{"bench", a.bench}, {"method", a.method}, {"budget", a.budget},
                             {"protocol", a.protocol}, {"n_tasks", a.n_tasks}, {"score", a.score},
                             {"hit_rate", opt_json(a.hit_rate)}});
  return j.dump(2) + "\n";
}

// ---- plots ----

// Keeps file names portable whatever a method or budget is called.
std::string file_safe(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  return o;
}

// The top of the y axis: the scale's maximum, or a round number above the data when all of it
// sits in the lower half (LongBench scores of 20..50 would otherwise hug the bottom).
double y_top(double data_max, double scale) {
  if (data_max <= 0 || data_max > scale / 2) return scale;
  const double mag = std::pow(10.0, std::floor(std::log10(data_max * 1.1)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= data_max * 1.1) return std::min(scale, m * mag);
  return scale;
}

double metric_scale(const std::set<std::string>& metrics) {
  return !metrics.empty() && std::all_of(metrics.begin(), metrics.end(),
                                         [](const std::string& m) { return m == "niah_rouge1"; })
             ? 10.0 : 100.0;
}

void plot_score_vs_budget(const std::string& run_dir, const std::string& bench, const BenchView& v) {
  std::vector<std::string> budgets;  // distinct non-full budgets, in budget order
  std::set<std::string> protocols;
  for (const auto& [var, a] : v.avg) {
    protocols.insert(var.protocol);
    if (var.budget != "full" && std::find(budgets.begin(), budgets.end(), var.budget) == budgets.end())
      budgets.push_back(var.budget);
  }
  if (budgets.empty()) return;  // only full-cache rows: nothing to draw against a budget
  std::sort(budgets.begin(), budgets.end(), budget_less);
  const bool log2_axis = std::all_of(budgets.begin(), budgets.end(), [](const std::string& b) {
    return is_token_budget(b) && std::get<1>(budget_key(b)) > 0;
  });
  auto x_of = [&](const std::string& b) {
    if (log2_axis) return std::log2(std::get<1>(budget_key(b)));
    return static_cast<double>(std::find(budgets.begin(), budgets.end(), b) - budgets.begin());
  };

  plot::LineChart c;
  c.title = bench + ": average score vs KV budget";
  const bool ratios = std::all_of(budgets.begin(), budgets.end(),
                                  [](const std::string& b) { return std::get<0>(budget_key(b)) == 2; });
  c.x_label = log2_axis ? "KV budget (tokens per layer, log2 scale)"
              : ratios  ? "KV budget (kvpress compression ratio: share of the context removed)"
                        : "KV budget";
  c.y_label = bench + " average score (" + std::to_string(v.tasks.size()) + (v.tasks.size() == 1 ? " task)" : " tasks)");
  for (const auto& b : budgets) {
    c.x_ticks.push_back(x_of(b));
    c.x_tick_labels.push_back(b);
  }
  // Protocols change the prompt and the budget's meaning: with several, each gets its own line.
  auto label = [&](const Variant& var) {
    return protocols.size() > 1 ? var.method + " (" + var.protocol + ")" : var.method;
  };
  std::map<std::string, size_t> series_of;
  double data_max = 0;
  for (const auto& [var, a] : v.avg) {  // variants iterate in budget order within a method
    data_max = std::max(data_max, a->score);
    if (var.budget == "full") {
      c.ref_lines.push_back({var.method == "full" ? label(var) : label(var) + ", full budget", a->score});
      continue;
    }
    const std::string l = label(var);
    if (!series_of.count(l)) {
      series_of[l] = c.series.size();
      c.series.push_back({l, {}, {}});
    }
    auto& sr = c.series[series_of[l]];
    sr.x.push_back(x_of(var.budget));
    sr.y.push_back(a->score);
  }
  c.y_min = 0;
  c.y_max = y_top(data_max, metric_scale(v.metrics));
  plot::draw_line_chart(c, (fs::path(run_dir) / ("score_vs_budget_" + file_safe(bench))).string());
}

std::string length_label(int64_t n) {
  return n % 1024 == 0 && n >= 1024 ? std::to_string(n / 1024) + "K" : std::to_string(n);
}

std::string depth_label(double d) {
  std::string s = fixed(d, 1);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

void plot_niah_heatmaps(const std::string& run_dir, const std::vector<PredictionRecord>& records) {
  struct Cell {
    double sum = 0;
    int64_t n = 0;
  };
  struct Grid {
    std::map<std::pair<double, int64_t>, Cell> cells;  // (depth, length) -> scores
    std::set<std::string> metrics;
  };
  std::map<Variant, Grid> grids;
  std::map<std::pair<std::string, std::string>, std::set<std::string>> protocols;  // (method, budget)
  for (const auto& r : records) {
    if (r.bench != "niah" || !r.length || !r.depth) continue;
    auto& g = grids[{r.method, r.budget, r.protocol}];
    auto& cell = g.cells[{*r.depth, *r.length}];
    cell.sum += r.score;
    ++cell.n;
    g.metrics.insert(r.metric);
    protocols[{r.method, r.budget}].insert(r.protocol);
  }
  for (const auto& [var, g] : grids) {
    std::set<double> depths;
    std::set<int64_t> lengths;
    for (const auto& [key, cell] : g.cells) {
      depths.insert(key.first);
      lengths.insert(key.second);
    }
    plot::Heatmap h;
    h.v_max = metric_scale(g.metrics);
    h.decimals = h.v_max <= 10 ? 1 : 0;
    double total = 0;
    for (const auto& [key, cell] : g.cells) total += cell.sum / cell.n;
    const bool several = protocols[{var.method, var.budget}].size() > 1;
    h.title = "NIAH: " + var.method + ", budget " + var.budget + " (" + var.protocol + "), mean " +
              fixed(total / g.cells.size(), 2);
    h.x_label = "context length (tokens)";
    h.y_label = "needle depth (%)";
    for (int64_t l : lengths) h.x_labels.push_back(length_label(l));
    for (double d : depths) {
      h.y_labels.push_back(depth_label(d));
      std::vector<std::optional<double>> row;
      for (int64_t l : lengths) {
        auto it = g.cells.find({d, l});
        row.push_back(it == g.cells.end() ? std::nullopt : std::optional<double>(it->second.sum / it->second.n));
      }
      h.values.push_back(std::move(row));
    }
    std::string name = "niah_heatmap_" + file_safe(var.method) + "_" + file_safe(var.budget);
    if (several) name += "_" + file_safe(var.protocol);
    plot::draw_heatmap(h, (fs::path(run_dir) / name).string());
  }
}

}  // namespace

bool budget_less(const std::string& a, const std::string& b) { return budget_key(a) < budget_key(b); }

std::vector<PredictionRecord> read_predictions(const std::string& path) {
  std::error_code ec;
  check(fs::is_regular_file(path, ec), "no predictions file ", path,
        "; give the folder of an evaluation run (judgeq-eval run --out DIR writes DIR/predictions.jsonl)");
  const std::string text = read_file(path);
  std::vector<PredictionRecord> out;
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    size_t end = text.find('\n', pos);
    const bool terminated = end != std::string::npos;
    if (!terminated) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      if (!terminated) {
        std::cerr << "warning: " << path << " line " << line_no
                  << " is incomplete (the run stopped mid-write?); skipped\n";
        break;
      }
      fail(path, " line ", line_no, " is not valid JSON (", e.what(),
           "); delete or fix that line, or rerun the evaluation");
    }
    out.push_back(parse_record(j, line_no, path));
  }
  return out;
}

RunSummary summarize(const std::vector<PredictionRecord>& records) {
  struct Acc {
    double score_sum = 0;
    int64_t n = 0;
    NullableMean hit, kept, bytes;
  };
  using Key = std::tuple<std::string, std::string, std::string, std::string, std::string>;
  std::map<Key, Acc> acc;  // (bench, task, method, budget, protocol)
  for (const auto& r : records) {
    auto& a = acc[{r.bench, r.task, r.method, r.budget, r.protocol}];
    a.score_sum += r.score;
    ++a.n;
    a.hit.add(r.hit_rate);
    a.kept.add(r.kept_mean);
    a.bytes.add(r.cache_bytes);
  }
  RunSummary s;
  for (const auto& [k, a] : acc) {
    const auto& [bench, task, method, budget, protocol] = k;
    s.groups.push_back({bench, task, method, budget, protocol, a.n, round2(a.score_sum / a.n), a.hit.get(),
                        a.kept.get(), a.bytes.get()});
  }
  // std::map orders budgets by name; reports want them numeric.
  auto group_key = [](const TaskResult& g) {
    return std::make_tuple(g.bench, g.task, g.method, budget_key(g.budget), g.protocol);
  };
  std::sort(s.groups.begin(), s.groups.end(),
            [&](const TaskResult& a, const TaskResult& b) { return group_key(a) < group_key(b); });

  struct AvgAcc {
    double score_sum = 0;
    int64_t n = 0;
    NullableMean hit;
  };
  std::map<std::tuple<std::string, std::string, std::string, std::string>, AvgAcc> avg;
  for (const auto& g : s.groups) {
    auto& a = avg[{g.bench, g.method, g.budget, g.protocol}];
    a.score_sum += g.score;
    ++a.n;
    a.hit.add(g.hit_rate);
  }
  for (const auto& [k, a] : avg) {
    const auto& [bench, method, budget, protocol] = k;
    s.averages.push_back({bench, method, budget, protocol, a.n, round2(a.score_sum / a.n), a.hit.get()});
  }
  auto avg_key = [](const BenchAverage& a) {
    return std::make_tuple(a.bench, a.method, budget_key(a.budget), a.protocol);
  };
  std::sort(s.averages.begin(), s.averages.end(),
            [&](const BenchAverage& a, const BenchAverage& b) { return avg_key(a) < avg_key(b); });
  return s;
}

void write_report(const std::string& run_dir) {
  const std::string pred_path = (fs::path(run_dir) / "predictions.jsonl").string();
  std::error_code ec;
  check(fs::is_regular_file(pred_path, ec), "no predictions.jsonl in ", run_dir,
        "; give the folder of an evaluation run (judgeq-eval run --out DIR writes DIR/predictions.jsonl)");
  const auto records = read_predictions(pred_path);
  check(!records.empty(), pred_path, " holds no predictions; rerun the evaluation (or wait for its first sample)");

  const RunSummary s = summarize(records);
  const auto views = bench_views(s, records);
  const fs::path dir(run_dir);
  write_file_atomic((dir / "metrics.json").string(), render_metrics_json(s, records.size()));
  write_file_atomic((dir / "results.md").string(),
                    render_markdown(run_dir, s, views, records.size()) + per_length_markdown(records));
  write_file_atomic((dir / "results.csv").string(), render_csv(s));

  if (!plot::plots_available()) {
    std::cerr << "warning: judgeq was built without cairo; no plots written (install libcairo2-dev, rebuild, "
                 "and run `judgeq-eval report "
              << run_dir << "`)\n";
    return;
  }
  for (const auto& [bench, v] : views) plot_score_vs_budget(run_dir, bench, v);
  plot_niah_heatmaps(run_dir, records);
}

}  // namespace judgeq
