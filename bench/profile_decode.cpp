// Where the time goes, under LibTorch's Kineto profiler, at a real shape (seeded random weights):
//   --what decode  one decoding step (model/graph_decode.h, run eagerly) after --context tokens;
//   --what decode_graph  the same step replayed as a CUDA graph (CUPTI records the graph's kernels);
//   --what decode_grid  the grid's step: the --context cache (full KV) and a batch of 15 caches of
//                  256/512/1024 gathered entries per layer decode as two segments of one graph;
//                  also times each segment's graph alone;
//   --what train   one judgeq-train step (trainer sample_loss + backward, S = 32 soft tokens, 128
//                  response tokens) on a --context-token prompt, and the plain prefill beside it.
// Writes Chrome traces (chrome://tracing or Perfetto) whose CUDA kernel events and CPU operators
// bench/profile_summary.py sums; prints the wall time per step without the profiler.
//   judgeq_bench_profile --config cfg.json --what decode --context 32768 --steps 5 --out dir
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/common.h"
#include "kv/compress.h"
#include "kv/method.h"
#include "model/generate.h"
#include "model/graph_decode.h"
#include "model/llama.h"
#include "trainer/trainer.h"
#include "util/cli.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
using namespace judgeq::bench;
namespace prof = torch::autograd::profiler;

int main(int argc, char** argv) {
  return run_main([&]() -> int {
    CLI::App app{"judgeq decoding-step profile"};
    std::string config, out = ".", what = "decode";
    int64_t context = 32768, steps = 5, seed = 0;
    app.add_option("--config", config)->required();
    app.add_option("--what", what, "decode | train");
    app.add_option("--context", context);
    app.add_option("--steps", steps);
    app.add_option("--seed", seed);
    app.add_option("--out", out);
    CLI11_PARSE(app, argc, argv);
    auto cfg = ModelConfig::from_json(nlohmann::json::parse(read_file(config)), config);
    torch::Device dev(torch::kCUDA);
    auto model = seeded_model(cfg, seed, dev);
    const std::set<torch::profiler::impl::ActivityType> acts = {torch::profiler::impl::ActivityType::CPU,
                                                             torch::profiler::impl::ActivityType::CUDA};
    const torch::profiler::impl::ProfilerConfig pc(torch::profiler::impl::ProfilerState::KINETO);
    // Runs f `steps` times unprofiled (wall time per step), then `steps` times profiled into FILE.
    auto profile = [&](const std::string& name, const std::function<void()>& f) {
      gpu_sync();
      const double t0 = now_s();
      for (int64_t i = 0; i < steps; ++i) f();
      gpu_sync();
      std::cout << name << ": " << (now_s() - t0) / double(steps) * 1e3 << " ms per step (wall, unprofiled)\n";
      prof::prepareProfiler(pc, acts);
      prof::enableProfiler(pc, acts);
      for (int64_t i = 0; i < steps; ++i) f();
      gpu_sync();
      prof::disableProfiler()->save(out + "/" + name + "_trace.json");
    };
    torch::manual_seed(seed + 7);
    if (what == "train") {
      const int64_t S = 32, R = 128;
      TrainSample s = random_train_sample(cfg.vocab_size, context, R);
      auto emb = bench_soft_tokens(*model, S);
      LossOptions lo;
      auto step = [&] {
        sample_loss(*model, s, emb, lo).backward();
        emb.mutable_grad().zero_();
      };
      auto prefill = [&] {
        torch::NoGradGuard ng;
        auto cache = model->new_cache(1);
        ForwardOptions fo;
        fo.logit_rows = {};
        model->forward(torch::tensor(s.prompt, torch::kInt64).view({1, context}), cache, fo);
      };
      for (int i = 0; i < 2; ++i) step(), prefill();
      profile("prefill", prefill);
      profile("train_step", step);
      return 0;
    }
    check(what == "decode" || what == "decode_graph" || what == "decode_grid", "unknown --what '", what,
          "' (valid: decode, decode_graph, decode_grid, train)");
    torch::NoGradGuard ng;
    auto ids = torch::randint(0, cfg.vocab_size, {1, context}, torch::kInt64);
    auto cache = model->new_cache(1);
    auto logits = model->forward(ids.to(dev), cache);
    if (what == "decode_grid") {
      // 15 compressed variants as the grid makes them: 5 methods x budgets 256/512/1024 (PyramidKV's
      // per-layer budgets give layers of different, often prime, lengths).
      std::vector<std::unique_ptr<Method>> methods;
      for (std::string name : {"streamingllm", "h2o", "snapkv", "pyramidkv", "knorm"}) methods.push_back(make_method(name));
      std::vector<const Method*> mp;
      for (auto& m : methods) mp.push_back(m.get());
      std::vector<int64_t> prompt(context);
      auto ids_cpu = ids.to(torch::kCPU);
      for (int64_t i = 0; i < context; ++i) prompt[i] = ids_cpu[0][i].item<int64_t>();
      auto pcache = model->new_cache(1);
      PromptState st = prefill_for_compression(*model, prompt, pcache, merge_needs(mp));
      std::vector<KVCache> small;
      for (auto& m : methods)
        for (std::string b : {"256", "512", "1024"}) small.push_back(apply_selection(pcache, m->select(st, Budget::parse(b))));
      std::cout << "batch segment lengths per layer (first 8):";
      for (int64_t l = 0; l < 8; ++l) {
        int64_t t = 0;
        for (auto& c : small) t = std::max(t, c.len(l));
        std::cout << " " << t;
      }
      std::cout << "\n";
      std::vector<const KVCache*> ptrs;
      for (auto& c : small) ptrs.push_back(&c);
      auto tok1 = logits.select(1, 0).argmax(-1);
      auto time_steps = [&](const std::string& name, std::vector<KVCache*> segs, bool profiled) {
        int64_t rows = 0;
        for (auto* c : segs) rows += c->batch();
        StaticDecoder dec(*model, segs, 2 * steps + 4, true);
        check(dec.graphed(), "--what decode_grid: this build cannot capture CUDA graphs");
        auto tok = tok1.expand({rows}).contiguous();
        for (int i = 0; i < 3; ++i) tok = dec.step(tok).argmax(-1);
        if (profiled) {
          profile(name, [&] { tok = dec.step(tok).argmax(-1); });
          return;
        }
        gpu_sync();
        const double t0 = now_s();
        for (int64_t i = 0; i < steps; ++i) tok = dec.step(tok).argmax(-1);
        gpu_sync();
        std::cout << name << ": " << (now_s() - t0) / double(steps) * 1e3 << " ms per step (" << rows << " rows)\n";
      };
      // A whole greedy decode of 128 tokens as the grid runs it (decoder built, graph captured, the
      // steps, the commit), and building the decoder alone. exact: the batch in exact-size buffers
      // (a clone), as cat_batch left it before its buffers got a multiple of 64 rows.
      auto whole = [&](const std::string& name, bool two, bool exact = false) {
        for (int pass = 0; pass < 2; ++pass) {  // the first pass warms the allocator and cuBLAS
          std::vector<double> t;
          for (bool decode : {true, false}) {
            auto full = cache.clone();
            auto batch = exact ? KVCache::cat_batch(ptrs).clone() : KVCache::cat_batch(ptrs);
            std::vector<KVCache*> segs = {&full};
            if (two) segs.push_back(&batch);
            int64_t rows = 0;
            for (auto* c : segs) rows += c->batch();
            GenerateOptions go;
            go.max_new_tokens = 128;
            gpu_sync();
            const double t0 = now_s();
            if (decode)
              decode_greedy(*model, segs, logits.select(1, 0).expand({rows, cfg.vocab_size}).contiguous(), go);
            else
              StaticDecoder(*model, segs, go.max_new_tokens - 1, true);
            gpu_sync();
            t.push_back(now_s() - t0);
            if (pass == 1 && !decode)
              std::cout << name << " (" << rows << " rows), 128 tokens: decode_greedy " << t[0]
                        << " s, of which building the decoder " << t[1] << " s\n";
          }
        }
      };
      whole("whole_full", false);
      whole("whole_grid", true);
      whole("whole_grid_exact_size_batch", true, true);
      {
        auto full = cache.clone();
        time_steps("full_alone", {&full}, false);
      }
      {
        auto batch = KVCache::cat_batch(ptrs);
        time_steps("batch15_alone", {&batch}, false);
      }
      {
        auto full = cache.clone();
        auto batch = KVCache::cat_batch(ptrs);
        time_steps("decode_grid", {&full, &batch}, true);
      }
      return 0;
    }
    const bool graph = what == "decode_graph";
    StaticDecoder dec(*model, cache, 2 * steps + 4, graph);
    check(!graph || dec.graphed(), "--what decode_graph: this build cannot capture CUDA graphs");
    auto tok = logits.select(1, 0).argmax(-1);
    for (int i = 0; i < 3; ++i) tok = dec.step(tok).argmax(-1);
    profile(what, [&] { tok = dec.step(tok).argmax(-1); });
    return 0;
  });
}
