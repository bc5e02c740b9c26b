// Bad checkpoints give one clear judgeq::Error naming the problem and what to do.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
namespace fs = std::filesystem;

namespace {

std::string copy_fixture(const std::string& tag) {
  auto dir = test::temp_dir(tag);
  fs::copy(test::fixtures() + "/hf/tiny-llama31", dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  return dir;
}

// Expects load() to throw an Error whose one-line message contains every needle.
void expect_error(const std::string& dir, std::vector<std::string> needles) {
  try {
    LlamaModel::load(dir, torch::kCPU, torch::kFloat32);
    FAIL() << "expected an error loading " << dir;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

void rewrite_weights(const std::string& dir, const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  SafetensorsFile f(dir + "/model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (auto& [name, info] : f.tensors()) t.push_back({name, f.get(name)});
  edit(t);
  write_safetensors(dir + "/model.safetensors.new", t);
  fs::rename(dir + "/model.safetensors.new", dir + "/model.safetensors");
}

TEST(BadInput, MissingFolderAndConfig) {
  expect_error("/nonexistent/judgeq/model", {"does not exist", "--model"});
  auto dir = copy_fixture("nocfg");
  fs::remove(dir + "/config.json");
  expect_error(dir, {"missing config.json", dir});
}

TEST(BadInput, UnknownModelType) {
  auto dir = copy_fixture("type");
  auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
  cfg["model_type"] = "gpt2";
  write_file_atomic(dir + "/config.json", cfg.dump());
  expect_error(dir, {"unsupported model_type", "gpt2", "llama, mistral"});
}

TEST(BadInput, MalformedConfigJson) {
  auto dir = copy_fixture("badjson");
  write_file_atomic(dir + "/config.json", "{\"model_type\": \"llama\",");
  expect_error(dir, {"cannot parse", "config.json"});
}

TEST(BadInput, TruncatedAndCorruptSafetensors) {
  auto dir = copy_fixture("trunc");
  auto bytes = read_file(dir + "/model.safetensors");
  write_file_atomic(dir + "/model.safetensors", bytes.substr(0, 100));
  expect_error(dir, {"model.safetensors", "truncated or corrupt"});
  write_file_atomic(dir + "/model.safetensors", bytes.substr(0, bytes.size() - 1000));
  expect_error(dir, {"model.safetensors", "truncated or corrupt"});
  std::string garbage = bytes;
  for (size_t i = 8; i < 40; ++i) garbage[i] = '#';
  write_file_atomic(dir + "/model.safetensors", garbage);
  expect_error(dir, {"not valid JSON", "truncated or corrupt"});
  write_file_atomic(dir + "/model.safetensors", "abc");
  expect_error(dir, {"too short"});
}

TEST(BadInput, MissingUnexpectedAndMisshapedReportedTogether) {
  auto dir = copy_fixture("names");
  rewrite_weights(dir, [](auto& t) {
    for (auto it = t.begin(); it != t.end();) {
      if (it->first == "model.layers.1.mlp.up_proj.weight") it = t.erase(it);
      else ++it;
    }
    for (auto& [n, x] : t)
      if (n == "model.layers.0.self_attn.k_proj.weight") x = torch::zeros({3, 64});
    t.push_back({"model.layers.0.self_attn.extra.weight", torch::zeros({2})});
  });
  expect_error(dir, {"missing model.layers.1.mlp.up_proj.weight", "wrong shape model.layers.0.self_attn.k_proj.weight [3,64] vs [16,64]",
                     "unexpected model.layers.0.self_attn.extra.weight"});
}

TEST(BadInput, MissingWeightsFileAndShards) {
  auto dir = copy_fixture("noweights");
  fs::remove(dir + "/model.safetensors");
  expect_error(dir, {"no weights", "model.safetensors"});
  write_file_atomic(dir + "/model.safetensors.index.json",
                    R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})");
  expect_error(dir, {"shards", "missing", "model-00001-of-00002.safetensors"});
}

TEST(BadInput, MissingTokenizer) {
  auto dir = copy_fixture("notok");
  try {
    Tokenizer::load(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
  }
}

TEST(BadInput, ShardedCheckpointLoads) {
  // A checkpoint split into two shards with an index loads to the same model.
  auto dir = copy_fixture("shards");
  SafetensorsFile f(dir + "/model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> a, b;
  nlohmann::json map;
  int i = 0;
  for (auto& [name, info] : f.tensors()) {
    const bool first = (i++ % 2) == 0;
    (first ? a : b).push_back({name, f.get(name)});
    map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors(dir + "/model-00001-of-00002.safetensors", a);
  write_safetensors(dir + "/model-00002-of-00002.safetensors", b);
  write_file_atomic(dir + "/model.safetensors.index.json", nlohmann::json({{"weight_map", map}}).dump());
  fs::remove(dir + "/model.safetensors");
  auto sharded = LlamaModel::load(dir, torch::kCPU, torch::kFloat32);
  auto single = LlamaModel::load(test::fixtures() + "/hf/tiny-llama31", torch::kCPU, torch::kFloat32);
  auto wa = sharded->named_weights(), wb = single->named_weights();
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t k = 0; k < wa.size(); ++k) EXPECT_TRUE(torch::equal(wa[k].second, wb[k].second)) << wa[k].first;
}

}  // namespace
