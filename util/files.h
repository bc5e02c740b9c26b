// File-system helpers that must not go through std::filesystem::remove_all: LibTorch 2.x's
// libtorch.so exports its own copy of that symbol, the dynamic linker binds our calls to it, and on
// the H200 image (torch 2.11) it calls through a null pointer (every prepare and every sharded
// evaluation crashed while cleaning up). POSIX nftw has no such clash.
#pragma once
#include <cstdint>
#include <string>

namespace judgeq {

// Deletes `path` and everything under it (symbolic links themselves, never their targets). A
// missing path is fine; anything that cannot be deleted throws a one-line judgeq::Error.
void remove_tree(const std::string& path);

// Cuts `path` to its first `size` bytes (POSIX truncate; std::filesystem::resize_file is another
// symbol libtorch.so exports). Throws a one-line judgeq::Error on failure.
void truncate_file(const std::string& path, uint64_t size);

}  // namespace judgeq
