// judgeq-eval: tokenize, generate, and (with the evaluation grid) benchmark runs.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "eval/report.h"
#include "eval/run.h"
#include "kv/compress.h"
#include "kv/method.h"
#include "model/chat_template.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "util/cli.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;
using nlohmann::json;

namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  bool bos = false;
  bool parse_special = false;
};

struct GenerateCliOptions {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  std::string chat_template = "none";
  int64_t max_new_tokens = 64;
  std::string device = "auto";
  std::string dtype = "auto";
  std::string method;
  std::string budget;
  std::string method_options;
  std::string soft_tokens;
};

int cmd_tokenize(const TokenizeOptions& o) {
  auto tok = Tokenizer::load(o.tokenizer);
  auto ids = tok->encode(o.text, o.bos, o.parse_special);
  std::cout << json(ids).dump() << "\n";
  return 0;
}

int cmd_generate(const GenerateCliOptions& o) {
  check(o.prompt.empty() != o.prompt_ids.empty(), "give exactly one of --prompt or --prompt-ids");
  check(o.max_new_tokens > 0, "--max-new-tokens must be positive (got ", o.max_new_tokens, ")");
  auto device = resolve_device(o.device);
  auto dtype = resolve_dtype(o.dtype, device);
  auto cfg = ModelConfig::load(o.model);  // fail fast on a bad folder before loading a tokenizer
  std::unique_ptr<Tokenizer> tok;
  std::vector<int64_t> prompt;
  if (!o.prompt.empty()) {
    tok = Tokenizer::load(o.model);
    prompt = apply_chat_template(*tok, parse_chat_template(o.chat_template), {{"user", o.prompt}});
  } else {
    prompt = parse_id_list(o.prompt_ids, "--prompt-ids");
    check(!prompt.empty(), "--prompt-ids is empty; give at least one token id");
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.model", ec) ||
        std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.json", ec))
      tok = Tokenizer::load(o.model);
  }
  std::unique_ptr<Method> method;
  if (!o.method.empty()) {
    json mo = o.method_options.empty() ? json::object() : json::parse(o.method_options, nullptr, false);
    check(!mo.is_discarded() && mo.is_object(), "--method-options must be a JSON object (got '", o.method_options, "')");
    if (!o.soft_tokens.empty()) mo["soft_tokens"] = o.soft_tokens;
    method = make_method(o.method, mo);
    check(!o.budget.empty() || o.method == "full", "--method ", o.method, " needs --budget (e.g. 128 or cr0.5)");
  }
  auto model = LlamaModel::load(o.model, device, dtype);
  GenerateOptions go;
  go.max_new_tokens = o.max_new_tokens;
  go.stop_ids = cfg.eos_token_ids;
  GenerateResult r;
  json kept = nullptr;
  if (method) {
    torch::NoGradGuard ng;
    KVCache cache = model->new_cache(1);
    PromptState st = prefill_for_compression(*model, prompt, cache, method->needs());
    st.answer_tokens = o.max_new_tokens;
    st.stop_ids = go.stop_ids;
    KVCache c = apply_selection(cache, method->select(st, Budget::parse(o.budget.empty() ? "1" : o.budget)));
    auto per_layer = c.kept_counts().to(torch::kFloat64).mean({1, 2}).contiguous();
    kept = {{"per_layer_mean", std::vector<double>(per_layer.data_ptr<double>(), per_layer.data_ptr<double>() + per_layer.numel())},
            {"cache_bytes", c.bytes_in_use()},
            {"prompt_tokens", prompt.size()}};
    r = decode_greedy(*model, c, st.last_logits, go);
  } else {
    r = generate(*model, {prompt}, go);
  }
  json out = {{"prompt_ids", prompt}, {"ids", r.tokens[0]}, {"finish", r.finish[0]}};
  if (method) {
    out["method"] = o.method;
    out["budget"] = o.budget;
    out["kept"] = kept;
  }
  out["text"] = tok ? json(utf8_lossy(tok->decode(r.tokens[0], true))) : json(nullptr);
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main([&]() -> int {
    CLI::App app{"judgeq-eval: evaluate KV-cache eviction methods (Judge Q, SnapKV, ...) on long-context benchmarks"};
    app.set_version_flag("--version", version_string());
    app.require_subcommand(1);

    TokenizeOptions to;
    auto* t = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
    t->add_option("--tokenizer", to.tokenizer, "tokenizer.json / tokenizer.model file or checkpoint folder")->required();
    t->add_option("--text", to.text, "text to encode")->required();
    t->add_flag("--bos", to.bos, "prepend the BOS token");
    t->add_flag("--parse-special", to.parse_special, "match special-token strings such as <|eot_id|> in the text");

    GenerateCliOptions go;
    auto* g = app.add_subcommand("generate", "Greedy generation for one prompt; prints JSON with ids and text");
    g->add_option("--model", go.model, "Hugging Face checkpoint folder")->required();
    g->add_option("--prompt", go.prompt, "prompt text (chat template applied, see --chat-template)");
    g->add_option("--prompt-ids", go.prompt_ids, "prompt as a JSON array of token ids (used as is)");
    g->add_option("--chat-template", go.chat_template, "none | llama3 | mistral")->capture_default_str();
    g->add_option("--max-new-tokens", go.max_new_tokens, "tokens to generate at most")->capture_default_str();
    g->add_option("--device", go.device, "auto | cpu | cuda[:N]")->capture_default_str();
    g->add_option("--dtype", go.dtype, "auto | bf16 | fp16 | fp32 (auto: bf16 on CUDA, fp32 on CPU)")->capture_default_str();

    g->add_option("--method", go.method, "compress the prompt's cache with this method first (see `methods`)");
    g->add_option("--budget", go.budget, "KV budget: entries per layer (e.g. 128) or kvpress ratio (cr0.5)");
    g->add_option("--method-options", go.method_options, "method options as JSON, e.g. '{\"window\": 16}'");
    g->add_option("--soft-tokens", go.soft_tokens, "Judge Q soft tokens (judgeq.safetensors) for --method judgeq");

    auto* ms = app.add_subcommand("methods", "List the eviction methods with their options and defaults");
    bool methods_json = false;
    ms->add_flag("--json", methods_json, "print JSON instead of text");

    std::string report_dir;
    auto* rp = app.add_subcommand("report", "Rewrite metrics.json, results.md/.csv and plots of a run folder");
    rp->add_option("run_dir", report_dir, "run folder (holds predictions.jsonl)")->required();

    RunOptions ro;
    std::string config_file;
    auto* run = app.add_subcommand("run", "Evaluate methods x budgets on RULER, NIAH or LongBench");
    run->add_option("--config", config_file, "JSON preset (configs/paper.json, configs/kvpress.json); flags override it");
    run->add_option("--model", ro.model, "Hugging Face checkpoint folder");
    run->add_option("--bench", ro.bench, "ruler | niah | longbench")->capture_default_str();
    run->add_option("--tasks", ro.tasks, "tasks (comma-separated); default: all RULER tasks / multi_news")->delimiter(',');
    run->add_option("--lengths", ro.lengths, "RULER/NIAH context lengths in tokens")->delimiter(',')->capture_default_str();
    run->add_option("--depths", ro.depths, "NIAH needle depths in % (default 10 depths 0..100)")->delimiter(',');
    run->add_option("--data-dir", ro.data_dir, "data root with ruler/ and niah/ (default $JUDGEQ_DATA or ../shared/data); LongBench: folder of {task}.jsonl");
    run->add_option("--squad", ro.squad, "RULER qa_1: path of SQuAD v2.0 dev (dev-v2.0.json, not bundled)");
    run->add_option("--hotpotqa", ro.hotpotqa, "RULER qa_2: path of HotpotQA dev distractor (hotpot_dev_distractor_v1.json, not bundled)");
    run->add_option("--methods", ro.methods, "methods (comma-separated)")->delimiter(',')->capture_default_str();
    run->add_option("--budgets", ro.budgets, "budgets: entries per layer (128) or kvpress ratios (cr0.5)")->delimiter(',')->capture_default_str();
    run->add_option("--soft-tokens", ro.soft_tokens, "Judge Q soft tokens for --methods judgeq");
    std::string run_method_options;
    run->add_option("--method-options", run_method_options, "JSON {method: {option: value}}");
    run->add_option("--protocol", ro.protocol, "paper (whole prompt compressed) | kvpress (context only, question after) | question-first (RULER: the question moved before the context, all compressed)")->capture_default_str();
    run->add_option("--chat-template", ro.chat_template, "none | llama3 | mistral")->capture_default_str();
    run->add_option("--limit", ro.limit, "samples per task and length (0: the bench default, 500 for RULER)")->capture_default_str();
    run->add_option("--seed", ro.seed, "seed of the generated benchmarks")->capture_default_str();
    run->add_flag("--resume", ro.resume, "continue a run folder, skipping finished samples");
    run->add_option("--max-batch", ro.max_batch, "variants decoded together at most")->capture_default_str();
    run->add_option("--device", ro.device, "auto | cpu | cuda[:N]")->capture_default_str();
    run->add_option("--dtype", ro.dtype, "auto | bf16 | fp16 | fp32")->capture_default_str();
    run->add_option("--out", ro.out, "run folder");

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    if (*t) return cmd_tokenize(to);
    if (*g) return cmd_generate(go);
    if (*ms) {
      json all = json::array();
      for (auto& m : method_infos()) all.push_back({{"name", m.name}, {"summary", m.summary}, {"options", m.defaults}, {"help", m.help}});
      if (methods_json) {
        std::cout << all.dump(2) << "\n";
      } else {
        for (auto& m : method_infos()) {
          std::cout << m.name << ": " << m.summary << "\n";
          for (auto it = m.defaults.begin(); it != m.defaults.end(); ++it)
            std::cout << "    " << it.key() << " = " << it.value().dump() << "    "
                      << (m.help.contains(it.key()) ? m.help[it.key()].get<std::string>() : "") << "\n";
        }
      }
      return 0;
    }
    if (*rp) {
      write_report(report_dir);
      std::cout << "wrote " << report_dir << "/results.md\n";
      return 0;
    }
    if (*run) {
      std::vector<std::string> on_cli;
      for (auto* opt : run->get_options())
        if (opt->count() > 0 && !opt->get_lnames().empty()) {
          std::string k = opt->get_lnames()[0];
          for (auto& ch : k)
            if (ch == '-') ch = '_';
          on_cli.push_back(k);
        }
      if (!run_method_options.empty()) {
        auto mo = json::parse(run_method_options, nullptr, false);
        check(!mo.is_discarded() && mo.is_object(), "--method-options must be a JSON object like '{\"snapkv\": {\"window\": 16}}'");
        ro.method_options = mo;
      }
      if (!config_file.empty()) {
        json cfg;
        try {
          cfg = json::parse(read_file(config_file));
        } catch (const json::exception& e) {
          fail("cannot parse --config ", config_file, " (", e.what(), ")");
        }
        ro.merge_json(cfg, on_cli);
      }
      check(!ro.model.empty(), "no model; pass --model DIR (a Hugging Face checkpoint folder)");
      run_eval(ro);
      return 0;
    }
    return 0;
  });
}
