// prepare and fit on bad input: one-line errors naming the problem (line numbers included),
// skipped lines counted, nothing half-written; resumes refused across models and configs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "trainer/trainer.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {


std::string tiny_dir() { return test::fixtures() + "/hf/tiny-llama31"; }
std::string stories_dir() { return test::fixtures() + "/stories260K"; }


void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream f(path);
  for (auto& l : lines) f << l << "\n";
}

std::string prompt_line(const std::string& p) { return json{{"prompt", p}}.dump(); }

PrepareOptions stories_prepare(const std::string& dir) {
  PrepareOptions po;
  po.model = stories_dir();
  po.data = dir + "/data.jsonl";
  po.out = dir + "/train.h5";
  po.max_new_tokens = 12;
  po.batch = 2;
  po.quiet = true;
  po.device = "cpu";
  return po;
}

const std::vector<std::string> kStories = {
    prompt_line("Once upon a time, there was a little girl named Lily."),
    json{{"conversations", {{{"from", "human"}, {"value", "Tom had a big red ball."}}, {{"from", "gpt"}, {"value", "x"}}}}}.dump(),
    prompt_line("Sam and Mia were friends. They liked to play."),
    prompt_line("One day, a little dog found a bone."),
    prompt_line("There was a big bird who lived in a nest."),
    prompt_line("Anna wanted to bake a cake for her mom.")};

FitOptions quick_fit(const std::string& model, const std::string& train, const std::string& out) {
  FitOptions o;
  o.model = model;
  o.train = train;
  o.out = out;
  o.soft_tokens = 4;
  o.steps = 2;
  o.quiet = true;
  o.device = "cpu";
  return o;
}

TrainSet tiny_set(int64_t n, int64_t T) {
  auto m = LlamaModel::load(tiny_dir(), torch::kCPU, torch::kFloat32);
  TrainSet set;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> p;
    for (int64_t j = 0; j < T; ++j) p.push_back((j * 7 + i * 13) % 320);
    set.add({p, {5, 6, 7}, 10 + i});
  }
  set.attributes = {{"model_config_hash", m->config().hash()}, {"model_name", m->config().name}};
  return set;
}

}  // namespace

TEST(TrainerBadInput, MalformedLineStrictIsAnErrorWithItsLineNumber) {
  auto dir = test::temp_dir("prep_strict");
  auto lines = kStories;
  lines.insert(lines.begin() + 2, "{\"prompt\": \"unterminated");
  write_lines(dir + "/data.jsonl", lines);
  auto po = stories_prepare(dir);
  po.strict = true;
  test::expect_error([&] { prepare_train_set(po); }, {"data.jsonl:3", "malformed JSON", "--strict"});
  EXPECT_FALSE(fs::exists(po.out));
  EXPECT_FALSE(fs::exists(po.out + ".parts"));
  for (auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "data.jsonl") << e.path();
}

TEST(TrainerBadInput, MalformedAndTooLongLinesAreSkippedAndCounted) {
  auto dir = test::temp_dir("prep_skip");
  auto lines = kStories;
  lines.insert(lines.begin() + 1, "[1, 2, 3]");                            // line 2: not an object
  lines.insert(lines.begin() + 3, "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"hi\"}]}");  // line 4: no human turn
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += "The dog ran to the park. ";
  lines.push_back(prompt_line(long_text));                                 // line 9: too long
  lines.push_back("");                                                     // blank: ignored
  write_lines(dir + "/data.jsonl", lines);
  auto po = stories_prepare(dir);
  po.max_prompt_tokens = 60;
  auto st = prepare_train_set(po);
  EXPECT_TRUE(st.finished);
  EXPECT_EQ(st.malformed, 2);
  EXPECT_EQ(st.too_long, 1);
  EXPECT_EQ(st.written, 6);
  auto set = TrainSet::read_for_model(po.out, ModelConfig::load(stories_dir()));
  ASSERT_EQ(set.size(), 6);
  std::vector<int64_t> src;
  for (int64_t i = 0; i < set.size(); ++i) src.push_back(set.source_line(i));
  EXPECT_EQ(src, (std::vector<int64_t>{1, 3, 5, 6, 7, 8}));
  EXPECT_EQ(set.attributes["format"], "judgeq-train-set");
  EXPECT_EQ(set.attributes["format_version"], 1);
  EXPECT_EQ(set.attributes["n_malformed"], 2);
  EXPECT_EQ(set.attributes["n_too_long"], 1);
  EXPECT_TRUE(set.attributes.contains("tool_version") && set.attributes.contains("git_commit"));
  EXPECT_EQ(set.attributes["prepare_config"]["max_new_tokens"], 12);
  for (int64_t i = 0; i < set.size(); ++i) {
    auto s = set.get(i);
    EXPECT_EQ(s.prompt.front(), 1);  // BOS
    EXPECT_GT(s.response.size(), 0u);
    EXPECT_LE(s.response.size(), 12u);
  }
  EXPECT_FALSE(fs::exists(po.out + ".parts"));
}

// A prompt after which the model stops at once yields an empty response: skipped and counted.
// stories260K never emits its EOS (llama2.c models separate stories with BOS), so a copy of it
// is told that the first token it answers to prompt A with is its end of turn.
TEST(TrainerBadInput, EmptyResponsesAreSkippedAndCounted) {
  auto dir = test::temp_dir("prep_empty");
  const std::string model_dir = dir + "/model";
  fs::copy(stories_dir(), model_dir, fs::copy_options::recursive);
  auto tok = Tokenizer::load(stories_dir());
  auto m = LlamaModel::load(stories_dir(), torch::kCPU, torch::kFloat32);
  const std::string a = "Once upon a time, there was a little girl named Lily.", b = "Tom had a big red ball.";
  GenerateOptions g;
  g.max_new_tokens = 1;
  auto first = generate(*m, {tok->encode(a, true), tok->encode(b, true)}, g).tokens;
  ASSERT_NE(first[0][0], first[1][0]) << "pick prompts whose first answer tokens differ";
  auto cfg = json::parse(read_file(model_dir + "/config.json"));
  cfg["eos_token_id"] = first[0][0];
  write_file_atomic(model_dir + "/config.json", cfg.dump());

  write_lines(dir + "/data.jsonl", {prompt_line(a), prompt_line(b)});
  auto po = stories_prepare(dir);
  po.model = model_dir;
  po.max_new_tokens = 4;
  auto st = prepare_train_set(po);
  EXPECT_EQ(st.empty_responses, 1);
  EXPECT_EQ(st.written, 1);
  EXPECT_EQ(TrainSet::read(po.out).source_line(0), 2);

  // Only empty responses: an error, and no file.
  write_lines(dir + "/data.jsonl", {prompt_line(a)});
  fs::remove(po.out);
  test::expect_error([&] { prepare_train_set(po); }, {"no usable samples", "1 empty responses"});
  EXPECT_FALSE(fs::exists(po.out));
  EXPECT_FALSE(fs::exists(po.out + ".parts"));
}

TEST(TrainerBadInput, PromptLimitsBeyondTheModel) {
  auto dir = test::temp_dir("prep_limits");
  write_lines(dir + "/data.jsonl", kStories);
  auto po = stories_prepare(dir);
  po.max_prompt_tokens = 600;  // stories260K has 512 positions
  test::expect_error([&] { prepare_train_set(po); }, {"--max-prompt-tokens", "got 600", "max_position_embeddings"});
  po.max_prompt_tokens = 0;
  po.max_new_tokens = 512;
  test::expect_error([&] { prepare_train_set(po); }, {"--max-new-tokens", "512"});
  EXPECT_FALSE(fs::exists(po.out));
  EXPECT_FALSE(fs::exists(po.out + ".parts"));

  // fit refuses samples that do not fit with the soft tokens, naming the source line.
  auto set = tiny_set(2, 508);  // tiny-llama31: 512 positions
  set.write(dir + "/long.h5");
  auto o = quick_fit(tiny_dir(), dir + "/long.h5", dir + "/run");
  o.soft_tokens = 8;
  test::expect_error([&] { fit(o); }, {"line 10", "508", "max_position_embeddings = 512", "--soft-tokens"});
  EXPECT_FALSE(fs::exists(dir + "/run"));
}

// An interrupted preparation resumes after the lines already done, with the same result.
TEST(TrainerBadInput, PrepareResumes) {
  auto dir = test::temp_dir("prep_resume");
  write_lines(dir + "/data.jsonl", kStories);
  auto po = stories_prepare(dir);
  po.out = dir + "/full.h5";
  prepare_train_set(po);
  auto full = TrainSet::read(po.out);

  po.out = dir + "/part.h5";
  po.checkpoint_every = 2;
  po.stop_after = 2;
  auto s1 = prepare_train_set(po);
  EXPECT_FALSE(s1.finished);
  EXPECT_FALSE(fs::exists(po.out));
  EXPECT_TRUE(fs::exists(po.out + ".parts"));
  // Without --resume the unfinished parts are not silently thrown away.
  auto again = po;
  again.stop_after = 0;
  test::expect_error([&] { prepare_train_set(again); }, {"unfinished preparation", "--resume"});
  // Another setting cannot be mixed in.
  again.resume = true;
  again.max_new_tokens = 20;
  test::expect_error([&] { prepare_train_set(again); }, {"other settings", "max_new_tokens"});
  again.max_new_tokens = po.max_new_tokens;
  auto s2 = prepare_train_set(again);
  EXPECT_TRUE(s2.finished);
  EXPECT_EQ(s2.resumed_after_line, 2);
  auto resumed = TrainSet::read(po.out);
  EXPECT_EQ(resumed.content_hash(), full.content_hash());
  ASSERT_EQ(resumed.size(), full.size());
  for (int64_t i = 0; i < full.size(); ++i) EXPECT_EQ(resumed.source_line(i), full.source_line(i));
  EXPECT_FALSE(fs::exists(po.out + ".parts"));
}

TEST(TrainerBadInput, ResumeRefusesAnotherModelOrConfig) {
  auto dir = test::temp_dir("fit_refuse");
  tiny_set(3, 10).write(dir + "/tiny.h5");
  auto o = quick_fit(tiny_dir(), dir + "/tiny.h5", dir + "/run");
  fit(o);
  const std::string ckpt = read_file(dir + "/run/checkpoint.safetensors");
  const std::string log = read_file(dir + "/run/log.jsonl");

  // Another model (with a training set made for it).
  write_lines(dir + "/data.jsonl", kStories);
  auto po = stories_prepare(dir);
  po.out = dir + "/stories.h5";
  prepare_train_set(po);
  auto other = quick_fit(stories_dir(), po.out, dir + "/run");
  other.resume = true;
  test::expect_error([&] { fit(other); }, {"cannot resume", "another model", "tiny-llama31", "stories260K", "--out"});
  // Another config.
  auto cfg = o;
  cfg.resume = true;
  cfg.lr = 5e-3;
  cfg.soft_tokens = 8;
  test::expect_error([&] { fit(cfg); }, {"cannot resume", "another config", "lr: was 0.001, now 0.005", "soft_tokens: was 4, now 8"});
  // Other data.
  tiny_set(4, 10).write(dir + "/tiny2.h5");
  auto data = o;
  data.resume = true;
  data.train = dir + "/tiny2.h5";
  test::expect_error([&] { fit(data); }, {"cannot resume", "other data"});
  // Without --resume.
  test::expect_error([&] { fit(o); }, {"already holds a training run", "--resume"});
  // The run folder is untouched by all of these.
  EXPECT_EQ(read_file(dir + "/run/checkpoint.safetensors"), ckpt);
  EXPECT_EQ(read_file(dir + "/run/log.jsonl"), log);
}

TEST(TrainerBadInput, BadFilesAndOptions) {
  auto dir = test::temp_dir("fit_badfiles");
  write_file_atomic(dir + "/junk.h5", "not hdf5 at all");
  auto o = quick_fit(tiny_dir(), dir + "/junk.h5", dir + "/run");
  test::expect_error([&] { fit(o); }, {"not an HDF5 training set", "junk.h5", "judgeq-train prepare"});
  o.train = dir + "/missing.h5";
  test::expect_error([&] { fit(o); }, {"training set not found", "missing.h5"});
  // A training set made for another model.
  tiny_set(2, 10).write(dir + "/tiny.h5");
  auto s = quick_fit(stories_dir(), dir + "/tiny.h5", dir + "/run");
  test::expect_error([&] { fit(s); }, {"made with another model", "tiny-llama31", "judgeq-train prepare"});
  // Options.
  auto bad = quick_fit(tiny_dir(), dir + "/tiny.h5", dir + "/run");
  bad.loss = "l1";
  test::expect_error([&] { fit(bad); }, {"unknown loss", "l1", "mse or kl"});
  bad = quick_fit(tiny_dir(), dir + "/tiny.h5", dir + "/run");
  bad.init = "tokens";
  test::expect_error([&] { fit(bad); }, {"--init-tokens"});
  EXPECT_FALSE(fs::exists(dir + "/run"));
  test::expect_error([] { FitOptions::from_json(json{{"learning_rate", 1}}); }, {"unknown config key", "learning_rate", "lr"});
  test::expect_error([] { FitOptions::from_json(json{{"lr", "fast"}}); }, {"config key 'lr'", "a number"});
  auto ok = FitOptions::from_json(json{{"lr", 0.5}, {"soft_tokens", 16}, {"init_tokens", {1, 2}}});
  EXPECT_EQ(ok.lr, 0.5);
  EXPECT_EQ(ok.soft_tokens, 16);
  EXPECT_EQ(ok.init_tokens, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(FitOptions::from_json(ok.to_json()).to_json(), ok.to_json());
  test::expect_error([&] { export_soft_tokens(dir + "/nothing", dir + "/x.safetensors"); }, {"no checkpoint in"});
  EXPECT_FALSE(fs::exists(dir + "/x.safetensors"));
}
