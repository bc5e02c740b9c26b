// Reports of an evaluation run folder, from its predictions.jsonl alone (no model needed):
// metrics.json, results.md, results.csv and plots (score vs budget per bench, NIAH heatmaps).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace judgeq {

// One line of predictions.jsonl: the fields a report reads.
struct PredictionRecord {
  std::string bench, task, method, budget, protocol, metric;
  std::optional<int64_t> length;  // target context length
  std::optional<double> depth;    // NIAH needle depth in %
  double score = 0;               // on the metric's scale (0..100; niah_rouge1 0..10)
  std::optional<double> hit_rate, kept_mean, cache_bytes;
};

// One (bench, task, method, budget, protocol) cell: means over its samples. score is rounded to
// 2 decimals like RULER and LongBench report it; the means of nullable fields skip nulls and are
// null when every sample's value is.
struct TaskResult {
  std::string bench, task, method, budget, protocol;
  int64_t n = 0;
  double score = 0;
  std::optional<double> hit_rate, kept_mean, cache_bytes_mean;
};

// A bench's average for one variant: the unweighted mean of its (rounded) task scores, rounded
// to 2 decimals; hit_rate is the mean of the task hit rates that are not null.
struct BenchAverage {
  std::string bench, method, budget, protocol;
  int64_t n_tasks = 0;
  double score = 0;
  std::optional<double> hit_rate;
};

struct RunSummary {
  std::vector<TaskResult> groups;      // sorted by bench, task, method, budget, protocol
  std::vector<BenchAverage> averages;  // sorted by bench, method, budget, protocol
};

// Reads a predictions.jsonl. A last line without its newline that does not parse (a run stopped
// mid-write) is skipped with a warning on stderr; any other bad line -> judgeq::Error naming its
// line number. A missing file -> judgeq::Error.
std::vector<PredictionRecord> read_predictions(const std::string& path);

RunSummary summarize(const std::vector<PredictionRecord>& records);

// Budget order in tables and plots: "full", then token counts ascending, then kvpress ratios
// ("cr0.25" < "cr0.5"), then anything else by name. True when a sorts before b.
bool budget_less(const std::string& a, const std::string& b);

// Reads RUN_DIR/predictions.jsonl (and RUN_DIR/run_meta.json for a header line when present) and
// writes, each atomically, into RUN_DIR: metrics.json, results.md, results.csv,
// score_vs_budget_<bench>.{png,svg} and niah_heatmap_<method>_<budget>.{png,svg}. Without cairo
// the plots are skipped with one warning.
void write_report(const std::string& run_dir);

}  // namespace judgeq
