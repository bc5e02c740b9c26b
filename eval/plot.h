// A tiny chart layer over cairo for run reports: a line chart and a heatmap, each written as
// PNG and SVG. Charts are plain data; the report decides what goes in them. Without cairo
// (JUDGEQ_HAVE_CAIRO undefined) plots_available() is false and the draw functions throw.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace judgeq::plot {

struct Series {
  std::string label;
  std::vector<double> x, y;  // same length; drawn as a polyline with a marker at each point
};

// A horizontal reference line across the whole plot (e.g. the full-cache score).
struct RefLine {
  std::string label;
  double y = 0;
};

// The x axis is linear in the values given; a log2 axis is a caller passing log2(x) with
// ticks labelled in the original units, a categorical one passing 0, 1, 2, ...
struct LineChart {
  std::string title, x_label, y_label;
  std::vector<double> x_ticks;
  std::vector<std::string> x_tick_labels;  // one per x tick
  double y_min = 0, y_max = 100;
  std::vector<Series> series;
  std::vector<RefLine> ref_lines;  // dashed
};

// values[row][col], row = y label, col = x label; nullopt cells are left grey and empty.
// Colour runs red (v = 0) -> yellow -> green (v = v_max).
struct Heatmap {
  std::string title, x_label, y_label;
  std::vector<std::string> x_labels, y_labels;
  std::vector<std::vector<std::optional<double>>> values;
  double v_max = 100;
  int decimals = 0;  // cell text precision
};

bool plots_available();

// Both write `<path_base>.png` and `<path_base>.svg`, each atomically.
void draw_line_chart(const LineChart& chart, const std::string& path_base);
void draw_heatmap(const Heatmap& map, const std::string& path_base);

}  // namespace judgeq::plot
