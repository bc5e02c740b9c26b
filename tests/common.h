// Paths the tests read (the checkout, ../shared/data and tests/fixtures), temporary folders, and
// the check that an error is one clear line.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "util/error.h"

namespace judgeq::test {

inline std::string source_dir() { return JUDGEQ_SOURCE_DIR; }
inline std::string shared_data() {
  if (const char* s = std::getenv("JUDGEQ_SHARED")) return std::string(s) + "/data";
  return std::string(JUDGEQ_SHARED_DIR) + "/data";
}
inline std::string fixtures() { return source_dir() + "/tests/fixtures"; }
inline std::string binary_dir() { return JUDGEQ_BINARY_DIR; }

// A fresh temporary folder per call; the pid and a per-process counter keep concurrent test
// processes (ctest -j, several build folders) apart.
inline std::string temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  static std::atomic<int> counter{0};
  auto p = fs::temp_directory_path() /
           ("judgeq_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// f must throw judgeq::Error with a one-line message that contains every needle.
inline void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

}  // namespace judgeq::test
