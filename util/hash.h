// SHA-256 of a string or a file, as lowercase hex. Used to check data files against published
// hashes (LongBench ORIGINAL_FILE_HASHES.json, MANIFEST.md).
#pragma once
#include <cstdint>
#include <string>

namespace judgeq {

// Incremental SHA-256 (FIPS 180-4).
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update(const std::string& s) { update(s.data(), s.size()); }
  // Finishes the digest and returns it as 64 lowercase hex characters; the object is then reset.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_len_ = 0;
};

std::string sha256_hex(const std::string& data);
// Throws judgeq::Error when the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace judgeq
