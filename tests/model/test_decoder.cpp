// Decoder invariants: cached decode = full recompute, chunked/split prefill = one prefill,
// manual attention = fused attention, ragged batches = single runs, positions after truncation.
#include <gtest/gtest.h>

#include "common.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/rope.h"
#include "util/safetensors.h"

using namespace judgeq;

namespace {

std::unique_ptr<LlamaModel> tiny(torch::Dtype dt = torch::kFloat32) {
  return LlamaModel::load(test::fixtures() + "/hf/tiny-llama31", torch::kCPU, dt);
}

torch::Tensor random_ids(int64_t B, int64_t T, int64_t vocab, int seed) {
  torch::manual_seed(seed);
  return torch::randint(3, vocab, {B, T}, torch::kInt64);
}

TEST(Decoder, CachedDecodeEqualsFullRecompute) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto ids = random_ids(2, 40, m->config().vocab_size, 1);
  auto full_cache = m->new_cache(2);
  ForwardOptions all;
  all.all_logits = true;
  auto full = m->forward(ids, full_cache, all);  // [2, 40, V]
  auto cache = m->new_cache(2);
  auto first = m->forward(ids.narrow(1, 0, 25), cache, all);
  EXPECT_LT((first - full.narrow(1, 0, 25)).abs().max().item<double>(), 1e-5);
  for (int64_t t = 25; t < 40; ++t) {
    auto step = m->forward(ids.narrow(1, t, 1), cache);
    EXPECT_LT((step.select(1, 0) - full.select(1, t)).abs().max().item<double>(), 1e-5) << "step " << t;
  }
  EXPECT_EQ(cache.next_positions(), (std::vector<int64_t>{40, 40}));
}

TEST(Decoder, MlpChunkingAndManualAttentionDoNotChangeResults) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto ids = random_ids(1, 33, m->config().vocab_size, 2);
  ForwardOptions a;
  a.all_logits = true;
  auto c1 = m->new_cache(1);
  auto ref = m->forward(ids, c1, a);
  ForwardOptions b = a;
  b.chunk = 5;
  b.force_manual_attention = true;
  auto c2 = m->new_cache(1);
  auto got = m->forward(ids, c2, b);
  EXPECT_LT((got - ref).abs().max().item<double>(), 1e-5);
  // The chunked prefill writes the same keys, values and positions into the cache.
  for (int64_t l = 0; l < m->config().n_layers; ++l) {
    EXPECT_LT((c2.keys(l) - c1.keys(l)).abs().max().item<double>(), 1e-5);
    EXPECT_LT((c2.values(l) - c1.values(l)).abs().max().item<double>(), 1e-5);
    EXPECT_TRUE(torch::equal(c2.positions(l), c1.positions(l)));
  }
  EXPECT_EQ(c2.next_positions(), c1.next_positions());
  // Ragged batches (left padding) in chunks, with the fused path where there is one.
  auto a2 = random_ids(1, 11, m->config().vocab_size, 5);
  std::vector<int64_t> p1(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 33);
  std::vector<int64_t> p2(a2.data_ptr<int64_t>(), a2.data_ptr<int64_t>() + 11);
  auto cr1 = m->new_cache(2), cr2 = m->new_cache(2);
  auto lr1 = prefill(*m, {p1, p2}, cr1);
  auto lr2 = prefill(*m, {p1, p2}, cr2, /*chunk=*/4);
  EXPECT_LT((lr2 - lr1).abs().max().item<double>(), 1e-5);
  EXPECT_TRUE(torch::equal(cr2.valid(0), cr1.valid(0)));
}

TEST(Decoder, RaggedBatchEqualsSingleRuns) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto a = random_ids(1, 17, m->config().vocab_size, 3), b = random_ids(1, 29, m->config().vocab_size, 4);
  std::vector<int64_t> pa(a.data_ptr<int64_t>(), a.data_ptr<int64_t>() + 17);
  std::vector<int64_t> pb(b.data_ptr<int64_t>(), b.data_ptr<int64_t>() + 29);
  GenerateOptions go;
  go.max_new_tokens = 12;
  auto both = generate(*m, {pa, pb}, go);
  auto ra = generate(*m, {pa}, go);
  auto rb = generate(*m, {pb}, go);
  EXPECT_EQ(both.tokens[0], ra.tokens[0]);
  EXPECT_EQ(both.tokens[1], rb.tokens[0]);
  // And the logits agree closely, not just the argmax.
  auto cb = m->new_cache(2), ca = m->new_cache(1);
  auto lb = prefill(*m, {pa, pb}, cb);
  auto la = prefill(*m, {pa}, ca);
  EXPECT_LT((lb[0] - la[0]).abs().max().item<double>(), 1e-5);
}

// On CPU the attention scores go a block of query rows at a time (score_block_elements): a batch
// of three 512-token prompts takes several blocks, each prompt alone takes one. Every position's
// logits and the cache agree.
TEST(Decoder, QueryRowBlocksDoNotChangeResults) {
  torch::NoGradGuard ng;
  auto m = tiny();
  const int64_t T = 512, H = m->config().n_heads;
  const int64_t per_block = score_block_elements(torch::kCPU);
  ASSERT_GT(3 * H * T * T, per_block) << "the batch must need more than one block";
  ASSERT_LE(H * T * T, per_block) << "one prompt alone must fit in one block";
  auto ids = random_ids(3, T, m->config().vocab_size, 8);
  ForwardOptions fo;
  fo.all_logits = true;
  auto cb = m->new_cache(3);
  auto batch = m->forward(ids, cb, fo);
  for (int64_t b = 0; b < 3; ++b) {
    auto c1 = m->new_cache(1);
    auto one = m->forward(ids.narrow(0, b, 1), c1, fo);
    EXPECT_LT((batch[b] - one[0]).abs().max().item<double>(), 1e-5) << "row " << b;
    EXPECT_LT((cb.keys(0)[b] - c1.keys(0)[0]).abs().max().item<double>(), 1e-6) << "row " << b;
  }
}

TEST(Decoder, StopIdsEndRows) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto ids = random_ids(1, 12, m->config().vocab_size, 5);
  std::vector<int64_t> p(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 12);
  GenerateOptions go;
  go.max_new_tokens = 10;
  auto free_run = generate(*m, {p}, go);
  ASSERT_EQ(free_run.tokens[0].size(), 10u);
  go.stop_ids = {free_run.tokens[0][3]};
  auto stopped = generate(*m, {p}, go);
  // Stops at the first occurrence of that id (at index 3 or earlier).
  ASSERT_LE(stopped.tokens[0].size(), 4u);
  EXPECT_EQ(stopped.finish[0], "stop");
  EXPECT_EQ(stopped.tokens[0].back(), free_run.tokens[0][3]);
}

TEST(Decoder, NoAppendLeavesCacheAndMatchesAppend) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto ids = random_ids(1, 20, m->config().vocab_size, 6);
  auto cache = m->new_cache(1);
  m->forward(ids.narrow(1, 0, 15), cache);
  auto before = cache.keys(0).clone();
  ForwardOptions peek;
  peek.append = false;
  peek.all_logits = true;
  auto a = m->forward(ids.narrow(1, 15, 5), cache, peek);
  EXPECT_EQ(cache.len(0), 15);
  EXPECT_TRUE(torch::equal(cache.keys(0), before));
  ForwardOptions app;
  app.all_logits = true;
  auto b = m->forward(ids.narrow(1, 15, 5), cache, app);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5);
}

TEST(Decoder, PositionsSurviveTruncation) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto ids = random_ids(1, 20, m->config().vocab_size, 7);
  // Appending 4 extra tokens then truncating them leaves next position at 24 unless reset; the
  // soft-token protocol resets it to the prompt length explicitly.
  auto cache = m->new_cache(1);
  m->forward(ids.narrow(1, 0, 16), cache);
  EXPECT_EQ(cache.next_positions()[0], 16);
  m->forward(ids.narrow(1, 16, 4), cache);
  cache.truncate(16);
  cache.set_next_positions({16});
  auto c2 = m->new_cache(1);
  m->forward(ids.narrow(1, 0, 16), c2);
  auto x = m->forward(ids.narrow(1, 16, 1), cache);
  auto y = m->forward(ids.narrow(1, 16, 1), c2);
  EXPECT_LT((x - y).abs().max().item<double>(), 1e-5);
}

TEST(Decoder, MistralSlidingWindowMasksOldKeys) {
  torch::NoGradGuard ng;
  // Same weights, with and without a sliding window of 8: logits agree for the first 8
  // positions and differ after.
  auto src = test::fixtures() + "/hf/tiny-mistral";
  auto dir = test::temp_dir("swa");
  std::filesystem::copy(src, dir, std::filesystem::copy_options::recursive);
  auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
  cfg["sliding_window"] = 8;
  write_file_atomic(dir + "/config.json", cfg.dump());
  auto a = LlamaModel::load(src, torch::kCPU, torch::kFloat32);
  auto b = LlamaModel::load(dir, torch::kCPU, torch::kFloat32);
  auto ids = random_ids(1, 20, a->config().vocab_size, 8);
  ForwardOptions all;
  all.all_logits = true;
  auto ca = a->new_cache(1), cb = b->new_cache(1);
  auto la = a->forward(ids, ca, all), lb = b->forward(ids, cb, all);
  EXPECT_LT((la.narrow(1, 0, 8) - lb.narrow(1, 0, 8)).abs().max().item<double>(), 1e-5);
  EXPECT_GT((la.narrow(1, 12, 8) - lb.narrow(1, 12, 8)).abs().max().item<double>(), 1e-3);
  // Manual and fused paths agree with the window too, and decode matches the full pass.
  ForwardOptions man = all;
  man.force_manual_attention = true;
  auto cm = b->new_cache(1);
  auto lm = b->forward(ids, cm, man);
  EXPECT_LT((lm - lb).abs().max().item<double>(), 1e-5);
  auto cd = b->new_cache(1);
  b->forward(ids.narrow(1, 0, 12), cd);
  for (int64_t t = 12; t < 20; ++t) {
    auto s = b->forward(ids.narrow(1, t, 1), cd);
    EXPECT_LT((s.select(1, 0) - lb.select(1, t)).abs().max().item<double>(), 1e-5);
  }
}

// HF's RoPE: x * cos + rotate_half(x) * sin, the reference.
torch::Tensor hf_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto halves = x.chunk(2, -1);
  return x * cos + torch::cat({-halves[1], halves[0]}, -1) * sin;
}

// RoPE as the forward pass computes it (swapped halves times a sign-folded sine, added in place)
// is HF's rotate-half form bit for bit, in float32 and in bf16; and it is the rotation.
TEST(Decoder, SignedRopeEqualsRotateHalfBitForBit) {
  torch::manual_seed(5);
  auto x = torch::randn({2, 3, 7, 16}, torch::kFloat32);
  auto ang = torch::randn({2, 1, 7, 8}, torch::kFloat32) * 3;
  auto emb = torch::cat({ang, ang}, -1);
  auto cos = emb.cos(), sin = emb.sin();
  for (auto dt : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
    auto xd = x.to(dt), cd = cos.to(dt), sd = sin.to(dt);
    EXPECT_TRUE(torch::equal(apply_rope_signed(xd, cd, rope_signed_sin(sd)), hf_rope(xd, cd, sd))) << dt;
  }
  // The first half is x1 cos - x2 sin, the second x2 cos + x1 sin.
  auto ref = hf_rope(x.to(torch::kFloat64), cos.to(torch::kFloat64), sin.to(torch::kFloat64));
  auto x1 = x.narrow(-1, 0, 8).to(torch::kFloat64), x2 = x.narrow(-1, 8, 8).to(torch::kFloat64);
  auto c = cos.narrow(-1, 0, 8).to(torch::kFloat64), s = sin.narrow(-1, 0, 8).to(torch::kFloat64);
  EXPECT_LT((ref.narrow(-1, 0, 8) - (x1 * c - x2 * s)).abs().max().item<double>(), 1e-12);
  EXPECT_LT((ref.narrow(-1, 8, 8) - (x2 * c + x1 * s)).abs().max().item<double>(), 1e-12);
}

}  // namespace
