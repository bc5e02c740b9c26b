// judgeq-eval: tokenize, generate, and (with the evaluation grid) benchmark runs.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "model/chat_template.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "util/cli.h"
#include "util/error.h"

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
  auto model = LlamaModel::load(o.model, device, dtype);
  GenerateOptions go;
  go.max_new_tokens = o.max_new_tokens;
  go.stop_ids = cfg.eos_token_ids;
  auto r = generate(*model, {prompt}, go);
  json out = {{"prompt_ids", prompt}, {"ids", r.tokens[0]}, {"finish", r.finish[0]}};
  out["text"] = tok ? json(tok->decode(r.tokens[0], true)) : json(nullptr);
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

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    if (*t) return cmd_tokenize(to);
    if (*g) return cmd_generate(go);
    return 0;
  });
}
