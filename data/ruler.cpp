#include "data/ruler.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>

#include "util/error.h"

namespace judgeq {
namespace {

namespace fs = std::filesystem;

const char* const kHowToGetRuler =
    "copy the RULER data folder (templates.json, PaulGrahamEssays.json, wonderwords-2.2.0/, "
    "punkt_tab_english_partial/; see data/NOTES.md section 1.1 of the shared data) to <data_root>/ruler, "
    "or point RulerOptions::data_root at the folder holding ruler/";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "missing RULER data file (got no readable ", path, ", expected the file); ", kHowToGetRuler);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(read_text(path));
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// Python's str whitespace (what re's \s matches), decoded from UTF-8; returns the byte length of
// the whitespace character at s[i], 0 if none.
size_t py_space_len(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
  auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0; };
  if (c == 0xC2 && (b(1) == 0x85 || b(1) == 0xA0)) return 2;
  if (c == 0xE1 && b(1) == 0x9A && b(2) == 0x80) return 3;  // U+1680
  if (c == 0xE2 && b(1) == 0x80 && (b(2) <= 0x8A || b(2) == 0xA8 || b(2) == 0xA9 || b(2) == 0xAF)) return 3;
  if (c == 0xE2 && b(1) == 0x81 && b(2) == 0x9F) return 3;  // U+205F
  if (c == 0xE3 && b(1) == 0x80 && b(2) == 0x80) return 3;  // U+3000
  return 0;
}

// re.sub(r"\s+", " ", text).split(" ") without the empty ends.
std::vector<std::string> split_py_whitespace(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  size_t i = 0;
  while (i < s.size()) {
    size_t n = py_space_len(s, i);
    if (n) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      i += n;
    } else {
      cur.push_back(s[i++]);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> sorted_unique(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

bool sorted_contains(const std::vector<std::string>& v, const std::string& x) {
  return std::binary_search(v.begin(), v.end(), x);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// str.format for "{name}" fields in one pass, so substituted text (essays with braces) is never
// re-scanned. Unknown fields stay as written.
std::string format(const std::string& tmpl, const std::map<std::string, std::string>& values) {
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] == '{') {
      size_t e = tmpl.find('}', i);
      if (e != std::string::npos) {
        auto it = values.find(tmpl.substr(i + 1, e - i - 1));
        if (it != values.end()) {
          out += it->second;
          i = e + 1;
          continue;
        }
      }
    }
    out.push_back(tmpl[i++]);
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

// Portable randomness: mt19937_64 and seed_seq are fully specified by the standard; the
// distributions below are written out so results do not depend on the standard library.
class Rng {
 public:
  Rng(uint64_t seed, const std::string& task, uint64_t index) {
    std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), fnv1a(task), uint32_t(index), uint32_t(index >> 32)};
    g_.seed(seq);
  }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) {
    if (n <= 1) return 0;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = g_(); while (x >= limit);
    return x % n;
  }
  int64_t randint(int64_t lo, int64_t hi) { return lo + int64_t(below(uint64_t(hi - lo + 1))); }
  uint64_t bits64() { return g_(); }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
  // k distinct values from [0, n), in draw order (random.sample(range(n), k)).
  std::vector<size_t> sample(size_t n, size_t k) {
    check(k <= n, "cannot sample ", k, " distinct positions from ", n, " (expected k <= n); raise max_seq_length");
    std::vector<size_t> out;
    if (k * 4 >= n) {
      std::vector<size_t> all(n);
      for (size_t i = 0; i < n; ++i) all[i] = i;
      for (size_t i = 0; i < k; ++i) std::swap(all[i], all[i + below(n - i)]);
      out.assign(all.begin(), all.begin() + long(k));
    } else {
      std::set<size_t> seen;
      while (out.size() < k) {
        size_t x = below(n);
        if (seen.insert(x).second) out.push_back(x);
      }
    }
    return out;
  }
  std::string letters(size_t k, char first) {
    std::string s(k, ' ');
    for (auto& c : s) c = char(first + below(26));
    return s;
  }

 private:
  std::mt19937_64 g_;
};

constexpr uint64_t kProbeIndex = 0xFFFFFFFF00000001ull;  // the binary search's fixed stream
constexpr uint64_t kIclIndex = 0xFFFFFFFF00000002ull;    // VT's in-context example
constexpr uint64_t kMaxRedraws = 8;  // draws of one sample that overflows at the smallest size

// ---- Punkt port ----

const std::string kNonWord = "?!)\";}]*:@'({[";         // _re_non_word_chars
const std::string kNotWordStart = "(\"`{[:;&#*@)}]-,";  // excluded by _re_word_start
bool in_set(char c, const std::string& set) { return c != '\0' && set.find(c) != std::string::npos; }

// First code point of s, decoded (0 if empty; invalid bytes as themselves).
char32_t first_code_point(const std::string& s) {
  if (s.empty()) return 0;
  unsigned char c = static_cast<unsigned char>(s[0]);
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (len == 1 || s.size() < size_t(len)) return c;
  char32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[size_t(k)]) & 0x3F);
  return cp;
}
size_t code_point_len(unsigned char c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1; }

// str.isupper()/islower() of one character, for ASCII, Latin-1, Greek and Cyrillic letters.
bool is_upper(char32_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9) ||
         (c >= 0x400 && c <= 0x42F);
}
bool is_lower(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7) || (c >= 0x3B1 && c <= 0x3C9) ||
         (c >= 0x430 && c <= 0x45F);
}
// [^\W\d]: a word character that is not a digit (letters, underscore; non-ASCII assumed letters).
bool is_letter_like(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= 0xC0 && c != 0xD7 && c != 0xF7);
}

bool ws_at(const std::string& s, size_t i) { return i < s.size() && py_space_len(s, i) > 0; }

bool is_number_type(const std::string& t) {
  // ^-?[\.,]?\d[\d,\.-]*\.?$
  size_t i = 0;
  if (i < t.size() && t[i] == '-') ++i;
  if (i < t.size() && (t[i] == '.' || t[i] == ',')) ++i;
  if (i >= t.size() || !std::isdigit(static_cast<unsigned char>(t[i]))) return false;
  ++i;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == ',' || t[i] == '.' || t[i] == '-')) ++i;
  return i == t.size();
}

std::string lower_ascii(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Length of a multi-character punctuation token at i (_re_multi_char_punct), 0 if none:
// \-{2,} | \.{2,} | (?:\.\s){2,}\.
size_t multi_char_at(const std::string& s, size_t i) {
  if (i + 1 >= s.size()) return 0;
  if ((s[i] == '-' || s[i] == '.') && s[i + 1] == s[i]) {
    size_t j = i;
    while (j < s.size() && s[j] == s[i]) ++j;
    return j - i;
  }
  if (s[i] == '.') {
    std::vector<size_t> ends;  // end offset after each ". " pair
    size_t j = i;
    while (j < s.size() && s[j] == '.' && ws_at(s, j + 1)) {
      j += 1 + py_space_len(s, j + 1);
      ends.push_back(j);
    }
    for (size_t k = ends.size(); k >= 2; --k)  // greedy pairs, backtracking for the final '.'
      if (ends[k - 1] < s.size() && s[ends[k - 1]] == '.') return ends[k - 1] + 1 - i;
  }
  return 0;
}

// PunktLanguageVars.word_tokenize: split punctuation other than periods off words.
std::vector<std::string> punkt_words(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  auto word_end = [&](size_t j) {
    if (j >= s.size() || ws_at(s, j) || in_set(s[j], kNonWord) || multi_char_at(s, j)) return true;
    if (s[j] == ',')
      return j + 1 >= s.size() || ws_at(s, j + 1) || in_set(s[j + 1], kNonWord) || multi_char_at(s, j + 1) > 0;
    return false;
  };
  while (i < s.size()) {
    if (size_t w = py_space_len(s, i)) {
      i += w;
      continue;
    }
    if (size_t m = multi_char_at(s, i)) {
      out.push_back(s.substr(i, m));
      i += m;
    } else if (!in_set(s[i], kNotWordStart)) {
      size_t j = i + code_point_len(static_cast<unsigned char>(s[i]));
      while (!word_end(j)) j += code_point_len(static_cast<unsigned char>(s[j]));
      j = std::min(j, s.size());
      out.push_back(s.substr(i, j - i));
      i = j;
    } else {
      out.push_back(s.substr(i, 1));
      ++i;
    }
  }
  return out;
}

struct PunktTok {
  std::string tok, type;
  bool sentbreak = false, abbr = false, ellipsis = false;
  bool period_final() const { return !tok.empty() && tok.back() == '.'; }
  std::string type_no_period() const { return type.size() > 1 && type.back() == '.' ? type.substr(0, type.size() - 1) : type; }
  std::string type_no_sentperiod() const { return sentbreak ? type_no_period() : type; }
  bool first_upper() const { return is_upper(first_code_point(tok)); }
  bool first_lower() const { return is_lower(first_code_point(tok)); }
  bool is_ellipsis() const { return tok.size() >= 2 && tok.find_first_not_of('.') == std::string::npos; }
  bool is_initial() const {
    if (tok.size() < 2 || tok.back() != '.') return false;
    size_t len = code_point_len(static_cast<unsigned char>(tok[0]));
    return tok.size() == len + 1 && is_letter_like(first_code_point(tok));
  }
};

}  // namespace

struct PunktLite::Params {
  std::vector<std::string> abbrev, starters, collocations;  // sorted; collocations as "a\tb"

  bool is_abbrev(const std::string& t) const {
    if (sorted_contains(abbrev, t)) return true;
    size_t dash = t.rfind('-');
    return dash != std::string::npos && sorted_contains(abbrev, t.substr(dash + 1));
  }

  // Orthographic heuristic with no orthographic evidence: +1 True, 0 False, -1 "unknown".
  static int ortho(const PunktTok& t) {
    if (t.tok.size() == 1 && in_set(t.tok[0], ";:,.!?")) return 0;
    if (t.first_lower()) return 0;  // lower case and never seen with upper case
    return -1;
  }

  void annotate(std::vector<PunktTok>& toks) const {
    for (auto& t : toks) {  // first pass: type-based
      t.type = lower_ascii(t.tok);
      if (is_number_type(t.type)) t.type = "##number##";
      if (t.tok == "." || t.tok == "?" || t.tok == "!") {
        t.sentbreak = true;
      } else if (t.is_ellipsis()) {
        t.ellipsis = true;
      } else if (t.period_final() && !(t.tok.size() >= 2 && t.tok.compare(t.tok.size() - 2, 2, "..") == 0)) {
        if (is_abbrev(lower_ascii(t.tok.substr(0, t.tok.size() - 1))))
          t.abbr = true;
        else
          t.sentbreak = true;
      }
    }
    for (size_t i = 0; i + 1 < toks.size(); ++i) {  // second pass: token-based, on pairs
      PunktTok& a = toks[i];
      const PunktTok& b = toks[i + 1];
      if (!a.period_final()) continue;
      const std::string typ = a.type_no_period(), next_typ = b.type_no_sentperiod();
      const bool initial = a.is_initial();
      if (sorted_contains(collocations, typ + "\t" + next_typ)) {
        a.sentbreak = false;
        a.abbr = true;
        continue;
      }
      if ((a.abbr || a.ellipsis) && !initial) {
        if (ortho(b) == 1 || (b.first_upper() && sorted_contains(starters, next_typ))) {
          a.sentbreak = true;
          continue;
        }
      }
      if (initial || typ == "##number##") {
        int o = ortho(b);
        // The special initial rule also needs "never seen in lower case": true without evidence.
        if (o == 0 || (o == -1 && initial && b.first_upper())) {
          a.sentbreak = false;
          a.abbr = true;
        }
      }
    }
  }

  bool text_contains_sentbreak(const std::string& text) const {
    std::vector<PunktTok> toks;
    for (auto& w : punkt_words(text)) toks.push_back(PunktTok{w, ""});
    annotate(toks);
    for (size_t i = 0; i + 1 < toks.size(); ++i)
      if (toks[i].sentbreak) return true;
    return false;
  }
};

PunktLite::PunktLite(const std::string& dir) {
  auto p = std::make_shared<Params>();
  p->abbrev = sorted_unique(read_lines(dir + "/abbrev_types.txt"));
  p->starters = sorted_unique(read_lines(dir + "/sent_starters.txt"));
  for (const auto& l : read_lines(dir + "/collocations.tab")) {
    size_t tab = l.find('\t');
    if (tab != std::string::npos) p->collocations.push_back(trim(l.substr(0, tab)) + "\t" + trim(l.substr(tab + 1)));
  }
  p->collocations = sorted_unique(p->collocations);
  params_ = std::move(p);
}

std::vector<std::pair<size_t, size_t>> PunktLite::spans(const std::string& text) const {
  // Candidate ends: [.?!] followed by a non-word character or by whitespace and a token.
  struct Match {
    size_t start, end, next_tok;  // next_tok == npos: followed by punctuation
    std::string after;
  };
  std::vector<std::pair<Match, std::string>> contexts;
  {
    bool have_prev = false;
    Match prev{};
    size_t prev_slice_start = 0, prev_slice_stop = 0;
    auto last_ascii_ws = [&](size_t from, size_t to) -> size_t {  // _get_last_whitespace_index
      for (size_t i = to; i-- > from;)
        if (std::strchr(" \t\n\r\x0b\x0c", text[i]) && text[i] != '\0') return i - from;
      return 0;
    };
    for (size_t p = 0; p < text.size(); ++p) {
      char c = text[p];
      if (c != '.' && c != '?' && c != '!') continue;
      Match m{p, p + 1, std::string::npos, ""};
      if (p + 1 < text.size() && in_set(text[p + 1], kNonWord)) {
        m.after = text.substr(p + 1, 1);
      } else if (ws_at(text, p + 1)) {
        size_t j = p + 1;
        while (ws_at(text, j)) j += py_space_len(text, j);
        if (j >= text.size()) continue;
        size_t k = j;
        while (k < text.size() && !ws_at(text, k)) ++k;
        m.next_tok = j;
        m.after = text.substr(p + 1, k - p - 1);
      } else {
        continue;
      }
      size_t idx = last_ascii_ws(prev_slice_stop, p);
      size_t word_start = idx ? idx + prev_slice_stop + 1 : prev_slice_start;
      // A candidate whose word reaches back over the previous one supersedes it ("acting!!!").
      if (have_prev && prev_slice_stop <= word_start)
        contexts.emplace_back(prev, text.substr(prev_slice_start, prev_slice_stop - prev_slice_start) + text[prev.start] + prev.after);
      prev = m;
      have_prev = true;
      prev_slice_start = word_start;
      prev_slice_stop = p;
    }
    if (have_prev) {
      contexts.emplace_back(prev, text.substr(prev_slice_start, prev_slice_stop - prev_slice_start) + text[prev.start] + prev.after);
    }
  }

  // _slices_from_text
  std::vector<std::pair<size_t, size_t>> slices;
  size_t last_break = 0;
  for (const auto& [m, ctx] : contexts) {
    if (!params_->text_contains_sentbreak(ctx)) continue;
    slices.emplace_back(last_break, m.end);
    last_break = m.next_tok != std::string::npos ? m.next_tok : m.end;
  }
  size_t end = text.size();
  while (end > 0) {  // len(text.rstrip())
    size_t k = end - 1;
    while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
    if (py_space_len(text, k) != end - k) break;
    end = k;
  }
  slices.emplace_back(last_break, end);

  // _realign_boundaries: closing quotes/brackets after a break belong to the first sentence.
  std::vector<std::pair<size_t, size_t>> out;
  size_t realign = 0;
  for (size_t i = 0; i < slices.size(); ++i) {
    std::pair<size_t, size_t> s1{slices[i].first + realign, slices[i].second};
    if (i + 1 == slices.size()) {
      if (s1.second > s1.first) out.push_back(s1);
      continue;
    }
    const auto& s2 = slices[i + 1];
    // ["\')\]}]+?(?:\s+|(?=--)|$) at the start of sentence 2 (MULTILINE $).
    size_t k = 0, matched_end = std::string::npos;
    while (s2.first + k < s2.second && std::strchr("\"')]}", text[s2.first + k]) && text[s2.first + k] != '\0') {
      ++k;
      size_t at = s2.first + k;
      if (at < s2.second && ws_at(text, at)) {
        size_t j = at;
        while (j < s2.second && ws_at(text, j)) j += py_space_len(text, j);
        matched_end = j - s2.first;
      } else if (at + 1 < s2.second && text[at] == '-' && text[at + 1] == '-') {
        matched_end = k;
      } else if (at >= s2.second || text[at] == '\n') {
        matched_end = k;
      }
      if (matched_end != std::string::npos) break;
    }
    if (matched_end != std::string::npos) {
      out.emplace_back(s1.first, s2.first + k);
      realign = matched_end;
    } else {
      realign = 0;
      if (s1.second > s1.first) out.push_back(s1);
    }
  }
  return out;
}

std::vector<std::string> PunktLite::split(const std::string& text) const {
  std::vector<std::string> out;
  for (const auto& [b, e] : spans(text)) out.push_back(text.substr(b, e - b));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Generator

namespace {

struct Built {
  std::string context, question, answer_prefix;
  std::vector<std::string> refs;
  nlohmann::json meta = nlohmann::json::object();
};

// The essay's words, split further where Punkt ends a sentence inside a word (e.g. "p.
// 166.[10]"): RULER joins sentences with spaces, so such a split gains a space.
struct Essay {
  std::vector<std::string> pieces;
  std::vector<char> piece_break;      // a sentence ends after this piece
  std::vector<size_t> pieces_before;  // pieces_before[w]: pieces of words < w (size words + 1)
};

struct TaskConfig {
  std::string name, base;
  std::string context_template, question_template, answer_prefix, metric;
  int tokens_to_generate = 0;
  nlohmann::json args;
};

}  // namespace

struct RulerGenerator::Impl {
  RulerOptions opt;
  std::string root;  // <data_root>/ruler
  nlohmann::json templates;
  std::map<std::string, TaskConfig> configs;

  // Lazily loaded resources.
  std::vector<std::string> nouns, adjs, verbs, cwe_words, randle_words;
  bool words_loaded = false, randle_loaded = false;
  std::shared_ptr<const Essay> essay;
  std::map<std::string, std::string> icl_examples;  // VT in-context example per task

  explicit Impl(RulerOptions o) : opt(std::move(o)) {
    root = opt.data_root + "/ruler";
    const std::string path = root + "/templates.json";
    try {
      templates = nlohmann::json::parse(read_text(path));
    } catch (const nlohmann::json::exception& e) {
      fail("cannot parse ", path, " (got ", e.what(), ", expected RULER's templates as JSON); ", kHowToGetRuler);
    }
    check(opt.max_seq_length > 0, "RULER max_seq_length must be positive (got 0); pass the target length in tokens");
    check(opt.num_samples > 0, "RULER num_samples must be positive (got 0); pass how many samples to generate");
    try {
      load_configs();
    } catch (const nlohmann::json::exception& e) {
      fail("RULER templates ", path, " lack a field (got ", e.what(), ", expected tasks, base_tasks and the needle/noise "
           "formats of templates.json); ", kHowToGetRuler);
    }
  }

  void load_configs() {
    static const std::map<std::string, std::string> kQuestionMarker = {
        {"niah", "What "},
        {"variable_tracking", "Question:"},
        {"common_words_extraction", "Question:"},
        {"freq_words_extraction", "Question:"},
        {"qa", "Answer the question based on the given documents."}};
    for (const auto& key : {"niah_needle_format", "niah_noise_haystack", "niah_depths_percent"}) (void)templates.at(key);
    std::vector<std::string> names = ruler_tasks();
    for (const auto& q : ruler_qa_tasks())
      if (templates.at("tasks").contains(q)) names.push_back(q);
    for (const auto& name : names) {
      const auto& t = templates.at("tasks").at(name);
      TaskConfig c;
      c.name = name;
      c.base = t.at("task").get<std::string>();
      c.args = t.at("args");
      static const std::map<std::string, std::vector<const char*>> kArgs = {
          {"niah", {"type_haystack", "type_needle_k", "type_needle_v", "num_needle_k", "num_needle_v", "num_needle_q"}},
          {"variable_tracking", {"num_chains", "num_hops"}},
          {"common_words_extraction", {"freq_cw", "freq_ucw", "num_cw"}},
          {"freq_words_extraction", {"alpha"}},
          {"qa", {"dataset"}}};
      for (const char* arg : kArgs.at(c.base)) (void)c.args.at(arg);
      const auto& b = templates.at("base_tasks").at(c.base);
      std::string tmpl = b.at("template").get<std::string>();
      c.answer_prefix = b.at("answer_prefix").get<std::string>();
      c.metric = b.at("metric").get<std::string>();
      c.tokens_to_generate = b.at("tokens_to_generate").get<int>();
      // kvpress's split: the question starts at the last question marker after {context}.
      size_t ctx = tmpl.find("{context}");
      check(ctx != std::string::npos, "RULER template for ", name, " has no {context} (got \"", tmpl, "\"); ", kHowToGetRuler);
      size_t q = tmpl.rfind(kQuestionMarker.at(c.base));
      if (q == std::string::npos || q < ctx) q = tmpl.size();
      c.context_template = tmpl.substr(0, q);
      c.question_template = tmpl.substr(q);
      configs[name] = c;
    }
  }

  const TaskConfig& config(const std::string& task) const {
    if (task == "qa_1" && opt.squad_file.empty())
      fail("RULER qa_1 needs the SQuAD v2.0 dev file, which is not bundled; download dev-v2.0.json from "
           "https://rajpurkar.github.io/SQuAD-explorer/ and pass its path (judgeq-eval run --squad PATH)");
    if (task == "qa_2" && opt.hotpotqa_file.empty())
      fail("RULER qa_2 needs the HotpotQA dev distractor file, which is not bundled; download "
           "hotpot_dev_distractor_v1.json from https://hotpotqa.github.io/ and pass its path (judgeq-eval run --hotpotqa PATH)");
    auto it = configs.find(task);
    if (it != configs.end()) return it->second;
    fail("unknown RULER task (got \"", task, "\", expected one of ", join(ruler_tasks(), ", "), ", qa_1, qa_2)");
  }

  // ---- QA (qa_1: SQuAD v2 dev, answerable questions; qa_2: HotpotQA dev distractor) ----
  struct QaSet {
    std::vector<std::string> docs;  // every distinct paragraph, sorted
    struct Q {
      std::string query;
      std::vector<std::string> answers;
      std::vector<size_t> gold, more;  // gold paragraphs; other paragraphs of the same article
    };
    std::vector<Q> qs;
  };
  std::map<std::string, std::shared_ptr<const QaSet>> qa_sets;

  const QaSet& qa_set(const TaskConfig& c) {
    const std::string dataset = c.args.at("dataset").get<std::string>();
    auto it = qa_sets.find(dataset);
    if (it != qa_sets.end()) return *it->second;
    const bool squad = dataset == "squad";
    check(squad || dataset == "hotpotqa", "RULER ", c.name, " has an unknown QA dataset (got ", dataset, ", expected squad or hotpotqa)");
    const std::string path = squad ? opt.squad_file : opt.hotpotqa_file;
    const std::string what = squad ? "SQuAD v2.0 dev (dev-v2.0.json)" : "HotpotQA dev distractor (hotpot_dev_distractor_v1.json)";
    check(std::filesystem::is_regular_file(path), "RULER ", c.name, " data file not found (got '", path, "', expected ", what, ")");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text(path));
    } catch (const nlohmann::json::exception& e) {
      fail("cannot parse ", path, " (got ", e.what(), ", expected ", what, " as JSON)");
    }
    auto set = std::make_shared<QaSet>();
    try {
      // Paragraph texts per question first, then one sorted pool of distinct paragraphs.
      std::vector<std::vector<std::string>> gold_txt, more_txt;
      std::set<std::string> pool;
      if (squad) {
        for (const auto& art : j.at("data")) {
          std::vector<std::string> paras;
          for (const auto& p : art.at("paragraphs")) paras.push_back(p.at("context").get<std::string>());
          pool.insert(paras.begin(), paras.end());
          for (const auto& p : art.at("paragraphs")) {
            const std::string ctx = p.at("context").get<std::string>();
            for (const auto& qa : p.at("qas")) {
              if (qa.value("is_impossible", false)) continue;
              QaSet::Q q;
              q.query = qa.at("question").get<std::string>();
              for (const auto& a : qa.at("answers")) q.answers.push_back(a.at("text").get<std::string>());
              if (q.answers.empty()) continue;
              set->qs.push_back(q);
              gold_txt.push_back({ctx});
              std::vector<std::string> more;
              for (const auto& o : paras)
                if (o != ctx) more.push_back(o);
              more_txt.push_back(more);
            }
          }
        }
      } else {
        for (const auto& d : j) {
          QaSet::Q q;
          q.query = d.at("question").get<std::string>();
          q.answers = {d.at("answer").get<std::string>()};
          std::vector<std::string> paras;
          for (const auto& tp : d.at("context")) {
            std::string text = tp.at(0).get<std::string>() + "\n";
            for (const auto& sent : tp.at(1)) text += sent.get<std::string>();
            paras.push_back(text);
          }
          pool.insert(paras.begin(), paras.end());
          set->qs.push_back(q);
          gold_txt.push_back(paras);
          more_txt.push_back({});
        }
      }
      set->docs.assign(pool.begin(), pool.end());
      auto index_of = [&](const std::string& t) {
        return size_t(std::lower_bound(set->docs.begin(), set->docs.end(), t) - set->docs.begin());
      };
      for (size_t i = 0; i < set->qs.size(); ++i) {
        for (const auto& t : gold_txt[i]) set->qs[i].gold.push_back(index_of(t));
        for (const auto& t : more_txt[i]) set->qs[i].more.push_back(index_of(t));
      }
    } catch (const nlohmann::json::exception& e) {
      fail(path, " is not ", what, " (got ", e.what(), "); pass the original file");
    }
    check(!set->qs.empty(), "no answerable questions in ", path, " (expected ", what, ")");
    qa_sets[dataset] = set;
    return *set;
  }

  // Question `index` (cycling over the file) with its gold paragraphs, then (SQuAD) other
  // paragraphs of its article, then random others, n documents in all, shuffled.
  Built build_qa(const TaskConfig& c, size_t n, size_t index, Rng& rng) {
    const QaSet& set = qa_set(c);
    const auto& q = set.qs[index % set.qs.size()];
    std::vector<size_t> chosen = q.gold;
    if (n > chosen.size()) {
      const size_t want_more = n - chosen.size();
      if (want_more <= q.more.size()) {
        for (size_t k : rng.sample(q.more.size(), want_more)) chosen.push_back(q.more[k]);
      } else {
        chosen.insert(chosen.end(), q.more.begin(), q.more.end());
        std::set<size_t> used(chosen.begin(), chosen.end());
        std::vector<size_t> others;
        for (size_t d = 0; d < set.docs.size(); ++d)
          if (!used.count(d)) others.push_back(d);
        const size_t extra = std::min(others.size(), n - chosen.size());
        for (size_t k : rng.sample(others.size(), extra)) chosen.push_back(others[k]);
      }
    }
    rng.shuffle(chosen);
    const std::string fmt = templates.at("qa_document_format").get<std::string>();
    std::vector<std::string> parts;
    for (size_t i = 0; i < chosen.size(); ++i)
      parts.push_back(format(fmt, {{"i", std::to_string(i + 1)}, {"document", set.docs[chosen[i]]}}));
    std::map<std::string, std::string> vals = {{"context", join(parts, "\n\n")}, {"query", q.query}};
    Built b;
    b.context = format(c.context_template, vals);
    b.question = format(c.question_template, vals);
    b.answer_prefix = format(c.answer_prefix, vals);
    b.refs = q.answers;
    b.meta["question_index"] = index % set.qs.size();
    b.meta["documents"] = chosen.size();
    return b;
  }

  size_t budget(const TaskConfig& c) const {
    size_t reserved = size_t(c.tokens_to_generate) + opt.template_tokens;
    check(opt.max_seq_length > reserved, "RULER max_seq_length too small for ", c.name, " (got ", opt.max_seq_length,
          ", expected > ", reserved, " = tokens_to_generate + template_tokens); raise max_seq_length");
    return opt.max_seq_length - reserved;
  }

  void load_words() {
    if (words_loaded) return;
    const std::string d = root + "/wonderwords-2.2.0/";
    nouns = sorted_unique(read_lines(d + "nounlist.txt"));
    adjs = sorted_unique(read_lines(d + "adjectivelist.txt"));
    verbs = sorted_unique(read_lines(d + "verblist.txt"));
    std::vector<std::string> all = nouns;
    all.insert(all.end(), adjs.begin(), adjs.end());
    all.insert(all.end(), verbs.begin(), verbs.end());
    cwe_words = sorted_unique(all);
    words_loaded = true;
  }

  void load_randle_words() {
    if (randle_loaded) return;
    randle_loaded = true;
    const std::string path = root + "/english_words.json";
    if (!fs::exists(path)) return;
    auto j = nlohmann::json::parse(read_text(path));
    for (auto& [k, v] : j.items()) randle_words.push_back(v.get<std::string>());
  }

  void load_essay() {
    if (essay) return;
    // Splitting 3 MB into sentences takes a while: share the result across generators.
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<const Essay>> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto& slot = cache[root];
    if (!slot) slot = std::make_shared<const Essay>(read_essay());
    essay = slot;
  }

  Essay read_essay() const {
    const std::string path = root + "/PaulGrahamEssays.json";
    std::string text;
    try {
      text = nlohmann::json::parse(read_text(path)).at("text").get<std::string>();
    } catch (const nlohmann::json::exception& e) {
      fail("cannot read the essay haystack ", path, " (got ", e.what(), ", expected {\"text\": ...}); ", kHowToGetRuler);
    }
    const std::vector<std::string> words = split_py_whitespace(text);  // re.sub(r"\s+", " ", essay).split(" ")
    check(!words.empty(), "essay haystack ", path, " is empty (got 0 words); ", kHowToGetRuler);
    // Split once, with the first word appended: the haystack repeats the essays when short.
    std::string joined = join(words, " ") + " " + words[0];
    const auto spans = PunktLite(root + "/punkt_tab_english_partial").spans(joined);
    std::vector<size_t> ends;  // sentence end offsets
    for (size_t i = 0; i + 1 < spans.size(); ++i) ends.push_back(spans[i].second);
    std::sort(ends.begin(), ends.end());
    Essay out;
    size_t e = 0, pos = 0;
    out.pieces_before.push_back(0);
    for (const auto& w : words) {
      const size_t w_end = pos + w.size();
      size_t from = pos;
      while (e < ends.size() && ends[e] <= pos) ++e;
      while (e < ends.size() && ends[e] < w_end) {
        out.pieces.push_back(joined.substr(from, ends[e] - from));
        out.piece_break.push_back(1);
        from = ends[e++];
      }
      out.pieces.push_back(joined.substr(from, w_end - from));
      out.piece_break.push_back(e < ends.size() && ends[e] == w_end);
      out.pieces_before.push_back(out.pieces.size());
      pos = w_end + 1;
    }
    return out;
  }

  // ---- key / value generators ----
  std::string random_value(const std::string& type, Rng& rng) {
    if (type == "numbers") return std::to_string(rng.randint(1000000, 9999999));
    if (type == "words") {
      load_words();
      return adjs[rng.below(adjs.size())] + "-" + nouns[rng.below(nouns.size())];
    }
    if (type == "uuids") {
      // uuid.UUID(int=getrandbits(128), version=4)
      uint64_t hi = rng.bits64(), lo = rng.bits64();
      hi = (hi & ~0xF000ull) | 0x4000ull;
      lo = (lo & ~(0xC000ull << 48)) | (0x8000ull << 48);
      char buf[40];
      std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx", unsigned(hi >> 32), unsigned((hi >> 16) & 0xFFFF),
                    unsigned(hi & 0xFFFF), unsigned(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFull));
      return buf;
    }
    fail("unknown RULER needle type (got \"", type, "\", expected numbers, words or uuids); check templates.json");
  }

  // ---- task builders: (haystack size, rng) -> text parts ----

  Built build_niah(const TaskConfig& c, size_t n, Rng& rng) {
    const auto& a = c.args;
    const std::string haystack = a.at("type_haystack"), type_k = a.at("type_needle_k"), type_v = a.at("type_needle_v");
    const size_t n_q = a.at("num_needle_q"), n_v = a.at("num_needle_v");
    const size_t n_k = std::max<size_t>(a.at("num_needle_k").get<size_t>(), n_q);
    const std::string needle_fmt = templates.at("niah_needle_format");

    std::vector<std::string> keys, needles;
    std::vector<std::vector<std::string>> values;
    for (size_t i = 0; i < n_k; ++i) {
      keys.push_back(random_value(type_k, rng));
      values.emplace_back();
      for (size_t j = 0; j < n_v; ++j) {
        values.back().push_back(random_value(type_v, rng));
        needles.push_back(format(needle_fmt, {{"type_needle_v", type_v}, {"key", keys.back()}, {"value", values.back().back()}}));
      }
    }
    rng.shuffle(needles);

    Built b;
    std::string context;
    if (haystack == "essay") {
      load_essay();
      const auto& essay_pieces = essay->pieces;
      const auto& piece_break = essay->piece_break;
      const size_t W = essay->pieces_before.size() - 1, P = essay_pieces.size();
      const size_t n_pieces = (n / W) * P + essay->pieces_before[n % W];
      std::vector<size_t> starts{0};  // piece index where each sentence starts
      for (size_t k = 0; k + 1 < n_pieces; ++k)
        if (piece_break[k % P]) starts.push_back(k + 1);
      const size_t n_sent = starts.size();
      auto segment = [&](size_t s0, size_t s1) {
        std::string out;
        size_t k0 = s0 < n_sent ? starts[s0] : n_pieces, k1 = s1 < n_sent ? starts[s1] : n_pieces;
        for (size_t k = k0; k < k1; ++k) {
          if (k > k0) out += ' ';
          out += essay_pieces[k % P];
        }
        return out;
      };
      const auto& depths = templates.at("niah_depths_percent");
      std::vector<size_t> pos;
      std::vector<int> used_depths;
      for (size_t i : rng.sample(depths.size(), needles.size())) {
        int d = depths[i].get<int>();
        used_depths.push_back(d);
        pos.push_back(size_t(double(n_sent) * (d / 100.0)));
      }
      std::sort(pos.begin(), pos.end());
      pos.insert(pos.begin(), 0);
      pos.push_back(n_sent);
      std::vector<std::string> parts;
      for (size_t i = 1; i < pos.size(); ++i) {
        parts.push_back(segment(pos[i - 1], pos[i]));
        if (i - 1 < needles.size()) parts.push_back(needles[i - 1]);
      }
      context = join(parts, " ");
      b.meta["n_sentences"] = n_sent;
      b.meta["depths"] = used_depths;
    } else if (haystack == "noise" || haystack == "needle") {
      std::vector<std::string> lines;
      lines.reserve(n + needles.size());
      const std::string noise = templates.at("niah_noise_haystack");
      for (size_t i = 0; i < n; ++i)
        lines.push_back(haystack == "noise" ? noise
                                            : format(needle_fmt, {{"type_needle_v", type_v},
                                                                  {"key", random_value(type_k, rng)},
                                                                  {"value", random_value(type_v, rng)}}));
      auto idx = rng.sample(n, needles.size());
      std::sort(idx.rbegin(), idx.rend());
      for (size_t i = 0; i < idx.size(); ++i) lines.insert(lines.begin() + long(idx[i]), needles[i]);
      context = join(lines, "\n");
    } else {
      fail("unknown RULER haystack (got \"", haystack, "\", expected essay, noise or needle); check templates.json");
    }

    std::vector<std::string> queries;
    for (size_t i : rng.sample(n_k, n_q)) {
      queries.push_back(keys[i]);
      b.refs.insert(b.refs.end(), values[i].begin(), values[i].end());
    }
    std::string query = queries.size() == 1
                            ? queries[0]
                            : join(std::vector<std::string>(queries.begin(), queries.end() - 1), ", ") + ", and " + queries.back();

    std::string ctx_t = c.context_template, q_t = c.question_template, ap_t = c.answer_prefix, type_shown = type_v;
    if (n_q * n_v == 1) {  // RULER's singular rewrite of the whole template
      for (auto* s : {&ctx_t, &q_t, &ap_t}) {
        *s = replace_all(*s, "Some", "A");
        *s = replace_all(*s, "are all", "is");
        *s = replace_all(*s, "are", "is");
        *s = replace_all(*s, "answers", "answer");
      }
      type_shown = type_v.substr(0, type_v.size() - 1);
    }
    std::map<std::string, std::string> vals = {{"type_needle_v", type_shown}, {"context", context}, {"query", query}};
    b.context = format(ctx_t, vals);
    b.question = format(q_t, vals);
    b.answer_prefix = format(ap_t, vals);
    b.meta["type_haystack"] = haystack;
    return b;
  }

  // VT: chains of `VAR X = ...` statements in the noise haystack.
  Built build_vt(const TaskConfig& c, size_t n, Rng& rng, bool icl) {
    const size_t n_chains = c.args.at("num_chains");
    const size_t hops = icl ? std::min<size_t>(10, c.args.at("num_hops").get<size_t>()) : c.args.at("num_hops").get<size_t>();
    const size_t k = icl ? 3 : 5;
    std::vector<std::string> vars;
    std::set<std::string> seen;
    while (vars.size() < n_chains * (hops + 1)) {  // RULER would crash on a duplicate; redraw instead
      std::string v = rng.letters(k, 'A');
      if (seen.insert(v).second) vars.push_back(v);
    }
    std::vector<std::vector<std::string>> chains;
    for (size_t ch = 0; ch < n_chains; ++ch) {
      const std::string* v = &vars[ch * (hops + 1)];
      std::vector<std::string> chain{"VAR " + v[0] + " = " + (icl ? std::string("12345") : std::to_string(rng.randint(10000, 99998)))};
      for (size_t j = 0; j < hops; ++j) chain.push_back("VAR " + v[j + 1] + " = VAR " + v[j] + " ");
      chains.push_back(chain);
    }
    const std::string value = chains[0][0].substr(chains[0][0].rfind('=') + 2);

    std::vector<std::string> lines(n, templates.at("niah_noise_haystack").get<std::string>());
    for (const auto& chain : chains) {
      auto pos = rng.sample(lines.size(), chain.size());
      std::sort(pos.begin(), pos.end());
      for (size_t j = 0; j < chain.size(); ++j) lines.insert(lines.begin() + long(pos[j] + j), chain[j]);
    }
    std::string context = replace_all(join(lines, "\n"), ". \n", ".\n");

    Built b;
    std::map<std::string, std::string> vals = {{"context", context}, {"query", value}, {"num_v", std::to_string(hops + 1)}};
    b.context = format(c.context_template, vals);
    b.question = format(c.question_template, vals);
    b.answer_prefix = format(c.answer_prefix, vals);
    b.refs.assign(vars.begin(), vars.begin() + long(hops + 1));
    return b;
  }

  // RULER's randomize_icl: fresh names (same length) and value for the example's chain.
  std::string randomize_icl(std::string icl, size_t hops, Rng& rng) {
    const std::vector<std::string> toks = split_py_whitespace(icl);
    size_t first = toks.size() > hops + 1 ? toks.size() - (hops + 1) : 0;
    for (size_t i = first; i < toks.size(); ++i) icl = replace_all(icl, toks[i], rng.letters(toks[i].size(), 'A'));
    return replace_all(icl, "12345", std::to_string(rng.randint(10000, 99998)));
  }

  const std::string& vt_icl(const TaskConfig& c, const TokenCounter& count) {
    auto it = icl_examples.find(c.name);
    if (it != icl_examples.end()) return it->second;
    // One example at 500 tokens (no generation budget), 3-letter names and value 12345.
    check(500 > opt.template_tokens, "template_tokens too large for RULER's VT example (got ", opt.template_tokens,
          ", expected < 500); pass the chat template's token count");
    const size_t icl_budget = 500 - opt.template_tokens;
    const size_t hops = std::min<size_t>(10, c.args.at("num_hops").get<size_t>());
    auto build = [&](size_t n, Rng& rng) { return build_vt(c, n, rng, true); };
    size_t n = search(c, build, hops + 1, SIZE_MAX / 4, 5, icl_budget, count, kIclIndex);
    Rng rng(opt.seed, c.name, kIclIndex);
    Built b = build(n, rng);
    std::string text = b.context + b.question + b.answer_prefix + " " + join(b.refs, " ") + "\n";
    return icl_examples[c.name] = text;
  }

  Built build_cwe(const TaskConfig& c, size_t n, Rng& rng) {
    load_words();
    const size_t num_cw = c.args.at("num_cw");
    const bool small = opt.max_seq_length < 4096;
    auto example = [&](size_t num_words, size_t common_reps, size_t uncommon_reps) {
      const auto* pool = &cwe_words;
      if (num_words > cwe_words.size()) {
        load_randle_words();
        check(num_words <= randle_words.size(), "RULER cwe needs ", num_words, " distinct words (got ", cwe_words.size(),
              " wonderwords and ", randle_words.size(), " english_words.json words); put RULER's "
              "scripts/data/synthetic/json/english_words.json (git LFS) at ", root, "/english_words.json or lower max_seq_length");
        pool = &randle_words;
      }
      std::vector<std::string> chosen;
      for (size_t i : rng.sample(pool->size(), num_words)) chosen.push_back((*pool)[i]);
      std::vector<std::string> common(chosen.begin(), chosen.begin() + long(std::min(num_cw, chosen.size())));
      std::vector<std::string> list;
      for (size_t r = 0; r < common_reps; ++r) list.insert(list.end(), common.begin(), common.end());
      for (size_t r = 0; r < uncommon_reps; ++r) list.insert(list.end(), chosen.begin() + long(common.size()), chosen.end());
      rng.shuffle(list);
      std::string text;
      for (size_t i = 0; i < list.size(); ++i) text += (i ? " " : "") + std::to_string(i + 1) + ". " + list[i];
      return std::make_pair(text, common);
    };
    auto numbered = [](const std::vector<std::string>& words) {
      std::string s;
      for (size_t i = 0; i < words.size(); ++i) s += (i ? " " : "") + std::to_string(i + 1) + ". " + words[i];
      return s;
    };
    auto [ex_text, ex_common] = small ? example(20, 3, 1) : example(40, 10, 3);
    auto [text, common] = small ? example(n, 6, 1)
                                : example(n, c.args.at("freq_cw").get<size_t>(), c.args.at("freq_ucw").get<size_t>());
    std::map<std::string, std::string> ex_vals = {{"context", ex_text}, {"query", ""}, {"num_cw", std::to_string(num_cw)}};
    std::string few_shot = format(c.context_template + c.question_template + c.answer_prefix, ex_vals) + " " + numbered(ex_common);
    std::map<std::string, std::string> vals = {{"context", text}, {"query", ""}, {"num_cw", std::to_string(num_cw)}};
    Built b;
    b.context = few_shot + "\n" + format(c.context_template, vals);
    b.question = format(c.question_template, vals);
    b.answer_prefix = format(c.answer_prefix, vals);
    b.refs = common;
    return b;
  }

  size_t fwe_vocab_size(const TaskConfig& c) const { return budget(c) / 50; }

  static double zeta(double a) {
    if (a == 2.0) return 1.6449340668482264;
    // Partial sum plus the Euler-Maclaurin tail.
    const int K = 100000;
    double s = 0;
    for (int k = K; k >= 1; --k) s += std::pow(double(k), -a);
    return s + std::pow(double(K), 1 - a) / (a - 1) - 0.5 * std::pow(double(K), -a);
  }

  Built build_fwe(const TaskConfig& c, size_t n, Rng& rng) {
    const double alpha = c.args.at("alpha");
    const size_t vocab_size = fwe_vocab_size(c);
    check(vocab_size >= 4, "RULER fwe needs a vocabulary of >= 4 coded words (got ", vocab_size,
          " = budget/50); raise max_seq_length");
    std::set<std::string> seen;
    std::vector<std::string> vocab;
    while (vocab.size() < vocab_size) {
      std::string w = rng.letters(6, 'a');
      if (seen.insert(w).second) vocab.push_back(w);
    }
    vocab[0] = "...";  // the top rank is noise
    const double z = zeta(alpha);
    std::vector<std::string> words;
    for (size_t k = 1; k <= vocab.size(); ++k) {
      size_t reps = size_t(double(n) * std::pow(double(k), -alpha) / z);
      words.insert(words.end(), reps, vocab[k - 1]);
    }
    rng.shuffle(words);
    std::map<std::string, std::string> vals = {{"context", join(words, " ")}, {"query", ""}};
    Built b;
    b.context = format(c.context_template, vals);
    b.question = format(c.question_template, vals);
    b.answer_prefix = format(c.answer_prefix, vals);
    b.refs.assign(vocab.begin() + 1, vocab.begin() + 4);
    return b;
  }

  // ---- sizes ----

  struct Range {
    size_t min, max, probe;
  };
  Range size_range(const TaskConfig& c) {
    if (c.base == "niah") {
      const auto& a = c.args;
      size_t n_needles = std::max(a.at("num_needle_k").get<size_t>(), a.at("num_needle_q").get<size_t>()) *
                         a.at("num_needle_v").get<size_t>();
      if (a.at("type_haystack") == "essay") return {1, SIZE_MAX / 4, 500};
      return {n_needles, SIZE_MAX / 4, 25};
    }
    if (c.base == "variable_tracking") return {c.args.at("num_hops").get<size_t>() + 1, SIZE_MAX / 4, 10};
    if (c.base == "common_words_extraction") {
      load_words();
      load_randle_words();
      return {c.args.at("num_cw").get<size_t>(), std::max(cwe_words.size(), randle_words.size()),
              std::min<size_t>(500, cwe_words.size())};
    }
    if (c.base == "qa") return {1, qa_set(c).docs.size(), 20};
    // fwe: the smallest count that gives ranks 2-4 at least one occurrence each.
    const double alpha = c.args.at("alpha"), z = zeta(alpha);
    size_t lo = 1;
    while (size_t(double(lo) * std::pow(4.0, -alpha) / z) < 1) ++lo;
    return {lo, SIZE_MAX / 4, 1000};
  }

  Built build(const TaskConfig& c, size_t n, Rng& rng, const TokenCounter& count, size_t index = 0) {
    if (c.base == "qa") return build_qa(c, n, index, rng);
    if (c.base == "niah") return build_niah(c, n, rng);
    if (c.base == "common_words_extraction") return build_cwe(c, n, rng);
    if (c.base == "freq_words_extraction") return build_fwe(c, n, rng);
    if (c.base == "variable_tracking") {
      std::string icl = vt_icl(c, count);
      Built b = build_vt(c, n, rng, false);
      const size_t hops = std::min<size_t>(10, c.args.at("num_hops").get<size_t>());
      b.context = randomize_icl(icl, hops, rng) + "\n" + b.context;
      return b;
    }
    fail("RULER task ", c.name, " has an unsupported base task (got ", c.base, ")");
  }

  static size_t tokens(const Built& b, const TokenCounter& count) {
    return count(b.context + b.question + b.answer_prefix);
  }

  // Largest size whose probe sample fits the budget (the probe stream is fixed per task).
  template <typename BuildFn>
  size_t search(const TaskConfig& c, BuildFn build_fn, size_t min_n, size_t max_n, size_t probe_n, size_t budget_tokens,
                const TokenCounter& count, uint64_t stream) {
    auto length_at = [&](size_t n) {
      Rng rng(opt.seed, c.name, stream);
      return tokens(build_fn(n, rng), count);
    };
    size_t at_min = length_at(min_n);
    check(at_min <= budget_tokens, "RULER ", c.name, " does not fit (got ", at_min, " prompt tokens at the smallest haystack, expected <= ",
          budget_tokens, "); raise max_seq_length");
    probe_n = std::clamp(probe_n, min_n, max_n);
    double per_unit = double(std::max<size_t>(length_at(probe_n), 1)) / double(probe_n);
    size_t lo = min_n;
    size_t hi = std::clamp(size_t(1.2 * double(budget_tokens) / per_unit) + 1, lo + 1, max_n);
    if (lo >= max_n) return lo;
    while (true) {  // grow until hi does not fit
      if (length_at(hi) > budget_tokens) break;
      lo = hi;
      if (hi >= max_n) return max_n;
      hi = std::min(max_n, hi * 2);
    }
    while (hi - lo > 1) {
      size_t mid = lo + (hi - lo) / 2;
      (length_at(mid) <= budget_tokens ? lo : hi) = mid;
    }
    return lo;
  }

  size_t haystack_size(const TaskConfig& c, const TokenCounter& count) {
    Range r = size_range(c);
    auto fn = [&](size_t n, Rng& rng) { return build(c, n, rng, count); };
    size_t n = search(c, fn, r.min, r.max, r.probe, budget(c), count, kProbeIndex);
    if (c.base == "common_words_extraction" && n == r.max && n == cwe_words.size() && randle_words.empty()) {
      fail("RULER cwe at ", opt.max_seq_length, " tokens needs more than ", n, " distinct words (got only the wonderwords lists); put RULER's "
           "scripts/data/synthetic/json/english_words.json (git LFS) at ", root, "/english_words.json or lower max_seq_length");
    }
    return n;
  }

  BenchSample make_sample(const TaskConfig& c, size_t index, size_t n, const Built& b, size_t prompt_tokens) {
    BenchSample s;
    s.bench = "ruler";
    s.task = c.name;
    s.id = c.name + "-" + std::to_string(index);
    s.context = b.context;
    s.question = b.question;
    s.answer_prefix = b.answer_prefix;
    s.references = b.refs;
    s.max_new_tokens = c.tokens_to_generate;
    s.metric = c.metric;
    s.use_chat_template = true;
    s.meta = b.meta;
    s.meta["index"] = index;
    s.meta["seed"] = opt.seed;
    s.meta["max_seq_length"] = opt.max_seq_length;
    s.meta["haystack_size"] = n;
    s.meta["prompt_tokens"] = prompt_tokens;
    s.meta["length"] = prompt_tokens + size_t(c.tokens_to_generate) + opt.template_tokens;
    s.meta["template_tokens"] = opt.template_tokens;
    // Where the first answer sits, as a fraction of the prompt's characters.
    if (!b.refs.empty()) {
      std::string prompt = b.context + b.question;
      size_t pos = prompt.find(b.refs[0]);
      if (pos != std::string::npos) s.meta["answer_position"] = double(pos) / double(prompt.size());
    }
    return s;
  }
};

const std::vector<std::string>& ruler_qa_tasks() {
  static const std::vector<std::string> kTasks = {"qa_1", "qa_2"};
  return kTasks;
}

const std::vector<std::string>& ruler_tasks() {
  static const std::vector<std::string> kTasks = {
      "niah_single_1",   "niah_single_2",   "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
      "niah_multivalue", "niah_multiquery", "vt",            "cwe",             "fwe"};
  return kTasks;
}

RulerGenerator::RulerGenerator(RulerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
RulerGenerator::~RulerGenerator() = default;
RulerGenerator::RulerGenerator(RulerGenerator&&) noexcept = default;
RulerGenerator& RulerGenerator::operator=(RulerGenerator&&) noexcept = default;

const RulerOptions& RulerGenerator::options() const { return impl_->opt; }

size_t RulerGenerator::haystack_size(const std::string& task, const TokenCounter& count) {
  return impl_->haystack_size(impl_->config(task), count);
}

BenchSample RulerGenerator::sample(const std::string& task, size_t index, size_t haystack_size, const TokenCounter& count) {
  const auto& c = impl_->config(task);
  Rng rng(impl_->opt.seed, c.name, index);
  Built b = impl_->build(c, haystack_size, rng, count, index);
  return impl_->make_sample(c, index, haystack_size, b, Impl::tokens(b, count));
}

std::vector<BenchSample> RulerGenerator::generate(const std::string& task, const TokenCounter& count) {
  const auto& c = impl_->config(task);
  const size_t n0 = impl_->haystack_size(c, count);
  const size_t budget = impl_->budget(c);
  const auto range = impl_->size_range(c);
  const size_t step = std::max<size_t>(1, n0 / 200);
  const size_t slack = std::max<size_t>(1, budget / 100);  // aim for [budget - 1%, budget]
  std::vector<BenchSample> out;
  out.reserve(impl_->opt.num_samples);
  for (size_t i = 0; i < impl_->opt.num_samples; ++i) {
    uint64_t redraw = 0;  // > 0: an earlier draw did not fit at the smallest size
    auto attempt = [&](size_t n, Built& b) {
      // The sample's content depends only on (seed, task, i, n) and, for a redrawn sample, the redraw.
      Rng rng(impl_->opt.seed, c.name, i + (redraw << 40));
      b = impl_->build(c, n, rng, count, i);
      return Impl::tokens(b, count);
    };
    size_t n = n0;
    Built b;
    size_t t = attempt(n, b);
    // Random content (needle lengths, FWE's coded words) moves a sample's length away from the
    // probe's: correct proportionally a few times, then step down until it fits.
    for (int iter = 0; iter < 4 && (t > budget || t + slack < budget); ++iter) {
      const double per_unit = double(std::max<size_t>(t, 1)) / double(n);
      const double want = double(n) + (double(budget) - double(slack) / 2 - double(t)) / per_unit;
      size_t next = size_t(std::clamp(want, double(range.min), double(range.max)));
      if (next == n) next = t > budget ? n - std::min(n - range.min, size_t(1)) : std::min(range.max, n + 1);
      if (next == n) break;
      n = next;
      t = attempt(n, b);
    }
    while (t > budget) {
      if (n == range.min) {
        // Random content (e.g. CWE's words, long in a small vocabulary's tokens) can overflow even at
        // the smallest size: draw the sample again, deterministically, a few times before giving up.
        check(redraw < kMaxRedraws, "RULER ", task, " sample ", i, " does not fit (got ", t,
              " prompt tokens at the smallest haystack after ", redraw + 1, " draws, expected <= ", budget,
              "); raise max_seq_length");
        ++redraw;
        n = n0;
      } else {
        n = n > range.min + step ? n - step : range.min;
      }
      t = attempt(n, b);
    }
    out.push_back(impl_->make_sample(c, i, n, b, t));
  }
  return out;
}

std::vector<BenchSample> generate_ruler(const std::string& task, const RulerOptions& options, const TokenCounter& count) {
  return RulerGenerator(options).generate(task, count);
}

}  // namespace judgeq
