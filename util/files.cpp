#include "util/files.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/error.h"

namespace judgeq {

namespace {
int remove_entry(const char* p, const struct stat*, int, struct FTW*) { return std::remove(p) == 0 ? 0 : -1; }
}  // namespace

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // nothing there
  if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    fail("cannot delete ", path, " (", std::strerror(errno), "); check its permissions or delete it by hand");
}

void truncate_file(const std::string& path, uint64_t size) {
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0)
    fail("cannot shorten ", path, " (", std::strerror(errno), "); check that it is writable");
}

}  // namespace judgeq
