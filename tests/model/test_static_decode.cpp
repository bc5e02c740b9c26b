// The fixed-shape decoding step (replayed as a CUDA graph on GPUs) against token-by-token
// forward(): same logits at every step and the same cache afterwards, for plain, ragged
// (left-padded) and evicted caches with different lengths per layer.
#include <gtest/gtest.h>

#include <cmath>

#include "common.h"
#include "model/generate.h"
#include "model/graph_decode.h"
#include "model/llama.h"
#include "util/error.h"

using namespace judgeq;

namespace {

std::unique_ptr<LlamaModel> tiny(const std::string& name = "tiny-llama31") {
  return LlamaModel::load(test::fixtures() + "/hf/" + name, torch::kCPU, torch::kFloat32);
}

std::vector<int64_t> ids(int64_t n, int64_t vocab, int seed) {
  torch::manual_seed(seed);
  auto t = torch::randint(3, vocab, {n}, torch::kInt64);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

// Runs `steps` greedy steps both ways from copies of `cache` and compares everything.
// reserve_to > 0: the decoder's cache gets that capacity first (unused rows past its length).
void expect_same_as_forward(const LlamaModel& m, const KVCache& cache, torch::Tensor logits, int64_t steps,
                            int64_t reserve_to = 0) {
  torch::NoGradGuard ng;
  KVCache a = cache.clone(), b = cache.clone();
  for (int64_t l = 0; reserve_to > 0 && l < b.n_layers(); ++l) {
    b.reserve(l, reserve_to);
    b.values(l).as_strided({b.batch(), b.n_kv_heads(), reserve_to, b.head_dim()},
                           b.values(l).strides()).narrow(2, b.len(l), reserve_to - b.len(l)).fill_(NAN);
  }
  StaticDecoder dec(m, b, steps, /*use_graph=*/false);
  auto la = logits.clone(), lb = logits.clone();
  const int64_t B = cache.batch();
  for (int64_t s = 0; s < steps; ++s) {
    auto tok = la.argmax(-1);
    ASSERT_TRUE(torch::equal(tok, lb.argmax(-1))) << "step " << s;
    la = m.forward(tok.view({B, 1}), a).select(1, 0);
    lb = dec.step(tok).clone();
    EXPECT_LT((la - lb).abs().max().item<double>(), 2e-5) << "step " << s;
  }
  dec.commit();
  EXPECT_EQ(a.next_positions(), b.next_positions());
  for (int64_t l = 0; l < m.config().n_layers; ++l) {
    ASSERT_EQ(a.len(l), b.len(l));
    EXPECT_LT((a.keys(l) - b.keys(l)).abs().max().item<double>(), 1e-5);
    EXPECT_LT((a.values(l) - b.values(l)).abs().max().item<double>(), 1e-5);
    EXPECT_TRUE(torch::equal(a.positions(l), b.positions(l)));
  }
  // Decoding continues identically from the committed cache.
  auto tok = la.argmax(-1).view({B, 1});
  auto ca = m.forward(tok, a).select(1, 0), cb = m.forward(tok, b).select(1, 0);
  EXPECT_LT((ca - cb).abs().max().item<double>(), 2e-5);
}

TEST(StaticDecode, EqualsForwardOnAPlainCache) {
  torch::NoGradGuard ng;
  for (std::string name : {"tiny-llama31", "tiny-mistral", "tiny-llama-tied-linear"}) {
    SCOPED_TRACE(name);
    auto m = tiny(name);
    auto cache = m->new_cache(1);
    auto logits = prefill(*m, {ids(37, m->config().vocab_size, 1)}, cache);
    expect_same_as_forward(*m, cache, logits, 9);
  }
}

// Long enough caches reduce probabilities x values in chunks over the cache's whole buffer (see
// graph_decode.cpp): 200 entries in a buffer of 256 whose unused rows hold NaN (chunks of 128),
// and a ragged batch of exactly 48 (chunks of 24).
TEST(StaticDecode, SplitReductionOverTheCacheBuffer) {
  torch::NoGradGuard ng;
  auto m = tiny();
  {
    auto cache = m->new_cache(1);
    auto logits = prefill(*m, {ids(200, m->config().vocab_size, 5)}, cache);
    expect_same_as_forward(*m, cache, logits, 6, 256);
  }
  auto cache = m->new_cache(2);
  auto logits = prefill(*m, {ids(48, m->config().vocab_size, 6), ids(31, m->config().vocab_size, 7)}, cache);
  ASSERT_EQ(cache.len(0), 48);
  expect_same_as_forward(*m, cache, logits, 5);
}

// A long cache in an exact-size buffer (2053 entries, a prime, as a clone leaves it) is moved into a
// buffer of a multiple of 256 rows, so the split reduction applies; decoding still equals forward.
// (Random entries: the tiny model's 512 positions are too few for a real 2053-token prompt.)
TEST(StaticDecode, LongExactSizeCacheIsRelaidForTheSplitReduction) {
  torch::NoGradGuard ng;
  auto m = tiny();
  const auto& c0 = m->config();
  const int64_t T = 2053, D = c0.head_dim;
  torch::manual_seed(5);
  auto cache = m->new_cache(1);
  for (int64_t l = 0; l < c0.n_layers; ++l)
    cache.append(l, torch::randn({1, c0.n_kv_heads, T, D}), torch::randn({1, c0.n_kv_heads, T, D}),
                 torch::arange(T, torch::kInt64).view({1, T}));
  cache.set_next_positions({T});
  KVCache c = cache.clone();
  ASSERT_EQ(c.values(0).stride(1) / D, T);
  StaticDecoder dec(*m, c, 4, /*use_graph=*/false);
  for (int64_t l = 0; l < c.n_layers(); ++l) {
    EXPECT_EQ(c.values(l).stride(1) / D, 2304) << "layer " << l;
    EXPECT_EQ(c.len(l), T);
    EXPECT_TRUE(torch::equal(c.keys(l), cache.keys(l)));
  }
  expect_same_as_forward(*m, cache, torch::randn({1, c0.vocab_size}), 4);
}

TEST(StaticDecode, EqualsForwardOnARaggedBatch) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto cache = m->new_cache(2);
  auto logits = prefill(*m, {ids(30, m->config().vocab_size, 2), ids(13, m->config().vocab_size, 3)}, cache);
  ASSERT_TRUE(cache.valid(0).defined());
  expect_same_as_forward(*m, cache, logits, 7);
}

TEST(StaticDecode, EqualsForwardOnAnEvictedCacheWithPerLayerLengths) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto cache = m->new_cache(1);
  auto logits = prefill(*m, {ids(40, m->config().vocab_size, 4)}, cache);
  const int64_t Hkv = cache.n_kv_heads();
  for (int64_t l = 0; l < m->config().n_layers; ++l) {
    const int64_t keep = 10 + 5 * l;  // a different budget per layer, different entries per head
    torch::manual_seed(100 + l);
    std::vector<torch::Tensor> heads;
    for (int64_t h = 0; h < Hkv; ++h) heads.push_back(std::get<0>(torch::randperm(40, torch::kInt64).narrow(0, 0, keep).sort()));
    cache.gather(l, torch::stack(heads).unsqueeze(0));  // [1, Hkv, keep]
  }
  expect_same_as_forward(*m, cache, logits, 6);
}

// Several caches as segments of one batch (a plain one, a ragged batch of two, one evicted to
// different lengths per layer): every row's logits equal token-by-token forward() on its own
// cache, and commit() leaves each cache as forward() does.
TEST(StaticDecode, SegmentsOfDifferentLengthsEqualForwardOnEach) {
  torch::NoGradGuard ng;
  auto m = tiny();
  const int64_t V = m->config().vocab_size;
  auto plain = m->new_cache(1);
  auto l_plain = prefill(*m, {ids(37, V, 1)}, plain);
  auto ragged = m->new_cache(2);
  auto l_ragged = prefill(*m, {ids(30, V, 2), ids(13, V, 3)}, ragged);
  auto evicted = m->new_cache(1);
  auto l_evicted = prefill(*m, {ids(40, V, 4)}, evicted);
  for (int64_t l = 0; l < m->config().n_layers; ++l) {
    torch::manual_seed(200 + l);
    std::vector<torch::Tensor> heads;
    for (int64_t h = 0; h < evicted.n_kv_heads(); ++h)
      heads.push_back(std::get<0>(torch::randperm(40, torch::kInt64).narrow(0, 0, 12 + 3 * l).sort()));
    evicted.gather(l, torch::stack(heads).unsqueeze(0));
  }
  std::vector<KVCache> ref = {plain.clone(), ragged.clone(), evicted.clone()};
  std::vector<KVCache> seg = {plain.clone(), ragged.clone(), evicted.clone()};
  const int64_t steps = 6;
  StaticDecoder dec(*m, std::vector<KVCache*>{&seg[0], &seg[1], &seg[2]}, steps, /*use_graph=*/false);
  std::vector<torch::Tensor> la = {l_plain, l_ragged, l_evicted};
  auto lb = torch::cat(la, 0);
  for (int64_t s = 0; s < steps; ++s) {
    auto tok = lb.argmax(-1);  // [4]
    int64_t r0 = 0;
    std::vector<torch::Tensor> next;
    for (size_t g = 0; g < ref.size(); ++g) {
      const int64_t b = ref[g].batch();
      next.push_back(m->forward(tok.narrow(0, r0, b).view({b, 1}), ref[g]).select(1, 0));
      r0 += b;
    }
    lb = dec.step(tok).clone();
    EXPECT_LT((torch::cat(next, 0) - lb).abs().max().item<double>(), 2e-5) << "step " << s;
  }
  dec.commit();
  for (size_t g = 0; g < ref.size(); ++g) {
    EXPECT_EQ(ref[g].next_positions(), seg[g].next_positions()) << "cache " << g;
    for (int64_t l = 0; l < m->config().n_layers; ++l) {
      ASSERT_EQ(ref[g].len(l), seg[g].len(l));
      EXPECT_LT((ref[g].keys(l) - seg[g].keys(l)).abs().max().item<double>(), 1e-5);
      EXPECT_LT((ref[g].values(l) - seg[g].values(l)).abs().max().item<double>(), 1e-5);
      EXPECT_TRUE(torch::equal(ref[g].positions(l), seg[g].positions(l)));
    }
  }
}

TEST(StaticDecode, GreedyGenerationUsesItOnlyWhereAsked) {
  // On CPU decode_greedy stays eager; the option exists and both settings agree.
  torch::NoGradGuard ng;
  auto m = tiny();
  GenerateOptions go;
  go.max_new_tokens = 8;
  auto a = generate(*m, {ids(21, m->config().vocab_size, 5)}, go);
  go.static_decode = false;
  auto b = generate(*m, {ids(21, m->config().vocab_size, 5)}, go);
  EXPECT_EQ(a.tokens, b.tokens);
}

TEST(StaticDecode, RefusesMoreStepsThanBuiltFor) {
  torch::NoGradGuard ng;
  auto m = tiny();
  auto cache = m->new_cache(1);
  auto logits = prefill(*m, {ids(12, m->config().vocab_size, 6)}, cache);
  StaticDecoder dec(*m, cache, 2, false);
  auto tok = logits.argmax(-1);
  dec.step(tok);
  dec.step(tok);
  EXPECT_THROW(dec.step(tok), Error);
}

}  // namespace
