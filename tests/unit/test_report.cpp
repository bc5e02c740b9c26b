// Run reports from a hand-made predictions.jsonl: exact means, averages, tables, CSV, plots, and
// the reader's handling of partial, malformed and missing input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eval/plot.h"
#include "eval/report.h"
#include "util/error.h"
#include "util/safetensors.h"

#include "common.h"

namespace judgeq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json row(const std::string& bench, const std::string& task, const std::string& method, const std::string& budget,
         const std::string& protocol, const std::string& metric, double score, json hit_rate = nullptr,
         json length = nullptr, json depth = nullptr) {
  return {{"bench", bench},     {"task", task},          {"id", task + "-0"},   {"length", length},
          {"depth", depth},     {"method", method},      {"budget", budget},    {"protocol", protocol},
          {"prediction", "x"},  {"references", {"x"}},   {"metric", metric},    {"score", score},
          {"kept_mean", 100.0}, {"cache_bytes", 1000},   {"hit_rate", hit_rate}, {"prompt_tokens", 4000},
          {"new_tokens", 3}};
}

// RULER: 2 tasks x (full + 2 methods x 2 budgets) x 3 samples; NIAH: full and snapkv/128 over
// 2 lengths x 3 depths; LongBench: one kvpress sample per ratio budget and a full one.
// The per-task means (hand-computed):
//   task            full    snapkv/128  snapkv/1024  judgeq/128  judgeq/1024
//   niah_single_1   100     33.33       66.67        83.33       100
//   vt              90      40.17       50.33        70.33       95
//   avg             95      36.75       58.5         76.83       97.5
std::vector<json> sample_rows() {
  std::vector<json> rows;
  auto add3 = [&](const std::string& task, const std::string& method, const std::string& budget,
                  std::vector<double> scores, std::vector<json> hits) {
    for (size_t i = 0; i < 3; ++i)
      rows.push_back(row("ruler", task, method, budget, "paper", "string_match_all", scores[i], hits[i], 4096));
  };
  const json n = nullptr;
  add3("niah_single_1", "full", "full", {100, 100, 100}, {n, n, n});
  add3("niah_single_1", "snapkv", "128", {100, 0, 0}, {0.5, 0.6, 0.7});
  add3("niah_single_1", "snapkv", "1024", {100, 100, 0}, {0.8, 0.8, 0.8});
  add3("niah_single_1", "judgeq", "128", {100, 100, 50}, {0.9, n, 0.7});
  add3("niah_single_1", "judgeq", "1024", {100, 100, 100}, {n, n, n});
  add3("vt", "full", "full", {80, 90, 100}, {n, n, n});
  add3("vt", "snapkv", "128", {20, 40, 60.5}, {0.4, 0.4, 0.4});
  add3("vt", "snapkv", "1024", {50, 50, 51}, {0.6, 0.6, 0.6});
  add3("vt", "judgeq", "128", {60, 70, 81}, {n, n, n});
  add3("vt", "judgeq", "1024", {90, 95, 100}, {0.9, 0.9, 0.9});
  // NIAH cells (length, depth) -> ROUGE-1 x 10.
  const std::vector<std::tuple<int, double, double>> cells = {
      {1024, 0, 10}, {1024, 50, 5}, {1024, 100, 10}, {2048, 0, 10}, {2048, 50, 0}, {2048, 100, 7.5}};
  for (auto& [len, depth, score] : cells) {
    rows.push_back(row("niah", "niah", "snapkv", "128", "paper", "niah_rouge1", score, 0.5, len, depth));
    rows.push_back(row("niah", "niah", "full", "full", "paper", "niah_rouge1", 10, nullptr, len, depth));
  }
  rows.push_back(row("longbench", "qasper", "snapkv", "cr0.5", "kvpress", "qa_f1", 20));
  rows.push_back(row("longbench", "qasper", "snapkv", "cr0.25", "kvpress", "qa_f1", 30));
  rows.push_back(row("longbench", "qasper", "full", "full", "kvpress", "qa_f1", 40));
  return rows;
}

std::string make_run(const std::string& tag, const std::string& tail = "") {
  const std::string dir = test::temp_dir(tag);
  std::ofstream f(dir + "/predictions.jsonl");
  for (auto& r : sample_rows()) f << r.dump() << "\n";
  f << tail;
  return dir;
}

const json* find_group(const json& m, const std::string& task, const std::string& method, const std::string& budget) {
  for (auto& g : m["groups"])
    if (g["task"] == task && g["method"] == method && g["budget"] == budget) return &g;
  return nullptr;
}

const json* find_average(const json& m, const std::string& bench, const std::string& method,
                         const std::string& budget) {
  for (auto& a : m["averages"])
    if (a["bench"] == bench && a["method"] == method && a["budget"] == budget) return &a;
  return nullptr;
}

std::string expect_error(const std::string& dir) {
  try {
    write_report(dir);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "write_report(" << dir << ") did not throw";
  return "";
}

TEST(Report, MetricsJsonHoldsExactMeans) {
  const std::string dir = make_run("report_metrics");
  write_report(dir);
  const json m = json::parse(read_file(dir + "/metrics.json"));
  EXPECT_EQ(m["format"], "judgeq-eval-metrics");
  EXPECT_EQ(m["version"], 1);
  ASSERT_EQ(m["groups"].size(), 15u);  // ruler 2 x 5, niah 2, longbench 3
  ASSERT_EQ(m["averages"].size(), 10u);

  struct Want {
    const char *task, *method, *budget;
    double score;
  };
  for (auto w : {Want{"niah_single_1", "full", "full", 100}, Want{"niah_single_1", "snapkv", "128", 33.33},
                 Want{"niah_single_1", "snapkv", "1024", 66.67}, Want{"niah_single_1", "judgeq", "128", 83.33},
                 Want{"vt", "snapkv", "128", 40.17}, Want{"vt", "snapkv", "1024", 50.33},
                 Want{"vt", "judgeq", "128", 70.33}, Want{"vt", "judgeq", "1024", 95},
                 Want{"niah", "snapkv", "128", 7.08}, Want{"qasper", "snapkv", "cr0.25", 30}}) {
    const json* g = find_group(m, w.task, w.method, w.budget);
    ASSERT_NE(g, nullptr) << w.task << " " << w.method << " " << w.budget;
    EXPECT_DOUBLE_EQ((*g)["score"].get<double>(), w.score) << w.task << " " << w.method << " " << w.budget;
  }
  const json* g = find_group(m, "niah_single_1", "snapkv", "128");
  EXPECT_EQ((*g)["n"], 3);
  EXPECT_EQ((*g)["protocol"], "paper");
  EXPECT_NEAR((*g)["hit_rate"].get<double>(), 0.6, 1e-12);
  EXPECT_DOUBLE_EQ((*g)["kept_mean"].get<double>(), 100);
  EXPECT_DOUBLE_EQ((*g)["cache_bytes_mean"].get<double>(), 1000);
  EXPECT_NEAR((*find_group(m, "niah_single_1", "judgeq", "128"))["hit_rate"].get<double>(), 0.8, 1e-12);  // null skipped
  EXPECT_TRUE((*find_group(m, "niah_single_1", "judgeq", "1024"))["hit_rate"].is_null());
  EXPECT_EQ((*find_group(m, "niah", "snapkv", "128"))["n"], 6);

  struct WantAvg {
    const char *bench, *method, *budget;
    double score;
    json hit;
  };
  for (auto w : {WantAvg{"ruler", "full", "full", 95, nullptr}, WantAvg{"ruler", "snapkv", "128", 36.75, 0.5},
                 WantAvg{"ruler", "snapkv", "1024", 58.5, 0.7}, WantAvg{"ruler", "judgeq", "128", 76.83, 0.8},
                 WantAvg{"ruler", "judgeq", "1024", 97.5, 0.9}, WantAvg{"niah", "snapkv", "128", 7.08, 0.5},
                 WantAvg{"longbench", "snapkv", "cr0.5", 20, nullptr}}) {
    const json* a = find_average(m, w.bench, w.method, w.budget);
    ASSERT_NE(a, nullptr) << w.bench << " " << w.method << " " << w.budget;
    EXPECT_DOUBLE_EQ((*a)["score"].get<double>(), w.score) << w.bench << " " << w.method << " " << w.budget;
    if (w.hit.is_null()) EXPECT_TRUE((*a)["hit_rate"].is_null()) << w.bench << " " << w.method << " " << w.budget;
    else EXPECT_NEAR((*a)["hit_rate"].get<double>(), w.hit.get<double>(), 1e-12) << w.bench << " " << w.method;
  }
  EXPECT_EQ((*find_average(m, "ruler", "judgeq", "128"))["n_tasks"], 2);

  // Deterministic order: budgets numeric within a method (128 before 1024), ratios ascending.
  std::vector<std::string> ruler_avg;
  for (auto& a : m["averages"])
    if (a["bench"] == "ruler") ruler_avg.push_back(a["method"].get<std::string>() + "/" + a["budget"].get<std::string>());
  EXPECT_EQ(ruler_avg, (std::vector<std::string>{"full/full", "judgeq/128", "judgeq/1024", "snapkv/128", "snapkv/1024"}));
  const auto lb = find_average(m, "longbench", "snapkv", "cr0.25");
  EXPECT_LT(lb, find_average(m, "longbench", "snapkv", "cr0.5"));
}

TEST(Report, MarkdownAndCsvTables) {
  const std::string dir = make_run("report_tables");
  write_file_atomic(dir + "/run_meta.json", R"({"format": "judgeq-eval-run", "version": 1, "model": "tiny-llama"})");
  write_report(dir);
  const std::string md = read_file(dir + "/results.md");
  EXPECT_NE(md.find("model: tiny-llama"), std::string::npos);
  EXPECT_NE(md.find("## ruler"), std::string::npos);
  EXPECT_NE(md.find("| method | budget | protocol | niah_single_1 | vt | avg |"), std::string::npos);
  const size_t full = md.find("| full | full | paper | 100.00 | 90.00 | 95.00 |");
  const size_t j128 = md.find("| judgeq | 128 | paper | 83.33 | 70.33 | 76.83 |");
  const size_t j1024 = md.find("| judgeq | 1024 | paper | 100.00 | 95.00 | 97.50 |");
  const size_t s128 = md.find("| snapkv | 128 | paper | 33.33 | 40.17 | 36.75 |");
  ASSERT_NE(full, std::string::npos) << md;
  ASSERT_NE(j128, std::string::npos) << md;
  ASSERT_NE(j1024, std::string::npos) << md;
  ASSERT_NE(s128, std::string::npos) << md;
  EXPECT_LT(full, j128);
  EXPECT_LT(j128, j1024);  // numeric, not lexical, budget order
  EXPECT_LT(j1024, s128);
  // Hit-rate table: nulls shown as '-', rows without any hit rate left out.
  EXPECT_NE(md.find("| snapkv | 128 | paper | 0.600 | 0.400 | 0.500 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| judgeq | 128 | paper | 0.800 | - | 0.800 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| snapkv | cr0.25 | kvpress | 30.00 | 30.00 |"), std::string::npos) << md;

  const std::string csv = read_file(dir + "/results.csv");
  std::istringstream in(csv);
  std::string line, header;
  std::getline(in, header);
  EXPECT_EQ(header, "bench,task,method,budget,protocol,n,n_tasks,score,hit_rate,kept_mean,cache_bytes_mean");
  int rows = 0;
  bool saw_avg = false;
  while (std::getline(in, line)) {
    ++rows;
    saw_avg |= line == "ruler,avg,snapkv,128,paper,,2,36.75,0.500000,,";
  }
  EXPECT_EQ(rows, 15 + 10);
  EXPECT_TRUE(saw_avg) << csv;
  EXPECT_NE(csv.find("ruler,vt,snapkv,128,paper,3,,40.17,0.400000,100.00,1000\n"), std::string::npos) << csv;
}

TEST(Report, RulerTablesPerLengthWhenSeveralLengths) {
  // The sample rows are all at 4096; the same rows again at 8192 with other scores.
  const std::string dir = test::temp_dir("report_lengths");
  {
    std::ofstream f(dir + "/predictions.jsonl");
    for (auto& r : sample_rows()) f << r.dump() << "\n";
    for (auto r : sample_rows())
      if (r["bench"] == "ruler") {
        r["length"] = 8192;
        r["score"] = r["score"].get<double>() / 2;
        f << r.dump() << "\n";
      }
  }
  write_report(dir);
  const std::string md = read_file(dir + "/results.md");
  const size_t at4 = md.find("## ruler at 4096 tokens"), at8 = md.find("## ruler at 8192 tokens");
  ASSERT_NE(at4, std::string::npos) << md;
  ASSERT_NE(at8, std::string::npos) << md;
  EXPECT_LT(at4, at8);
  // Pooled table first (means over both lengths), then each length on its own.
  EXPECT_NE(md.find("| full | full | paper | 75.00 | 67.50 | 71.25 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| full | full | paper | 100.00 | 90.00 | 95.00 |", at4), std::string::npos) << md;
  EXPECT_NE(md.find("| full | full | paper | 50.00 | 45.00 | 47.50 |", at8), std::string::npos) << md;
  EXPECT_NE(md.find("| snapkv | 128 | paper | 0.600 | 0.400 | 0.500 |", at8), std::string::npos) << md;
  // One length only: no per-length sections (the main table is that length).
  const std::string one = make_run("report_one_length");
  write_report(one);
  EXPECT_EQ(read_file(one + "/results.md").find(" tokens\n"), std::string::npos);
}

TEST(Report, PlotsArePngAndSvg) {
  if (!plot::plots_available()) GTEST_SKIP() << "built without cairo";
  const std::string dir = make_run("report_plots");
  write_report(dir);
  for (const std::string base : {"score_vs_budget_ruler", "score_vs_budget_niah", "score_vs_budget_longbench",
                                 "niah_heatmap_snapkv_128", "niah_heatmap_full_full"}) {
    const std::string png = read_file(dir + "/" + base + ".png");
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << base;
    EXPECT_GT(png.size(), 1000u) << base;
    const std::string svg = read_file(dir + "/" + base + ".svg");
    EXPECT_NE(svg.find("<svg"), std::string::npos) << base;
  }
  // No temp files left behind by the atomic writes.
  for (auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Report, TrailingPartialLineIsSkipped) {
  const std::string dir = make_run("report_partial", R"({"bench": "ruler", "task": "vt", "meth)");
  testing::internal::CaptureStderr();
  write_report(dir);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("line 46"), std::string::npos) << err;
  const json m = json::parse(read_file(dir + "/metrics.json"));
  EXPECT_EQ(m["n_predictions"], 45);
  EXPECT_DOUBLE_EQ((*find_group(m, "vt", "snapkv", "128"))["score"].get<double>(), 40.17);
}

TEST(Report, MalformedLineFailsWithItsNumber) {
  const std::string dir = test::temp_dir("report_malformed");
  auto rows = sample_rows();
  {
    std::ofstream f(dir + "/predictions.jsonl");
    f << rows[0].dump() << "\n" << rows[1].dump() << "\nnot json\n" << rows[2].dump() << "\n";
  }
  const std::string msg = expect_error(dir);
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir + "/metrics.json"));

  // Valid JSON without a required field, and a complete (newline-terminated) bad last line.
  {
    std::ofstream f(dir + "/predictions.jsonl");
    f << rows[0].dump() << "\n" << R"({"bench": "ruler", "task": "vt"})" << "\n";
  }
  EXPECT_NE(expect_error(dir).find("line 2: missing \"method\""), std::string::npos);
  {
    std::ofstream f(dir + "/predictions.jsonl");
    f << rows[0].dump() << "\n{\"bench\": \n";
  }
  EXPECT_NE(expect_error(dir).find("line 2"), std::string::npos);
}

TEST(Report, MissingPredictionsFailCleanly) {
  const std::string dir = test::temp_dir("report_missing");
  const std::string msg = expect_error(dir);
  EXPECT_NE(msg.find("predictions.jsonl"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;  // one line
  EXPECT_TRUE(fs::is_empty(dir));
  EXPECT_THROW(write_report(dir + "/does-not-exist"), Error);
  // An empty file is no report either.
  { std::ofstream f(dir + "/predictions.jsonl"); }
  EXPECT_NE(expect_error(dir).find("no predictions"), std::string::npos);
}

TEST(Report, BudgetOrder) {
  EXPECT_TRUE(budget_less("full", "64"));
  EXPECT_TRUE(budget_less("128", "1024"));
  EXPECT_TRUE(budget_less("4096", "cr0.1"));
  EXPECT_TRUE(budget_less("cr0.25", "cr0.5"));
  EXPECT_FALSE(budget_less("1024", "128"));
}

}  // namespace
}  // namespace judgeq
