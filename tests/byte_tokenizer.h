// A byte-level Tokenizer for tests: one token per byte, BOS = 256, exact round trips and
// trivially known positions.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace judgeq::test {

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text, bool add_bos, bool) const override {
    std::vector<int64_t> ids;
    if (add_bos) ids.push_back(256);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string s;
    for (int64_t id : ids) {
      if (id == 256) {
        if (!skip_special) s += "<s>";
      } else {
        s.push_back(static_cast<char>(id));
      }
    }
    return s;
  }
  int64_t vocab_size() const override { return 257; }
  std::optional<int64_t> token_id(const std::string& p) const override {
    if (p == "<s>") return 256;
    if (p.size() == 1) return static_cast<unsigned char>(p[0]);
    return std::nullopt;
  }
  std::string id_to_piece(int64_t id) const override { return id == 256 ? "<s>" : std::string(1, char(id)); }
  bool is_special(int64_t id) const override { return id == 256; }
  int64_t bos_id() const override { return 256; }
  int64_t eos_id() const override { return -1; }
  std::string kind() const override { return "test-bytes"; }
};

}  // namespace judgeq::test
