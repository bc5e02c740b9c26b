// Judge Q training on small models: the loss and its gradient against reference paths, weights
// untouched, exact resume, the loss falling on a real model, the exported file read back by hand.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "common.h"
#include "model/generate.h"
#include "model/llama.h"
#include "trainer/trainer.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {


std::string tiny_dir() { return test::fixtures() + "/hf/tiny-llama31"; }
std::string stories_dir() { return test::fixtures() + "/stories260K"; }

// Random prompts on `model` with its own greedy answers (no tokenizer needed).
TrainSet make_set(const LlamaModel& model, int64_t n, int64_t T, int64_t R, uint64_t seed) {
  std::mt19937_64 rng(seed);
  TrainSet set;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = T + int64_t(rng() % 5);
    std::vector<int64_t> prompt;
    for (int64_t j = 0; j < t; ++j) prompt.push_back(int64_t(rng() % uint64_t(model.config().vocab_size)));
    GenerateOptions g;
    g.max_new_tokens = R;
    set.add({prompt, generate(model, {prompt}, g).tokens[0], i + 1});
  }
  set.attributes = {{"model_config_hash", model.config().hash()}, {"model_name", model.config().name}};
  return set;
}

TrainSample random_sample(int64_t vocab, int64_t T, int64_t R, uint64_t seed) {
  std::mt19937_64 rng(seed);
  TrainSample s;
  for (int64_t j = 0; j < T; ++j) s.prompt.push_back(int64_t(rng() % uint64_t(vocab)));
  for (int64_t j = 0; j < R; ++j) s.response.push_back(int64_t(rng() % uint64_t(vocab)));
  return s;
}

// Captures q and k of every layer of one forward.
class CaptureProbe : public AttentionProbe {
 public:
  void on_layer(int64_t, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor&,
                const torch::Tensor&) override {
    q_.push_back(q.detach());
    k_.push_back(k.detach());
  }
  std::vector<torch::Tensor> q_, k_;
};

// Plain full causal attention over one whole sequence; mean over rows [r0, r1) of their
// attention to keys [0, T). Returns [H, T].
torch::Tensor reference_rows(const torch::Tensor& q, const torch::Tensor& k, int64_t r0, int64_t r1, int64_t T,
                             bool renormalize) {
  const int64_t H = q.size(1), Hkv = k.size(1), n = q.size(2), D = q.size(3);
  auto kk = k.repeat_interleave(H / Hkv, 1);
  auto s = torch::matmul(q, kk.transpose(-1, -2)).select(0, 0) / std::sqrt(double(D));  // [H, n, n]
  auto mask = torch::ones({n, n}, torch::kBool).tril();
  auto p = torch::softmax(s.masked_fill(mask.logical_not(), -INFINITY), -1);
  auto rows = p.narrow(1, r0, r1 - r0).narrow(2, 0, T);
  if (renormalize) rows = rows / rows.sum(-1, true);
  return rows.mean(1);
}

std::vector<json> read_log(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

FitOptions quick_fit(const std::string& model, const std::string& train, const std::string& out) {
  FitOptions o;
  o.model = model;
  o.train = train;
  o.out = out;
  o.soft_tokens = 4;
  o.steps = 6;
  o.lr = 1e-2;
  o.quiet = true;
  o.device = "cpu";
  return o;
}


std::string file_bytes(const std::string& path) { return read_file(path); }

}  // namespace

// The cached two-pass computation (prompt cache, then response / soft tokens with append = false)
// equals plain attention over the whole sequence computed in one go.
TEST(TrainerLoss, TargetAndStudentMatchFullSequence) {
  torch::NoGradGuard ng;
  auto model = LlamaModel::load(tiny_dir(), torch::kCPU, torch::kFloat64);
  const auto& c = model->config();
  const int64_t T = 9, R = 5, S = 3;
  auto s = random_sample(c.vocab_size, T, R, 1);
  auto soft = torch::randn({S, c.hidden_size}, torch::kFloat64) * 0.05;
  for (bool renorm : {false, true}) {
    for (std::string map : {"per-head", "per-group"}) {
      LossOptions lo;
      lo.renormalize = renorm;
      lo.map = map;
      KVCache cache = model->new_cache(1);
      ForwardOptions pf;
      pf.logit_rows = {};
      model->forward(torch::tensor(s.prompt).view({1, T}), cache, pf);
      auto target = response_attention_target(*model, cache, s.response, lo);
      auto student = soft_token_attention(*model, cache, soft, lo);
      EXPECT_EQ(cache.len(0), T);  // append = false left the cache alone
      // One pass over prompt + response gives the same target and leaves the prompt's cache.
      KVCache c0 = model->new_cache(1);
      auto target1 = prefill_with_response_target(*model, c0, s.prompt, s.response, lo);
      EXPECT_EQ(c0.len(0), T);
      EXPECT_EQ(c0.next_positions(), cache.next_positions());
      EXPECT_TRUE(torch::allclose(c0.keys(1), cache.keys(1), 1e-12, 1e-12));
      auto student1 = soft_token_attention(*model, c0, soft, lo);
      LossOptions chunked = lo;  // the prompt + response pass in token chunks of 4
      chunked.chunk = 4;
      KVCache c4 = model->new_cache(1);
      auto target4 = prefill_with_response_target(*model, c4, s.prompt, s.response, chunked);
      for (int64_t l = 0; l < c.n_layers; ++l) {
        EXPECT_TRUE(torch::allclose(target4[l], target[l], 1e-10, 1e-13)) << "chunked one-pass target, layer " << l;
        EXPECT_TRUE(torch::allclose(target1[l], target[l], 1e-10, 1e-13)) << "one-pass target, layer " << l;
        EXPECT_TRUE(torch::allclose(student1[l], student[l], 1e-10, 1e-13)) << "student after it, layer " << l;
      }

      std::vector<int64_t> all = s.prompt;
      all.insert(all.end(), s.response.begin(), s.response.end());
      CaptureProbe full_resp, full_soft;
      KVCache c1 = model->new_cache(1), c2 = model->new_cache(1);
      ForwardOptions f1;
      f1.logit_rows = {};
      f1.probe = &full_resp;
      model->forward(torch::tensor(all).view({1, T + R}), c1, f1);
      ForwardOptions f2 = f1;
      f2.probe = &full_soft;
      f2.inputs_embeds = torch::cat({model->embed(torch::tensor(s.prompt).view({1, T})), soft.unsqueeze(0)}, 1);
      model->forward(torch::Tensor(), c2, f2);

      ASSERT_EQ(target.size(), size_t(c.n_layers));
      for (int64_t l = 0; l < c.n_layers; ++l) {
        auto rt = reference_rows(full_resp.q_[l], full_resp.k_[l], T, T + R, T, renorm);
        auto rs = reference_rows(full_soft.q_[l], full_soft.k_[l], T, T + S, T, renorm);
        if (map == "per-group") {
          rt = rt.view({c.n_kv_heads, c.group_size(), T}).mean(1);
          rs = rs.view({c.n_kv_heads, c.group_size(), T}).mean(1);
        }
        EXPECT_TRUE(torch::allclose(target[l], rt, 1e-6, 1e-9)) << "target, layer " << l << " " << map;
        EXPECT_TRUE(torch::allclose(student[l], rs, 1e-6, 1e-9)) << "student, layer " << l << " " << map;
      }
      // Rows sum to at most one over the prompt; exactly one when renormalised.
      auto sums = target[0].sum(-1);
      if (renorm) EXPECT_TRUE(torch::allclose(sums, torch::ones_like(sums)));
      else EXPECT_TRUE((sums < 1.0 + 1e-9).all().item<bool>());
    }
  }
}

// d loss / d soft embeddings by autograd against central finite differences, in double precision.
TEST(TrainerLoss, GradientMatchesFiniteDifferences) {
  auto model = LlamaModel::load(tiny_dir(), torch::kCPU, torch::kFloat64);
  const auto& c = model->config();
  const int64_t S = 3;
  auto sample = random_sample(c.vocab_size, 11, 6, 7);
  torch::manual_seed(3);
  auto base = (model->embedding_table().mean(0, true).repeat({S, 1}) +
               torch::randn({S, c.hidden_size}, torch::kFloat64) * 0.05).contiguous();
  struct Case { std::string loss, map; bool renorm; };
  for (const Case& cs : {Case{"mse", "per-head", false}, Case{"kl", "per-group", true}, Case{"kl", "per-head", false}}) {
    LossOptions lo;
    lo.loss = cs.loss;
    lo.map = cs.map;
    lo.renormalize = cs.renorm;
    auto soft = base.clone().requires_grad_(true);
    auto loss = sample_loss(*model, sample, soft, lo);
    loss.backward();
    auto grad = soft.grad().clone();
    ASSERT_GT(grad.abs().max().item<double>(), 0.0);
    torch::NoGradGuard ng;
    auto L = [&](const torch::Tensor& x) { return sample_loss(*model, sample, x, lo).item<double>(); };
    // The decoder computes RMSNorm statistics and attention scores in float32 even for a float64
    // model, so the loss carries ~1e-9 of noise: h = 1e-3 keeps both that noise and the O(h²)
    // truncation error near 1e-5 of the largest gradient entry.
    const double h = 1e-3, scale = grad.abs().max().item<double>();
    std::mt19937_64 rng(5);
    // Single coordinates (the largest ones and random ones), then random directions.
    std::vector<int64_t> coords = {grad.abs().argmax().item<int64_t>()};
    for (int i = 0; i < 6; ++i) coords.push_back(int64_t(rng() % uint64_t(S * c.hidden_size)));
    for (auto idx : coords) {
      auto e = torch::zeros_like(base).view(-1);
      e[idx] = 1.0;
      e = e.view_as(base);
      const double fd = (L(base + h * e) - L(base - h * e)) / (2 * h);
      EXPECT_NEAR(fd, grad.view(-1)[idx].item<double>(), 2e-4 * scale)
          << cs.loss << "/" << cs.map << " coordinate " << idx;
    }
    for (int i = 0; i < 3; ++i) {
      auto d = torch::randn_like(base);
      d = d / d.norm();
      const double fd = (L(base + h * d) - L(base - h * d)) / (2 * h);
      const double an = (grad * d).sum().item<double>();
      EXPECT_NEAR(fd, an, 2e-4 * grad.norm().item<double>()) << cs.loss << "/" << cs.map << " direction " << i;
    }
  }
}

// Training touches nothing but the soft embeddings: the model fit uses is bit-identical to a fresh
// load after the last step, and no weight holds a gradient.
TEST(Trainer, ModelWeightsUnchanged) {
  auto dir = test::temp_dir("fit_weights");
  auto ref = LlamaModel::load(tiny_dir(), torch::kCPU, torch::kFloat32);
  make_set(*ref, 3, 8, 6, 11).write(dir + "/train.h5");
  auto o = quick_fit(tiny_dir(), dir + "/train.h5", dir + "/run");
  o.val = dir + "/train.h5";
  o.val_every = o.steps;
  int calls = 0;
  FitHooks hooks;
  hooks.validate = [&](const LlamaModel& m, const SoftTokens& soft, const TrainSet& val) {
    ++calls;
    EXPECT_EQ(val.size(), 3);
    EXPECT_EQ(soft.embeddings.sizes(), torch::IntArrayRef({4, 64}));
    auto a = m.named_weights(), b = ref->named_weights();
    EXPECT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first << " changed";
      EXPECT_FALSE(a[i].second.requires_grad()) << a[i].first;
      EXPECT_FALSE(a[i].second.grad().defined()) << a[i].first;
    }
    return json{{"hook_ran", true}};
  };
  auto r = fit(o, hooks);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(r.finished);
  auto log = read_log(dir + "/run/log.jsonl");
  ASSERT_EQ(log.size(), 7u);
  EXPECT_EQ(log.back()["type"], "val");
  EXPECT_EQ(log.back()["hook_ran"], true);
  // The soft tokens did move away from their initialisation (the mean embedding row).
  auto st = load_soft_tokens(r.soft_tokens, ref->config());
  auto init = ref->embedding_table().mean(0, true).repeat({4, 1});
  EXPECT_GT((st.embeddings - init).abs().max().item<double>(), 1e-4);
}

// 2N steps in one run == N steps, stop, --resume, N more: bit for bit (CPU), across epoch
// boundaries, with shuffling, random init and gradient accumulation.
TEST(Trainer, ResumeIsBitExact) {
  auto dir = test::temp_dir("fit_resume");
  {
    auto m = LlamaModel::load(tiny_dir(), torch::kCPU, torch::kFloat32);
    make_set(*m, 5, 8, 6, 21).write(dir + "/train.h5");
  }
  auto a = quick_fit(tiny_dir(), dir + "/train.h5", dir + "/a");
  a.steps = 8;
  a.batch = 2;
  a.checkpoint_every = 2;
  a.init = "random";
  a.seed = 9;
  a.weight_decay = 0.01;
  auto ra = fit(a);
  ASSERT_TRUE(ra.finished);

  auto b = a;
  b.out = dir + "/b";
  b.stop_after = 3;  // not on a checkpoint boundary: the stop writes its own checkpoint
  auto rb1 = fit(b);
  EXPECT_FALSE(rb1.finished);
  EXPECT_EQ(rb1.step, 3);
  EXPECT_FALSE(fs::exists(dir + "/b/judgeq.safetensors"));
  b.stop_after = 0;
  b.resume = true;
  auto rb2 = fit(b);
  ASSERT_TRUE(rb2.finished);
  EXPECT_EQ(rb2.step, 8);

  SafetensorsFile ca(dir + "/a/checkpoint.safetensors"), cb(dir + "/b/checkpoint.safetensors");
  for (const char* t : {"soft_master", "adam_m", "adam_v"}) EXPECT_TRUE(torch::equal(ca.get(t), cb.get(t))) << t;
  EXPECT_EQ(file_bytes(dir + "/a/judgeq.safetensors"), file_bytes(dir + "/b/judgeq.safetensors"));
  auto la = read_log(dir + "/a/log.jsonl"), lb = read_log(dir + "/b/log.jsonl");
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    EXPECT_EQ(la[i]["step"], lb[i]["step"]);
    EXPECT_EQ(la[i]["loss"], lb[i]["loss"]) << "step " << la[i]["step"];
    EXPECT_EQ(la[i]["grad_norm"], lb[i]["grad_norm"]) << "step " << la[i]["step"];
    EXPECT_EQ(la[i]["lr"], lb[i]["lr"]);
  }
  // A run folder is never started over without --resume.
  test::expect_error([&] { auto c = a; fit(c); }, {"already holds a training run", "--resume"});
}

// On stories260K (a real small model) with prompts answered by the model itself, the loss falls.
// (The hit rate against the oracle is asserted by the eviction library's tests.)
TEST(Trainer, LossFallsOnStories260K) {
  auto dir = test::temp_dir("fit_stories");
  {
    std::ofstream f(dir + "/data.jsonl");
    const char* prompts[] = {
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
        "Tom had a big red ball. One day he went to the park with his mom and his dog.",
        "Sam and Mia were friends. They liked to build tall towers with blocks in the garden.",
        "One day, a little dog found a bone under the tree. He was very happy and ran home.",
        "There was a big bird who lived in a nest. Every morning the bird would sing a song.",
        "Anna wanted to bake a cake for her mom. She took some flour and some eggs.",
        "The sun was shining and the sky was blue. Ben went outside to play with his new toy car.",
        "A little fish swam in the sea. It saw a big shell on the sand and wanted to look inside."};
    for (auto p : prompts) f << json{{"prompt", p}}.dump() << "\n";
  }
  PrepareOptions po;
  po.model = stories_dir();
  po.data = dir + "/data.jsonl";
  po.out = dir + "/train.h5";
  po.max_new_tokens = 40;
  po.batch = 4;
  po.quiet = true;
  po.device = "cpu";
  auto ps = prepare_train_set(po);
  ASSERT_EQ(ps.written, 8);

  auto o = quick_fit(stories_dir(), po.out, dir + "/run");
  o.steps = 40;
  o.batch = 2;
  o.warmup_steps = 2;
  std::vector<double> losses;
  FitHooks hooks;
  hooks.on_log = [&](const json& r) {
    if (r["type"] == "train") losses.push_back(r["loss"].get<double>());
  };
  fit(o, hooks);
  ASSERT_EQ(losses.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += losses[i] / 5, last += losses[35 + i] / 5;
  EXPECT_LT(last, 0.6 * first) << "loss did not fall: first " << first << ", last " << last;
}

// The exported file, read by hand: 8-byte little-endian header length, JSON header, raw data.
TEST(Trainer, ExportedFileReadByIndependentParser) {
  auto dir = test::temp_dir("fit_export");
  auto m = LlamaModel::load(tiny_dir(), torch::kCPU, torch::kFloat32);
  auto set = make_set(*m, 2, 8, 5, 31);
  set.write(dir + "/train.h5");
  auto o = quick_fit(tiny_dir(), dir + "/train.h5", dir + "/run");
  o.steps = 3;
  o.loss = "kl";
  o.map = "per-group";
  auto r = fit(o);

  const std::string bytes = file_bytes(r.soft_tokens);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  ASSERT_LE(8 + n, bytes.size());
  json h = json::parse(bytes.substr(8, n));
  ASSERT_EQ(h.size(), 2u);  // the tensor and __metadata__
  auto& t = h["soft_embeddings"];
  EXPECT_EQ(t["dtype"], "F32");
  EXPECT_EQ(t["shape"], json::array({4, 64}));
  EXPECT_EQ(t["data_offsets"], json::array({0, 4 * 64 * 4}));
  EXPECT_EQ(bytes.size(), 8 + n + 4 * 64 * 4);
  auto& md = h["__metadata__"];
  EXPECT_EQ(md["format"], "judgeq-soft-tokens");
  EXPECT_EQ(md["format_version"], "1");
  EXPECT_EQ(md["config_hash"], m->config().hash());
  EXPECT_EQ(md["base_model"], m->config().name);
  EXPECT_EQ(md["hidden_size"], "64");
  EXPECT_EQ(md["vocab_size"], "320");
  EXPECT_EQ(md["n_soft_tokens"], "4");
  EXPECT_EQ(md["position_rule"], "T..T+S-1");
  EXPECT_EQ(md["loss"], "kl");
  EXPECT_EQ(md["map"], "per-group");
  EXPECT_EQ(md["steps"], "3");
  EXPECT_EQ(md["training_data_hash"], set.content_hash());
  EXPECT_EQ(json::parse(md["scorer"].get<std::string>())["head_map"], "per-group");
  EXPECT_TRUE(md.contains("tool_version") && md.contains("git_commit") && md.contains("train_config"));
  // The data section is the checkpoint's master copy (fp32 training, so no rounding).
  auto raw = torch::empty({4, 64}, torch::kFloat32);
  std::memcpy(raw.data_ptr(), bytes.data() + 8 + n, 4 * 64 * 4);
  SafetensorsFile ck(dir + "/run/checkpoint.safetensors");
  EXPECT_TRUE(torch::equal(raw, ck.get("soft_master")));
  // export from the run folder writes the same file.
  export_soft_tokens(dir + "/run", dir + "/again.safetensors");
  EXPECT_EQ(file_bytes(dir + "/again.safetensors"), bytes);
}
