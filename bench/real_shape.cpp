// Real-shape parity and speed at Llama-3.1-8B / Mistral-7B shapes with seeded random weights
// (see bench/seeded_weights.md). Writes JSON results; bench/run_h200.sh runs it next to
// bench/hf_reference.py on the same GPU.
//   judgeq_bench_real_shape --config cfg.json --mode parity --length 8192 --out dir
//   judgeq_bench_real_shape --config cfg.json --mode speed --lengths 8192,32768,131072 --out dir
//   judgeq_bench_real_shape --config cfg.json --mode save --out model_dir   (a checkpoint folder)
#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "kv/compress.h"
#include "kv/method.h"
#include "model/graph_decode.h"
#include "model/llama.h"
#include "trainer/soft_tokens.h"
#include "util/cli.h"
#include "util/compat.h"
#include "util/error.h"
#include "util/safetensors.h"
#include "bench/common.h"

using namespace judgeq;
using nlohmann::json;
using namespace judgeq::bench;
namespace fs = std::filesystem;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Time f() reps times after one warm-up run; the median in seconds.
template <class F>
double timed(int64_t reps, F&& f) {
  f();
  std::vector<double> t;
  for (int64_t r = 0; r < reps; ++r) {
    gpu_sync();
    const double t0 = now_s();
    f();
    gpu_sync();
    t.push_back(now_s() - t0);
  }
  return median(t);
}

// The prefill with H2O's column sums against the same prefill without them: warm runs,
// alternated, medians.
json h2o_prefill_overhead(LlamaModel& model, const std::vector<int64_t>& prompt, int64_t reps) {
  std::vector<double> plain, h2o;
  for (int64_t r = 0; r <= reps; ++r) {
    for (bool with : {false, true}) {
      auto cache = model.new_cache(1);
      gpu_sync();
      const double t0 = now_s();
      PromptState st = prefill_for_compression(model, prompt, cache, Needs{32, with});
      gpu_sync();
      if (r > 0) (with ? h2o : plain).push_back(now_s() - t0);  // the first round warms up
    }
  }
  const double p = median(plain), h = median(h2o);
  return {{"seconds", h - p}, {"fraction_of_prefill", (h - p) / p}, {"prefill_seconds", p},
          {"prefill_with_h2o_seconds", h}, {"runs", reps}};
}
}  // namespace

int main(int argc, char** argv) {
  return run_main([&]() -> int {
    CLI::App app{"judgeq real-shape parity and speed benchmark"};
    std::string config, mode = "speed", out = ".";
    std::vector<int64_t> lengths = {8192};
    int64_t seed = 0, decode_tokens = 64, decode_context = 32768, reps = 2;
    app.add_option("--config", config)->required();
    app.add_option("--mode", mode);
    app.add_option("--lengths", lengths)->delimiter(',');
    app.add_option("--seed", seed);
    app.add_option("--decode-tokens", decode_tokens);
    app.add_option("--decode-context", decode_context);
    app.add_option("--reps", reps);
    app.add_option("--out", out);
    CLI11_PARSE(app, argc, argv);
    torch::NoGradGuard ng;
    auto cfg = ModelConfig::from_json(json::parse(read_file(config)), config);
    torch::Device dev(torch::kCUDA);
    std::unique_ptr<LlamaModel> model;
    if (mode != "save") model = seeded_model(cfg, seed, dev);
    json res = {{"config", cfg.to_json()}, {"impl", "judgeq"}, {"libtorch", compat::torch_version()}};

    if (mode == "save") {
      // The seeded weights under their Hugging Face names as a checkpoint folder (config.json +
      // model.safetensors) for the command-line tools; add a tokenizer next to it.
      fs::create_directories(out);
      std::vector<std::pair<std::string, torch::Tensor>> named;
      const auto expected = LlamaModel::expected_weights(cfg);
      for (size_t i = 0; i < expected.size(); ++i)
        named.push_back({expected[i].first,
                         seeded_weight(expected[i].first, expected[i].second, int64_t(i), seed, dev).cpu()});
      write_safetensors(out + "/model.safetensors", named);
      write_file_atomic(out + "/config.json", read_file(config));
      std::cout << "saved " << named.size() << " tensors to " << out << "\n";
      return 0;
    }
    if (mode == "parity") {
      const int64_t T = lengths.at(0);
      torch::manual_seed(seed + 100000);
      auto ids = torch::randint(0, cfg.vocab_size, {1, T}, torch::kInt64);
      auto cache = model->new_cache(1);
      ForwardOptions fo;
      fo.all_logits = true;
      auto logits = model->forward(ids, cache, fo)[0];  // [T, V] float32
      write_safetensors(out + "/judgeq_parity.safetensors",
                        {{"top1", logits.argmax(-1).cpu()},
                         {"lse", torch::logsumexp(logits, -1).cpu()},
                         {"last64", logits.narrow(0, T - 64, 64).cpu()}});
      std::cout << "parity written\n";
      return 0;
    }

    if (mode == "h2o") {
      // H2O's cost at one length: the whole prefill with and without the column sums, then its
      // kernels alone on random activations of one layer's shape (the prefill's attention, the
      // same through FlashAttention with its log-sum-exps, the transposed pass on each kernel)
      // with each kernel's error against the blockwise float32 reference.
      const int64_t T = lengths.at(0);
      torch::manual_seed(seed + T);
      auto ids = torch::randint(0, cfg.vocab_size, {T}, torch::kInt64);
      std::vector<int64_t> prompt(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
      res["tokens"] = T;
      res["prefill"] = h2o_prefill_overhead(*model, prompt, reps);
      {
        PrefillProbe probe(Needs{0, true});
        auto cache = model->new_cache(1);
        ForwardOptions fo;
        fo.probe = &probe;
        model->forward(ids.view({1, T}), cache, fo);
        res["prefill"]["layers_with_reused_lse"] = probe.layers_with_row_lse;
      }
      std::cerr << "h2o prefill: " << res["prefill"].dump() << "\n";
      model.reset();
      c10::cuda::CUDACachingAllocator::emptyCache();
      auto o = torch::TensorOptions().dtype(torch::kBFloat16).device(dev);
      auto q = torch::randn({1, cfg.n_heads, T, cfg.head_dim}, o) * 1.5;
      auto k = torch::randn({1, cfg.n_kv_heads, T, cfg.head_dim}, o) * 1.5;
      auto v = torch::randn({1, cfg.n_kv_heads, T, cfg.head_dim}, o);
      const double scale = 1.0 / std::sqrt(double(cfg.head_dim));
      torch::Tensor a_sdpa, lse;
      res["kernels"]["sdpa_attention_seconds"] =
          timed(reps, [&] { a_sdpa = compat::fused_attention(q, k, v, torch::Tensor(), true, scale); });
      // The kernels that return log-sum-exps: their time, whether they are the kernel SDPA runs
      // (bit-identical output), and how their log-sum-exps compare.
      torch::Tensor lse_flash;
      for (auto [name, kind] : {std::pair{"flash", compat::LseKernel::flash}, std::pair{"cudnn", compat::LseKernel::cudnn}}) {
        std::pair<torch::Tensor, torch::Tensor> r;
        const double t = timed(reps, [&] { r = compat::causal_attention_with_lse(q, k, v, scale, kind); });
        json j = {{"seconds", t}, {"takes_inputs", r.first.defined()}};
        if (r.first.defined()) {
          j["equals_sdpa"] = torch::equal(r.first, a_sdpa);
          j["max_abs_diff_vs_sdpa"] = (r.first.to(torch::kFloat32) - a_sdpa.to(torch::kFloat32)).abs().max().item<double>();
          if (kind == compat::LseKernel::flash) lse_flash = r.second;
          if (lse_flash.defined() && kind == compat::LseKernel::cudnn)
            j["lse_max_abs_diff_vs_flash"] = (r.second - lse_flash).abs().max().item<double>();
          if (!lse.defined() || j["equals_sdpa"].get<bool>()) lse = r.second;
        }
        res["kernels"]["attention_with_lse_" + std::string(name)] = j;
      }
      res["kernels"]["two_pass_seconds"] = timed(reps, [&] { h2o_column_sums(q, k); });
      auto ref = h2o_column_sums_blockwise(q, k);
      for (std::string name : {"flash", "efficient", "cudnn", "flash:value", "efficient:value", "cudnn:value"}) {
        const auto colon = name.find(':');
        const std::string kernel = name.substr(0, colon), form = colon == std::string::npos ? "dims" : "value";
        try {
          torch::Tensor got;
          const double t = timed(reps, [&] { got = h2o_column_sums_given_lse(q, k, lse, kernel, form); });
          auto err = (got - ref).abs();
          auto top_f = std::get<1>(got.topk(1024, -1)), top_r = std::get<1>(ref.topk(1024, -1));
          auto hits = torch::zeros_like(ref).scatter_(-1, top_r, 1.0).gather(-1, top_f).sum().item<double>();
          res["kernels"]["pass2_" + name] = {{"seconds", t},
                                                {"max_rel_error", (err / ref.abs().clamp_min(1e-3)).max().item<double>()},
                                                {"top1024_agreement", hits / double(top_f.numel())}};
        } catch (const std::exception& e) {
          res["kernels"]["pass2_" + name] = {{"error", std::string(e.what()).substr(0, std::string(e.what()).find('\n'))}};
        }
      }
      std::cerr << "h2o kernels: " << res["kernels"].dump() << "\n";
      std::ofstream(out + "/judgeq_h2o.json") << res.dump(2) << "\n";
      return 0;
    }
    // Prefill speed and memory at each length (logits of the last position only).
    if (mode == "decode") lengths.clear();
    for (auto T : lengths) {
      torch::manual_seed(seed + T);
      auto ids = torch::randint(0, cfg.vocab_size, {1, T}, torch::kInt64);
      std::vector<double> times;
      double peak = 0;
      for (int64_t r = 0; r < reps + 1; ++r) {
        auto cache = model->new_cache(1);
        reset_peak();
        gpu_sync();
        double t0 = now_s();
        model->forward(ids, cache);
        gpu_sync();
        if (r > 0) times.push_back(now_s() - t0);  // first run warms up
        peak = std::max(peak, peak_gib());
      }
      std::sort(times.begin(), times.end());
      res["prefill"][std::to_string(T)] = {{"seconds_median", times[times.size() / 2]}, {"peak_gib", peak}};
      std::cerr << "prefill " << T << ": " << times[times.size() / 2] << " s, peak " << peak << " GiB\n";
    }
    // Decode ms/token after a prefill of decode_context tokens, and scoring+selection cost.
    {
      const int64_t T = decode_context;
      torch::manual_seed(seed + 7);
      auto ids = torch::randint(0, cfg.vocab_size, {1, T}, torch::kInt64);
      auto cache = model->new_cache(1);
      std::vector<int64_t> prompt(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
      gpu_sync();
      double t0 = now_s();
      PromptState st = prefill_for_compression(*model, prompt, cache, Needs{32, false});
      gpu_sync();
      const double prefill_s = now_s() - t0;
      auto tok = st.last_logits.argmax(-1).view({1, 1});
      for (int i = 0; i < 4; ++i) model->forward(tok, cache);  // warm up
      gpu_sync();
      t0 = now_s();
      for (int64_t i = 0; i < decode_tokens; ++i) tok = model->forward(tok, cache).select(1, 0).argmax(-1).view({1, 1});
      gpu_sync();
      res["decode"] = {{"context", T}, {"ms_per_token", 1000 * (now_s() - t0) / decode_tokens}};
      std::cerr << "decode after " << T << ": " << res["decode"]["ms_per_token"] << " ms/token (eager)\n";
      // The same with the fixed-shape step replayed as a CUDA graph (what decode_greedy uses).
      {
        KVCache gc = cache.clone();
        reset_peak();
        gpu_sync();
        double tc = now_s();
        StaticDecoder dec(*model, gc, decode_tokens + 4);
        gpu_sync();
        const double capture_s = now_s() - tc;
        auto gt = tok.view({1});
        for (int i = 0; i < 4; ++i) gt = dec.step(gt).argmax(-1);
        gpu_sync();
        t0 = now_s();
        for (int64_t i = 0; i < decode_tokens; ++i) gt = dec.step(gt).argmax(-1);
        gpu_sync();
        res["decode_graph"] = {{"context", T}, {"ms_per_token", 1000 * (now_s() - t0) / decode_tokens},
                               {"graphed", dec.graphed()}, {"capture_seconds", capture_s}, {"peak_gib", peak_gib()}};
        std::cerr << "decode after " << T << ": " << res["decode_graph"].dump() << " (CUDA graph)\n";
      }
      if (mode == "decode") {
        std::ofstream(out + "/judgeq_decode.json") << res.dump(2) << "\n";
        return 0;
      }
      // Selection overhead per method at budget 1024, as a fraction of the prefill.
      SoftTokens soft;
      soft.embeddings = model->embedding_table().narrow(0, 1000, 32).clone();
      soft.metadata = soft_tokens_metadata(cfg, 32);
      save_soft_tokens(out + "/bench_soft.safetensors", soft);
      auto cache2 = model->new_cache(1);
      PromptState st2 = prefill_for_compression(*model, prompt, cache2, Needs{32, false});
      for (std::string name : {"streamingllm", "snapkv", "pyramidkv", "judgeq", "knorm", "laq"}) {
        json o = name == "judgeq" ? json{{"soft_tokens", out + "/bench_soft.safetensors"}} : json::object();
        auto m = make_method(name, o);
        m->select(st2, Budget::parse("1024"));  // warm up
        gpu_sync();
        t0 = now_s();
        auto sel = m->select(st2, Budget::parse("1024"));
        auto c = apply_selection(cache2, sel);
        gpu_sync();
        const double s = now_s() - t0;
        res["selection"][name] = {{"seconds", s}, {"fraction_of_prefill", s / prefill_s},
                                  {"compressed_cache_bytes", c.bytes_in_use()},
                                  {"budget_x_token_bytes", 1024 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2 * 2}};
        std::cerr << name << ": " << s << " s (" << 100 * s / prefill_s << "% of prefill)\n";
      }
      // H2O needs the column sums during the prefill: its cost is the extra prefill time (medians
      // of 3 warm runs of each, alternated).
      {
        auto h = h2o_prefill_overhead(*model, prompt, 3);
        res["selection"]["h2o"] = h;
        std::cerr << "h2o: " << h.dump() << "\n";
      }
      res["prefill_with_capture_seconds"] = prefill_s;
    }
    // The fused H2O column sums against the blockwise reference on the same q, k (8K tokens,
    // random activations at the model's head shape).
    {
      torch::manual_seed(seed + 11);
      auto o = torch::TensorOptions().dtype(torch::kBFloat16).device(dev);
      const int64_t T = 8192;
      auto q = (torch::randn({1, cfg.n_heads, T, cfg.head_dim}, o) * 1.5);
      auto k = (torch::randn({1, cfg.n_kv_heads, T, cfg.head_dim}, o) * 1.5);
      // Accuracy only: --mode h2o times the kernels (warm, repeated).
      auto fused = h2o_column_sums(q, k);
      auto ref = h2o_column_sums_blockwise(q, k);
      auto err = (fused - ref).abs();
      auto top_f = std::get<1>(fused.topk(1024, -1)), top_r = std::get<1>(ref.topk(1024, -1));
      auto hits = torch::zeros_like(ref).scatter_(-1, top_r, 1.0).gather(-1, top_f).sum().item<double>();
      res["h2o_fused_check"] = {{"tokens", T},
                                {"max_abs_error", err.max().item<double>()},
                                {"max_rel_error", (err / ref.abs().clamp_min(1e-3)).max().item<double>()},
                                {"mean_column_sum", ref.mean().item<double>()},
                                {"top1024_agreement", hits / double(top_f.numel())}};
      std::cerr << "h2o fused check: " << res["h2o_fused_check"].dump() << "\n";
    }
    std::ofstream(out + "/judgeq_speed.json") << res.dump(2) << "\n";
    return 0;
  });
}
