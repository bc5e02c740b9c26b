// Every method on a real (tiny, GQA 4:1) model: the gathered cache decodes exactly like the full
// cache with the evicted entries masked out; budgets >= the prompt equal full; kept counts; windows
// kept; determinism; positions survive eviction; Judge Q leaves no soft-token KV behind.
#include <gtest/gtest.h>

#include "common.h"
#include "kv/compress.h"
#include "kv/scoring.h"
#include "model/generate.h"
#include "trainer/soft_tokens.h"
#include "util/error.h"

using namespace judgeq;

namespace {

struct Setup {
  std::unique_ptr<LlamaModel> model;
  KVCache cache;
  PromptState st;
  std::string soft_path;
  std::vector<int64_t> ids;
};

Setup& setup() {
  static Setup s = [] {
    Setup x;
    x.model = LlamaModel::load(test::fixtures() + "/hf/tiny-llama31", torch::kCPU, torch::kFloat32);
    torch::manual_seed(11);
    auto ids = torch::randint(4, x.model->config().vocab_size, {90}, torch::kInt64);
    std::vector<int64_t> p(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 90);
    x.ids = p;
    x.cache = x.model->new_cache(1);
    torch::NoGradGuard ng;
    x.st = prefill_for_compression(*x.model, p, x.cache, Needs{32, true});
    x.st.answer_tokens = 12;
    x.st.stop_ids = {};
    SoftTokens soft;
    soft.embeddings = x.model->embedding_table().narrow(0, 10, 6).clone() * 1.5;
    soft.metadata = soft_tokens_metadata(x.model->config(), 6);
    x.soft_path = test::temp_dir("soft") + "/judgeq.safetensors";
    save_soft_tokens(x.soft_path, soft);
    return x;
  }();
  return s;
}

nlohmann::json opts_for(const std::string& name) {
  if (name == "judgeq") return {{"soft_tokens", setup().soft_path}};
  if (name == "snapkv" || name == "pyramidkv" || name == "adakv" || name == "laq") return {{"window", 8}};
  if (name == "h2o") return {{"window", 8}};
  return nlohmann::json::object();
}

std::vector<std::string> all_methods() {
  std::vector<std::string> v;
  for (auto& m : method_infos()) v.push_back(m.name);
  return v;
}

// Greedy decode logits for n steps from a cache; returns [n, V].
torch::Tensor decode_logits(const LlamaModel& m, KVCache c, torch::Tensor logits, int n) {
  std::vector<torch::Tensor> out;
  torch::NoGradGuard ng;
  for (int i = 0; i < n; ++i) {
    out.push_back(logits[0]);
    auto tok = logits.argmax(-1).view({1, 1});
    logits = m.forward(tok, c).select(1, 0);
  }
  return torch::stack(out);
}

class EveryMethod : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryMethod, GatherEqualsMaskingReference) {
  auto& s = setup();
  torch::NoGradGuard ng;
  auto m = make_method(GetParam(), opts_for(GetParam()));
  auto sel = m->select(s.st, Budget::parse("40"));
  auto fast = apply_selection(s.cache, sel), slow = mask_selection(s.cache, sel);
  auto a = decode_logits(*s.model, fast, s.st.last_logits, 6), b = decode_logits(*s.model, slow, s.st.last_logits, 6);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-4) << GetParam();
  // Positions survive eviction: the next token goes to position 90, not to the cache length.
  EXPECT_EQ(fast.next_positions()[0], 90);
  // Deterministic.
  auto again = make_method(GetParam(), opts_for(GetParam()))->select(s.st, Budget::parse("40"));
  for (size_t l = 0; l < sel.idx.size(); ++l) EXPECT_TRUE(torch::equal(sel.idx[l], again.idx[l])) << GetParam();
}

// What a method memoises in the prompt state (scores that do not depend on the budget) is shared by
// its budgets and by other methods with the same scorer: selections from one shared state equal
// those from a fresh prefill per (method, budget).
TEST_P(EveryMethod, SharedPromptStateEqualsFreshOnes) {
  auto& s = setup();
  torch::NoGradGuard ng;
  auto fresh = [&](const std::string& method, const std::string& budget) {
    KVCache cache = s.model->new_cache(1);
    PromptState st = prefill_for_compression(*s.model, s.ids, cache, Needs{32, true});
    st.answer_tokens = 12;
    st.stop_ids = {};
    return make_method(method, opts_for(method))->select(st, Budget::parse(budget));
  };
  KVCache cache = s.model->new_cache(1);
  PromptState shared = prefill_for_compression(*s.model, s.ids, cache, Needs{32, true});
  shared.answer_tokens = 12;
  shared.stop_ids = {};
  auto m = make_method(GetParam(), opts_for(GetParam()));
  auto snap = make_method("snapkv", opts_for("snapkv"));  // may share the method's memoised scores
  for (const std::string budget : {"40", "60", "cr0.5"}) {
    auto a = m->select(shared, Budget::parse(budget)), b = fresh(GetParam(), budget);
    auto c = snap->select(shared, Budget::parse(budget)), d = fresh("snapkv", budget);
    ASSERT_EQ(a.idx.size(), b.idx.size());
    for (size_t l = 0; l < a.idx.size(); ++l) {
      EXPECT_TRUE(torch::equal(a.idx[l], b.idx[l])) << GetParam() << " budget " << budget << " layer " << l;
      EXPECT_TRUE(torch::equal(c.idx[l], d.idx[l])) << "snapkv beside " << GetParam() << " budget " << budget;
    }
  }
}

TEST_P(EveryMethod, LargeBudgetEqualsFull) {
  auto& s = setup();
  torch::NoGradGuard ng;
  auto sel = make_method(GetParam(), opts_for(GetParam()))->select(s.st, Budget::parse("500"));
  auto c = apply_selection(s.cache, sel);
  auto a = decode_logits(*s.model, c, s.st.last_logits, 5);
  auto b = decode_logits(*s.model, s.cache, s.st.last_logits, 5);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5) << GetParam();
}

TEST_P(EveryMethod, KeptCountsAndWindow) {
  auto& s = setup();
  torch::NoGradGuard ng;
  auto m = make_method(GetParam(), opts_for(GetParam()));
  const int64_t budget = 40;
  auto c = apply_selection(s.cache, m->select(s.st, Budget::parse(std::to_string(budget))));
  auto counts = c.kept_counts();  // [L, 1, H_kv]
  const int64_t L = c.n_layers(), Hkv = c.n_kv_heads();
  if (GetParam() == "full") {
    EXPECT_EQ(counts.min().item<int64_t>(), 90);
  } else if (GetParam() == "pyramidkv") {
    // Per-layer schedule, mean budget across layers.
    auto per_layer = counts.select(1, 0).select(1, 0);
    EXPECT_NEAR(per_layer.to(torch::kFloat64).mean().item<double>(), budget, 1.0);
    EXPECT_GT(per_layer[0].item<int64_t>(), per_layer[L - 1].item<int64_t>());
  } else if (GetParam() == "adakv") {
    // Per-layer totals equal H_kv * budget; heads may differ.
    for (int64_t l = 0; l < L; ++l) EXPECT_EQ(counts[l][0].sum().item<int64_t>(), Hkv * budget);
  } else {
    EXPECT_EQ(counts.min().item<int64_t>(), budget) << GetParam();
    EXPECT_EQ(counts.max().item<int64_t>(), budget) << GetParam();
  }
  // Observation windows (last 8 prompt entries) are kept by window methods; sinks by streamingllm.
  const std::set<std::string> windowed = {"snapkv", "pyramidkv", "adakv", "laq", "h2o", "judgeq"};
  for (int64_t l = 0; l < L; ++l) {
    auto pos = c.positions(l)[0];
    auto valid = c.valid(l).defined() ? c.valid(l)[0] : torch::ones_like(pos, torch::kBool);
    for (int64_t h = 0; h < Hkv; ++h) {
      std::set<int64_t> kept;
      for (int64_t j = 0; j < pos.size(1); ++j)
        if (valid[h][j].item<bool>()) kept.insert(pos[h][j].item<int64_t>());
      if (windowed.count(GetParam())) {
        for (int64_t t = 82; t < 90; ++t) EXPECT_TRUE(kept.count(t)) << GetParam() << " layer " << l << " pos " << t;
      }
      if (GetParam() == "streamingllm") {
        for (int64_t t : {0, 1, 2, 3, 89}) EXPECT_TRUE(kept.count(t));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, EveryMethod, ::testing::ValuesIn(all_methods()),
                         [](const auto& info) { return info.param; });

// H2O's scores from the prefill (the model hands each layer's attention to the probe, then the
// row log-sum-exps where its kernel has them; on CPU it has none) are, per layer, the column sums
// of the attention of every prompt query, computed here from the recorded queries and the keys.
TEST(H2oScores, AreEveryLayersAttentionColumnSums) {
  auto& s = setup();
  torch::NoGradGuard ng;
  QueryRecorder rec;
  auto cache = s.model->new_cache(1);
  ForwardOptions fo;
  fo.probe = &rec;
  s.model->forward(torch::tensor(s.ids).view({1, -1}), cache, fo);
  const auto qs = rec.queries();
  ASSERT_EQ(static_cast<int64_t>(s.st.h2o.size()), s.model->config().n_layers);
  for (int64_t l = 0; l < s.model->config().n_layers; ++l) {
    auto want = h2o_column_sums_blockwise(qs[l], cache.keys(l));
    ASSERT_EQ(s.st.h2o[l].sizes(), want.sizes()) << "layer " << l;
    EXPECT_TRUE(torch::allclose(s.st.h2o[l], want, 1e-5, 1e-6)) << "layer " << l;
    // Every query row's weights sum to 1, so the column sums add up to the number of rows.
    EXPECT_NEAR(want.sum(-1).mean().item<double>(), double(s.ids.size()), 1e-3);
  }
}

TEST(JudgeQ, SoftTokensLeaveNoKvAndFirstTokenUnchanged) {
  auto& s = setup();
  torch::NoGradGuard ng;
  auto before = s.cache.clone();
  auto m = make_method("judgeq", opts_for("judgeq"));
  auto sel = m->select(s.st, Budget::parse("40"));
  // The prompt cache is untouched by scoring (soft tokens never appended).
  for (int64_t l = 0; l < s.cache.n_layers(); ++l) {
    EXPECT_EQ(s.cache.len(l), 90);
    EXPECT_TRUE(torch::equal(s.cache.keys(l), before.keys(l)));
  }
  auto c = apply_selection(s.cache, sel);
  for (int64_t l = 0; l < c.n_layers(); ++l) EXPECT_LT(c.positions(l).max().item<int64_t>(), 90);
  // The first generated token comes from the prompt's last position of the same prefill: the
  // logits equal a plain prefill without soft tokens.
  EXPECT_EQ(c.next_positions()[0], 90);
  auto first_tok = s.st.last_logits.argmax(-1).view({1, 1});
  auto after = s.model->forward(first_tok, c).select(1, 0);
  auto masked = mask_selection(s.cache, sel);
  auto ref = s.model->forward(first_tok, masked).select(1, 0);
  EXPECT_LT((after - ref).abs().max().item<double>(), 1e-4);
  // Soft tokens change the selection vs SnapKV with the same options (they carry information).
  auto snap = make_method("snapkv", {{"window", 32}})->select(s.st, Budget::parse("40"));
  bool differs = false;
  for (size_t l = 0; l < sel.idx.size(); ++l) differs |= !torch::equal(sel.idx[l], snap.idx[l]);
  EXPECT_TRUE(differs);
}

TEST(JudgeQ, RefusesSoftTokensOfAnotherModel) {
  auto& s = setup();
  auto other = LlamaModel::load(test::fixtures() + "/hf/tiny-mistral", torch::kCPU, torch::kFloat32);
  SoftTokens soft;
  soft.embeddings = torch::zeros({4, other->config().hidden_size});
  soft.metadata = soft_tokens_metadata(other->config(), 4);
  auto path = test::temp_dir("soft_other") + "/other.safetensors";
  save_soft_tokens(path, soft);
  auto m = make_method("judgeq", {{"soft_tokens", path}});
  try {
    m->select(s.st, Budget::parse("40"));
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  EXPECT_THROW(make_method("judgeq"), Error);  // no soft tokens given
}

TEST(HitRate, OracleAgainstItselfIsOneAndFullIsOne) {
  auto& s = setup();
  torch::NoGradGuard ng;
  auto oracle = make_method("oracle")->select(s.st, Budget::parse("30"));
  const int64_t H = s.model->config().n_heads;
  EXPECT_DOUBLE_EQ(hit_rate(oracle, oracle, 90, H).overall, 1.0);
  EXPECT_DOUBLE_EQ(hit_rate(make_method("full")->select(s.st, Budget::parse("30")), oracle, 90, H).overall, 1.0);
  auto stream = make_method("streamingllm")->select(s.st, Budget::parse("30"));
  auto hr = hit_rate(stream, oracle, 90, H);
  EXPECT_LT(hr.overall, 1.0);
  EXPECT_EQ(hr.per_layer.size(), static_cast<size_t>(s.model->config().n_layers));
}

TEST(QueryHeadMode, ExpandsCacheAndMatchesMasking) {
  auto& s = setup();
  torch::NoGradGuard ng;
  auto sel = make_method("snapkv", {{"window", 8}, {"gqa", "query-head"}})->select(s.st, Budget::parse("40"));
  ASSERT_TRUE(sel.query_head);
  auto c = apply_selection(s.cache, sel);
  EXPECT_EQ(c.n_kv_heads(), s.model->config().n_heads);
  // Memory: group-size times the KV-head layout at the same budget.
  auto kvh = apply_selection(s.cache, make_method("snapkv", {{"window", 8}})->select(s.st, Budget::parse("40")));
  EXPECT_EQ(c.bytes_in_use(), kvh.bytes_in_use() * s.model->config().group_size());
  auto a = decode_logits(*s.model, c, s.st.last_logits, 4);
  auto b = decode_logits(*s.model, mask_selection(s.cache, sel), s.st.last_logits, 4);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-4);
}

}  // namespace
