// judgeq-train: prepare training sets, train Judge Q soft tokens, export them; plus the llama2.c
// checkpoint converter.
#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "model/llama2c.h"
#include "trainer/trainer.h"
#include "trainer/validation.h"
#include "util/cli.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
using json = nlohmann::json;

namespace {

struct ConvertOptions {
  std::string bin;
  std::string tokenizer;
  std::string out;
};

struct ExportOptions {
  std::string checkpoint;
  std::string out;
};

// Binds CLI11 options to FitOptions fields and remembers each option's config key, so that only
// flags given on the command line override --config.
class FitFlags {
 public:
  explicit FitFlags(CLI::App* app) : app_(app) {}
  template <typename T>
  CLI::Option* add(const std::string& flag, const std::string& key, T& field, const std::string& help) {
    auto* opt = app_->add_option(flag, field, help)->capture_default_str();
    keys_[opt] = key;
    return opt;
  }
  CLI::Option* add_flag(const std::string& flag, const std::string& key, bool& field, const std::string& help) {
    auto* opt = app_->add_flag(flag, field, help);
    keys_[opt] = key;
    return opt;
  }
  // Defaults, then the config file, then the flags given.
  FitOptions resolve(const FitOptions& cli, const std::string& config_path) const {
    json merged = FitOptions{}.to_json();
    if (!config_path.empty()) {
      json file = json::parse(read_file(config_path), nullptr, false);
      check(!file.is_discarded() && file.is_object(), "--config ", config_path,
            " is not a JSON object; write the options as {\"lr\": 0.001, ...}");
      for (auto& [k, v] : file.items()) merged[k] = v;
    }
    const json given = cli.to_json();
    for (auto& [opt, key] : keys_)
      if (opt->count() > 0) merged[key] = given[key];
    return FitOptions::from_json(merged);
  }

 private:
  CLI::App* app_;
  std::map<CLI::Option*, std::string> keys_;
};

void print_prepare_stats(const PrepareOptions& o, const PrepareStats& s) {
  if (!s.finished) return;
  std::cout << "wrote " << o.out << ": " << s.written << " samples from " << s.lines << " lines";
  if (s.resumed_after_line > 0) std::cout << " (resumed after line " << s.resumed_after_line << ")";
  std::cout << "; skipped " << s.malformed << " malformed lines, " << s.empty_responses << " empty responses, "
            << s.too_short << " prompts too short, " << s.too_long << " prompts too long\n";
}

}  // namespace

int main(int argc, char** argv) {
  return run_main([&]() -> int {
    CLI::App app{"judgeq-train: train Judge Q soft tokens for KV-cache eviction"};
    app.set_version_flag("--version", version_string());
    app.require_subcommand(1);

    ConvertOptions co;
    auto* c = app.add_subcommand("convert-llama2c", "Convert a llama2.c .bin checkpoint into a Hugging Face folder");
    c->add_option("--bin", co.bin, "llama2.c checkpoint (.bin)")->required();
    c->add_option("--tokenizer", co.tokenizer, "sentencepiece tokenizer.model to copy into the folder");
    c->add_option("--out", co.out, "output folder")->required();

    PrepareOptions po;
    auto* p = app.add_subcommand("prepare", "Make a training set: the model answers the prompts of a JSONL file itself");
    p->add_option("--model", po.model, "Hugging Face checkpoint folder")->required();
    p->add_option("--data", po.data, "JSONL: ShareGPT conversations or {\"prompt\", \"response\"} lines")->required();
    p->add_option("--out", po.out, "training set to write (.h5)")->required();
    p->add_option("--chat-template", po.chat_template, "none, llama3 or mistral")->capture_default_str();
    p->add_option("--max-new-tokens", po.max_new_tokens, "response length cap")->capture_default_str();
    p->add_option("--min-prompt-tokens", po.min_prompt_tokens, "skip shorter prompts")->capture_default_str();
    p->add_option("--max-prompt-tokens", po.max_prompt_tokens,
                  "skip longer prompts (0: max_position_embeddings - max_new_tokens)")->capture_default_str();
    p->add_option("--batch", po.batch, "prompts generated together")->capture_default_str();
    p->add_option("--checkpoint-every", po.checkpoint_every, "samples per resumable part")->capture_default_str();
    p->add_option("--limit", po.limit, "stop after this many samples (0: all)")->capture_default_str();
    p->add_option("--stop-after", po.stop_after, "pause after about this many samples in this run, resumable (0: never)")
        ->capture_default_str();
    p->add_option("--log-every", po.log_every, "samples per progress line when not on a terminal")->capture_default_str();
    p->add_flag("--resume", po.resume, "continue an interrupted preparation (skips the lines already done)");
    p->add_flag("--strict", po.strict, "stop at the first malformed line instead of skipping it");
    p->add_flag("--quiet", po.quiet, "no progress output");
    p->add_option("--device", po.device, "auto, cpu, cuda, cuda:N")->capture_default_str();
    p->add_option("--dtype", po.dtype, "auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32")->capture_default_str();

    FitOptions fo;
    std::string fit_config, init_tokens;
    auto* f = app.add_subcommand("fit", "Train soft tokens on a prepared set; ends by exporting OUT/judgeq.safetensors");
    FitFlags ff(f);
    ff.add("--model", "model", fo.model, "Hugging Face checkpoint folder");
    ff.add("--train", "train", fo.train, "training set (.h5 from prepare)");
    ff.add("--val", "val", fo.val, "validation set (.h5 from prepare)");
    ff.add("--out", "out", fo.out, "run folder (config.json, log.jsonl, checkpoint, judgeq.safetensors)");
    f->add_option("--config", fit_config, "JSON file of options (keys as below, snake_case); flags override it");
    ff.add("--soft-tokens", "soft_tokens", fo.soft_tokens, "number of soft tokens S");
    ff.add("--steps", "steps", fo.steps, "optimizer steps (0: from --epochs)");
    ff.add("--epochs", "epochs", fo.epochs, "passes over the training set when --steps is 0 (0: one)");
    ff.add("--batch", "batch", fo.batch, "samples per step (gradient accumulation)");
    ff.add("--lr", "lr", fo.lr, "peak learning rate (AdamW)");
    ff.add("--min-lr-ratio", "min_lr_ratio", fo.min_lr_ratio, "cosine decays to lr * this");
    ff.add("--warmup-steps", "warmup_steps", fo.warmup_steps, "linear warmup steps (-1: 5% of the steps)");
    ff.add("--weight-decay", "weight_decay", fo.weight_decay, "AdamW decoupled weight decay");
    ff.add("--beta1", "beta1", fo.beta1, "AdamW beta1");
    ff.add("--beta2", "beta2", fo.beta2, "AdamW beta2");
    ff.add("--adam-eps", "adam_eps", fo.adam_eps, "AdamW epsilon");
    ff.add("--clip", "clip", fo.clip, "gradient norm clipping (0: off)");
    ff.add("--loss", "loss", fo.loss, "mse (squared L2 between attention rows, as in the paper) or kl");
    ff.add("--map", "map", fo.map, "per-head or per-group (mean over a KV group's query heads)");
    ff.add_flag("--renormalize", "renormalize", fo.renormalize, "renormalise attention rows over the prompt keys");
    ff.add("--max-response-tokens", "max_response_tokens", fo.max_response_tokens,
           "response tokens used for the target (0: all)");
    ff.add("--init", "init", fo.init, "mean (of the embedding rows), random (at embedding scale) or tokens");
    auto* it = f->add_option("--init-tokens", init_tokens, "token ids for --init tokens, e.g. [1,2,3] (cycled)");
    ff.add("--seed", "seed", fo.seed, "seed of the data order and random init");
    ff.add("--shuffle", "shuffle", fo.shuffle, "shuffle the samples each epoch (true/false)");
    ff.add("--log-every", "log_every", fo.log_every, "steps per printed line (log.jsonl has every step)");
    ff.add("--val-every", "val_every", fo.val_every, "steps between validations");
    ff.add("--val-samples", "val_samples", fo.val_samples, "validation samples used (0: all)");
    HitRateValidation hv;
    f->add_option("--val-hit-budget", hv.budget,
                  "with --val: also log the critical-KV hit rate vs the oracle of the soft tokens (judgeq) and of "
                  "SnapKV at this budget (entries per layer, or crR; 0 or off: not measured)")
        ->capture_default_str();
    f->add_option("--val-hit-window", hv.window, "recent window kept by judgeq and SnapKV (SnapKV's observation window)")
        ->capture_default_str();
    f->add_option("--val-hit-pooling", hv.pooling, "pooling of their scores: none, max or avg (the methods' default: max)")
        ->capture_default_str();
    ff.add("--checkpoint-every", "checkpoint_every", fo.checkpoint_every, "steps between checkpoints");
    ff.add("--stop-after", "stop_after", fo.stop_after, "stop after this many steps in this run, with a checkpoint (0: never)");
    ff.add_flag("--resume", "resume", fo.resume, "continue the run in --out from its checkpoint");
    ff.add_flag("--quiet", "quiet", fo.quiet, "no per-step lines (log.jsonl is still written)");
    ff.add("--device", "device", fo.device, "auto, cpu, cuda, cuda:N");
    ff.add("--dtype", "dtype", fo.dtype, "auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32");

    ExportOptions eo;
    auto* e = app.add_subcommand("export", "Write the soft tokens of a run's checkpoint as a judgeq.safetensors file");
    e->add_option("--checkpoint", eo.checkpoint, "run folder (the --out of fit)")->required();
    e->add_option("--out", eo.out, "soft-tokens file to write")->required();

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& err) {
      return app.exit(err);
    }
    if (*c) {
      convert_llama2c(co.bin, co.out, co.tokenizer);
      std::cout << "wrote " << co.out << "\n";
    } else if (*p) {
      print_prepare_stats(po, prepare_train_set(po));
    } else if (*f) {
      if (it->count() > 0) fo.init_tokens = parse_id_list(init_tokens, "--init-tokens");
      FitOptions opt = ff.resolve(fo, fit_config);
      if (it->count() > 0) opt.init_tokens = fo.init_tokens;
      FitHooks hooks;
      if (!opt.val.empty() && hv.budget != "0" && hv.budget != "off") {
        hv.max_samples = opt.val_samples;
        check_hit_rate_validation(hv);  // a bad budget fails before training starts
        hooks.validate = hit_rate_validation_hook(hv);
      }
      fit(opt, hooks);
    } else if (*e) {
      export_soft_tokens(eo.checkpoint, eo.out);
      std::cout << "wrote " << eo.out << "\n";
    }
    return 0;
  });
}
