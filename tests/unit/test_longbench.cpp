// LongBench loader: prompts, task rules, integrity checks, errors and middle truncation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "data/longbench.h"
#include "model/tokenizer.h"
#include "util/error.h"

#include "byte_tokenizer.h"
#include "common.h"

namespace judgeq {
namespace {

namespace fs = std::filesystem;

using test::ByteTokenizer;


LongBenchOptions options() {
  LongBenchOptions o;
  o.data_root = test::shared_data();
  return o;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string line_json(const std::string& input, const std::string& context, const std::vector<std::string>& answers,
                      const nlohmann::json& classes = nullptr) {
  nlohmann::json j = {{"input", input}, {"context", context}, {"answers", answers}, {"length", 10},
                      {"dataset", "x"}, {"language", "en"},   {"all_classes", classes}, {"_id", "id-" + input}};
  return j.dump();
}

TEST(LongBenchTasks, SixteenEnglishTasks) {
  const auto& t = longbench_tasks();
  EXPECT_EQ(t.size(), 16u);
  EXPECT_EQ(t.front(), "narrativeqa");
  EXPECT_EQ(t.back(), "repobench-p");
}

TEST(LongBenchMultiNews, LoadsAllSamplesWithPrompt) {
  const auto samples = load_longbench("multi_news", options());
  ASSERT_EQ(samples.size(), 200u);
  const auto& s = samples[0];
  EXPECT_EQ(s.bench, "longbench");
  EXPECT_EQ(s.task, "multi_news");
  EXPECT_EQ(s.id, "e45abfcb82a3c862c0f772e6f461866839955c11ea2f46a8");
  EXPECT_EQ(s.max_new_tokens, 512);
  EXPECT_EQ(s.metric, "rouge_l");
  EXPECT_TRUE(s.use_chat_template);
  EXPECT_FALSE(s.first_line_only);
  EXPECT_TRUE(s.answer_prefix.empty());
  EXPECT_EQ(s.context.rfind("You are given several news passages. Write a one-page summary of all news. \n\nNews:\nPassage 1:\n", 0), 0u);
  const std::string tail = "Philadelphia; Editing by Greg McCune and Cynthia Johnston)\n";
  EXPECT_EQ(s.context.compare(s.context.size() - tail.size(), tail.size(), tail), 0);
  EXPECT_EQ(s.question, "\n\nNow, write a one-page summary of all the news.\n\nSummary:");
  ASSERT_EQ(s.references.size(), 1u);
  EXPECT_EQ(s.references[0].rfind("The Occupy LA encampment got a stay of execution", 0), 0u);
  EXPECT_TRUE(s.all_classes.empty());
  EXPECT_EQ(s.meta["hash_ok"], true);
  EXPECT_EQ(s.meta["language"], "en");
  EXPECT_EQ(s.meta["truncated"], false);
  for (const auto& x : samples) EXPECT_EQ(x.prompt().find("{context}"), std::string::npos);

  auto o = options();
  o.limit = 5;
  EXPECT_EQ(load_longbench("multi_news", o).size(), 5u);
}

TEST(LongBenchMultiNews, CrlfHashMatchesTheOriginal) {
  const std::string path = test::shared_data() + "/longbench/data/multi_news.jsonl";
  std::ifstream in(test::shared_data() + "/longbench/data/ORIGINAL_FILE_HASHES.json");
  const auto table = nlohmann::json::parse(in);
  EXPECT_EQ(longbench_crlf_sha256(path), table["files"]["multi_news"]["sha256_crlf"].get<std::string>());
}

TEST(LongBenchFiles, ModifiedCopyWarnsOrFails) {
  const std::string dir = test::temp_dir("lb_hash");
  std::ifstream in(test::shared_data() + "/longbench/data/multi_news.jsonl", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  text[text.find("Occupy")] = 'o';
  write(dir + "/multi_news.jsonl", text);
  auto o = options();
  o.data_dir = dir;  // no hash table here: falls back to the shared one
  auto samples = load_longbench("multi_news", o);
  EXPECT_EQ(samples[0].meta["hash_ok"], false);
  o.verify = HashCheck::kError;
  EXPECT_THROW(load_longbench("multi_news", o), Error);
  o.verify = HashCheck::kOff;
  EXPECT_TRUE(load_longbench("multi_news", o)[0].meta["hash_ok"].is_null());
  // A CRLF copy (as in data.zip) hashes the same as the LF one.
  std::string crlf;
  for (char c : ss.str()) {
    if (c == '\n') crlf.push_back('\r');
    crlf.push_back(c);
  }
  write(dir + "/multi_news.jsonl", crlf);
  o.verify = HashCheck::kError;
  auto from_crlf = load_longbench("multi_news", o);
  EXPECT_EQ(from_crlf.size(), 200u);
  EXPECT_EQ(from_crlf[0].meta["hash_ok"], true);
  EXPECT_EQ(from_crlf[0].context, load_longbench("multi_news", options())[0].context);
  fs::remove_all(dir);
}

TEST(LongBenchFiles, MalformedLineNamesFileAndLine) {
  const std::string dir = test::temp_dir("lb_bad");
  write(dir + "/qasper.jsonl", line_json("q1", "c1", {"a"}) + "\n" + line_json("q2", "c2", {"b"}) + "\n{\"input\": \"q3\", oops}\n");
  auto o = options();
  o.data_dir = dir;
  try {
    load_longbench("qasper", o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("qasper.jsonl:3:"), std::string::npos) << msg;
  }
  write(dir + "/qasper.jsonl", line_json("q1", "c1", {"a"}) + "\n{\"input\": \"q\", \"context\": \"c\"}\n");
  try {
    load_longbench("qasper", o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qasper.jsonl:2:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("answers"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(LongBenchFiles, MissingFileAndUnknownTask) {
  auto o = options();
  try {
    load_longbench("narrativeqa", o);  // not bundled
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("THUDM/LongBench"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_longbench("not_a_task", o), Error);
  o.max_prompt_tokens = 100;
  EXPECT_THROW(load_longbench("multi_news", o, nullptr), Error);  // truncation needs a tokenizer
}

TEST(LongBenchRules, ChatFirstLineMetricsAndSplit) {
  const std::string dir = test::temp_dir("lb_rules");
  write(dir + "/trec.jsonl", line_json("What is X?\nType:", "Q: Who? Type: HUM\n", {"LOC"}, {"HUM", "LOC"}) + "\n");
  write(dir + "/lcc.jsonl", line_json("", "def f(x):\n    {return}\n", {"    return x"}) + "\n");
  write(dir + "/hotpotqa.jsonl", line_json("Who?", "Passage 1: A.", {"A"}) + "\n\n");  // trailing blank line
  write(dir + "/passage_retrieval_en.jsonl", line_json("abstract", "Paragraph 1: x", {"Paragraph 1"}) + "\n");
  auto o = options();
  o.data_dir = dir;
  o.verify = HashCheck::kOff;  // hand-made files under official names

  const auto trec = load_longbench("trec", o).at(0);
  EXPECT_FALSE(trec.use_chat_template);
  EXPECT_TRUE(trec.first_line_only);
  EXPECT_EQ(trec.metric, "classification");
  EXPECT_EQ(trec.max_new_tokens, 64);
  EXPECT_EQ(trec.all_classes, (std::vector<std::string>{"HUM", "LOC"}));
  EXPECT_EQ(trec.question, "\nWhat is X?\nType:");

  const auto lcc = load_longbench("lcc", o).at(0);
  EXPECT_FALSE(lcc.use_chat_template);
  EXPECT_FALSE(lcc.first_line_only);
  EXPECT_EQ(lcc.metric, "code_sim");
  // Braces inside the data are not template fields.
  EXPECT_EQ(lcc.context, "Please complete the code given below. \ndef f(x):\n    {return}\n");
  EXPECT_EQ(lcc.question, "Next line of code:\n");

  const auto hotpot = load_longbench("hotpotqa", o);
  ASSERT_EQ(hotpot.size(), 1u);
  EXPECT_TRUE(hotpot[0].use_chat_template);
  EXPECT_EQ(hotpot[0].metric, "qa_f1");
  EXPECT_EQ(hotpot[0].max_new_tokens, 32);
  EXPECT_EQ(hotpot[0].question.rfind("\n\nAnswer the question based on the given passages.", 0), 0u);
  EXPECT_NE(hotpot[0].question.find("Question: Who?\nAnswer:"), std::string::npos);

  EXPECT_EQ(load_longbench("passage_retrieval_en", o).at(0).metric, "retrieval");
  fs::remove_all(dir);
}

TEST(LongBenchTruncation, KeepsHeadAndTailTokens) {
  ByteTokenizer tok;
  std::string prompt;
  for (int i = 0; i < 300; ++i) prompt += char('a' + i % 26);
  // BOS counts: the head keeps BOS + 49 bytes, the tail the last 50.
  EXPECT_EQ(longbench_truncate_middle(prompt, 100, tok, true), prompt.substr(0, 49) + prompt.substr(250));
  EXPECT_EQ(longbench_truncate_middle(prompt, 100, tok, false), prompt.substr(0, 50) + prompt.substr(250));
  EXPECT_EQ(longbench_truncate_middle(prompt, 301, tok, true), prompt);

  auto o = options();
  o.max_prompt_tokens = 2000;
  const auto samples = load_longbench("multi_news", o, &tok);
  const auto full = load_longbench("multi_news", options());
  size_t truncated = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    EXPECT_LE(s.prompt().size() + 1, 2000u);
    EXPECT_EQ(s.question, full[i].question);
    EXPECT_EQ(s.context.substr(0, 50), full[i].context.substr(0, 50));
    if (s.meta["truncated"].get<bool>()) ++truncated;
  }
  EXPECT_GT(truncated, 150u);
}

TEST(LongBenchTruncation, Llama3Tokenizer) {
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::load(test::shared_data() + "/tokenizers/llama3/tokenizer.model");
  } catch (const std::exception& e) {
    GTEST_SKIP() << "Llama-3 tokenizer not available: " << e.what();
  }
  auto o = options();
  o.max_prompt_tokens = 1000;
  o.limit = 10;
  size_t truncated = 0;
  for (const auto& s : load_longbench("multi_news", o, tok.get())) {
    const size_t n = tok->encode(s.prompt(), true, false).size();
    if (s.meta["truncated"].get<bool>()) {
      ++truncated;
      EXPECT_NEAR(double(n), 1000.0, 4.0) << s.id;  // the two halves may merge a token at the seam
    } else {
      EXPECT_LE(n, 1000u) << s.id;
    }
    EXPECT_EQ(s.question, "\n\nNow, write a one-page summary of all the news.\n\nSummary:");
  }
  EXPECT_GE(truncated, 5u);
}

}  // namespace
}  // namespace judgeq
