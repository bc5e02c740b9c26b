// Tokenizers. Three sections: shared helpers (file reading, special-token matching), byte-level BPE
// (Llama-3 from tiktoken ranks or HF tokenizer.json), sentencepiece (Mistral, llama2.c), then
// Tokenizer::load, which picks one from the file's content.
#include "model/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/error.h"

namespace judgeq {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read tokenizer file ", path, " (", std::strerror(errno), "); check the path and its permissions");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check(!in.bad(), "cannot read tokenizer file ", path, "; check the file");
  return data;
}

// Finds special-token strings in text: the earliest position, and the longest string there.
class SpecialMatcher {
 public:
  void add(const std::string& text, int64_t id) {
    if (text.empty() || ids_.count(text)) return;
    const std::string& kept = texts_.emplace_back(text);
    ids_.emplace(std::string_view(kept), id);
    first_byte_[static_cast<uint8_t>(text[0])] = true;
    if (std::find(lengths_.begin(), lengths_.end(), text.size()) == lengths_.end()) {
      lengths_.push_back(text.size());
      std::sort(lengths_.rbegin(), lengths_.rend());
    }
  }
  bool empty() const { return ids_.empty(); }

  struct Match {
    size_t pos = std::string_view::npos;
    size_t len = 0;
    int64_t id = -1;
  };
  Match find(std::string_view text, size_t from) const {
    if (ids_.empty()) return {};
    for (size_t p = from; p < text.size(); ++p) {
      if (!first_byte_[static_cast<uint8_t>(text[p])]) continue;
      for (size_t len : lengths_) {
        if (p + len > text.size()) continue;
        auto it = ids_.find(text.substr(p, len));
        if (it != ids_.end()) return {p, len, it->second};
      }
    }
    return {};
  }

 private:
  std::deque<std::string> texts_;  // owns the strings ids_ points into (deque: stable addresses)
  std::unordered_map<std::string_view, int64_t> ids_;
  std::vector<size_t> lengths_;  // distinct lengths, longest first
  std::array<bool, 256> first_byte_{};
};

// Calls on_text(segment, after_special) and on_special(id) in text order.
template <typename OnText, typename OnSpecial>
void split_specials(std::string_view text, const SpecialMatcher& specials, OnText on_text,
                    OnSpecial on_special) {
  size_t pos = 0;
  bool after_special = false;
  while (pos < text.size()) {
    SpecialMatcher::Match m = specials.find(text, pos);
    size_t end = m.pos == std::string_view::npos ? text.size() : m.pos;
    if (end > pos) on_text(text.substr(pos, end - pos), after_special);
    if (m.pos == std::string_view::npos) break;
    on_special(m.id);
    after_special = true;
    pos = m.pos + m.len;
  }
}

void check_id(int64_t id, int64_t n) {
  check(id >= 0 && id < n, "token id out of range (got ", id, ", expected 0..", n - 1,
        "); the ids do not belong to this tokenizer");
}

// Appends code point cp as UTF-8.
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Next code point of UTF-8 s at i (advances i), or -1 for a malformed sequence.
int32_t next_utf8(std::string_view s, size_t& i) {
  uint8_t c = static_cast<uint8_t>(s[i++]);
  if (c < 0x80) return c;
  int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
  if (extra < 0 || i + extra > s.size()) return -1;
  int32_t cp = c & (0x3F >> extra);
  for (int k = 0; k < extra; ++k) {
    uint8_t d = static_cast<uint8_t>(s[i++]);
    if ((d & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (d & 0x3F);
  }
  return cp;
}

// ================================================================================================
// Byte-level BPE (Llama-3)
// ================================================================================================

constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's pattern, for tokenizer.json files whose ByteLevel pre-tokenizer does the splitting.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Llama-3.1's 256 special tokens (ids n_ranks + 0..255), as meta-llama/llama-models names them.
std::vector<std::string> llama31_special_tokens() {
  std::vector<std::string> names = {
      "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
      "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
      "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
  for (int i = 3; names.size() < 256; ++i)
    names.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
  return names;
}

// GPT-2's reversible byte <-> printable code point map, used by tokenizer.json vocab strings.
struct ByteUnicodeMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};  // code points 0..323; -1 where no byte maps
  ByteUnicodeMap() {
    to_byte.fill(-1);
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? b : 256 + extra++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
  static const ByteUnicodeMap& get() {
    static const ByteUnicodeMap m;
    return m;
  }
  std::string encode(std::string_view bytes) const {
    std::string s;
    for (char c : bytes) append_utf8(s, to_cp[static_cast<uint8_t>(c)]);
    return s;
  }
  // Vocab string -> raw bytes; false if a character is outside the map.
  bool decode(std::string_view s, std::string& bytes) const {
    bytes.clear();
    for (size_t i = 0; i < s.size();) {
      int32_t cp = next_utf8(s, i);
      if (cp < 0 || cp >= static_cast<int32_t>(to_byte.size()) || to_byte[cp] < 0) return false;
      bytes += static_cast<char>(to_byte[cp]);
    }
    return true;
  }
};

// PCRE2 pre-tokenizer: splits text into the pieces BPE runs on.
class RegexSplitter {
 public:
  RegexSplitter(const std::string& pattern, const std::string& path) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    // MATCH_INVALID_UTF: invalid UTF-8 just never matches; split() hands those bytes to BPE as is.
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail("cannot compile the pre-tokenizer regex of ", path, " (", reinterpret_cast<char*>(msg),
           " at offset ", err_offset, "); this tokenizer's pattern is not supported");
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  }
  ~RegexSplitter() { pcre2_code_free(code_); }
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Calls fn(piece) for consecutive pieces covering all of text (findall, plus any unmatched bytes).
  template <typename Fn>
  void split(std::string_view text, Fn fn) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> ctx(nullptr, &pcre2_match_context_free);
    std::unique_ptr<pcre2_jit_stack, decltype(&pcre2_jit_stack_free)> stack(nullptr, &pcre2_jit_stack_free);
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t emitted = 0, offset = 0;
    while (offset < text.size()) {
      int rc = pcre2_match(code_, subject, text.size(), offset, 0, md.get(), ctx.get());
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !stack) {  // very long runs: retry with a larger stack
        stack.reset(pcre2_jit_stack_create(1 << 16, 256 << 20, nullptr));
        ctx.reset(pcre2_match_context_create(nullptr));
        pcre2_jit_stack_assign(ctx.get(), nullptr, stack.get());
        continue;
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        fail("pre-tokenizer regex failed at byte ", offset, " (", reinterpret_cast<char*>(msg),
             "); report this input");
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      size_t b = ov[0], e = ov[1];
      if (b > emitted) fn(text.substr(emitted, b - emitted));
      if (e > b) fn(text.substr(b, e - b));
      emitted = std::max(emitted, e);
      offset = e > b ? e : b + 1;  // never loop on an empty match
    }
    if (emitted < text.size()) fn(text.substr(emitted));
  }

 private:
  pcre2_code* code_ = nullptr;
};

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  struct Added {
    int64_t id;
    std::string text;
    bool special;
  };

  // vocab: id -> raw bytes (ids 0..n-1, every id present); merges: (left, right) -> rank, where
  // the merged token is the vocab entry of left+right.
  ByteLevelBpeTokenizer(const std::string& path, std::vector<std::string> vocab,
                        const std::vector<std::pair<int32_t, int32_t>>& merges_by_rank,
                        bool rank_is_merged_id, const std::vector<Added>& added, const std::string& pattern,
                        bool ignore_merges)
      : splitter_(pattern, path), vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
    n_regular_ = static_cast<int64_t>(vocab_.size());
    for (int32_t id = 0; id < static_cast<int32_t>(vocab_.size()); ++id) {
      auto [it, fresh] = ids_.emplace(std::string_view(vocab_[id]), id);
      check(fresh, "duplicate token in ", path, " (ids ", it->second, " and ", id,
            " share the same bytes); the file is corrupt, re-download it");
    }
    byte_id_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      const char c = static_cast<char>(b);
      auto it = ids_.find(std::string_view(&c, 1));
      check(it != ids_.end(), "tokenizer ", path, " lacks a token for byte ", b,
            " (expected all 256 single bytes in a byte-level BPE vocab); this is not a byte-level BPE tokenizer");
      byte_id_[b] = it->second;
    }
    if (rank_is_merged_id) {
      // tiktoken: any two tokens whose bytes concatenate to a token t merge, with priority t.
      // Parts are always tokens, so precomputing all such splits is equivalent and faster.
      for (int32_t t = 0; t < static_cast<int32_t>(vocab_.size()); ++t) {
        std::string_view s = vocab_[t];
        for (size_t k = 1; k < s.size(); ++k) {
          auto l = ids_.find(s.substr(0, k));
          if (l == ids_.end()) continue;
          auto r = ids_.find(s.substr(k));
          if (r != ids_.end()) pairs_.emplace(pair_key(l->second, r->second), Merge{t, t});
        }
      }
    } else {
      pairs_.reserve(merges_by_rank.size());
      for (size_t rank = 0; rank < merges_by_rank.size(); ++rank) {
        auto [l, r] = merges_by_rank[rank];
        auto it = ids_.find(vocab_[l] + vocab_[r]);
        check(it != ids_.end(), "merge #", rank, " of ", path, " makes a token missing from the vocab; ",
              "the file is corrupt, re-download it");
        pairs_.emplace(pair_key(l, r), Merge{static_cast<int32_t>(rank), it->second});
      }
    }
    int64_t max_id = n_regular_ - 1;
    for (const Added& a : added) max_id = std::max(max_id, a.id);
    n_vocab_ = max_id + 1;
    added_.resize(n_vocab_ - n_regular_);
    for (const Added& a : added) {
      check(a.id >= n_regular_, "added token '", a.text, "' of ", path, " reuses regular id ", a.id,
            "; such tokenizer.json files are not supported");
      added_[a.id - n_regular_] = a;
      all_added_.add(a.text, a.id);
      // Like HF tokenizers: non-special added tokens are always matched in text.
      if (!a.special) plain_added_.add(a.text, a.id);
      by_name_.emplace(a.text, a.id);
    }
    bos_ = find_added("<|begin_of_text|>");
    eos_ = find_added("<|end_of_text|>");
  }

  std::vector<int64_t> encode(const std::string& text, bool add_bos, bool parse_special) const override {
    std::vector<int64_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_bos) {
      check(bos_ >= 0, "this tokenizer has no <|begin_of_text|> token; encode without add_bos");
      out.push_back(bos_);
    }
    auto on_text = [&](std::string_view seg, bool) {
      splitter_.split(seg, [&](std::string_view piece) { encode_piece(piece, out); });
    };
    auto on_special = [&](int64_t id) { out.push_back(id); };
    split_specials(text, parse_special ? all_added_ : plain_added_, on_text, on_special);
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string out;
    for (int64_t id : ids) {
      check_id(id, n_vocab_);
      if (id < n_regular_) {
        out += vocab_[id];
      } else {
        const Added& a = added_[id - n_regular_];
        if (!(skip_special && a.special)) out += a.text;
      }
    }
    return out;
  }

  int64_t vocab_size() const override { return n_vocab_; }

  // Pieces are HF's vocab strings (GPT-2 byte map, "Ġhello"); raw bytes (" hello") are accepted
  // when no piece of that spelling exists.
  std::optional<int64_t> token_id(const std::string& piece) const override {
    if (auto it = by_name_.find(piece); it != by_name_.end()) return it->second;
    std::string bytes;
    if (ByteUnicodeMap::get().decode(piece, bytes))
      if (auto it = ids_.find(bytes); it != ids_.end()) return it->second;
    if (auto it = ids_.find(piece); it != ids_.end()) return it->second;
    return std::nullopt;
  }
  std::string id_to_piece(int64_t id) const override {
    check_id(id, n_vocab_);
    if (id < n_regular_) return ByteUnicodeMap::get().encode(vocab_[id]);
    return added_[id - n_regular_].text;
  }
  bool is_special(int64_t id) const override {
    check_id(id, n_vocab_);
    return id >= n_regular_ && added_[id - n_regular_].special;
  }
  int64_t bos_id() const override { return bos_; }
  int64_t eos_id() const override { return eos_; }
  std::string kind() const override { return "bpe-bytelevel"; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t pair_key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  int64_t find_added(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? -1 : it->second;
  }

  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
    // tiktoken and HF's ignore_merges both take a piece that is itself a token as that token.
    if (ignore_merges_ || piece.size() == 1) {
      if (auto it = ids_.find(piece); it != ids_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    merge(piece, out);
  }

  // BPE: repeatedly merge the adjacent pair of lowest rank (leftmost on ties). A heap of candidate
  // pairs, checked lazily when popped, keeps long pieces (CJK runs, long digit-free strings)
  // O(n log n) instead of O(n^2).
  void merge(std::string_view piece, std::vector<int64_t>& out) const {
    struct Sym {
      int32_t id, prev, next;
    };
    struct Cand {
      int32_t rank, left, right, left_id, right_id, merged;
      bool operator<(const Cand& o) const {  // inverted: std heap functions build a max-heap
        return rank != o.rank ? rank > o.rank : left > o.left;
      }
    };
    thread_local std::vector<Sym> syms;
    thread_local std::vector<Cand> heap;
    const int32_t n = static_cast<int32_t>(piece.size());
    syms.resize(n);
    heap.clear();
    for (int32_t i = 0; i < n; ++i) syms[i] = {byte_id_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
    auto push = [&](int32_t l) {
      int32_t r = syms[l].next;
      if (r < 0) return;
      auto it = pairs_.find(pair_key(syms[l].id, syms[r].id));
      if (it == pairs_.end()) return;
      heap.push_back({it->second.rank, l, r, syms[l].id, syms[r].id, it->second.merged});
      std::push_heap(heap.begin(), heap.end());
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      Cand c = heap.back();
      heap.pop_back();
      Sym& l = syms[c.left];
      if (l.id != c.left_id || l.next != c.right || syms[c.right].id != c.right_id) continue;  // stale
      l.id = c.merged;
      syms[c.right].id = -1;
      l.next = syms[c.right].next;
      if (l.next >= 0) syms[l.next].prev = c.left;
      if (l.prev >= 0) push(l.prev);
      push(c.left);
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
  }

  RegexSplitter splitter_;
  std::vector<std::string> vocab_;                      // id -> raw bytes, regular ids
  std::unordered_map<std::string_view, int32_t> ids_;  // raw bytes -> id (views into vocab_)
  std::unordered_map<uint64_t, Merge> pairs_;          // (left id, right id) -> merge
  std::array<int32_t, 256> byte_id_{};
  bool ignore_merges_;
  int64_t n_regular_ = 0, n_vocab_ = 0;
  std::vector<Added> added_;  // ids n_regular_.. (gaps have empty text)
  std::unordered_map<std::string, int64_t> by_name_;
  SpecialMatcher all_added_, plain_added_;
  int64_t bos_ = -1, eos_ = -1;
};

bool decode_base64(std::string_view s, std::string& out) {
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') break;
    else return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return !out.empty();
}

// First line looks like "base64 rank".
bool looks_like_tiktoken(const std::string& data) {
  size_t eol = data.find('\n');
  std::string_view line(data.data(), eol == std::string::npos ? data.size() : eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size()) return false;
  for (size_t i = 0; i < sp; ++i) {
    char c = line[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) return false;
  }
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(line[i]))) return false;
  return true;
}

std::unique_ptr<Tokenizer> load_tiktoken(const std::string& path, const std::string& data) {
  std::vector<std::string> vocab;
  std::vector<bool> seen;
  size_t line_no = 0;
  std::string bytes;
  for (size_t pos = 0; pos < data.size();) {
    size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) eol = data.size();
    std::string_view line(data.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    int64_t rank = -1;
    bool ok = sp != std::string_view::npos && decode_base64(line.substr(0, sp), bytes);
    if (ok) {
      auto r = std::from_chars(line.data() + sp + 1, line.data() + line.size(), rank);
      ok = r.ec == std::errc() && r.ptr == line.data() + line.size() && rank >= 0 && rank < (1 << 24);
    }
    check(ok, "malformed tiktoken file ", path, " at line ", line_no,
          " (expected 'base64token rank'); the file is corrupt or not a tokenizer.model, re-download it");
    if (static_cast<size_t>(rank) >= vocab.size()) {
      vocab.resize(rank + 1);
      seen.resize(rank + 1);
    }
    check(!seen[rank], "duplicate rank ", rank, " in tiktoken file ", path, " at line ", line_no,
          "; the file is corrupt, re-download it");
    seen[rank] = true;
    vocab[rank] = bytes;
  }
  check(!vocab.empty(), "tiktoken file ", path, " holds no tokens; re-download it");
  for (size_t r = 0; r < seen.size(); ++r)
    check(seen[r], "tiktoken file ", path, " has no token of rank ", r,
          " (expected ranks 0..", seen.size() - 1, " without gaps); re-download it");
  // The file has no special tokens: Llama-3 adds its 256 in code, right after the ranks.
  std::vector<ByteLevelBpeTokenizer::Added> added;
  auto names = llama31_special_tokens();
  for (size_t i = 0; i < names.size(); ++i)
    added.push_back({static_cast<int64_t>(vocab.size() + i), names[i], true});
  return std::make_unique<ByteLevelBpeTokenizer>(path, std::move(vocab), std::vector<std::pair<int32_t, int32_t>>{},
                                                 /*rank_is_merged_id=*/true, added, kLlama3Pattern,
                                                 /*ignore_merges=*/true);
}

// Regex of the first Split pre-tokenizer, or GPT-2's for a regex-splitting ByteLevel; "" if none.
std::string find_split_pattern(const nlohmann::json& pt) {
  if (!pt.is_object()) return "";
  std::string type = pt.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : pt.value("pretokenizers", nlohmann::json::array())) {
      std::string s = find_split_pattern(p);
      if (!s.empty()) return s;
    }
  } else if (type == "Split" && pt.contains("pattern") && pt["pattern"].contains("Regex")) {
    return pt["pattern"]["Regex"].get<std::string>();
  } else if (type == "ByteLevel" && pt.value("use_regex", true)) {
    return kGpt2Pattern;
  }
  return "";
}

std::unique_ptr<Tokenizer> load_hf_json(const std::string& path, const std::string& data) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data);
  } catch (const nlohmann::json::exception& e) {
    fail("cannot parse tokenizer.json ", path, " (", e.what(), "); the file is truncated or corrupt, re-download it");
  }
  const std::string hint = "; judgeq reads byte-level BPE tokenizer.json (Llama-3) or a tokenizer.model";
  check(j.is_object() && j.contains("model") && j["model"].is_object(), "not a HF tokenizer.json: ", path,
        " (no 'model' object)", hint);
  const auto& model = j["model"];
  std::string type = model.value("type", "");
  check(type == "BPE", "unsupported tokenizer.json ", path, " (model type '", type, "', expected 'BPE')", hint);
  bool byte_level = j.contains("decoder") && j["decoder"].is_object() && j["decoder"].value("type", "") == "ByteLevel";
  check(byte_level, "unsupported tokenizer.json ", path,
        " (decoder is not ByteLevel: a sentencepiece-style BPE)", "; load the tokenizer.model beside it instead");
  check(j["normalizer"].is_null(), "unsupported tokenizer.json ", path, " (has a normalizer, expected none)", hint);
  std::string pattern = find_split_pattern(j.value("pre_tokenizer", nlohmann::json()));
  check(!pattern.empty(), "unsupported tokenizer.json ", path, " (no regex pre-tokenizer found)", hint);

  const auto& bu = ByteUnicodeMap::get();
  check(model.contains("vocab") && model["vocab"].is_object(), "tokenizer.json ", path, " has no model.vocab", hint);
  std::vector<std::string> vocab(model["vocab"].size());
  std::vector<bool> seen(vocab.size());
  std::unordered_map<std::string, int32_t> by_string;
  std::string bytes;
  for (const auto& [tok, idj] : model["vocab"].items()) {
    int64_t id = idj.get<int64_t>();
    check(id >= 0 && id < static_cast<int64_t>(vocab.size()) && !seen[id], "tokenizer.json ", path,
          " has a bad id ", id, " for '", tok, "' (expected unique ids 0..", vocab.size() - 1, ")", hint);
    check(bu.decode(tok, bytes), "tokenizer.json ", path, " token '", tok,
          "' is not in GPT-2 byte-level form", hint);
    vocab[id] = bytes;
    seen[id] = true;
    by_string.emplace(tok, static_cast<int32_t>(id));
  }
  std::vector<std::pair<int32_t, int32_t>> merges;
  static const nlohmann::json kNoMerges = nlohmann::json::array();
  const auto& mj = model.contains("merges") ? model["merges"] : kNoMerges;
  merges.reserve(mj.size());
  for (const auto& m : mj) {
    std::string a, b;
    if (m.is_string()) {  // "a b" (tokenizers < 0.20)
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      check(sp != std::string::npos, "tokenizer.json ", path, " has a malformed merge '", s, "'", hint);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2) {  // ["a", "b"]
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail("tokenizer.json ", path, " has a malformed merge ", m.dump(), hint);
    }
    auto ia = by_string.find(a), ib = by_string.find(b);
    check(ia != by_string.end() && ib != by_string.end(), "tokenizer.json ", path, " merge '", a, " ", b,
          "' uses a token missing from the vocab; the file is corrupt, re-download it");
    merges.emplace_back(ia->second, ib->second);
  }
  std::vector<ByteLevelBpeTokenizer::Added> added;
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
    int64_t id = a.at("id").get<int64_t>();
    std::string content = a.at("content").get<std::string>();
    if (id < static_cast<int64_t>(vocab.size())) continue;  // an existing token re-declared: nothing to add
    added.push_back({id, content, a.value("special", false)});
  }
  return std::make_unique<ByteLevelBpeTokenizer>(path, std::move(vocab), merges, /*rank_is_merged_id=*/false,
                                                 added, pattern, model.value("ignore_merges", false));
}

// ================================================================================================
// Sentencepiece (Mistral, llama2.c)
// ================================================================================================

// Minimal protobuf wire-format reading: enough to validate a ModelProto and edit its
// NormalizerSpec without sentencepiece_model.pb.h (not installed by Debian's -dev package).
struct ProtoField {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t value = 0;     // varint, or fixed32/fixed64 bits (little-endian on the wire)
  std::string_view raw;   // the whole field, tag included
  std::string_view body;  // payload of a length-delimited field
};

bool read_varint(std::string_view s, size_t& i, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && i < s.size(); shift += 7) {
    uint8_t b = static_cast<uint8_t>(s[i++]);
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// All top-level fields of a message, or false if s is not well-formed wire format.
bool parse_proto(std::string_view s, std::vector<ProtoField>& fields) {
  fields.clear();
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    uint64_t tag;
    if (!read_varint(s, i, tag)) return false;
    ProtoField f;
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire = static_cast<uint32_t>(tag & 7);
    if (f.number == 0) return false;
    if (f.wire == 0) {
      if (!read_varint(s, i, f.value)) return false;
    } else if (f.wire == 1 || f.wire == 5) {
      size_t n = f.wire == 1 ? 8 : 4;
      if (i + n > s.size()) return false;
      for (size_t k = 0; k < n; ++k) f.value |= static_cast<uint64_t>(static_cast<uint8_t>(s[i + k])) << (8 * k);
      i += n;
    } else if (f.wire == 2) {
      uint64_t len;
      if (!read_varint(s, i, len) || len > s.size() - i) return false;
      f.body = s.substr(i, len);
      i += len;
    } else {
      return false;  // groups are not used by ModelProto
    }
    f.raw = s.substr(start, i - start);
    fields.push_back(f);
  }
  return true;
}


// A byte trie for prefix lookups (unigram pieces, user-defined symbols).
class ByteTrie {
 public:
  void insert(std::string_view key, int32_t value) {
    int32_t node = 0;
    for (char c : key) {
      auto [it, fresh] = next_.emplace(edge(node, c), static_cast<int32_t>(value_.size()));
      if (fresh) value_.push_back(-1);
      node = it->second;
    }
    if (value_[node] < 0) value_[node] = value;  // the first of duplicate keys wins
  }
  bool empty() const { return value_.size() == 1; }
  // Calls fn(length, value) for each key that is a prefix of s, shortest first.
  template <typename Fn>
  void prefixes(std::string_view s, Fn fn) const {
    int32_t node = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      auto it = next_.find(edge(node, s[i]));
      if (it == next_.end()) return;
      node = it->second;
      if (value_[node] >= 0) fn(i + 1, value_[node]);
    }
  }
  // Length of the longest key that is a prefix of s (0 if none).
  size_t longest_prefix(std::string_view s) const {
    size_t best = 0;
    prefixes(s, [&](size_t len, int32_t) { best = len; });
    return best;
  }

 private:
  static uint64_t edge(int32_t node, char c) { return static_cast<uint64_t>(node) << 8 | static_cast<uint8_t>(c); }
  std::unordered_map<uint64_t, int32_t> next_;
  std::vector<int32_t> value_{-1};  // per node; -1 where no key ends
};

// Length of the UTF-8 character at s[0] as sentencepiece counts it (lead byte only).
size_t one_char_len(std::string_view s) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return std::min<size_t>(s.size(), kLen[static_cast<uint8_t>(s[0]) >> 4]);
}

// Length of a well-formed UTF-8 character at s[0] (no overlong forms, no surrogates), or 0.
size_t valid_utf8_len(std::string_view s) {
  const uint8_t c = static_cast<uint8_t>(s[0]);
  if (c < 0x80) return 1;
  const size_t n = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC0 && c < 0xE0 ? 2 : 0;
  if (n == 0 || s.size() < n) return 0;
  uint32_t cp = c & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; ++k) {
    const uint8_t d = static_cast<uint8_t>(s[k]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (d & 0x3F);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || (cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF) return 0;
  return n;
}

// The parts of a sentencepiece ModelProto (sentencepiece_model.proto) that encoding needs.
struct SpModel {
  enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  struct Piece {
    std::string text;
    float score = 0;
    int type = kNormal;
  };
  std::vector<Piece> pieces;
  int model_type = 1;  // TrainerSpec.model_type: 1 unigram, 2 BPE, 3 word, 4 char
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>";
  std::string normalizer = "nmt_nfkc";
  std::string charsmap;  // NormalizerSpec.precompiled_charsmap
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};

SpModel parse_sp_model(const std::string& path, const std::vector<ProtoField>& fields) {
  const std::string bad = "; the file is corrupt or not a sentencepiece tokenizer.model, re-download it";
  SpModel m;
  std::vector<ProtoField> sub;
  for (const ProtoField& f : fields) {
    if (f.wire != 2 || f.number < 1 || f.number > 3) continue;
    check(parse_proto(f.body, sub), "malformed sentencepiece model ", path, " (field ", f.number, ")", bad);
    if (f.number == 1) {
      SpModel::Piece p;
      for (const ProtoField& g : sub) {
        if (g.number == 1 && g.wire == 2) p.text = std::string(g.body);
        if (g.number == 2 && g.wire == 5) {
          const uint32_t bits = static_cast<uint32_t>(g.value);
          std::memcpy(&p.score, &bits, sizeof(float));
        }
        if (g.number == 3 && g.wire == 0) p.type = static_cast<int>(g.value);
      }
      m.pieces.push_back(std::move(p));
    }
    for (const ProtoField& g : sub) {
      if (f.number == 2) {
        if (g.number == 3 && g.wire == 0) m.model_type = static_cast<int>(g.value);
        if (g.number == 35 && g.wire == 0) m.byte_fallback = g.value != 0;
        if (g.number == 24 && g.wire == 0) m.treat_whitespace_as_suffix = g.value != 0;
        if (g.number == 45 && g.wire == 2) m.unk_piece = std::string(g.body);
        if (g.number == 46 && g.wire == 2) m.bos_piece = std::string(g.body);
        if (g.number == 47 && g.wire == 2) m.eos_piece = std::string(g.body);
      } else if (f.number == 3) {
        if (g.number == 1 && g.wire == 2) m.normalizer = std::string(g.body);
        if (g.number == 2 && g.wire == 2) m.charsmap = std::string(g.body);
        if (g.number == 3 && g.wire == 0) m.add_dummy_prefix = g.value != 0;
        if (g.number == 4 && g.wire == 0) m.remove_extra_whitespaces = g.value != 0;
        if (g.number == 5 && g.wire == 0) m.escape_whitespaces = g.value != 0;
      }
    }
  }
  return m;
}

// Sentencepiece's normaliser: the precompiled character map (a darts-clone double array whose
// values point into a pool of NUL-terminated replacements), user-defined symbols kept verbatim,
// whitespace handling, and the "▁" escaping of spaces.
class SpNormalizer {
 public:
  SpNormalizer(const std::string& path, const SpModel& m, const ByteTrie& user_defined)
      : user_defined_(user_defined),
        add_dummy_prefix_(m.add_dummy_prefix),
        remove_extra_whitespaces_(m.remove_extra_whitespaces),
        escape_whitespaces_(m.escape_whitespaces),
        suffix_(m.treat_whitespace_as_suffix) {
    if (m.charsmap.empty()) return;
    // Layout: uint32 trie size (little-endian), the trie's 32-bit units, then the string pool.
    const std::string& blob = m.charsmap;
    uint32_t trie_bytes = 0;
    bool ok = blob.size() >= 4;
    if (ok) {
      for (int k = 0; k < 4; ++k) trie_bytes |= static_cast<uint32_t>(static_cast<uint8_t>(blob[k])) << (8 * k);
      ok = trie_bytes % 4 == 0 && trie_bytes + 4 < blob.size() && trie_bytes > 0;
    }
    check(ok, "sentencepiece model ", path, " has a broken normalisation map; re-download it");
    units_.resize(trie_bytes / 4);
    for (size_t u = 0; u < units_.size(); ++u)
      for (int k = 0; k < 4; ++k)
        units_[u] |= static_cast<uint32_t>(static_cast<uint8_t>(blob[4 + 4 * u + k])) << (8 * k);
    pool_ = blob.substr(4 + trie_bytes);
    pool_ += '\0';  // every replacement is NUL-terminated, even a broken last one
  }

  // text -> normalized; the dummy-prefix "▁" only when with_prefix (text starts the input).
  std::string normalize(std::string_view input, bool with_prefix) const {
    std::string out;
    if (input.empty()) return out;
    if (remove_extra_whitespaces_) {
      while (!input.empty()) {
        auto [rep, used] = normalize_prefix(input);
        if (rep != " ") break;
        input.remove_prefix(used);
      }
      if (input.empty()) return out;
    }
    out.reserve(input.size() * 3 / 2 + 3);
    const bool add_ws = with_prefix && add_dummy_prefix_;
    auto space = [&] { out += escape_whitespaces_ ? kSpace : std::string_view(" "); };
    if (add_ws && !suffix_) space();
    bool prev_space = remove_extra_whitespaces_;
    while (!input.empty()) {
      auto [rep, used] = normalize_prefix(input);
      if (prev_space)
        while (!rep.empty() && rep[0] == ' ') rep.remove_prefix(1);
      if (!rep.empty()) {
        for (char c : rep) {
          if (c == ' ' && escape_whitespaces_) out += kSpace;
          else out += c;
        }
        prev_space = rep.back() == ' ';
      }
      input.remove_prefix(used);
      if (!remove_extra_whitespaces_) prev_space = false;
    }
    if (remove_extra_whitespaces_) {
      const std::string_view sp = escape_whitespaces_ ? kSpace : std::string_view(" ");
      while (out.size() >= sp.size() && std::string_view(out).substr(out.size() - sp.size()) == sp)
        out.resize(out.size() - sp.size());
    }
    if (add_ws && suffix_) space();
    return out;
  }

 private:
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD for a malformed byte

  // The replacement of input's first character(s), and how many bytes it consumes.
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view input) const {
    if (size_t n = user_defined_.longest_prefix(input)) return {input.substr(0, n), n};
    if (!units_.empty()) {
      size_t best_len = 0;
      uint32_t best_value = 0;
      // darts-clone common-prefix search: unit bits 0-7 label, 8 has-leaf, 9 offset scale,
      // 10-31 offset; a leaf's low 31 bits hold the value.
      size_t node = offset(units_[0]);
      for (size_t i = 0; i < input.size(); ++i) {
        const uint8_t c = static_cast<uint8_t>(input[i]);
        node ^= c;
        if (node >= units_.size()) break;
        const uint32_t unit = units_[node];
        if ((unit & (0x80000000u | 0xFF)) != c) break;
        node ^= offset(unit);
        if (node >= units_.size()) break;
        if ((unit >> 8) & 1) {
          best_len = i + 1;
          best_value = units_[node] & 0x7FFFFFFFu;
        }
      }
      if (best_len > 0 && best_value < pool_.size()) return {std::string_view(pool_.data() + best_value), best_len};
    }
    if (size_t n = valid_utf8_len(input)) return {input.substr(0, n), n};
    return {kReplacement, 1};
  }
  static size_t offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }

  static constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"
  const ByteTrie& user_defined_;
  std::vector<uint32_t> units_;
  std::string pool_;
  bool add_dummy_prefix_, remove_extra_whitespaces_, escape_whitespaces_, suffix_;
};

// Sentencepiece models (BPE and unigram) read natively. Debian's libsentencepiece bundles a
// protobuf that clashes with LibTorch's libprotobuf (a crash before main() in any binary that
// links both), so this reimplements sentencepiece 0.1.97's encoder: normaliser, BPE merges by
// score (ties: leftmost), unigram Viterbi, unused-piece resegmentation, byte fallback and merged
// unknowns. The golden ids (Mistral v0.3/v0.1, tok512) and whole essays check it.
class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, SpModel model) : model_(std::move(model)) {
    const std::string bad = "; the file is corrupt or not a sentencepiece tokenizer.model, re-download it";
    check(model_.model_type == 1 || model_.model_type == 2, "unsupported sentencepiece model type ",
          model_.model_type, " in ", path, " (expected 1 unigram or 2 BPE)", "; retrain it as BPE or unigram");
    const int n = static_cast<int>(model_.pieces.size());
    check(n > 0, "sentencepiece model ", path, " has no pieces", bad);
    byte_.assign(n, 0);
    int n_bytes = 0;
    float min_score = std::numeric_limits<float>::max(), max_score = std::numeric_limits<float>::min();
    for (int id = 0; id < n; ++id) {
      const SpModel::Piece& p = model_.pieces[id];
      check(!p.text.empty() && p.type >= 1 && p.type <= 6, "sentencepiece model ", path, " has a bad piece #", id, bad);
      check(by_text_.emplace(std::string_view(p.text), id).second, "sentencepiece model ", path, " defines '", p.text, "' twice", bad);
      switch (p.type) {
        case SpModel::kUnknown:
          check(unk_ < 0, "sentencepiece model ", path, " has two unknown pieces", bad);
          unk_ = id;
          [[fallthrough]];
        case SpModel::kControl:
          specials_.add(p.text, id);
          break;
        case SpModel::kByte: {
          unsigned v = 256;
          if (p.text.size() == 6 && p.text.compare(0, 3, "<0x") == 0 && p.text[5] == '>')
            v = static_cast<unsigned>(std::strtoul(p.text.substr(3, 2).c_str(), nullptr, 16));
          check(v < 256 && model_.byte_fallback, "sentencepiece model ", path, " has a bad byte piece '", p.text, "'", bad);
          byte_[id] = static_cast<char>(v);
          byte_id_[v] = id;
          ++n_bytes;
          break;
        }
        case SpModel::kUserDefined:
          user_defined_.insert(p.text, id);
          [[fallthrough]];
        default:  // normal, user-defined and unused pieces are what the model matches
          vocab_.emplace(std::string_view(p.text), id);
          trie_.insert(p.text, id);
          if (p.type == SpModel::kNormal) {
            min_score = std::min(min_score, p.score);
            max_score = std::max(max_score, p.score);
          }
      }
    }
    check(unk_ >= 0, "sentencepiece model ", path, " has no unknown piece", bad);
    check(!model_.byte_fallback || n_bytes == 256, "sentencepiece model ", path, " has ", n_bytes,
          " byte pieces (expected 256 with byte_fallback)", bad);
    min_score_ = min_score;
    max_score_ = max_score;
    normalizer_ = std::make_unique<SpNormalizer>(path, model_, user_defined_);
    bos_ = control_id(model_.bos_piece);
    eos_ = control_id(model_.eos_piece);
    strip_leading_space_ = model_.add_dummy_prefix || model_.remove_extra_whitespaces;  // as sentencepiece decodes
    // BPE merges never cross the start of a word ("x|▁y") when no piece has a "▁" after other
    // characters, so long texts can be merged word by word: same result, bounded heaps.
    split_words_ = model_.model_type == 2;
    for (const auto& [text, id] : vocab_) {
      std::string_view t = text;
      while (t.substr(0, 3) == kSpace) t.remove_prefix(3);
      if (t.find(kSpace) != std::string_view::npos) split_words_ = false;
    }
  }

  // parse_special: text is split at control-token strings ("[INST]", "</s>", "<unk>"). Only the
  // segment at the very start of the text gets the dummy-prefix space; a segment after a special
  // token is encoded as written (HF's legacy=false), so "[INST] Hi" -> [INST] ▁Hi.
  std::vector<int64_t> encode(const std::string& text, bool add_bos, bool parse_special) const override {
    std::vector<int64_t> out;
    if (add_bos) {
      check(bos_ >= 0, "this sentencepiece model has no BOS; encode without add_bos");
      out.push_back(bos_);
    }
    auto on_text = [&](std::string_view seg, bool after_special) { encode_text(seg, !after_special, out); };
    auto on_special = [&](int64_t id) { out.push_back(id); };
    if (parse_special) split_specials(text, specials_, on_text, on_special);
    else encode_text(text, true, out);
    return out;
  }

  // Like sentencepiece's decoder, the first text piece loses its leading "▁" (the dummy prefix)
  // when nothing was written before it, so decode(encode(x)) == x for Mistral's identity
  // normaliser. Not for models that normalise (tok512 collapses whitespace). Byte pieces come
  // out as raw bytes (a split UTF-8 character is not replaced by U+FFFD).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string out;
    bool first_text = true;
    for (int64_t id : ids) {
      check_id(id, vocab_size());
      const SpModel::Piece& p = model_.pieces[id];
      switch (p.type) {
        case SpModel::kControl:
        case SpModel::kUnknown:
          if (!skip_special) out += p.text;
          break;
        case SpModel::kByte:
          out += byte_[id];
          first_text = false;
          break;
        default: {
          std::string_view t = p.text;
          if (first_text && out.empty() && strip_leading_space_ && t.substr(0, 3) == kSpace) t.remove_prefix(3);
          first_text = false;
          for (size_t i = 0; i < t.size();) {
            if (t.substr(i, 3) == kSpace) {
              out += ' ';
              i += 3;
            } else {
              out += t[i++];
            }
          }
        }
      }
    }
    return out;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(model_.pieces.size()); }
  std::optional<int64_t> token_id(const std::string& piece) const override {
    auto it = by_text_.find(piece);
    if (it == by_text_.end()) return std::nullopt;
    return it->second;
  }
  std::string id_to_piece(int64_t id) const override {
    check_id(id, vocab_size());
    return model_.pieces[id].text;
  }
  bool is_special(int64_t id) const override {
    check_id(id, vocab_size());
    const int t = model_.pieces[id].type;
    return t == SpModel::kControl || t == SpModel::kUnknown;
  }
  int64_t bos_id() const override { return bos_; }
  int64_t eos_id() const override { return eos_; }
  std::string kind() const override { return "sentencepiece"; }

 private:
  static constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"
  using Pieces = std::vector<std::pair<std::string_view, int32_t>>;  // (surface, id; unk_ if unknown)

  int64_t control_id(const std::string& text) const {
    auto it = by_text_.find(text);
    return it != by_text_.end() && model_.pieces[it->second].type == SpModel::kControl ? it->second : -1;
  }

  void encode_text(std::string_view text, bool with_prefix, std::vector<int64_t>& out) const {
    const std::string norm = normalizer_->normalize(text, with_prefix);
    if (norm.empty()) return;
    Pieces pieces;
    if (model_.model_type == 1) {
      unigram(norm, pieces);
    } else if (!split_words_) {
      bpe(norm, pieces);
    } else {
      const std::string_view all = norm;
      size_t begin = 0;
      for (size_t i = all.find(kSpace, 1); i != std::string_view::npos; i = all.find(kSpace, i + 1)) {
        if (all.substr(i - 3, 3) == kSpace) continue;  // inside a whitespace run
        bpe(all.substr(begin, i - begin), pieces);
        begin = i;
      }
      bpe(all.substr(begin), pieces);
    }
    // Unknown pieces become their UTF-8 bytes with byte fallback; otherwise a run of them is one
    // unknown token.
    bool prev_unk = false;
    for (const auto& [surface, id] : pieces) {
      const bool unk = id == unk_;
      if (unk && model_.byte_fallback) {
        for (char c : surface) out.push_back(byte_id_[static_cast<uint8_t>(c)]);
      } else if (!(unk && prev_unk)) {
        out.push_back(id);
      }
      prev_unk = unk;
    }
  }

  int32_t piece_id(std::string_view s) const {
    auto it = by_text_.find(s);
    return it == by_text_.end() ? static_cast<int32_t>(unk_) : it->second;
  }

  // BPE: merge the adjacent pair whose concatenation is a piece of highest score (ties:
  // leftmost) until none is left; user-defined symbols never merge.
  void bpe(std::string_view s, Pieces& out) const {
    struct Sym {
      uint32_t begin, len;
      int32_t prev, next;
      bool freeze;
    };
    struct Cand {
      float score;
      int32_t left, right;
      uint32_t len;
      bool operator<(const Cand& o) const { return score != o.score ? score < o.score : left > o.left; }
    };
    thread_local std::vector<Sym> syms;
    thread_local std::vector<Cand> heap;
    syms.clear();
    heap.clear();
    for (size_t i = 0; i < s.size();) {
      size_t n = user_defined_.longest_prefix(s.substr(i));
      const bool freeze = n > 0;
      if (!freeze) n = one_char_len(s.substr(i));
      const int32_t k = static_cast<int32_t>(syms.size());
      syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(n), k - 1, i + n < s.size() ? k + 1 : -1, freeze});
      i += n;
    }
    thread_local std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
    rev_merge.clear();  // how each merged unused piece was made
    auto view = [&](const Sym& y) { return s.substr(y.begin, y.len); };
    auto push = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0 || syms[l].freeze || syms[r].freeze) return;
      const std::string_view joined = s.substr(syms[l].begin, syms[l].len + syms[r].len);
      auto it = vocab_.find(joined);
      if (it == vocab_.end()) return;
      const SpModel::Piece& p = model_.pieces[it->second];
      heap.push_back({p.score, l, r, static_cast<uint32_t>(joined.size())});
      std::push_heap(heap.begin(), heap.end());
      if (p.type == SpModel::kUnused) rev_merge[joined] = {view(syms[l]), view(syms[r])};
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i, i + 1);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const Cand c = heap.back();
      heap.pop_back();
      Sym& l = syms[c.left];
      Sym& r = syms[c.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;  // stale
      l.len += r.len;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = c.left;
      r.len = 0;
      push(l.prev, c.left);
      push(c.left, l.next);
    }
    // Unused pieces may be merged through but are never output: split them back.
    for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) resegment(view(syms[i]), rev_merge, out);
  }

  void resegment(std::string_view w,
                 const std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>& rev_merge,
                 Pieces& out) const {
    const int32_t id = piece_id(w);
    auto it = model_.pieces[id].type == SpModel::kUnused ? rev_merge.find(w) : rev_merge.end();
    if (it == rev_merge.end()) {
      out.emplace_back(w, id);
      return;
    }
    resegment(it->second.first, rev_merge, out);
    resegment(it->second.second, rev_merge, out);
  }

  // Unigram: Viterbi over byte positions (sentencepiece's optimised encoder, same scores and
  // tie-breaking: the earliest start wins). User-defined symbols get a bonus so they always
  // win; a character no piece covers becomes an unknown of score min - 10.
  void unigram(std::string_view s, Pieces& out) const {
    struct Best {
      int32_t id = -1;
      float score = 0;
      int32_t start = -1;
    };
    std::vector<Best> best(s.size() + 1);
    const float unk_score = min_score_ - 10.0f;
    for (size_t start = 0; start < s.size();) {
      const float base = best[start].score;
      const size_t mblen = one_char_len(s.substr(start));
      bool has_single = false;
      trie_.prefixes(s.substr(start), [&](size_t len, int32_t id) {
        const SpModel::Piece& p = model_.pieces[id];
        if (p.type == SpModel::kUnused) return;
        // Same arithmetic as sentencepiece: the bonus is computed in double.
        const double score = p.type == SpModel::kUserDefined ? len * max_score_ - 0.1 : p.score;
        const double candidate = score + base;
        Best& b = best[start + len];
        if (b.start < 0 || candidate > b.score) b = {id, static_cast<float>(candidate), static_cast<int32_t>(start)};
        if (len == mblen) has_single = true;
      });
      if (!has_single) {
        Best& b = best[start + mblen];
        const float candidate = unk_score + base;
        if (b.start < 0 || candidate > b.score) b = {static_cast<int32_t>(unk_), candidate, static_cast<int32_t>(start)};
      }
      start += mblen;
    }
    const size_t first = out.size();
    for (size_t end = s.size(); end > 0; end = best[end].start)
      out.emplace_back(s.substr(best[end].start, end - best[end].start), best[end].id);
    std::reverse(out.begin() + first, out.end());
  }

  SpModel model_;
  std::unordered_map<std::string_view, int32_t> by_text_;  // every piece (views into model_)
  std::unordered_map<std::string_view, int32_t> vocab_;  // normal, user-defined, unused pieces
  ByteTrie trie_;                                        // the same, for unigram's prefix search
  ByteTrie user_defined_;
  std::unique_ptr<SpNormalizer> normalizer_;
  std::vector<char> byte_;  // value of each byte piece
  std::array<int64_t, 256> byte_id_{};
  SpecialMatcher specials_;  // control pieces and the unknown piece
  int64_t unk_ = -1, bos_ = -1, eos_ = -1;
  float min_score_ = 0, max_score_ = 0;
  bool strip_leading_space_ = true;
  bool split_words_ = false;
};

// ================================================================================================
// Loading
// ================================================================================================

std::unique_ptr<Tokenizer> load_file(const std::string& path) {
  std::string data = read_file(path);
  check(!data.empty(), "tokenizer file ", path, " is empty; re-download it");
  size_t first = data.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && data[first] == '{') return load_hf_json(path, data);
  if (looks_like_tiktoken(data)) return load_tiktoken(path, data);
  std::vector<ProtoField> fields;
  bool has_pieces = parse_proto(data, fields) &&
                    std::any_of(fields.begin(), fields.end(), [](const ProtoField& f) { return f.number == 1 && f.wire == 2; });
  if (has_pieces) return std::make_unique<SentencePieceTokenizer>(path, parse_sp_model(path, fields));
  fail("unrecognised tokenizer file ", path, " (", data.size(),
       " bytes that are neither a HF tokenizer.json, tiktoken ranks nor a sentencepiece model); "
       "pass the checkpoint's tokenizer.json or tokenizer.model");
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::error_code ec;
  check(fs::exists(path, ec), "tokenizer not found: ", path,
        " does not exist; pass a tokenizer.json / tokenizer.model file or the checkpoint folder holding one");
  if (!fs::is_directory(path, ec)) return load_file(path);
  const fs::path json = fs::path(path) / "tokenizer.json";
  const fs::path model = fs::path(path) / "tokenizer.model";
  bool has_json = fs::is_regular_file(json, ec), has_model = fs::is_regular_file(model, ec);
  check(has_json || has_model, "no tokenizer in folder ", path,
        " (expected tokenizer.json or tokenizer.model); pass the checkpoint folder that holds them");
  if (has_json && has_model) {
    // Mistral folders ship a sentencepiece-style tokenizer.json beside tokenizer.model: the
    // sentencepiece library is the reference there, so only a byte-level json is preferred.
    std::string data = read_file(json.string());
    if (data.find("\"ByteLevel\"") == std::string::npos) return load_file(model.string());
    return load_hf_json(json.string(), data);
  }
  return load_file((has_json ? json : model).string());
}

std::string utf8_lossy(std::string_view s) {
  static const std::string kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = b[i];
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Length and the allowed range of the second byte (Unicode Table 3-7).
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    size_t j = i + 1;  // end of the maximal subpart
    if (len > 0) {
      for (size_t k = 1; k < len && j < n; ++k, ++j) {
        const unsigned d = b[j];
        if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) break;
      }
    }
    if (len > 0 && j - i == len) {
      out.append(s.data() + i, len);
    } else {
      out += kReplacement;
    }
    i = j;
  }
  return out;
}

}  // namespace judgeq
