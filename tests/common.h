// Paths the tests read: the checkout, ../shared/data and tests/fixtures.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

namespace judgeq::test {

inline std::string source_dir() { return JUDGEQ_SOURCE_DIR; }
inline std::string shared_data() {
  if (const char* s = std::getenv("JUDGEQ_SHARED")) return std::string(s) + "/data";
  return std::string(JUDGEQ_SHARED_DIR) + "/data";
}
inline std::string fixtures() { return source_dir() + "/tests/fixtures"; }
inline std::string binary_dir() { return JUDGEQ_BINARY_DIR; }

// A fresh temporary folder per call.
inline std::string temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  auto p = fs::temp_directory_path() / ("judgeq_test_" + tag + "_" + std::to_string(std::rand()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace judgeq::test
