// Validation of soft tokens by their critical-KV hit rate against the oracle, on the project's
// testbed model: chat-style prompts over filler text answered by the model itself; training
// lowers the loss and raises the held-out hit rate above the initial soft tokens'; fit logs the
// hook's fields beside val_loss, in the library and through `judgeq-train fit --val`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common.h"
#include "trainer/trainer.h"
#include "trainer/validation.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string testbed() { return test::source_dir() + "/models/testbed"; }

// Chat-style prompts in the manner of scripts/softtokens/make_chat_data.py: an instruction around
// a passage of `words` words of a public-domain book, passages taken at evenly spaced offsets
// starting at `first` (train and validation use disjoint offsets).
void write_chats(const std::string& path, int n, int first, int stride, int words) {
  std::ifstream in(test::shared_data() + "/filler/gutenberg/pg1342.txt");
  ASSERT_TRUE(in.good()) << "filler text missing under " << test::shared_data();
  std::vector<std::string> all;
  for (std::string w; in >> w;) all.push_back(w);
  const char* instructions[] = {"Summarize the passage above in one sentence.", "What is the main topic of this text?",
                                "Which people or places are named in the passage? List them.",
                                "What happens at the end of the passage?", "Give a short title for this text."};
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    std::ostringstream text;
    const size_t start = 2000 + size_t(first + i * stride) * size_t(words);
    for (int j = 0; j < words; ++j) text << (j ? " " : "") << all.at(start + j);
    const std::string instr = instructions[i % 5];
    const std::string prompt = i % 2 ? "Read the following text.\n\n" + text.str() + "\n\nQuestion: " + instr
                                     : text.str() + "\n\n" + instr;
    out << json{{"prompt", prompt}, {"response", ""}}.dump() << "\n";
  }
}

std::string prepare(const std::string& dir, const std::string& name, int n, int first, int stride, int words) {
  write_chats(dir + "/" + name + ".jsonl", n, first, stride, words);
  PrepareOptions po;
  po.model = testbed();
  po.data = dir + "/" + name + ".jsonl";
  po.out = dir + "/" + name + ".h5";
  po.max_new_tokens = 32;
  po.batch = 4;
  po.quiet = true;
  po.device = "cpu";
  prepare_train_set(po);
  return po.out;
}

std::vector<json> read_log(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

}  // namespace

TEST(ValidationHit, TrainedSoftTokensBeatTheirInitialisation) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  const std::string dir = test::temp_dir("val_hit");
  // Passages of 180 words (prompts of 270-320 tokens): 16 to train on, 6 held out.
  const std::string train_path = prepare(dir, "train", 16, 0, 2, 180);
  const std::string val_path = prepare(dir, "val", 6, 1, 6, 180);  // odd offsets: passages not trained on
  const TrainSet val = TrainSet::read(val_path);
  ASSERT_EQ(val.size(), 6);

  auto model = LlamaModel::load(testbed(), torch::kCPU, torch::kFloat32);
  // Budget 64 of ~300 entries. A short window (8) leaves most of the budget to the scorer: with
  // snapkv's 32 the soft tokens choose half as much and the gain shrinks (and with max pooling,
  // the methods' default, it vanishes at this scale; see trainer/validation.h).
  HitRateValidation hv;
  hv.budget = "64";
  hv.window = 8;

  FitOptions o;
  o.model = testbed();
  o.train = train_path;
  o.val = val_path;
  o.out = dir + "/run";
  o.soft_tokens = 8;
  o.steps = 80;
  o.batch = 2;
  o.lr = 2e-2;
  o.warmup_steps = 2;
  o.val_every = o.steps;  // one validation, at the end
  o.quiet = true;
  o.device = "cpu";
  o.dtype = "fp32";

  // The initial soft tokens (init "mean": the mean embedding row, S times).
  SoftTokens init;
  init.embeddings = model->embedding_table().to(torch::kFloat32).mean(0, true).repeat({o.soft_tokens, 1}).contiguous();
  const json before = validation_hit_rates(*model, init, val, hv);

  std::vector<double> losses;
  std::vector<json> vals;
  FitHooks hooks;
  hooks.validate = hit_rate_validation_hook(hv);
  hooks.on_log = [&](const json& r) {
    if (r["type"] == "train") losses.push_back(r["loss"].get<double>());
    if (r["type"] == "val") vals.push_back(r);
  };
  auto res = fit(o, hooks);
  ASSERT_TRUE(res.finished);
  ASSERT_EQ(losses.size(), size_t(o.steps));
  ASSERT_EQ(vals.size(), 1u);

  SoftTokens trained = load_soft_tokens(res.soft_tokens, model->config());
  const json after = validation_hit_rates(*model, trained, val, hv);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += losses[i] / 5, last += losses[losses.size() - 5 + i] / 5;
  std::cout << "hit rates at budget " << hv.budget << " on " << after["val_hit_samples"] << " held-out prompts: judgeq init "
            << before["val_hit_rate_judgeq"] << ", trained " << after["val_hit_rate_judgeq"] << ", snapkv "
            << after["val_hit_rate_snapkv"] << "; training loss (mean of 5 steps) first " << first << ", last " << last
            << "; val_loss " << vals[0]["val_loss"] << "\n";

  // (a) the loss falls.
  EXPECT_LT(last, 0.7 * first) << "loss did not fall: first " << first << ", last " << last;
  // (b) the trained soft tokens find more of the oracle's entries on held-out prompts.
  ASSERT_EQ(after["val_hit_samples"].get<int64_t>(), val.size());
  EXPECT_EQ(after["val_hit_budget"], hv.budget);
  const double h0 = before["val_hit_rate_judgeq"].get<double>(), h1 = after["val_hit_rate_judgeq"].get<double>();
  EXPECT_GT(h1, h0 + 0.02) << "init " << h0 << ", trained " << h1;
  // SnapKV does not depend on the soft tokens.
  EXPECT_DOUBLE_EQ(before["val_hit_rate_snapkv"].get<double>(), after["val_hit_rate_snapkv"].get<double>());
  // (c) the hook's fields are logged beside val_loss, for the soft tokens of that step.
  const auto log = read_log(o.out + "/log.jsonl");
  const json& v = log.back();
  ASSERT_EQ(v["type"], "val");
  EXPECT_TRUE(v.contains("val_loss"));
  EXPECT_EQ(v["val_hit_budget"], hv.budget);
  EXPECT_NEAR(v["val_hit_rate_judgeq"].get<double>(), h1, 1e-9);
  EXPECT_NEAR(v["val_hit_rate_snapkv"].get<double>(), after["val_hit_rate_snapkv"].get<double>(), 1e-9);
}

// judgeq-train fit --val logs the hit rates (default budget, --val-hit-budget, off).
TEST(ValidationHit, FitCommandLogsHitRates) {
  if (!fs::exists(testbed() + "/model.safetensors")) GTEST_SKIP() << "testbed weights missing";
  const std::string bin = test::binary_dir() + "/judgeq-train";
  ASSERT_TRUE(fs::exists(bin)) << bin << " is not built; build the judgeq-train target";
  const std::string dir = test::temp_dir("val_hit_cli");
  const std::string train = prepare(dir, "train", 2, 40, 2, 120);
  const std::string val = prepare(dir, "val", 2, 41, 2, 120);
  auto run = [&](const std::string& name, const std::string& extra) {
    const std::string cmd = bin + " fit --model " + testbed() + " --train " + train + " --val " + val + " --out " + dir +
                            "/" + name + " --soft-tokens 4 --steps 2 --val-every 2 --device cpu --quiet " + extra +
                            " > " + dir + "/" + name + ".out 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << read_file(dir + "/" + name + ".out");
    const auto log = read_log(dir + "/" + name + "/log.jsonl");
    EXPECT_FALSE(log.empty());
    return log.empty() ? json() : log.back();
  };
  json v = run("default", "");
  EXPECT_EQ(v["type"], "val");
  EXPECT_EQ(v["val_hit_budget"], HitRateValidation{}.budget);
  EXPECT_EQ(v["val_hit_pooling"], "none");
  v = run("b48", "--val-hit-budget 48 --val-hit-window 16 --val-hit-pooling max");
  EXPECT_EQ(v["val_hit_budget"], "48");
  EXPECT_EQ(v["val_hit_pooling"], "max");
  EXPECT_EQ(v["val_hit_samples"], 2);
  EXPECT_GT(v["val_hit_rate_judgeq"].get<double>(), 0.0);
  EXPECT_LE(v["val_hit_rate_judgeq"].get<double>(), 1.0);
  EXPECT_GT(v["val_hit_rate_snapkv"].get<double>(), 0.0);
  v = run("off", "--val-hit-budget off");
  EXPECT_TRUE(v.contains("val_loss"));
  EXPECT_FALSE(v.contains("val_hit_rate_judgeq"));
  // A budget below the window fails before training, with one line.
  const std::string cmd = bin + " fit --model " + testbed() + " --train " + train + " --val " + val + " --out " + dir +
                          "/bad --steps 1 --device cpu --quiet --val-hit-budget 16 > " + dir + "/bad.out 2>&1";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  EXPECT_NE(read_file(dir + "/bad.out").find("window"), std::string::npos) << read_file(dir + "/bad.out");
  EXPECT_FALSE(fs::exists(dir + "/bad/log.jsonl"));
}
