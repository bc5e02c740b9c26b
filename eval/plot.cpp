// Line charts and heatmaps drawn with cairo's C API and toy text API. Each figure is drawn once
// per surface (image -> PNG, SVG), into memory, then written atomically.
#include "eval/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "util/error.h"
#include "util/safetensors.h"

#ifdef JUDGEQ_HAVE_CAIRO
#include <cairo-svg.h>
#include <cairo.h>
#endif

namespace judgeq::plot {

#ifndef JUDGEQ_HAVE_CAIRO

bool plots_available() { return false; }
void draw_line_chart(const LineChart&, const std::string& path_base) {
  fail("cannot draw ", path_base, ": judgeq was built without cairo; install libcairo2-dev and rebuild");
}
void draw_heatmap(const Heatmap&, const std::string& path_base) {
  fail("cannot draw ", path_base, ": judgeq was built without cairo; install libcairo2-dev and rebuild");
}

#else

bool plots_available() { return true; }

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Rgb {
  double r, g, b;
};

// Tableau 10: distinct hues that survive greyscale printing reasonably well.
const Rgb kPalette[] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173},
                        {0.839, 0.153, 0.157}, {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294},
                        {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}, {0.737, 0.741, 0.133},
                        {0.090, 0.745, 0.812}};
const Rgb kPaletteRef[] = {{0.15, 0.15, 0.15}, {0.45, 0.45, 0.45}, {0.65, 0.30, 0.30}};

void set_color(cairo_t* cr, const Rgb& c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

void set_font(cairo_t* cr, double size, bool bold = false) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

// Draws s with its anchor at (x, y): ax/ay = 0 left/top, 0.5 centre, 1 right/bottom.
// Vertical placement uses the font's ascent so that lines of text align regardless of content.
void text(cairo_t* cr, double x, double y, const std::string& s, double ax, double ay) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  const double w = text_width(cr, s);
  cairo_move_to(cr, x - ax * w, y - ay * fe.ascent + fe.ascent);
  cairo_show_text(cr, s.c_str());
}

std::string format_number(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Ticks at multiples of 1, 2 or 5 x 10^k covering [lo, hi] in about n steps.
std::vector<double> nice_ticks(double lo, double hi, int n) {
  const double raw = (hi - lo) / std::max(n, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double i = std::ceil(lo / step - 1e-9); i * step <= hi + 1e-9 * step; ++i)
    t.push_back(i == 0 ? 0.0 : i * step);  // no "-0" label, no drift from repeated addition
  return t;
}

int tick_decimals(const std::vector<double>& ticks) {
  if (ticks.size() < 2) return 0;
  const double step = ticks[1] - ticks[0];
  return step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
}

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

void check_status(cairo_status_t st, const std::string& path) {
  check(st == CAIRO_STATUS_SUCCESS, "cannot draw ", path, " (cairo: ", cairo_status_to_string(st), ")");
}

// Runs draw() on a white w x h canvas twice, for <base>.png and <base>.svg.
void render(const std::string& base, int w, int h, const std::function<void(cairo_t*)>& draw) {
  auto paint = [&](cairo_surface_t* s, const std::string& path) {
    cairo_t* cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    draw(cr);
    const cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st != CAIRO_STATUS_SUCCESS) cairo_surface_destroy(s);
    check_status(st, path);
  };
  {
    const std::string path = base + ".png";
    cairo_surface_t* s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    paint(s, path);
    std::string bytes;
    const cairo_status_t st = cairo_surface_write_to_png_stream(s, append_to_string, &bytes);
    cairo_surface_destroy(s);
    check_status(st, path);
    write_file_atomic(path, bytes);
  }
  {
    const std::string path = base + ".svg";
    std::string bytes;
    cairo_surface_t* s = cairo_svg_surface_create_for_stream(append_to_string, &bytes, w, h);
    paint(s, path);
    cairo_surface_finish(s);  // flushes the document into `bytes`
    const cairo_status_t st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    check_status(st, path);
    write_file_atomic(path, bytes);
  }
}

// Red -> yellow -> green (ColorBrewer RdYlGn ends and middle).
Rgb heat_color(double t) {
  const Rgb red{0.843, 0.188, 0.153}, yellow{0.996, 0.878, 0.545}, green{0.102, 0.596, 0.314};
  t = std::clamp(t, 0.0, 1.0);
  const Rgb& a = t < 0.5 ? red : yellow;
  const Rgb& b = t < 0.5 ? yellow : green;
  const double u = t < 0.5 ? t * 2 : (t - 0.5) * 2;
  return {a.r + (b.r - a.r) * u, a.g + (b.g - a.g) * u, a.b + (b.b - a.b) * u};
}

}  // namespace

void draw_line_chart(const LineChart& c, const std::string& path_base) {
  const int W = 760, H = 480;
  const double left = 70, right = 190, top = 50, bottom = 62;
  const double px0 = left, px1 = W - right, py0 = top, py1 = H - bottom;

  double x_lo = 0, x_hi = 1;
  {
    std::vector<double> xs = c.x_ticks;
    for (auto& s : c.series) xs.insert(xs.end(), s.x.begin(), s.x.end());
    if (!xs.empty()) {
      x_lo = *std::min_element(xs.begin(), xs.end());
      x_hi = *std::max_element(xs.begin(), xs.end());
    }
    const double pad = x_hi > x_lo ? 0.06 * (x_hi - x_lo) : 1.0;  // keep end markers off the frame
    x_lo -= pad;
    x_hi += pad;
  }
  // Headroom above y_max keeps a line at the top of the scale (full cache at 100) off the frame.
  const double y_lo = c.y_min, y_top = c.y_max > c.y_min ? c.y_max : c.y_min + 1;
  const double y_hi = y_top + 0.04 * (y_top - y_lo);
  auto X = [&](double x) { return px0 + (x - x_lo) / (x_hi - x_lo) * (px1 - px0); };
  auto Y = [&](double y) { return py1 - (y - y_lo) / (y_hi - y_lo) * (py1 - py0); };

  render(path_base, W, H, [&](cairo_t* cr) {
    // Grid and y ticks.
    const auto yt = nice_ticks(y_lo, y_top, 5);
    const int yd = tick_decimals(yt);
    set_font(cr, 11);
    cairo_set_line_width(cr, 1);
    for (double v : yt) {
      cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
      cairo_move_to(cr, px0, Y(v));
      cairo_line_to(cr, px1, Y(v));
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
      text(cr, px0 - 6, Y(v), format_number(v, yd), 1, 0.5);
    }
    for (size_t i = 0; i < c.x_ticks.size(); ++i) {
      const double x = X(c.x_ticks[i]);
      cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
      cairo_move_to(cr, x, py1);
      cairo_line_to(cr, x, py1 + 4);
      cairo_stroke(cr);
      if (i < c.x_tick_labels.size()) text(cr, x, py1 + 7, c.x_tick_labels[i], 0.5, 0);
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, px0, py0, px1 - px0, py1 - py0);
    cairo_stroke(cr);

    // Data, clipped to the frame so that a reference line outside [y_min, y_max] stays inside.
    cairo_save(cr);
    cairo_rectangle(cr, px0, py0, px1 - px0, py1 - py0);
    cairo_clip(cr);
    cairo_set_line_width(cr, 2);
    for (size_t r = 0; r < c.ref_lines.size(); ++r) {
      const double dash[] = {6, 4};
      set_color(cr, kPaletteRef[r % std::size(kPaletteRef)]);
      cairo_set_dash(cr, dash, 2, 0);
      cairo_move_to(cr, px0, Y(c.ref_lines[r].y));
      cairo_line_to(cr, px1, Y(c.ref_lines[r].y));
      cairo_stroke(cr);
    }
    cairo_set_dash(cr, nullptr, 0, 0);
    for (size_t s = 0; s < c.series.size(); ++s) {
      const auto& sr = c.series[s];
      set_color(cr, kPalette[s % std::size(kPalette)]);
      for (size_t i = 0; i < sr.x.size() && i < sr.y.size(); ++i) {
        if (i == 0) cairo_move_to(cr, X(sr.x[i]), Y(sr.y[i]));
        else cairo_line_to(cr, X(sr.x[i]), Y(sr.y[i]));
      }
      cairo_stroke(cr);
      for (size_t i = 0; i < sr.x.size() && i < sr.y.size(); ++i) {
        cairo_arc(cr, X(sr.x[i]), Y(sr.y[i]), 3.5, 0, 2 * kPi);
        cairo_fill(cr);
      }
    }
    cairo_restore(cr);

    // Legend to the right of the frame: series first, then dashed reference lines.
    set_font(cr, 12);
    double ly = py0 + 6;
    const double lx = px1 + 16;
    auto entry = [&](const Rgb& col, const std::string& label, bool dashed) {
      const double dash[] = {6, 4};
      set_color(cr, col);
      cairo_set_line_width(cr, 2);
      cairo_set_dash(cr, dash, dashed ? 2 : 0, 0);
      cairo_move_to(cr, lx, ly + 7);
      cairo_line_to(cr, lx + 26, ly + 7);
      cairo_stroke(cr);
      cairo_set_dash(cr, nullptr, 0, 0);
      if (!dashed) {
        cairo_arc(cr, lx + 13, ly + 7, 3.5, 0, 2 * kPi);
        cairo_fill(cr);
      }
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      text(cr, lx + 32, ly + 7, label, 0, 0.5);
      ly += 20;
    };
    for (size_t s = 0; s < c.series.size(); ++s) entry(kPalette[s % std::size(kPalette)], c.series[s].label, false);
    for (size_t r = 0; r < c.ref_lines.size(); ++r)
      entry(kPaletteRef[r % std::size(kPaletteRef)], c.ref_lines[r].label, true);

    // Title and axis labels.
    cairo_set_source_rgb(cr, 0, 0, 0);
    set_font(cr, 16, true);
    text(cr, (px0 + px1) / 2, 16, c.title, 0.5, 0);
    set_font(cr, 13);
    text(cr, (px0 + px1) / 2, H - 24, c.x_label, 0.5, 0);
    cairo_save(cr);
    cairo_translate(cr, 18, (py0 + py1) / 2);
    cairo_rotate(cr, -kPi / 2);
    text(cr, 0, 0, c.y_label, 0.5, 0.5);
    cairo_restore(cr);
  });
}

void draw_heatmap(const Heatmap& m, const std::string& path_base) {
  const size_t nx = m.x_labels.size(), ny = m.y_labels.size();
  check(m.values.size() == ny, "heatmap ", path_base, " has ", m.values.size(), " rows (expected ", ny, ")");
  for (auto& row : m.values)
    check(row.size() == nx, "heatmap ", path_base, " has a row of ", row.size(), " cells (expected ", nx, ")");
  // Few depths get taller cells so that the rotated y label fits beside the grid.
  const double cell_w = nx > 12 ? 42 : 56, cell_h = std::max(26.0, 150.0 / std::max<size_t>(ny, 1));
  const double left = 84, right = 100, top = 52, bottom = 62;
  const double grid_w = std::max(1.0, static_cast<double>(nx)) * cell_w;
  const double grid_h = std::max(1.0, static_cast<double>(ny)) * cell_h;
  // Wide enough for the title too.
  const int W = static_cast<int>(std::max(left + grid_w + right, 9.0 * static_cast<double>(m.title.size()) + 40));
  const int H = static_cast<int>(top + grid_h + bottom);
  const double gx = left, gy = top;

  render(path_base, W, H, [&](cairo_t* cr) {
    set_font(cr, 11);
    for (size_t r = 0; r < ny; ++r) {
      for (size_t col = 0; col < nx; ++col) {
        const double x = gx + col * cell_w, y = gy + r * cell_h;
        const auto& v = m.values[r][col];
        const Rgb fill = v ? heat_color(*v / m.v_max) : Rgb{0.88, 0.88, 0.88};
        set_color(cr, fill);
        cairo_rectangle(cr, x, y, cell_w, cell_h);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_set_line_width(cr, 1);
        cairo_stroke(cr);
        if (v) {
          // White text on the dark ends of the scale, black on the light middle.
          const double lum = 0.299 * fill.r + 0.587 * fill.g + 0.114 * fill.b;
          const double ink = lum < 0.5 ? 1.0 : 0.0;
          cairo_set_source_rgb(cr, ink, ink, ink);
          text(cr, x + cell_w / 2, y + cell_h / 2, format_number(*v, m.decimals), 0.5, 0.5);
        }
      }
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    for (size_t r = 0; r < ny; ++r) text(cr, gx - 6, gy + (r + 0.5) * cell_h, m.y_labels[r], 1, 0.5);
    for (size_t col = 0; col < nx; ++col) text(cr, gx + (col + 0.5) * cell_w, gy + grid_h + 6, m.x_labels[col], 0.5, 0);

    // Colour bar with its two ends labelled.
    const double bx = gx + grid_w + 24, bw = 16;
    cairo_pattern_t* grad = cairo_pattern_create_linear(0, gy + grid_h, 0, gy);
    for (double t : {0.0, 0.5, 1.0}) {
      const Rgb c = heat_color(t);
      cairo_pattern_add_color_stop_rgb(grad, t, c.r, c.g, c.b);
    }
    cairo_set_source(cr, grad);
    cairo_rectangle(cr, bx, gy, bw, grid_h);
    cairo_fill(cr);
    cairo_pattern_destroy(grad);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    text(cr, bx + bw + 4, gy, format_number(m.v_max, 0), 0, 0);
    text(cr, bx + bw + 4, gy + grid_h, "0", 0, 1);

    cairo_set_source_rgb(cr, 0, 0, 0);
    set_font(cr, 15, true);
    text(cr, W / 2.0, 16, m.title, 0.5, 0);
    set_font(cr, 13);
    text(cr, gx + grid_w / 2, H - 26, m.x_label, 0.5, 0);
    cairo_save(cr);
    cairo_translate(cr, 18, gy + grid_h / 2);
    cairo_rotate(cr, -kPi / 2);
    text(cr, 0, 0, m.y_label, 0.5, 0.5);
    cairo_restore(cr);
  });
}

#endif  // JUDGEQ_HAVE_CAIRO

}  // namespace judgeq::plot
