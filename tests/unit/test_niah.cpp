// NIAH haystack/needle placement, with a byte-level fake tokenizer and (where it loads) Llama-3.
#include <gtest/gtest.h>

#include <memory>

#include "data/niah.h"
#include "eval/metrics.h"
#include "model/tokenizer.h"
#include "util/error.h"

#include "byte_tokenizer.h"
#include "common.h"

namespace judgeq {
namespace {

using test::ByteTokenizer;


NiahOptions options() {
  NiahOptions o;
  o.data_root = test::shared_data();
  o.lengths = {1000, 3000};
  o.depths = {0, 25, 50, 100};
  return o;
}

std::string haystack_of(const BenchSample& s) {
  const std::string open = "<book> ", close = " </book>.\n";
  size_t b = s.context.find(open) + open.size();
  return s.context.substr(b, s.context.size() - close.size() - b);
}

TEST(NiahHaystack, SortedEssaysWithUnixNewlines) {
  const std::string text = niah_haystack_text(test::shared_data());
  EXPECT_GT(text.size(), 600000u);
  EXPECT_EQ(text.find('\r'), std::string::npos);
  // addiction.txt sorts first.
  EXPECT_EQ(text.rfind("July 2010", 0), 0u) << text.substr(0, 40);
  EXPECT_THROW(niah_haystack_text("/nonexistent"), Error);
}

TEST(NiahGrid, HelpersRoundLikeNumpy) {
  EXPECT_EQ(niah_depths(10), (std::vector<double>{0, 11, 22, 33, 44, 56, 67, 78, 89, 100}));
  EXPECT_EQ(niah_depths(1), (std::vector<double>{0}));
  EXPECT_EQ(niah_lengths(1000, 8000, 8), (std::vector<size_t>{1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000}));
  EXPECT_EQ(niah_lengths(1000, 2000, 3), (std::vector<size_t>{1000, 1500, 2000}));
}

TEST(NiahFake, NeedleAtDepthAndLengthWithinBudget) {
  ByteTokenizer tok;
  const NiahOptions o = options();
  const auto samples = generate_niah(o, tok);
  ASSERT_EQ(samples.size(), o.lengths.size() * o.depths.size());
  const std::string needle = kNiahNeedle;
  for (const auto& s : samples) {
    const size_t len = s.meta["length"].get<size_t>();
    const double depth = s.meta["depth"].get<double>();
    EXPECT_EQ(s.bench, "niah");
    EXPECT_EQ(s.metric, "niah_rouge1");
    EXPECT_FALSE(s.use_chat_template);
    EXPECT_EQ(s.max_new_tokens, 50);
    EXPECT_EQ(s.references, std::vector<std::string>{needle});
    EXPECT_EQ(s.question, " Based on the content of the book, Question: What is the best thing to do in San Francisco?\nAnswer:");
    EXPECT_EQ(s.context.rfind("<|im_start|> This is a very long story book: <book> ", 0), 0u);
    const std::string hay = haystack_of(s);
    // Budget: exactly length - buffer tokens (bytes here).
    EXPECT_EQ(hay.size(), len - o.buffer) << s.id;
    EXPECT_EQ(s.meta["context_tokens"].get<size_t>(), len - o.buffer);
    const size_t at = hay.find(needle);
    ASSERT_NE(at, std::string::npos) << s.id;
    const double frac = double(at) / double(hay.size() - needle.size());
    if (depth == 0) {
      EXPECT_EQ(at, 0u);
    }
    if (depth == 100) {
      EXPECT_EQ(at + needle.size(), hay.size());
    }
    if (depth > 0 && depth < 100) {
      EXPECT_EQ(hay[at - 1], '.') << "backs off to a sentence end";
      const size_t target_at = size_t(double(hay.size() - needle.size()) * depth / 100.0);
      EXPECT_LE(at, target_at);
      EXPECT_LT(target_at - at, 400u) << s.id << " backed off over more than a sentence";
      EXPECT_LE(frac, depth / 100.0 + 1e-9);
    }
    EXPECT_EQ(s.meta["contains_ref"].get<std::string>(), kNiahAnswer);
  }
  // The prediction that repeats the needle scores 10 on the PyramidKV scale.
  EXPECT_DOUBLE_EQ(metrics::score(samples[0].metric, "The best thing to do in San Francisco is eat a sandwich and sit in "
                                  "Dolores Park on a sunny day.", samples[0].references), 10.0);
}

TEST(NiahFake, ExactPositionWithoutBackoffAndPyramidKVQuestion) {
  ByteTokenizer tok;
  NiahOptions o = options();
  o.lengths = {2000};
  o.depths = {50};
  o.period_backoff = false;
  o.question = kNiahQuestionPyramidKV;
  const auto s = generate_niah(o, tok).at(0);
  const std::string hay = haystack_of(s);
  const size_t ctx_len = 2000 - 200 - std::string(kNiahNeedle).size();
  EXPECT_EQ(hay.find(kNiahNeedle), ctx_len / 2);
  EXPECT_NE(s.question.find("Question: The best thing to do in San Francisco is: \nAnswer:"), std::string::npos);
}

TEST(NiahFake, RejectsBadGrids) {
  ByteTokenizer tok;
  NiahOptions o = options();
  o.lengths = {250};  // not more than buffer + needle
  EXPECT_THROW(generate_niah(o, tok), Error);
  o = options();
  o.depths = {120};
  EXPECT_THROW(generate_niah(o, tok), Error);
  o = options();
  o.lengths.clear();
  EXPECT_THROW(generate_niah(o, tok), Error);
  o = options();
  o.data_root = "/nonexistent";
  EXPECT_THROW(generate_niah(o, tok), Error);
}

TEST(NiahLlama3, TokenBudgetAndSentenceBoundaries) {
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::load(test::shared_data() + "/tokenizers/llama3/tokenizer.model");
  } catch (const std::exception& e) {
    GTEST_SKIP() << "Llama-3 tokenizer not available: " << e.what();
  }
  NiahOptions o = options();
  o.lengths = {1000, 8000};
  o.depths = {0, 30, 70, 100};
  for (const auto& s : generate_niah(o, *tok)) {
    const std::string hay = haystack_of(s);
    const size_t len = s.meta["length"].get<size_t>();
    const size_t n = tok->encode(hay, false, false).size();
    EXPECT_NEAR(double(n), double(len - o.buffer), 3.0) << s.id;  // re-encoding may merge at the seams
    const size_t at = hay.find(kNiahNeedle);
    ASSERT_NE(at, std::string::npos) << s.id;
    const double depth = s.meta["depth"].get<double>();
    if (depth > 0 && depth < 100) {
      EXPECT_EQ(hay[at - 1], '.') << s.id;
      // Llama-3 merges ".\n" into one token, which is no period token: the back-off can be long.
      EXPECT_LE(s.meta["needle_depth"].get<double>(), depth / 100.0) << s.id;
      EXPECT_GT(s.meta["needle_depth"].get<double>(), depth / 100.0 - 0.15) << s.id;
    }
    // The whole prompt fits the length with room for the answer.
    EXPECT_LT(tok->encode(s.prompt(), true, false).size(), len);
  }
}

}  // namespace
}  // namespace judgeq
