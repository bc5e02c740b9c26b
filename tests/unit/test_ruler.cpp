// RULER generator invariants, with a fast word/punctuation token counter (and the real Llama-3
// tokenizer where it loads).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/ruler.h"
#include "model/tokenizer.h"
#include "util/error.h"

#include "common.h"

namespace judgeq {
namespace {

// Roughly BPE-like: a run of letters/digits is one token per 4 characters, punctuation one each.
size_t approx_tokens(const std::string& s) {
  size_t n = 0, i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isspace(c)) {
      ++i;
    } else if (std::isalnum(c) || c >= 0x80) {
      size_t b = i;
      while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || static_cast<unsigned char>(s[i]) >= 0x80)) ++i;
      n += (i - b + 3) / 4;
    } else {
      ++n;
      ++i;
    }
  }
  return n;
}

RulerOptions options(size_t length, size_t n) {
  RulerOptions o;
  o.data_root = test::shared_data();
  o.max_seq_length = length;
  o.num_samples = n;
  return o;
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

const std::map<std::string, int> kTokensToGenerate = {
    {"niah_single_1", 128}, {"niah_single_2", 128},   {"niah_single_3", 128},   {"niah_multikey_1", 128},
    {"niah_multikey_2", 128}, {"niah_multikey_3", 128}, {"niah_multivalue", 128}, {"niah_multiquery", 128},
    {"vt", 30},             {"cwe", 120},             {"fwe", 50}};

TEST(RulerPunkt, MatchesNltkOnHandCases) {
  PunktLite p(test::shared_data() + "/ruler/punkt_tab_english_partial");
  using V = std::vector<std::string>;
  // Expected values from nltk 3.8 PunktSentenceTokenizer with the same three parameter files.
  EXPECT_EQ(p.split("Hello world. This is it."), (V{"Hello world.", "This is it."}));
  EXPECT_EQ(p.split("Mr. Smith went to Washington. He left."), (V{"Mr. Smith went to Washington.", "He left."}));
  EXPECT_EQ(p.split("See Wiley, 1985, p. 94.[7] Some would disagree."), (V{"See Wiley, 1985, p.", "94.", "[7] Some would disagree."}));
  EXPECT_EQ(p.split("He said \"stop.\" Then he left!"), (V{"He said \"stop.\"", "Then he left!"}));
  EXPECT_EQ(p.split("Thump, thump... thump.) Why risk it?"), (V{"Thump, thump...", "thump.)", "Why risk it?"}));
  EXPECT_EQ(p.split("It is due to I. Kant. Wittgenstein asserted it."), (V{"It is due to I. Kant.", "Wittgenstein asserted it."}));
  EXPECT_EQ(p.split("They met in 1990. the year was good. In 1991. It was not."),
            (V{"They met in 1990. the year was good.", "In 1991.", "It was not."}));
  EXPECT_EQ(p.split("Wait... However, it works. What?! Yes."), (V{"Wait...", "However, it works.", "What?!", "Yes."}));
  EXPECT_EQ(p.split("The U.S. economy grew. However, it slowed."), (V{"The U.S. economy grew.", "However, it slowed."}));
  EXPECT_TRUE(p.split("").empty());
}

TEST(RulerPunkt, EssaySentenceCountMatchesNltk) {
  // nltk (same parameters) splits the whitespace-collapsed RULER essay text into 31,368 sentences.
  std::ifstream in(test::shared_data() + "/ruler/PaulGrahamEssays.json");
  ASSERT_TRUE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = nlohmann::json::parse(ss.str())["text"];
  // The essays hold 4 non-breaking spaces, which Python's \s collapses too.
  for (size_t p = text.find("\xc2\xa0"); p != std::string::npos; p = text.find("\xc2\xa0", p)) text.replace(p, 2, " ");
  std::string collapsed;
  for (char c : text) {
    bool ws = std::isspace(static_cast<unsigned char>(c));
    if (ws && (collapsed.empty() || collapsed.back() == ' ')) continue;
    collapsed.push_back(ws ? ' ' : c);
  }
  while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
  PunktLite p(test::shared_data() + "/ruler/punkt_tab_english_partial");
  EXPECT_EQ(p.spans(collapsed).size(), 31368u);
}

class RulerTask : public ::testing::TestWithParam<std::string> {};

TEST_P(RulerTask, InvariantsAt4K) {
  const std::string task = GetParam();
  const size_t target = 4096, n = 12;
  RulerGenerator gen(options(target, n));
  const auto samples = gen.generate(task, approx_tokens);
  ASSERT_EQ(samples.size(), n);
  std::set<std::string> contexts;
  for (const auto& s : samples) {
    EXPECT_EQ(s.bench, "ruler");
    EXPECT_EQ(s.task, task);
    EXPECT_EQ(s.max_new_tokens, kTokensToGenerate.at(task));
    EXPECT_EQ(s.metric, "string_match_all");
    EXPECT_TRUE(s.use_chat_template);
    EXPECT_FALSE(s.question.empty());
    EXPECT_FALSE(s.answer_prefix.empty());
    // Length within 2.5% below the target, never above.
    const size_t length = approx_tokens(s.context + s.question + s.answer_prefix) + size_t(s.max_new_tokens);
    EXPECT_EQ(length, s.meta["length"].get<size_t>());
    EXPECT_LE(length, target) << s.id;
    EXPECT_GE(length, size_t(0.975 * target)) << s.id;
    // Every answer is in the compressed part.
    ASSERT_FALSE(s.references.empty());
    for (const auto& r : s.references) EXPECT_NE(s.context.find(r), std::string::npos) << s.id << " misses " << r;
    contexts.insert(s.context);
  }
  EXPECT_EQ(contexts.size(), n) << "different indices must give different samples";

  // Same seed and index -> the same sample, from a fresh generator.
  RulerGenerator again(options(target, n));
  const size_t size = samples[3].meta["haystack_size"].get<size_t>();
  const auto s3 = again.sample(task, 3, size, approx_tokens);
  EXPECT_EQ(s3.context, samples[3].context);
  EXPECT_EQ(s3.question, samples[3].question);
  EXPECT_EQ(s3.references, samples[3].references);
  // Another seed -> another sample.
  auto o = options(target, n);
  o.seed = 7;
  EXPECT_NE(RulerGenerator(o).sample(task, 3, size, approx_tokens).context, samples[3].context);
}

INSTANTIATE_TEST_SUITE_P(RulerAll, RulerTask, ::testing::ValuesIn(ruler_tasks()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(RulerTemplates, SingularAndPluralWording) {
  RulerGenerator gen(options(2048, 2));
  auto single = gen.generate("niah_single_1", approx_tokens)[0];
  EXPECT_EQ(single.context.rfind("A special magic number is hidden within the following text.", 0), 0u) << single.context.substr(0, 80);
  EXPECT_EQ(single.question.rfind("What is the special magic number for ", 0), 0u) << single.question;
  EXPECT_NE(single.answer_prefix.find(" mentioned in the provided text is"), std::string::npos);
  EXPECT_EQ(single.answer_prefix.rfind(" The special magic number for ", 0), 0u);
  // The needle sentence keeps the plural type, as RULER's does.
  EXPECT_NE(single.context.find("One of the special magic numbers for "), std::string::npos);
  EXPECT_EQ(single.context.back(), '\n');

  auto multi = gen.generate("niah_multivalue", approx_tokens)[0];
  EXPECT_EQ(multi.references.size(), 4u);
  EXPECT_EQ(multi.question.rfind("What are all the special magic numbers for ", 0), 0u);
  auto query = gen.generate("niah_multiquery", approx_tokens)[0];
  EXPECT_EQ(query.references.size(), 4u);
  EXPECT_NE(query.question.find(", and "), std::string::npos);

  auto uuids = gen.generate("niah_multikey_3", approx_tokens)[0];
  const std::string& u = uuids.references[0];
  ASSERT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');  // version 4
  EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos);  // RFC 4122 variant
}

TEST(RulerTemplates, VariableTrackingChain) {
  RulerGenerator gen(options(4096, 3));
  for (const auto& s : gen.generate("vt", approx_tokens)) {
    ASSERT_EQ(s.references.size(), 5u);
    const size_t icl_end = s.context.find("Memorize and track the chain(s)", 1);
    ASSERT_NE(icl_end, std::string::npos) << "in-context example first";
    const std::string main = s.context.substr(icl_end);
    const std::string first = "VAR " + s.references[0] + " = ";
    const size_t p0 = main.find(first);
    ASSERT_NE(p0, std::string::npos);
    const std::string value = main.substr(p0 + first.size(), 5);
    EXPECT_NE(s.question.find("assigned the value " + value), std::string::npos);
    EXPECT_NE(s.answer_prefix.find("5 variables are assigned the value " + value), std::string::npos);
    size_t prev = p0;
    for (size_t i = 1; i < 5; ++i) {  // hops in order
      size_t p = main.find("VAR " + s.references[i] + " = VAR " + s.references[i - 1] + " ");
      ASSERT_NE(p, std::string::npos);
      EXPECT_GT(p, prev);
      prev = p;
    }
    // The example: 3-letter names, answers appended after its answer prefix.
    const std::string icl = s.context.substr(0, icl_end);
    EXPECT_NE(icl.find("they are:  "), std::string::npos);
    EXPECT_EQ(icl.find("12345"), std::string::npos) << "example value re-randomised";
  }
}

TEST(RulerTemplates, CommonWordsCounts) {
  for (size_t target : {4096, 2048}) {
    RulerGenerator gen(options(target, 2));
    const auto s = gen.generate("cwe", approx_tokens)[0];
    ASSERT_EQ(s.references.size(), 10u);
    const size_t main_at = s.context.rfind("Below is a numbered list of words.");
    ASSERT_NE(main_at, std::string::npos);
    EXPECT_GT(main_at, 0u) << "few-shot example first";
    const std::string main = s.context.substr(main_at);
    std::string list = main.substr(main.find('\n') + 1) + " ";  // "1. w 2. w ...\n"
    std::replace(list.begin(), list.end(), '\n', ' ');
    list = " " + list;
    const size_t common_reps = target >= 4096 ? 30 : 6, other_reps = target >= 4096 ? 3 : 1;
    for (const auto& w : s.references) EXPECT_EQ(occurrences(list, ". " + w + " "), common_reps) << w;
    // Every listed word that is not common appears other_reps times.
    std::map<std::string, size_t> freq;
    std::istringstream in(list);
    std::string tok;
    while (in >> tok)
      if (tok.back() != '.' && tok != "Question:") ++freq[tok];
    size_t n_other = 0;
    for (const auto& [w, c] : freq) {
      if (std::find(s.references.begin(), s.references.end(), w) != s.references.end()) continue;
      if (c != other_reps) continue;
      ++n_other;
    }
    EXPECT_GT(n_other, 10u);
  }
}

TEST(RulerTemplates, FrequentWordsRanking) {
  RulerGenerator gen(options(4096, 2));
  const auto s = gen.generate("fwe", approx_tokens)[0];
  ASSERT_EQ(s.references.size(), 3u);
  std::map<std::string, size_t> freq;
  std::istringstream in(s.context.substr(s.context.find("coded words. ") + 13));
  std::string w;
  while (in >> w) ++freq[w];
  std::vector<std::pair<size_t, std::string>> ranked;
  for (const auto& [word, c] : freq)
    if (word != "...") ranked.emplace_back(c, word);
  std::sort(ranked.rbegin(), ranked.rend());
  EXPECT_GT(freq["..."], ranked[0].first) << "the noise word is the most frequent";
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(freq[s.references[i]], ranked[i].first) << s.references[i];
  EXPECT_GT(ranked[0].first, ranked[1].first);
}

TEST(RulerLength, LongerTargetsGrowTheHaystack) {
  RulerGenerator small(options(4096, 1)), large(options(32768, 1));
  const size_t a = small.haystack_size("niah_single_2", approx_tokens);
  const size_t b = large.haystack_size("niah_single_2", approx_tokens);
  EXPECT_GT(b, 7 * a);
  const auto s = large.generate("niah_single_2", approx_tokens)[0];
  EXPECT_LE(s.meta["length"].get<size_t>(), 32768u);
  EXPECT_GE(s.meta["length"].get<size_t>(), size_t(0.99 * 32768));
  // Beyond the essay corpus (~525K words ~ 800K tokens here) the text repeats.
  auto o = options(1100000, 1);
  const auto huge = RulerGenerator(o).generate("niah_single_2", approx_tokens)[0];
  EXPECT_GE(huge.meta["length"].get<size_t>(), size_t(0.99 * 1100000));
  EXPECT_NE(huge.context.find(huge.references[0]), std::string::npos);
}

TEST(RulerLength, TemplateTokensAreReserved) {
  auto o = options(4096, 2);
  o.template_tokens = 300;
  const auto s = RulerGenerator(o).generate("niah_single_1", approx_tokens)[0];
  EXPECT_LE(s.meta["length"].get<size_t>(), 4096u);
  EXPECT_LE(approx_tokens(s.prompt() + s.answer_prefix), 4096u - 300 - 128);
}

TEST(RulerErrors, ReportWhatToDo) {
  EXPECT_THROW(RulerGenerator(options(4096, 1)).generate("niah_single_9", approx_tokens), Error);
  try {
    RulerGenerator(options(4096, 1)).generate("qa_1", approx_tokens);
    FAIL() << "qa_1 should be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SQuAD"), std::string::npos) << e.what();
  }
  auto o = options(4096, 1);
  o.data_root = "/nonexistent";
  try {
    RulerGenerator g(o);
    FAIL() << "missing data should throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("templates.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(RulerGenerator(options(100, 1)).generate("niah_single_1", approx_tokens), Error);
  EXPECT_THROW(RulerGenerator(options(150, 1)).generate("niah_single_2", approx_tokens), Error);
  // CWE beyond the ~8.7K bundled words needs english_words.json.
  try {
    RulerGenerator(options(200000, 1)).generate("cwe", approx_tokens);
    FAIL() << "cwe at 200K should need english_words.json";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("english_words.json"), std::string::npos) << e.what();
  }
}

// ---- QA (qa_1 from SQuAD v2 dev, qa_2 from HotpotQA dev distractor), on hand-made files in
// the official formats.

std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

std::string para(const std::string& topic, int i) {
  std::string s = "This is paragraph " + std::to_string(i) + " about " + topic + ".";
  for (int k = 0; k < 6; ++k) s += " It says little of note, sentence " + std::to_string(k) + ".";
  return s;
}

std::string tiny_squad(const std::string& dir) {
  nlohmann::json data = nlohmann::json::array();
  for (int a = 0; a < 4; ++a) {
    nlohmann::json paras = nlohmann::json::array();
    for (int p = 0; p < 5; ++p) {
      const std::string answer = "Answer" + std::to_string(a) + "x" + std::to_string(p);
      nlohmann::json qas = nlohmann::json::array();
      qas.push_back({{"question", "What is hidden in article " + std::to_string(a) + " part " + std::to_string(p) + "?"},
                     {"id", "q" + std::to_string(a) + std::to_string(p)},
                     {"answers", {{{"text", answer}, {"answer_start", 0}}}},
                     {"is_impossible", false}});
      qas.push_back({{"question", "An unanswerable question?"}, {"id", "u"}, {"answers", nlohmann::json::array()},
                     {"plausible_answers", {{{"text", "x"}}}}, {"is_impossible", true}});
      paras.push_back({{"context", answer + " opens it. " + para("article " + std::to_string(a), p)}, {"qas", qas}});
    }
    data.push_back({{"title", "Article" + std::to_string(a)}, {"paragraphs", paras}});
  }
  return write_text(dir + "/dev-v2.0.json", nlohmann::json({{"version", "v2.0"}, {"data", data}}).dump());
}

std::string tiny_hotpot(const std::string& dir) {
  nlohmann::json all = nlohmann::json::array();
  for (int q = 0; q < 6; ++q) {
    nlohmann::json ctx = nlohmann::json::array();
    for (int p = 0; p < 10; ++p)
      ctx.push_back({"Title " + std::to_string(q) + "-" + std::to_string(p),
                     {"First sentence of " + std::to_string(q) + "/" + std::to_string(p) + ". ", para("hotpot", p)}});
    all.push_back({{"_id", std::to_string(q)}, {"question", "Which bridge is number " + std::to_string(q) + "?"},
                   {"answer", "Bridge" + std::to_string(q)}, {"context", ctx}, {"type", "bridge"}, {"level", "easy"},
                   {"supporting_facts", {{"Title " + std::to_string(q) + "-0", 0}}}});
    all[q]["context"][3][1][0] = "Bridge" + std::to_string(q) + " is the answer. ";
  }
  return write_text(dir + "/hotpot_dev_distractor_v1.json", all.dump());
}

TEST(RulerQa, SquadAndHotpotSamplesHoldTheirAnswersAndFit) {
  const std::string dir = test::temp_dir("ruler_qa");
  auto o = options(1200, 4);
  o.squad_file = tiny_squad(dir);
  o.hotpotqa_file = tiny_hotpot(dir);
  for (const std::string task : {"qa_1", "qa_2"}) {
    SCOPED_TRACE(task);
    auto v = RulerGenerator(o).generate(task, approx_tokens);
    ASSERT_EQ(v.size(), 4u);
    for (size_t i = 0; i < v.size(); ++i) {
      const auto& s = v[i];
      EXPECT_EQ(s.metric, "string_match_part");
      EXPECT_EQ(s.max_new_tokens, 32);
      EXPECT_EQ(s.answer_prefix, " Answer:");
      ASSERT_EQ(s.references.size(), 1u);
      // Question i in file order (answerable SQuAD questions only), its answer in a document.
      const std::string want = task == "qa_1" ? "Answer" + std::to_string(i / 5) + "x" + std::to_string(i % 5)
                                              : "Bridge" + std::to_string(i);
      EXPECT_EQ(s.references[0], want);
      EXPECT_NE(s.context.find(want), std::string::npos);
      EXPECT_NE(s.context.find("Document 1:\n"), std::string::npos);
      EXPECT_NE(s.question.find("Question: "), std::string::npos);
      // Fills the target: prompt + 32 generated tokens within the length, more than one document.
      const size_t t = approx_tokens(s.context + s.question + s.answer_prefix);
      EXPECT_LE(t + 32, 1200u);
      EXPECT_GT(t + 32, 900u);
      EXPECT_GT(s.meta.at("documents").get<size_t>(), 1u);
    }
    // HotpotQA keeps all ten of a question's paragraphs (gold and distractors).
    if (task == "qa_2") {
      EXPECT_GE(v[0].meta.at("documents").get<size_t>(), 10u);
    }
    // Same seed, same samples; another seed, other documents.
    auto again = RulerGenerator(o).generate(task, approx_tokens);
    EXPECT_EQ(again[2].context, v[2].context);
    auto o2 = o;
    o2.seed = 7;
    EXPECT_NE(RulerGenerator(o2).generate(task, approx_tokens)[2].context, v[2].context);
  }
}

TEST(RulerQa, MissingOrMalformedFilesSayWhatToDo) {
  const std::string dir = test::temp_dir("ruler_qa_bad");
  auto expect_error = [](RulerOptions o, const std::string& task, const std::string& needle) {
    try {
      RulerGenerator(o).generate(task, approx_tokens);
      FAIL() << task << " should be refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(options(1200, 1), "qa_2", "--hotpotqa");
  auto o = options(1200, 1);
  o.squad_file = dir + "/missing.json";
  expect_error(o, "qa_1", "not found");
  o.squad_file = write_text(dir + "/broken.json", "{\"data\": [");
  expect_error(o, "qa_1", "cannot parse");
  o.squad_file = write_text(dir + "/wrong.json", "{\"version\": 2}");
  expect_error(o, "qa_1", "is not SQuAD");
}

TEST(RulerLlama3, LengthsWithTheRealTokenizer) {
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::load(test::shared_data() + "/tokenizers/llama3/tokenizer.model");
  } catch (const std::exception& e) {
    GTEST_SKIP() << "Llama-3 tokenizer not available: " << e.what();
  }
  auto count = [&](const std::string& s) { return tok->encode(s, false, false).size(); };
  for (const std::string task : {"niah_single_2", "niah_multikey_2", "vt", "cwe", "fwe"}) {
    RulerGenerator gen(options(4096, 3));
    for (const auto& s : gen.generate(task, count)) {
      const size_t length = count(s.prompt() + s.answer_prefix) + size_t(s.max_new_tokens);
      EXPECT_LE(length, 4096u) << s.id;
      EXPECT_GE(length, size_t(0.975 * 4096)) << s.id;
      for (const auto& r : s.references) EXPECT_NE(s.context.find(r), std::string::npos);
    }
  }
}

// With the testbed's 4,096-piece vocabulary some CWE draws overflow 4K even at the smallest word
// count (sample 20 of seed 42 did, 4,102 > 3,975 tokens): such a sample is drawn again,
// deterministically, and the first samples keep their content.
TEST(RulerTestbed, OverflowingCweSampleIsDrawnAgain) {
  const std::string path = test::source_dir() + "/models/testbed/tokenizer.model";
  if (!std::ifstream(path)) GTEST_SKIP() << "testbed tokenizer missing";
  auto tok = Tokenizer::load(path);
  auto count = [&](const std::string& s) { return tok->encode(s, false, false).size(); };
  const auto samples = RulerGenerator(options(4096, 21)).generate("cwe", count);
  ASSERT_EQ(samples.size(), 21u);
  const auto again = RulerGenerator(options(4096, 21)).generate("cwe", count);
  const auto first = RulerGenerator(options(4096, 5)).generate("cwe", count);
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    const size_t length = count(s.prompt() + s.answer_prefix) + size_t(s.max_new_tokens);
    EXPECT_LE(length, 4096u) << s.id;
    EXPECT_GE(length, size_t(0.9 * 4096)) << s.id;
    for (const auto& r : s.references) EXPECT_NE(s.context.find(r), std::string::npos) << s.id;
    EXPECT_EQ(s.context, again[i].context) << s.id;
    if (i < first.size()) {
      EXPECT_EQ(s.context, first[i].context) << s.id;
    }
  }
}

}  // namespace
}  // namespace judgeq
