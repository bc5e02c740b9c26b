#include "util/progress.h"

#include <unistd.h>

#include <cstdio>

namespace judgeq {

namespace {
std::string hms(double s) {
  if (s < 0 || s > 1e7) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
  else
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}
}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(::isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()), last_(start_ - std::chrono::hours(1)) {}

void Progress::update(int64_t n, const std::string& note) {
  done_ += n;
  if (!note.empty()) note_ = note;
  draw(false);
}

void Progress::draw(bool force) {
  auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (!force && since < (tty_ ? 0.1 : 10.0) && done_ < total_) return;
  last_ = now;
  const double el = std::chrono::duration<double>(now - start_).count();
  const double rate = el > 0 ? done_ / el : 0;
  const double eta = rate > 0 ? (total_ - done_) / rate : -1;
  const double frac = total_ > 0 ? static_cast<double>(done_) / total_ : 1.0;
  if (tty_) {
    const int width = 28, fill = static_cast<int>(frac * width);
    std::string bar(fill, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %.2f %s/s elapsed %s eta %s %s\033[K", label_.c_str(), bar.c_str(),
                 (long long)done_, (long long)total_, rate, unit_.c_str(), hms(el).c_str(), hms(eta).c_str(),
                 note_.c_str());
  } else {
    std::fprintf(stderr, "%s %lld/%lld (%.0f%%) %.2f %s/s elapsed %s eta %s %s\n", label_.c_str(), (long long)done_,
                 (long long)total_, 100 * frac, rate, unit_.c_str(), hms(el).c_str(), hms(eta).c_str(), note_.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
  if (tty_) std::fprintf(stderr, "\n");
}

Progress::~Progress() { finish(); }

}  // namespace judgeq
