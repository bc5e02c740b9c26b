// Training-step and evaluation-grid speed at the Llama-3.1-8B shape with seeded random weights
// (bench/seeded_weights.md), on one GPU. bench/run_h200.sh runs it.
//   judgeq_bench_pipeline --config cfg.json --mode train --lengths 8192,32768 --out dir
//     one judgeq-train step (no-autograd prefill, response target, soft-token student, backward)
//     vs a no-autograd prefill of the same prompt, vs a naive step that backpropagates through
//     the whole prompt; time, peak memory, prompt tokens/s.
//   judgeq_bench_pipeline --config cfg.json --mode grid --tokenizer T --data-root D --out dir
//     RULER niah_single_1 at 8K, 6 methods x 3 budgets: the grid engine (one prefill per sample,
//     variants decoded together) vs one variant at a time with a prefill each (kvpress style).
#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data/ruler.h"
#include "eval/grid.h"
#include "kv/scoring.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "trainer/soft_tokens.h"
#include "trainer/trainer.h"
#include "util/cli.h"
#include "util/compat.h"
#include "util/error.h"
#include "util/safetensors.h"
#include "bench/common.h"

using namespace judgeq;
using nlohmann::json;
using namespace judgeq::bench;

namespace {



// The naive student: soft tokens appended to the prompt in one forward with autograd; the mean
// over the soft rows of their causal attention, restricted to the prompt keys.
class NaiveStudentProbe : public AttentionProbe {
 public:
  NaiveStudentProbe(int64_t T, int64_t S) : T_(T), S_(S) {}
  void on_layer(int64_t, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor&,
                const torch::Tensor&) override {
    auto qs = q.narrow(2, T_, S_);
    auto lim = torch::arange(T_ + 1, T_ + S_ + 1, torch::kInt64);
    rows.push_back(attention_rows(qs, k, lim).narrow(-1, 0, T_).mean(2).squeeze(0));  // [H, T]
  }
  std::vector<torch::Tensor> rows;

 private:
  int64_t T_, S_;
};

template <typename F>
json timed(F&& f, int64_t reps) {
  std::vector<double> times;
  double peak = 0;
  for (int64_t r = 0; r < reps + 1; ++r) {
    reset_peak();
    gpu_sync();
    const double t0 = now_s();
    f();
    gpu_sync();
    if (r > 0) times.push_back(now_s() - t0);
    peak = std::max(peak, peak_gib());
  }
  std::sort(times.begin(), times.end());
  return {{"seconds_median", times[times.size() / 2]}, {"peak_gib", peak}};
}

}  // namespace

int main(int argc, char** argv) {
  return run_main([&]() -> int {
    CLI::App app{"judgeq training-step and grid benchmark"};
    std::string config, mode = "train", out = ".", tokenizer, data_root;
    std::vector<int64_t> lengths = {8192, 32768};
    int64_t seed = 0, soft = 32, response = 128, reps = 2, samples = 2, ruler_len = 8192;
    app.add_option("--config", config)->required();
    app.add_option("--mode", mode);
    app.add_option("--lengths", lengths)->delimiter(',');
    app.add_option("--soft-tokens", soft);
    app.add_option("--response-tokens", response);
    app.add_option("--reps", reps);
    app.add_option("--samples", samples);
    app.add_option("--ruler-length", ruler_len);
    app.add_option("--tokenizer", tokenizer);
    app.add_option("--data-root", data_root);
    app.add_option("--seed", seed);
    app.add_option("--out", out);
    CLI11_PARSE(app, argc, argv);
    auto cfg = ModelConfig::from_json(json::parse(read_file(config)), config);
    torch::Device dev(torch::kCUDA);
    auto model = seeded_model(cfg, seed, dev);
    json res = {{"config", cfg.to_json()}, {"libtorch", compat::torch_version()}, {"mode", mode}};

    if (mode == "train") {
      LossOptions lo;
      for (auto T : lengths) {
        torch::manual_seed(seed + T);
        TrainSample s = random_train_sample(cfg.vocab_size, T, response);
        auto emb = bench_soft_tokens(*model, soft);
        json row;
        row["prefill"] = timed([&] {
          torch::NoGradGuard ng;
          auto cache = model->new_cache(1);
          ForwardOptions fo;
          fo.logit_rows = {};
          model->forward(torch::tensor(s.prompt, torch::kInt64).view({1, T}), cache, fo);
        }, reps);
        row["judgeq_step"] = timed([&] {
          auto loss = sample_loss(*model, s, emb, lo);
          loss.backward();
          emb.mutable_grad().zero_();
        }, reps);
        try {
          row["naive_step"] = timed([&] {
            KVCache cache = model->new_cache(1);
            std::vector<torch::Tensor> target;
            {
              torch::NoGradGuard ng;
              ForwardOptions fo;
              fo.logit_rows = {};
              model->forward(torch::tensor(s.prompt, torch::kInt64).view({1, T}), cache, fo);
              target = response_attention_target(*model, cache, s.response, lo);
            }
            NaiveStudentProbe probe(T, soft);
            ForwardOptions fo;
            fo.logit_rows = {};
            fo.probe = &probe;
            auto x = torch::cat({model->embed(torch::tensor(s.prompt, torch::kInt64).view({1, T})),
                                 emb.to(model->dtype()).unsqueeze(0)}, 1);
            fo.inputs_embeds = x;
            KVCache c2 = model->new_cache(1);
            model->forward(torch::Tensor(), c2, fo);
            auto loss = attention_matching_loss(probe.rows, target, lo);
            loss.backward();
            emb.mutable_grad().zero_();
          }, reps > 1 ? 1 : reps);
        } catch (const std::exception& e) {
          const std::string what = e.what();
          row["naive_step"] = {{"error", what.find("out of memory") != std::string::npos ? "out of memory" : what.substr(0, 200)}};
          c10::cuda::CUDACachingAllocator::emptyCache();
        }
        const double ts = row["judgeq_step"]["seconds_median"], tp = row["prefill"]["seconds_median"];
        row["step_over_prefill"] = ts / tp;
        row["prompt_tokens_per_second"] = T / ts;
        if (row["naive_step"].contains("seconds_median")) row["naive_over_prefill"] = row["naive_step"]["seconds_median"].get<double>() / tp;
        res["train"][std::to_string(T)] = row;
        std::cerr << "train T=" << T << ": " << row.dump() << "\n";
      }
    } else if (mode == "grid") {
      check(!tokenizer.empty() && !data_root.empty(), "--mode grid needs --tokenizer and --data-root");
      auto tok = Tokenizer::load(tokenizer);
      RulerOptions ro;
      ro.data_root = data_root;
      ro.max_seq_length = static_cast<size_t>(ruler_len);
      ro.num_samples = static_cast<size_t>(samples);
      auto count = [&](const std::string& t) { return tok->encode(t, false).size(); };
      auto data = generate_ruler("niah_single_1", ro, count);
      SoftTokens st;
      st.embeddings = model->embedding_table().narrow(0, 1000, soft).clone();
      st.metadata = soft_tokens_metadata(cfg, soft);
      save_soft_tokens(out + "/bench_soft.safetensors", st);
      json mo = {{"judgeq", {{"soft_tokens", out + "/bench_soft.safetensors"}}}};
      auto variants = make_grid({"full", "streamingllm", "h2o", "snapkv", "pyramidkv", "judgeq"}, {"256", "512", "1024"}, mo);
      GridOptions go;
      go.hit_rate = false;
      go.max_batch = 32;
      run_sample(*model, *tok, data[0], variants, go);  // warm up
      bool same = true;
      // Phase times (each boundary waits for the device: a few waits per variant).
      auto phases = [](const GridTimes& t) {
        return json{{"prefill_s", t.prefill_s}, {"select_s", t.select_s}, {"decode_s", t.decode_s},
                    {"decode_groups", t.decode_groups}, {"samples", t.samples}};
      };
      auto run = [&](bool alone) {
        GridTimes times;
        GridOptions o = go;
        o.times = &times;
        reset_peak();
        gpu_sync();
        const double t0 = now_s();
        std::vector<std::vector<VariantOutput>> outs;
        for (auto& s : data) outs.push_back(run_sample(*model, *tok, s, variants, o, alone));
        gpu_sync();
        const double dt = now_s() - t0;
        return std::make_tuple(dt, peak_gib(), outs, phases(times));
      };
      auto [tg, pg, og, phg] = run(false);
      auto [ta, pa, oa, pha] = run(true);
      int64_t new_tokens = 0;
      for (size_t i = 0; i < og.size(); ++i)
        for (size_t j = 0; j < og[i].size(); ++j) {
          same = same && og[i][j].tokens == oa[i][j].tokens;
          new_tokens += static_cast<int64_t>(og[i][j].tokens.size());
        }
      res["grid"] = {{"task", "niah_single_1"},
                     {"length", ruler_len},
                     {"samples", data.size()},
                     {"variants", variants.size()},
                     {"generated_tokens", new_tokens},
                     {"grid_seconds", tg},
                     {"grid_samples_per_second", data.size() / tg},
                     {"grid_peak_gib", pg},
                     {"per_variant_seconds", ta},
                     {"per_variant_samples_per_second", data.size() / ta},
                     {"per_variant_peak_gib", pa},
                     {"speedup", ta / tg},
                     {"grid_phases", phg},
                     {"per_variant_phases", pha},
                     {"identical_tokens", same}};
      std::cerr << "grid: " << res["grid"].dump() << "\n";
    } else {
      fail("unknown --mode '", mode, "' (valid: train, grid)");
    }
    std::ofstream(out + "/judgeq_pipeline_" + mode + ".json") << res.dump(2) << "\n";
    return 0;
  });
}
