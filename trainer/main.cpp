// judgeq-train: checkpoint preparation and (with the trainer) soft-token training.
#include <CLI/CLI.hpp>
#include <iostream>

#include "model/llama2c.h"
#include "util/cli.h"

using namespace judgeq;

namespace {
struct ConvertOptions {
  std::string bin;
  std::string tokenizer;
  std::string out;
};
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
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    if (*c) {
      convert_llama2c(co.bin, co.out, co.tokenizer);
      std::cout << "wrote " << co.out << "\n";
    }
    return 0;
  });
}
