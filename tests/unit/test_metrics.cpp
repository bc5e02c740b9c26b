// Metrics against values computed with the reference Python code (RULER/kvpress string match,
// LongBench metrics.py with rouge 1.0.1 and fuzzywuzzy + python-Levenshtein, rouge_score with
// nltk 3.8's PorterStemmer).
#include <gtest/gtest.h>

#include "data/sample.h"
#include "eval/metrics.h"
#include "util/error.h"
#include "util/hash.h"

#include <fstream>

#include "common.h"

namespace judgeq {
namespace {

using namespace metrics;

TEST(MetricRuler, StringMatchAllCountsEachReference) {
  EXPECT_DOUBLE_EQ(string_match_all("The numbers are 123 and 456.", {"123", "456", "789"}), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(string_match_all("ANSWER: Fuzzy-Cat", {"fuzzy-cat"}), 1.0);  // case-insensitive
  EXPECT_DOUBLE_EQ(string_match_all("", {"1234567"}), 0.0);
  // Control characters become newlines and do not glue tokens together.
  EXPECT_DOUBLE_EQ(string_match_all("12\x01" "34", {"1234"}), 0.0);
  EXPECT_NEAR(score("string_match_all", "123 only", {"123", "456", "789"}), 33.333333, 1e-4);
  EXPECT_THROW(string_match_all("x", {}), Error);
}

TEST(MetricRuler, StringMatchPartNeedsAnyReference) {
  EXPECT_DOUBLE_EQ(string_match_part("It was Paris.", {"London", "paris"}), 1.0);
  EXPECT_DOUBLE_EQ(string_match_part("It was Rome.", {"London", "paris"}), 0.0);
  EXPECT_DOUBLE_EQ(score("string_match_part", "London!", {"London", "paris"}), 100.0);
  EXPECT_EQ(ruler_postprocess("  a\tb\x02" "c \n"), "a\nb\nc");
}

TEST(MetricLongBench, NormalizeAnswerDropsPunctuationAndArticles) {
  EXPECT_EQ(normalize_answer("The  Quick, brown-fox! An apple"), "quick brownfox apple");
  EXPECT_EQ(normalize_answer("theatre is an anthem"), "theatre is anthem");  // whole words only
  EXPECT_EQ(normalize_answer(""), "");
}

TEST(MetricLongBench, QaF1MatchesReference) {
  EXPECT_DOUBLE_EQ(qa_f1("The Eiffel Tower!", "eiffel tower"), 1.0);
  EXPECT_DOUBLE_EQ(qa_f1("a cat sat", "the cat"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(qa_f1("Paris, France", "paris"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(qa_f1("", "x"), 0.0);
  EXPECT_DOUBLE_EQ(qa_f1("the the the", "a an the"), 0.0);  // both empty after normalisation
  // Several references: the best one counts.
  EXPECT_DOUBLE_EQ(score("qa_f1", "Paris", {"London", "Paris, France", "paris"}), 100.0);
  EXPECT_DOUBLE_EQ(score("qa_f1_score", "Paris France", {"London", "Paris, France"}), 100.0);
}

TEST(MetricLongBench, RougeLMatchesRougePackage) {
  EXPECT_NEAR(rouge_l("The cat sat on the mat. It was happy.", "the cat was on a mat. the cat was happy."),
              0.6249999950781252, 1e-12);
  EXPECT_NEAR(rouge_l("The cat sat on the mat", "The cat sat on the mat"), 0.999999995, 1e-12);
  EXPECT_NEAR(rouge_l("the cat sat on the mat", "The Cat sat on the mat"), 0.7272727223140496, 1e-12);  // case-sensitive
  EXPECT_NEAR(rouge_l("police arrested two men. the men were released.",
                      "Two men were arrested by police. They were released later."),
              0.4999999950781251, 1e-12);
  EXPECT_NEAR(rouge_l("a b c d. e f", "a c e. b d f"), 0.999999995, 1e-12);  // union LCS over sentences
  EXPECT_DOUBLE_EQ(rouge_l("...", "a b"), 0.0);  // no sentence: the package raises, LongBench scores 0
  EXPECT_DOUBLE_EQ(rouge_l("", "a b"), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l(" . ", "a b"), 0.0);
  EXPECT_NEAR(score("rouge", "The cat sat on the mat", {"x y", "The cat sat on the mat"}), 99.9999995, 1e-9);
}

TEST(MetricLongBench, ClassificationKeepsTheListRemovalQuirk) {
  // metrics.py removes from the list it iterates, so "ab" (after the removed "a") is never
  // examined and stays: 1/2, not 1.
  EXPECT_DOUBLE_EQ(classification("abc", "abc", {"a", "ab", "abc"}), 0.5);
  const std::vector<std::string> trec = {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"};
  EXPECT_DOUBLE_EQ(classification("This is a LOC question about NUM", "LOC", trec), 0.5);
  EXPECT_DOUBLE_EQ(classification("Type: HUM", "LOC", trec), 0.0);
  EXPECT_DOUBLE_EQ(score("classification", "LOC", {"LOC"}, trec), 100.0);
}

TEST(MetricLongBench, RetrievalAndCountShareOfMatchingNumbers) {
  EXPECT_DOUBLE_EQ(retrieval("Paragraph 3 or 13", "Paragraph 3"), 0.5);
  EXPECT_DOUBLE_EQ(retrieval("The answer is Paragraph 3", "Paragraph 3"), 1.0);
  EXPECT_DOUBLE_EQ(retrieval("no idea", "Paragraph 3"), 0.0);
  EXPECT_THROW(retrieval("3", "third paragraph"), Error);
  EXPECT_DOUBLE_EQ(retrieval_zh("\xe6\xae\xb5\xe8\x90\xbd" "5", "\xe6\xae\xb5\xe8\x90\xbd" "5"), 1.0);  // 段落5
  EXPECT_DOUBLE_EQ(count("There are 12 unique, not 13", "12"), 0.5);
  EXPECT_DOUBLE_EQ(count("12", "12"), 1.0);
  EXPECT_DOUBLE_EQ(count("twelve", "12"), 0.0);
}

TEST(MetricLongBench, CodeSimUsesFuzzRatioOnFirstCodeLine) {
  EXPECT_EQ(fuzz_ratio("self.assertEqual(x, 1)", "self.assertEquals(y, 1)"), 93);
  EXPECT_EQ(fuzz_ratio("return x + 1", "return x+1"), 91);
  EXPECT_EQ(fuzz_ratio("abc", "abd"), 67);
  EXPECT_EQ(fuzz_ratio("int i = 0;", "for (int i = 0; i < n; ++i) {"), 51);
  EXPECT_EQ(fuzz_ratio("aaaa", "aab"), 57);
  EXPECT_EQ(fuzz_ratio("", ""), 100);
  EXPECT_EQ(fuzz_ratio("", "x"), 0);
  EXPECT_DOUBLE_EQ(code_sim("# comment\n    return x + 1\n", "    return x + 1"), 1.0);
  EXPECT_DOUBLE_EQ(code_sim("```python\nfoo(1)\n```", "foo(1)"), 1.0);
  EXPECT_DOUBLE_EQ(code_sim("// only comments\n# here", "foo(1)"), 0.0);
  EXPECT_DOUBLE_EQ(score("code_sim", "\n\nreturn x+1", {"return x + 1"}), 91.0);
}

TEST(MetricLongBench, FirstLineRuleAppliesThroughScoreSample) {
  EXPECT_EQ(first_line("\n\nHUM\nLOC"), "HUM");
  EXPECT_EQ(first_line(""), "");
  BenchSample s;
  s.metric = "classification";
  s.references = {"LOC"};
  s.all_classes = {"HUM", "LOC"};
  s.first_line_only = true;
  EXPECT_DOUBLE_EQ(score_sample(s, "\nLOC\nHUM"), 100.0);
  s.first_line_only = false;
  EXPECT_DOUBLE_EQ(score_sample(s, "\nLOC\nHUM"), 50.0);
}

TEST(MetricNiah, PorterStemmerMatchesNltk) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"running", "run"},         {"caresses", "caress"},   {"ponies", "poni"},        {"ties", "tie"},
      {"agreed", "agre"},         {"hopping", "hop"},       {"filing", "file"},        {"happy", "happi"},
      {"relational", "relat"},    {"generalization", "gener"}, {"sunny", "sunni"},    {"sitting", "sit"},
      {"sandwiches", "sandwich"}, {"eating", "eat"},        {"dying", "die"},          {"skies", "sky"},
      {"news", "news"},           {"conditional", "condit"}, {"valency", "valenc"},    {"digitizer", "digit"},
      {"radicalli", "radic"},     {"vietnamization", "vietnam"}, {"decisiveness", "decis"},
      {"hopefulness", "hope"},    {"sensibiliti", "sensibl"}, {"triplicate", "triplic"}, {"formative", "form"},
      {"electrical", "electr"},   {"goodness", "good"},     {"allowance", "allow"},    {"gyroscopic", "gyroscop"},
      {"replacement", "replac"},  {"adoption", "adopt"},    {"communism", "commun"},   {"bowdlerize", "bowdler"},
      {"probate", "probat"},      {"rate", "rate"},         {"cease", "ceas"},         {"controll", "control"},
      {"roll", "roll"},           {"geology", "geolog"},    {"spied", "spi"},          {"flies", "fli"},
      {"enjoy", "enjoy"}};
  for (const auto& [w, s] : cases) EXPECT_EQ(porter_stem(w), s) << w;

  // All 6,786 wonderwords nouns: sha256 of the newline-joined nltk stems.
  std::ifstream in(test::shared_data() + "/ruler/wonderwords-2.2.0/nounlist.txt");
  ASSERT_TRUE(in) << "shared data missing";
  std::string line, joined;
  size_t n = 0;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    for (auto& c : line) c = char(std::tolower(static_cast<unsigned char>(c)));
    joined += (n++ ? "\n" : "") + porter_stem(line);
  }
  EXPECT_EQ(n, 6786u);
  EXPECT_EQ(sha256_hex(joined), "f65af9601581dd6ef85d7841bd4677392a42ca43800575988ea5975ded44a4f8");
}

TEST(MetricNiah, Rouge1WithStemming) {
  const std::string needle = "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n";
  // "eating"/"sitting" stem to "eat"/"sit": a perfect score.
  EXPECT_DOUBLE_EQ(rouge1_f(needle, "The best thing to do in San Francisco is eating a sandwich and sitting in Dolores Park on a sunny day."), 1.0);
  EXPECT_NEAR(rouge1_f(needle, "eat a sandwich in Dolores Park"), 0.4444444444444445, 1e-12);
  EXPECT_NEAR(rouge1_f(needle, "Sandwiches! Parks! Sunny days!"), 0.32, 1e-12);
  EXPECT_DOUBLE_EQ(rouge1_f(needle, ""), 0.0);
  EXPECT_DOUBLE_EQ(rouge1_f(needle, "I don't know."), 0.0);
  EXPECT_LT(rouge1_f(needle, "The best thing to do in San Francisco is eating a sandwich", false), 0.9);
  EXPECT_NEAR(score("niah_rouge1", "eat a sandwich in Dolores Park", {needle}), 4.444444444444445, 1e-9);  // x10
  const auto toks = rouge_tokenize("Hello, WORLD's 2nd-best runners!", true);
  EXPECT_EQ(toks, (std::vector<std::string>{"hello", "world", "s", "2nd", "best", "runner"}));
}

TEST(MetricNiah, ContainsIsCaseAndWhitespaceInsensitive) {
  EXPECT_DOUBLE_EQ(contains("Answer: Eat a sandwich and sit in\nDolores  Park on a sunny day.",
                            {"eat a sandwich and sit in Dolores Park on a sunny day"}),
                   1.0);
  EXPECT_DOUBLE_EQ(contains("eat a sandwich", {"eat a sandwich and sit in Dolores Park on a sunny day"}), 0.0);
  EXPECT_DOUBLE_EQ(score("contains", "", {"x"}), 0.0);
}

TEST(MetricDispatch, RejectsUnknownAndUnsupported) {
  EXPECT_THROW(score("bleu", "a", {"a"}), Error);
  EXPECT_THROW(score("qa_f1_zh", "a", {"a"}), Error);
  EXPECT_THROW(score("rouge_zh_score", "a", {"a"}), Error);
  EXPECT_THROW(score("qa_f1", "a", {}), Error);
  for (const auto& m : metric_names()) {
    const std::vector<std::string> refs = {m == "retrieval" ? "Paragraph 1" : m == "retrieval_zh" ? "\xe6\xae\xb5\xe8\x90\xbd" "1" : "1"};
    EXPECT_NO_THROW(score(m, "Paragraph 1", refs, {"1"})) << m;
  }
  try {
    score("bleu", "a", {"a"});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("string_match_all"), std::string::npos);
  }
}

TEST(MetricHash, Sha256KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

}  // namespace
}  // namespace judgeq
