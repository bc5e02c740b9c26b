// Progress display for long loops: a bar with rate and ETA on a terminal, one plain line every
// few seconds otherwise (logs, CI).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace judgeq {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it");
  // Advances by n and redraws (at most ~10 times a second on a TTY, every 10 s otherwise).
  void update(int64_t n = 1, const std::string& note = "");
  void finish();
  ~Progress();

 private:
  void draw(bool force);
  std::string label_, unit_, note_;
  int64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace judgeq
