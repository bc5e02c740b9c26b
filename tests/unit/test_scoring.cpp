// Hand-computed tiny cases for the scorers and selectors.
#include <gtest/gtest.h>

#include <cmath>

#include "kv/compress.h"
#include "kv/scoring.h"
#include "util/error.h"

using namespace judgeq;

namespace {
std::vector<int64_t> vec(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// A 1-layer cache with B = 1, 2 KV heads, D = 1 and the given keys per head.
KVCache cache_with_keys(const std::vector<std::vector<float>>& keys) {
  const int64_t T = static_cast<int64_t>(keys[0].size());
  auto k = torch::zeros({1, 2, T, 1});
  for (int h = 0; h < 2; ++h)
    for (int64_t t = 0; t < T; ++t) k[0][h][t][0] = keys[h][t];
  KVCache c(1, 1, 2, 1, torch::kFloat32, torch::kCPU);
  c.append(0, k, k, torch::arange(T).view({1, T}));
  return c;
}
}  // namespace

TEST(Scoring, AttentionRowsByHand) {
  // Head 0 (q = 1) over keys 0, ln2, ln3 -> 1/6, 2/6, 3/6; head 1 (q = 0) -> uniform. GQA 2:1.
  auto q = torch::tensor({1.0f, 0.0f}).view({1, 2, 1, 1});
  auto k = torch::tensor({0.0f, std::log(2.0f), std::log(3.0f)}).view({1, 1, 3, 1});
  auto p = attention_rows(q, k, 0);
  EXPECT_TRUE(torch::allclose(p[0][0][0], torch::tensor({1 / 6.f, 2 / 6.f, 3 / 6.f}), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(p[0][1][0], torch::full({3}, 1 / 3.f), 1e-6, 1e-6));
  // Causal tail: the single row is the last key, so it sees all 3; with tail 1 of 2 rows, row 0 sees all.
  auto lim = attention_rows(q, k, torch::tensor({2}, torch::kInt64));
  EXPECT_TRUE(torch::allclose(lim[0][0][0], torch::tensor({1 / 3.f, 2 / 3.f, 0.f}), 1e-6, 1e-6));
}

TEST(Scoring, PoolingByHand) {
  auto s = torch::tensor({0.f, 3.f, 0.f, 0.f, 6.f, 0.f}).view({1, 1, 6});
  EXPECT_TRUE(torch::allclose(pool_scores(s, 3, "avg"), torch::tensor({1.f, 1.f, 1.f, 2.f, 2.f, 2.f}).view({1, 1, 6})));
  EXPECT_TRUE(torch::equal(pool_scores(s, 3, "max"), torch::tensor({3.f, 3.f, 3.f, 6.f, 6.f, 6.f}).view({1, 1, 6})));
  EXPECT_TRUE(torch::equal(pool_scores(s, 3, "none"), s));
  EXPECT_THROW(pool_scores(s, 3, "median"), Error);
}

TEST(Scoring, GroupReductionByHand) {
  auto s = torch::tensor({1.f, 4.f, 3.f, 2.f}).view({1, 2, 2});  // heads 0,1 of one KV group, T = 2
  EXPECT_TRUE(torch::equal(reduce_groups(s, 1, "mean"), torch::tensor({2.f, 3.f}).view({1, 1, 2})));
  EXPECT_TRUE(torch::equal(reduce_groups(s, 1, "max"), torch::tensor({3.f, 4.f}).view({1, 1, 2})));
  EXPECT_TRUE(torch::equal(reduce_groups(s, 1, "sum"), torch::tensor({4.f, 6.f}).view({1, 1, 2})));
}

TEST(Scoring, TopkKeepsSinksAndWindow) {
  auto s = torch::tensor({.1f, .9f, .3f, .8f, .2f, .5f, .4f, .7f}).view({1, 1, 8});
  EXPECT_EQ(vec(select_topk(s, 4, 0, 2)), (std::vector<int64_t>{1, 3, 6, 7}));
  EXPECT_EQ(vec(select_topk(s, 5, 1, 2)), (std::vector<int64_t>{0, 1, 3, 6, 7}));
  EXPECT_EQ(vec(select_topk(s, 20, 0, 2)), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(Scoring, StreamingLlmByHand) {
  auto c = cache_with_keys({std::vector<float>(8, 0.f), std::vector<float>(8, 0.f)});
  PromptState st;
  st.cache = &c;
  st.n_ctx = 8;
  auto m = make_method("streamingllm", {{"sinks", 2}});
  auto s = m->select(st, Budget::parse("5"));
  EXPECT_EQ(vec(s.idx[0][0][0]), (std::vector<int64_t>{0, 1, 5, 6, 7}));
  EXPECT_EQ(vec(s.idx[0][0][1]), (std::vector<int64_t>{0, 1, 5, 6, 7}));
}

TEST(Scoring, SnapKvAvgAndMaxPoolingByHand) {
  // Window of 2 (tokens 6, 7; keys 0); q = 1 so attention ~ exp(key).
  // Head 0: peaks at 1 (e^5) and 4 (e^4). No pooling -> {1, 4}; avg pooling k=3 over the
  // candidates 0..5 -> pooled [49.8, 50.1, 50.1, 18.9, 18.9, 18.5] -> {1, 2}.
  // Head 1: peaks at 0 (e^5) and 5 (e^4). Max pooling k=3 -> [148, 148, 1, 1, 54.6, 54.6] -> {0, 1}.
  auto c = cache_with_keys({{0, 5, 0, 0, 4, 0, 0, 0}, {5, 0, 0, 0, 0, 4, 0, 0}});
  PromptState st;
  st.cache = &c;
  st.n_ctx = 8;
  st.q_window = {torch::ones({1, 2, 2, 1})};
  auto none = make_method("snapkv", {{"window", 2}, {"kernel", 1}, {"pooling", "none"}})->select(st, Budget::parse("4"));
  EXPECT_EQ(vec(none.idx[0][0][0]), (std::vector<int64_t>{1, 4, 6, 7}));
  EXPECT_EQ(vec(none.idx[0][0][1]), (std::vector<int64_t>{0, 5, 6, 7}));
  auto avg = make_method("snapkv", {{"window", 2}, {"kernel", 3}, {"pooling", "avg"}})->select(st, Budget::parse("4"));
  EXPECT_EQ(vec(avg.idx[0][0][0]), (std::vector<int64_t>{1, 2, 6, 7}));
  auto mx = make_method("snapkv", {{"window", 2}, {"kernel", 3}, {"pooling", "max"}})->select(st, Budget::parse("4"));
  EXPECT_EQ(vec(mx.idx[0][0][1]), (std::vector<int64_t>{0, 1, 6, 7}));
}

TEST(Scoring, H2oColumnSumsByHand) {
  // q = 1 everywhere, keys 0, ln2, 0: row 0 -> [1, 0, 0]; row 1 -> [1/3, 2/3, 0];
  // row 2 -> [1/4, 2/4, 1/4]; column sums [19/12, 7/6, 1/4].
  PrefillProbe probe(Needs{0, true});
  auto q = torch::ones({1, 1, 3, 1});
  auto k = torch::tensor({0.f, std::log(2.f), 0.f}).view({1, 1, 3, 1});
  // The model calls on_row_lse after each layer's attention (undefined: no log-sum-exps here).
  ASSERT_TRUE(probe.wants_row_lse());
  probe.on_layer(0, q, k, k, torch::Tensor());
  probe.on_row_lse(0, torch::Tensor());
  EXPECT_TRUE(torch::allclose(probe.h2o[0][0][0], torch::tensor({19 / 12.f, 7 / 6.f, 1 / 4.f}), 1e-5, 1e-6));
}

TEST(Scoring, PyramidBudgetsByHand) {
  // keep 64, window 8, 1000 tokens, 4 layers, beta 20: min 56/20 = 2, max 2*56 - 2 = 110,
  // steps (110 - 2) / 3 = 36 -> 110, 74, 38, 2 (mean 56 = keep - window).
  EXPECT_EQ(pyramid_budgets(64, 8, 1000, 4, 20), (std::vector<int64_t>{110, 74, 38, 2}));
  // Short prompt: max is capped at the candidates (40 - 8 = 32), min = 2*56 - 32 -> capped at 32.
  EXPECT_EQ(pyramid_budgets(64, 8, 40, 2, 20), (std::vector<int64_t>{32, 32}));
}

TEST(Scoring, AdaKvAllocationByHand) {
  // per_head 2, floor 1: each head's best is taken first (head0: 0, head1: 0), then the two best
  // remaining over both heads (head0: 1, 2): head0 keeps 3, head1 keeps 1.
  auto s = torch::tensor({10.f, 9.f, 8.f, 7.f, 1.f, .5f, .2f, .1f}).view({1, 2, 4});
  auto m = adakv_allocate(s, 2, 1);
  EXPECT_TRUE(torch::equal(m[0][0], torch::tensor({true, true, true, false})));
  EXPECT_TRUE(torch::equal(m[0][1], torch::tensor({true, false, false, false})));
  // Floor 2 = per_head: every head gets exactly its own top 2.
  auto f = adakv_allocate(s, 2, 2);
  EXPECT_EQ(f[0][1].sum().item<int64_t>(), 2);
}

TEST(Scoring, BadInput) {
  try {
    make_method("snapkvv");
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("unknown method 'snapkvv'"), std::string::npos);
    EXPECT_NE(m.find("snapkv, pyramidkv"), std::string::npos) << m;
  }
  EXPECT_THROW(make_method("snapkv", {{"windw", 3}}), Error);
  EXPECT_THROW(make_method("snapkv", {{"window", "big"}}), Error);
  EXPECT_THROW(Budget::parse("abc"), Error);
  EXPECT_THROW(Budget::parse("-3"), Error);
  EXPECT_THROW(Budget::parse("cr1.5"), Error);
  EXPECT_EQ(Budget::parse("cr0.75").tokens(100), 25);
  auto c = cache_with_keys({std::vector<float>(64, 0.f), std::vector<float>(64, 0.f)});
  PromptState st;
  st.cache = &c;
  st.n_ctx = 64;
  st.q_window = {torch::ones({1, 2, 32, 1})};
  try {
    make_method("snapkv")->select(st, Budget::parse("16"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than the 32"), std::string::npos) << e.what();
  }
}
