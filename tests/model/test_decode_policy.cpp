// Decoding-time compression: the cache stays bounded, positions keep counting, a budget larger
// than the whole sequence changes nothing, and window-based scorers are refused.
#include <gtest/gtest.h>

#include "common.h"
#include "kv/decode_policy.h"
#include "util/error.h"

using namespace judgeq;

TEST(DecodePolicy, BoundsCacheAndKeepsPositions) {
  auto m = LlamaModel::load(test::fixtures() + "/hf/tiny-llama31", torch::kCPU, torch::kFloat32);
  torch::manual_seed(3);
  auto ids = torch::randint(4, m->config().vocab_size, {30}, torch::kInt64);
  std::vector<int64_t> p(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 30);
  GenerateOptions go;
  go.max_new_tokens = 40;
  auto plain_cache = m->new_cache(1);
  auto logits = prefill(*m, {p}, plain_cache);
  auto plain = decode_greedy(*m, plain_cache, logits, go);

  DecodePolicy big{make_method("streamingllm"), Budget::parse("1000"), 8};
  auto c1 = m->new_cache(1);
  auto l1 = prefill(*m, {p}, c1);
  EXPECT_EQ(decode_with_policy(*m, c1, l1, go, big).tokens[0], plain.tokens[0]);

  DecodePolicy small{make_method("streamingllm", {{"sinks", 4}}), Budget::parse("24"), 8};
  auto c2 = m->new_cache(1);
  auto l2 = prefill(*m, {p}, c2);
  auto r = decode_with_policy(*m, c2, l2, go, small);
  EXPECT_EQ(r.tokens[0].size(), 40u);
  EXPECT_LE(c2.len(0), 24 + 8);
  EXPECT_EQ(c2.next_positions()[0], 30 + 39);  // the last generated token is never fed
  // The kept entries are the sinks and the most recent ones, at their original positions.
  auto pos = c2.positions(0)[0][0];
  EXPECT_EQ(pos[0].item<int64_t>(), 0);
  EXPECT_EQ(pos[pos.size(0) - 1].item<int64_t>(), 30 + 38);
}

TEST(DecodePolicy, RefusesWindowScorers) {
  EXPECT_THROW(check_decode_policy({make_method("snapkv"), Budget::parse("64"), 8}), Error);
  EXPECT_THROW(check_decode_policy({make_method("h2o"), Budget::parse("64"), 8}), Error);
  EXPECT_NO_THROW(check_decode_policy({make_method("knorm"), Budget::parse("64"), 8}));
}
