// remove_tree: the POSIX replacement for std::filesystem::remove_all (see util/files.h).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "common.h"
#include "util/files.h"

using namespace judgeq;
namespace fs = std::filesystem;

TEST(Files, RemoveTreeDeletesNestedFoldersButNotLinkTargets) {
  const std::string dir = test::temp_dir("files");
  const std::string tree = dir + "/run.parts", keep = dir + "/keep.txt";
  fs::create_directories(tree + "/a/b/c");
  std::ofstream(tree + "/rank0.jsonl") << "{}\n";
  std::ofstream(tree + "/a/b/c/deep.txt") << "x";
  std::ofstream(keep) << "precious";
  fs::create_directories(dir + "/outside");
  std::ofstream(dir + "/outside/inner.txt") << "y";
  fs::create_symlink(keep, tree + "/a/link_to_file");
  fs::create_directory_symlink(dir + "/outside", tree + "/link_to_dir");
  remove_tree(tree);
  EXPECT_FALSE(fs::exists(fs::symlink_status(tree)));
  EXPECT_TRUE(fs::is_regular_file(keep));  // links removed, never followed
  EXPECT_TRUE(fs::is_regular_file(dir + "/outside/inner.txt"));
  remove_tree(tree);  // already gone: nothing to do
  remove_tree(keep);  // a plain file works too
  EXPECT_FALSE(fs::exists(keep));
  fs::remove_all(dir);
}

TEST(Files, RemoveTreeThatCannotDeleteSaysSo) {
  if (::geteuid() == 0) GTEST_SKIP() << "root may delete anything";
  const std::string dir = test::temp_dir("files_ro");
  fs::create_directories(dir + "/locked");
  std::ofstream(dir + "/locked/f.txt") << "z";
  ::chmod((dir + "/locked").c_str(), 0500);
  test::expect_error([&] { remove_tree(dir + "/locked"); }, {"cannot delete", "locked"});
  ::chmod((dir + "/locked").c_str(), 0700);
  fs::remove_all(dir);
}

TEST(Files, TruncateFileKeepsThePrefix) {
  const std::string dir = test::temp_dir("files_trunc"), f = dir + "/pred.jsonl";
  std::ofstream(f) << "{\"a\":1}\n{\"b\":";
  truncate_file(f, 8);
  std::ifstream in(f);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "{\"a\":1}\n");
  test::expect_error([&] { truncate_file(dir + "/missing.jsonl", 0); }, {"cannot shorten", "missing.jsonl"});
  fs::remove_all(dir);
}
