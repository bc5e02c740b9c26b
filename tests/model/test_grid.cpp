// The grid engine on the project's testbed model: one prefill per sample for every variant gives
// the same predictions as each variant run alone with its own prefill; an end-to-end run writes
// the run folder (predictions, metrics, tables, plots) and resumes without redoing work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common.h"
#include "data/ruler.h"
#include "eval/grid.h"
#include "eval/report.h"
#include "eval/run.h"
#include "util/safetensors.h"
#include "util/error.h"

using namespace judgeq;
namespace fs = std::filesystem;

namespace {
std::string testbed() { return test::source_dir() + "/models/testbed"; }

// n RULER samples of `task` at max_len tokens (seed 42) from the shared data.
std::vector<BenchSample> ruler_samples(const Tokenizer& tok, const std::string& task, size_t max_len, size_t n) {
  RulerOptions ro;
  ro.data_root = test::shared_data();
  ro.max_seq_length = max_len;
  ro.num_samples = n;
  return generate_ruler(task, ro, [&](const std::string& x) { return tok.encode(x).size(); });
}
}  // namespace

TEST(Grid, OnePrefillEqualsVariantsRunAlone) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  auto model = LlamaModel::load(testbed(), torch::kCPU, torch::kFloat32);
  auto tok = Tokenizer::load(testbed());
  auto samples = ruler_samples(*tok, "niah_multikey_1", 700, 2);
  auto variants = make_grid({"full", "streamingllm", "snapkv", "adakv", "h2o"}, {"64", "160"},
                            {{"snapkv", {{"window", 16}}}, {"adakv", {{"window", 16}}}, {"h2o", {{"window", 16}}}});
  for (const std::string protocol : {"paper", "kvpress"}) {
    GridOptions go;
    go.protocol = protocol;
    for (auto& s : samples) {
      auto grid = run_sample(*model, *tok, s, variants, go, false);
      auto alone = run_sample(*model, *tok, s, variants, go, true);
      ASSERT_EQ(grid.size(), alone.size());
      for (size_t i = 0; i < grid.size(); ++i) {
        EXPECT_EQ(grid[i].tokens, alone[i].tokens) << protocol << " " << grid[i].method << "@" << grid[i].budget;
        EXPECT_EQ(grid[i].kept_mean, alone[i].kept_mean);
        ASSERT_TRUE(grid[i].hit_rate.has_value());
        EXPECT_DOUBLE_EQ(*grid[i].hit_rate, *alone[i].hit_rate);
      }
    }
  }
}

// Phase times are added up when asked for, and asking changes no output.
TEST(Grid, PhaseTimesAddUpWithoutChangingOutputs) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  auto model = LlamaModel::load(testbed(), torch::kCPU, torch::kFloat32);
  auto tok = Tokenizer::load(testbed());
  auto samples = ruler_samples(*tok, "niah_single_1", 500, 1);
  auto variants = make_grid({"full", "snapkv"}, {"64"}, {{"snapkv", {{"window", 16}}}});
  GridOptions plain;
  auto want = run_sample(*model, *tok, samples[0], variants, plain, false);
  GridTimes t;
  GridOptions timed;
  timed.times = &t;
  auto got = run_sample(*model, *tok, samples[0], variants, timed, false);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].tokens, want[i].tokens);
  EXPECT_EQ(t.samples, 1);
  EXPECT_EQ(t.decode_groups, 2);  // full on its own, snapkv@64 in the batch of small caches
  EXPECT_GT(t.prefill_s, 0);
  EXPECT_GT(t.select_s, 0);
  EXPECT_GT(t.hit_rate_s, 0);
  EXPECT_GT(t.decode_s, 0);
  GridTimes a;
  timed.times = &a;
  run_sample(*model, *tok, samples[0], variants, timed, true);  // one variant at a time
  EXPECT_EQ(a.samples, 1);
  EXPECT_EQ(a.decode_groups, 2);
  EXPECT_GT(a.prefill_s, 0);
  EXPECT_GT(a.decode_s, 0);
}

TEST(Grid, KvpressProtocolCompressesOnlyTheContext) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  auto tok = Tokenizer::load(testbed());
  BenchSample s;
  s.context = "Some context about apples and pears.\n";
  s.question = "What fruit is mentioned first?";
  s.answer_prefix = " Answer:";
  auto paper = build_sample_ids(*tok, s, ChatTemplate::None, "paper");
  auto kvp = build_sample_ids(*tok, s, ChatTemplate::None, "kvpress");
  EXPECT_EQ(paper.ids, kvp.ids);
  EXPECT_EQ(paper.n_ctx, static_cast<int64_t>(paper.ids.size()));
  EXPECT_LT(kvp.n_ctx, static_cast<int64_t>(kvp.ids.size()));
  auto ctx_only = tok->encode(s.context, true);
  EXPECT_LE(kvp.n_ctx, static_cast<int64_t>(ctx_only.size()));
  EXPECT_GE(kvp.n_ctx, static_cast<int64_t>(ctx_only.size()) - 1);
}

// question-first: a real RULER sample's question (trimmed) leads, then the context; the answer
// prefix still ends the prompt, and the whole prompt is compressed. NIAH has no answer prefix:
// one-line error.
TEST(Grid, QuestionFirstMovesTheQuestionBeforeTheContext) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  auto tok = Tokenizer::load(testbed());
  const BenchSample s = ruler_samples(*tok, "niah_single_1", 500, 1).at(0);
  ASSERT_FALSE(s.question.empty());
  ASSERT_FALSE(s.answer_prefix.empty());
  const std::string text = question_first_text(s);
  const std::string q = s.question.substr(s.question.find_first_not_of(" \n"));
  EXPECT_EQ(text.rfind(q.substr(0, q.find_last_not_of(" \n") + 1) + "\n\n" + s.context, 0), 0u) << text.substr(0, 200);
  auto qf = build_sample_ids(*tok, s, ChatTemplate::None, "question-first");
  auto paper = build_sample_ids(*tok, s, ChatTemplate::None, "paper");
  EXPECT_EQ(qf.n_ctx, static_cast<int64_t>(qf.ids.size()));
  EXPECT_NE(qf.ids, paper.ids);
  EXPECT_EQ(qf.ids, tok->encode(text + s.answer_prefix, true, false));
  // The same tokens up to the question's move: both end with the answer prefix.
  auto tail = tok->encode(s.answer_prefix, false, false);
  ASSERT_GT(qf.ids.size(), tail.size());
  EXPECT_EQ(tok->decode(std::vector<int64_t>(qf.ids.end() - 3, qf.ids.end()), true),
            tok->decode(std::vector<int64_t>(paper.ids.end() - 3, paper.ids.end()), true));
  BenchSample niah = s;
  niah.bench = "niah";
  niah.task = "niah";
  niah.answer_prefix.clear();
  test::expect_error([&] { build_sample_ids(*tok, niah, ChatTemplate::None, "question-first"); },
                     {"question-first", "niah", "--protocol paper"});
}

TEST(Grid, EndToEndRunWritesTablesPlotsAndResumes) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  RunOptions o;
  o.model = testbed();
  o.bench = "ruler";
  o.tasks = {"niah_single_1"};
  o.lengths = {600};
  o.limit = 2;
  o.methods = {"full", "snapkv"};
  o.budgets = {"64"};
  o.method_options = {{"snapkv", {{"window", 16}}}};
  o.data_dir = test::shared_data();
  o.device = "cpu";
  o.out = test::temp_dir("run");
  EXPECT_EQ(run_eval(o), 4);
  for (auto f : {"predictions.jsonl", "metrics.json", "results.md", "results.csv", "config.json", "run_meta.json"})
    EXPECT_TRUE(fs::exists(o.out + "/" + f)) << f;
#ifdef JUDGEQ_HAVE_CAIRO
  EXPECT_TRUE(fs::exists(o.out + "/score_vs_budget_ruler.png"));
  EXPECT_TRUE(fs::exists(o.out + "/score_vs_budget_ruler.svg"));
#endif
  // Without --resume the folder is refused; with it nothing is redone.
  EXPECT_THROW(run_eval(o), Error);
  o.resume = true;
  EXPECT_EQ(run_eval(o), 0);
  std::ifstream in(o.out + "/predictions.jsonl");
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_EQ(lines, 4);
  // An interruption mid-line: the partial line is dropped and that sample redone.
  {
    std::ofstream app(o.out + "/predictions.jsonl", std::ios::app);
    app << "{\"bench\":\"ruler\",\"id\":\"niah_sing";
  }
  auto text = read_file(o.out + "/predictions.jsonl");
  auto first_nl = text.find('\n');
  write_file_atomic(o.out + "/predictions.jsonl", text.substr(first_nl + 1));  // forget one finished line too
  EXPECT_EQ(run_eval(o), 1);  // only the variant whose line was removed is redone
  EXPECT_NO_THROW(write_report(o.out));
}

TEST(Grid, LongBenchRunTruncatesToTheModelWindow) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  RunOptions o;
  o.model = testbed();
  o.bench = "longbench";
  o.tasks = {"multi_news"};
  o.limit = 1;
  o.methods = {"full"};
  o.data_dir = test::shared_data() + "/longbench/data";
  o.device = "cpu";
  o.hit_rate = false;
  o.out = test::temp_dir("lb");
  ::setenv("JUDGEQ_DATA", test::shared_data().c_str(), 1);
  EXPECT_EQ(run_eval(o), 1);
  auto line = nlohmann::json::parse(read_file(o.out + "/predictions.jsonl"));
  // multi_news generates up to 512 tokens: the prompt leaves room for them in the 8192 window.
  EXPECT_LE(line["prompt_tokens"].get<int64_t>(), 8192 - 512);
  EXPECT_EQ(line["metric"], "rouge_l");
}
