// Converts a llama2.c checkpoint (.bin: 7 int32 header + float32 weights) into a Hugging Face
// Llama folder (config.json, model.safetensors, generation_config.json).
#pragma once
#include <string>

namespace judgeq {

// tokenizer_model: optional sentencepiece tokenizer.model copied into the folder.
void convert_llama2c(const std::string& bin_path, const std::string& out_dir,
                     const std::string& tokenizer_model = "");

}  // namespace judgeq
