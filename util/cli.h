// Shared pieces of the two command-line tools: one catch per main, device/dtype resolution.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

namespace judgeq {

// Runs body(); every judgeq::Error, c10::Error or std::exception becomes one line
// "error: <message>" on stderr and exit code 1.
int run_main(const std::function<int()>& body);

// "auto" -> cuda when available, else cpu; "cuda", "cuda:1", "cpu" as given.
torch::Device resolve_device(const std::string& name);
// "auto" -> bf16 on CUDA, fp32 on CPU.
torch::Dtype resolve_dtype(const std::string& name, const torch::Device& device);

// "[1,2,3]" -> ids; throws a one-line error on malformed input.
std::vector<int64_t> parse_id_list(const std::string& json_text, const std::string& what);

std::string version_string();

}  // namespace judgeq
