// Where the time of one decoding step goes: the static step (model/graph_decode.h) run eagerly
// after a prefill of --context tokens at a real shape (seeded random weights), under LibTorch's
// Kineto profiler; writes a Chrome trace (open in chrome://tracing or Perfetto) whose CUDA kernel
// events bench/profile_summary.py sums per kernel name.
//   judgeq_bench_profile --config cfg.json --context 32768 --steps 5 --out dir
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/common.h"
#include "model/graph_decode.h"
#include "model/llama.h"
#include "util/cli.h"
#include "util/safetensors.h"

using namespace judgeq;
using namespace judgeq::bench;
namespace prof = torch::autograd::profiler;

int main(int argc, char** argv) {
  return run_main([&]() -> int {
    CLI::App app{"judgeq decoding-step profile"};
    std::string config, out = ".";
    int64_t context = 32768, steps = 5, seed = 0;
    app.add_option("--config", config)->required();
    app.add_option("--context", context);
    app.add_option("--steps", steps);
    app.add_option("--seed", seed);
    app.add_option("--out", out);
    CLI11_PARSE(app, argc, argv);
    torch::NoGradGuard ng;
    auto cfg = ModelConfig::from_json(nlohmann::json::parse(read_file(config)), config);
    torch::Device dev(torch::kCUDA);
    auto model = seeded_model(cfg, seed, dev);
    torch::manual_seed(seed + 7);
    auto ids = torch::randint(0, cfg.vocab_size, {1, context}, torch::kInt64);
    auto cache = model->new_cache(1);
    auto logits = model->forward(ids.to(dev), cache);
    StaticDecoder dec(*model, cache, steps + 4, /*use_graph=*/false);
    auto tok = logits.select(1, 0).argmax(-1);
    for (int i = 0; i < 3; ++i) tok = dec.step(tok).argmax(-1);
    gpu_sync();
    const std::set<torch::profiler::impl::ActivityType> acts = {torch::profiler::impl::ActivityType::CPU,
                                                             torch::profiler::impl::ActivityType::CUDA};
    const torch::profiler::impl::ProfilerConfig pc(torch::profiler::impl::ProfilerState::KINETO);
    prof::prepareProfiler(pc, acts);
    prof::enableProfiler(pc, acts);
    for (int64_t i = 0; i < steps; ++i) tok = dec.step(tok).argmax(-1);
    gpu_sync();
    auto result = prof::disableProfiler();
    result->save(out + "/decode_trace.json");
    std::cout << "profiled " << steps << " eager steps after " << context << " tokens: " << out << "/decode_trace.json\n";
    return 0;
  });
}
