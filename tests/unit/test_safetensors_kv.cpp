// safetensors round trips and dtype conversion; KVCache append/gather/clone/bytes/batching.
#include <gtest/gtest.h>

#include "common.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;

TEST(Safetensors, RoundTripWithMetadataAndDtypes) {
  auto dir = test::temp_dir("st");
  auto a = torch::randn({3, 5});
  auto b = torch::arange(7, torch::kInt64);
  write_safetensors(dir + "/x.safetensors", {{"a", a}, {"b", b}, {"c", a.to(torch::kBFloat16)}}, {{"k", "v"}});
  SafetensorsFile f(dir + "/x.safetensors");
  EXPECT_TRUE(torch::equal(f.get("a"), a));
  EXPECT_TRUE(torch::equal(f.get("b"), b));
  EXPECT_EQ(f.get("c").scalar_type(), torch::kBFloat16);
  EXPECT_EQ(f.get("a", torch::kFloat16).scalar_type(), torch::kFloat16);
  EXPECT_TRUE(torch::allclose(f.get("c", torch::kFloat32), a, 1e-2, 1e-2));
  EXPECT_EQ(f.metadata().at("k"), "v");
  EXPECT_EQ(f.tensors().at("a").shape, (std::vector<int64_t>{3, 5}));
  EXPECT_THROW(f.get("nope"), Error);
  // No temp file is left behind.
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) n += e.path().filename() != "x.safetensors";
  EXPECT_EQ(n, 0);
}

TEST(Safetensors, UnwritableFolderFailsCleanly) {
  EXPECT_THROW(write_safetensors("/nonexistent/dir/x.safetensors", {{"a", torch::ones({1})}}), Error);
}

TEST(KVCache, AppendGatherCloneBytes) {
  KVCache c(2, 1, 2, 4, torch::kFloat32, torch::kCPU);
  auto k = torch::arange(2 * 6 * 4, torch::kFloat32).view({1, 2, 6, 4});
  auto pos = torch::arange(6, torch::kInt64).view({1, 6});
  for (int l = 0; l < 2; ++l) c.append(l, k, -k, pos);
  EXPECT_EQ(c.len(0), 6);
  EXPECT_EQ(c.bytes_in_use(), 2 * 2 * 1 * 2 * 6 * 4 * 4);
  auto saved = c.clone();
  // Keep entries {5, 0, 2} on head 0 and {1, 3, 4} on head 1 of layer 0.
  auto idx = torch::tensor({5, 0, 2, 1, 3, 4}, torch::kInt64).view({1, 2, 3});
  c.gather(0, idx);
  EXPECT_EQ(c.len(0), 3);
  EXPECT_EQ(c.len(1), 6);
  EXPECT_TRUE(torch::equal(c.positions(0)[0][0], torch::tensor({5, 0, 2}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(c.keys(0)[0][1][0], k[0][1][1]));
  EXPECT_TRUE(torch::equal(c.values(0)[0][0][0], -k[0][0][5]));
  EXPECT_EQ(c.bytes_in_use(), 2 * 1 * 2 * (3 + 6) * 4 * 4);
  // The clone is independent.
  EXPECT_EQ(saved.len(0), 6);
  EXPECT_TRUE(torch::equal(saved.keys(0), k));
  // Ragged selection: head 1 keeps only 2 entries.
  auto keep = torch::tensor({true, true, true, true, true, false}).view({1, 2, 3});
  saved.gather(1, idx, keep);
  auto counts = saved.kept_counts();
  EXPECT_EQ(counts[1][0][0].item<int64_t>(), 3);
  EXPECT_EQ(counts[1][0][1].item<int64_t>(), 2);
  EXPECT_EQ(counts[0][0][0].item<int64_t>(), 6);
}

// Long buffers get a multiple of 256 rows (the CUDA-graph decoder's split reduction needs a divisor
// of the capacity); short ones stay exact.
TEST(KVCache, LongBuffersHoldAMultipleOf256Rows) {
  KVCache c(1, 1, 2, 4, torch::kFloat32, torch::kCPU);
  auto add = [&](int64_t t, int64_t from) {
    auto k = torch::randn({1, 2, t, 4});
    c.append(0, k, k, torch::arange(from, from + t, torch::kInt64).view({1, t}));
  };
  auto capacity = [&] { return c.values(0).stride(1) / 4; };
  add(100, 0);
  EXPECT_EQ(capacity(), 100);
  add(1953, 100);  // 2053 tokens, a prime
  EXPECT_EQ(c.len(0), 2053);
  EXPECT_EQ(capacity() % 256, 0);
  EXPECT_GE(capacity(), 2053);
  EXPECT_LT(capacity(), 2053 + 256);
  add(1, 2053);  // growth keeps the rule
  EXPECT_EQ(capacity() % 256, 0);
  EXPECT_EQ(c.positions(0)[0][1][2053].item<int64_t>(), 2053);
}

TEST(KVCache, CatAndSelectBatch) {
  KVCache a(1, 1, 1, 2, torch::kFloat32, torch::kCPU), b(1, 1, 1, 2, torch::kFloat32, torch::kCPU);
  a.append(0, torch::ones({1, 1, 3, 2}), torch::ones({1, 1, 3, 2}), torch::arange(3).view({1, 3}));
  b.append(0, torch::ones({1, 1, 5, 2}) * 2, torch::ones({1, 1, 5, 2}), torch::arange(5).view({1, 5}));
  a.set_next_positions({3});
  b.set_next_positions({9});
  auto c = KVCache::cat_batch({&a, &b});
  EXPECT_EQ(c.batch(), 2);
  EXPECT_EQ(c.len(0), 5);
  ASSERT_TRUE(c.valid(0).defined());
  EXPECT_EQ(c.valid(0)[0][0].sum().item<int64_t>(), 3);
  EXPECT_EQ(c.next_positions(), (std::vector<int64_t>{3, 9}));
  auto s = c.select_batch({1});
  EXPECT_TRUE(torch::equal(s.keys(0), b.keys(0)));
  EXPECT_EQ(s.next_positions(), (std::vector<int64_t>{9}));
  EXPECT_TRUE(torch::equal(c.keys(0)[0].narrow(1, 0, 3), a.keys(0)[0]));
  EXPECT_EQ(c.keys(0)[0].narrow(1, 3, 2).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(c.positions(0)[1][0][4].item<int64_t>(), 4);
  // Past 64 entries the buffer has a multiple of 64 rows (a prime length here), contents unchanged.
  KVCache d(1, 1, 1, 2, torch::kFloat32, torch::kCPU);
  d.append(0, torch::randn({1, 1, 97, 2}), torch::randn({1, 1, 97, 2}), torch::arange(97).view({1, 97}));
  auto e = KVCache::cat_batch({&a, &d});
  EXPECT_EQ(e.len(0), 97);
  EXPECT_EQ(e.values(0).stride(1), 128 * 2);
  EXPECT_TRUE(torch::equal(e.values(0)[1], d.values(0)[0]));
  EXPECT_EQ(e.valid(0)[1][0].sum().item<int64_t>(), 97);
  EXPECT_EQ(e.valid(0)[0][0].sum().item<int64_t>(), 3);
}

TEST(ModelConfig, ParsesBothRopeFormatsAndEosLists) {
  nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 10}, {"hidden_size", 8}, {"intermediate_size", 16},
                      {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
                      {"rope_theta", 500000.0},
                      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                        {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}},
                      {"eos_token_id", {128001, 128008, 128009}}, {"bos_token_id", 128000}};
  auto c = ModelConfig::from_json(j, "test");
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.eos_token_ids.size(), 3u);
  EXPECT_EQ(c.group_size(), 2);
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e6}};
  auto d = ModelConfig::from_json(j, "test");
  EXPECT_EQ(d.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(d.rope_theta, 1e6);
  EXPECT_NE(c.hash(), d.hash());
  j["rope_parameters"]["rope_type"] = "yarn";
  EXPECT_THROW(ModelConfig::from_json(j, "test"), Error);
  j["num_key_value_heads"] = 3;
  j["rope_parameters"]["rope_type"] = "default";
  EXPECT_THROW(ModelConfig::from_json(j, "test"), Error);
}
