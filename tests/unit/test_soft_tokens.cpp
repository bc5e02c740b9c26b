// Soft-token files: written by save_soft_tokens, read back here by an independent parser of the
// safetensors layout, and refused when made for another model or format version.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "model/config.h"
#include "trainer/soft_tokens.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {


ModelConfig tiny_config() { return ModelConfig::load(test::fixtures() + "/hf/tiny-llama31"); }
ModelConfig stories_config() { return ModelConfig::load(test::fixtures() + "/stories260K"); }

SoftTokens make_soft(const ModelConfig& c, int64_t S, torch::Dtype dtype) {
  SoftTokens st;
  st.embeddings = torch::arange(S * c.hidden_size, torch::kFloat32).view({S, c.hidden_size}).div(100).to(dtype);
  st.metadata = soft_tokens_metadata(c, S);
  st.metadata["loss"] = "mse";
  st.metadata["steps"] = 7;
  st.metadata["scorer"] = {{"soft_reduce", "mean"}, {"head_reduce", "mean"}, {"renormalize", false}};
  return st;
}

// The header of a safetensors file, parsed by hand: 8-byte little-endian length, then JSON.
json read_header(const std::string& path, std::string* data = nullptr) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  EXPECT_LE(8 + n, bytes.size());
  if (data) *data = bytes.substr(8 + n);
  return json::parse(bytes.substr(8, n));
}


}  // namespace

TEST(SoftTokens, RoundTripAndIndependentReader) {
  auto c = tiny_config();
  auto dir = test::temp_dir("soft_rt");
  const std::string path = dir + "/judgeq.safetensors";
  auto st = make_soft(c, 5, torch::kBFloat16);
  save_soft_tokens(path, st);

  std::string data;
  auto h = read_header(path, &data);
  ASSERT_TRUE(h.contains(kSoftTokensTensor));
  EXPECT_EQ(h[kSoftTokensTensor]["dtype"], "BF16");
  EXPECT_EQ(h[kSoftTokensTensor]["shape"], json::array({5, c.hidden_size}));
  EXPECT_EQ(h[kSoftTokensTensor]["data_offsets"], json::array({0, 5 * c.hidden_size * 2}));
  auto& m = h["__metadata__"];
  EXPECT_EQ(m["format"], "judgeq-soft-tokens");
  EXPECT_EQ(m["format_version"], "1");
  EXPECT_EQ(m["config_hash"], c.hash());
  EXPECT_EQ(m["hidden_size"], std::to_string(c.hidden_size));
  EXPECT_EQ(m["vocab_size"], std::to_string(c.vocab_size));
  EXPECT_EQ(m["n_soft_tokens"], "5");
  EXPECT_EQ(m["position_rule"], "T..T+S-1");
  EXPECT_EQ(m["dtype"], "bf16");
  EXPECT_EQ(m["loss"], "mse");
  EXPECT_EQ(json::parse(m["scorer"].get<std::string>())["head_reduce"], "mean");
  EXPECT_TRUE(m.contains("tool_version") && m.contains("git_commit") && m.contains("base_model"));
  // The raw bytes are the bf16 embeddings.
  ASSERT_EQ(data.size(), static_cast<size_t>(5 * c.hidden_size * 2));
  auto raw = torch::empty({5, c.hidden_size}, torch::kBFloat16);
  std::memcpy(raw.data_ptr(), data.data(), data.size());
  EXPECT_TRUE(torch::equal(raw, st.embeddings));

  auto back = load_soft_tokens(path, c);
  EXPECT_TRUE(torch::equal(back.embeddings, st.embeddings));
  EXPECT_EQ(back.embeddings.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(back.metadata["steps"], 7);
  EXPECT_EQ(back.metadata["hidden_size"], c.hidden_size);
  EXPECT_EQ(back.metadata["scorer"]["soft_reduce"], "mean");
  EXPECT_EQ(back.metadata["config_hash"], c.hash());
  EXPECT_EQ(back.n(), 5);
}

TEST(SoftTokens, RefusesAnotherModel) {
  auto tiny = tiny_config(), stories = stories_config();
  ASSERT_EQ(tiny.hidden_size, stories.hidden_size);  // same width: the config hash must catch it
  auto dir = test::temp_dir("soft_other");
  save_soft_tokens(dir + "/s.safetensors", make_soft(tiny, 3, torch::kFloat32));
  test::expect_error([&] { load_soft_tokens(dir + "/s.safetensors", stories); },
               {"made for another model", tiny.name, tiny.hash(), stories.hash(), "train soft tokens for this model"});
  // A different hidden size is refused as well.
  auto wide = tiny;
  wide.hidden_size = 128;
  test::expect_error([&] { load_soft_tokens(dir + "/s.safetensors", wide); }, {"hidden 64", "hidden 128"});
}

TEST(SoftTokens, RefusesUnknownVersionAndFormat) {
  auto c = tiny_config();
  auto dir = test::temp_dir("soft_ver");
  auto st = make_soft(c, 2, torch::kFloat32);
  st.metadata["format_version"] = 99;
  // save does not police the version (a newer tool may write one); the reader does.
  save_soft_tokens(dir + "/v.safetensors", st);
  test::expect_error([&] { load_soft_tokens(dir + "/v.safetensors", c); },
               {"unsupported soft-tokens format version", "got 99", "expected 1", "judgeq-train export"});

  write_safetensors(dir + "/w.safetensors", {{"x", torch::zeros({2, 2})}}, {{"format", "something-else"}});
  test::expect_error([&] { load_soft_tokens(dir + "/w.safetensors", c); }, {"not a judgeq soft-tokens file", "something-else"});
  test::expect_error([&] { load_soft_tokens(dir + "/missing.safetensors", c); }, {"not found", "missing.safetensors"});
}

TEST(SoftTokens, SaveChecksShapeAndMetadata) {
  auto c = tiny_config();
  auto dir = test::temp_dir("soft_save");
  auto st = make_soft(c, 2, torch::kFloat32);
  st.embeddings = torch::zeros({3, c.hidden_size});
  test::expect_error([&] { save_soft_tokens(dir + "/x.safetensors", st); }, {"does not match the embeddings"});
  st.metadata.erase("config_hash");
  test::expect_error([&] { save_soft_tokens(dir + "/x.safetensors", st); }, {"lacks 'config_hash'"});
  EXPECT_FALSE(fs::exists(dir + "/x.safetensors"));
}

TEST(SoftTokens, Positions) {
  auto p = soft_token_positions({5, 9}, 3);
  EXPECT_TRUE(torch::equal(p, torch::tensor({5, 6, 7, 9, 10, 11}, torch::kInt64).view({2, 3})));
}
