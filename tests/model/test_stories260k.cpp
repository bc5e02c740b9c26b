// The real GQA Llama stories260K (llama2.c), converted to a Hugging Face folder by
// `judgeq-train convert-llama2c` and committed under tests/fixtures/stories260K, reproduces
// the golden 256-token greedy continuation through the ordinary HF loading path.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/llama2c.h"
#include "util/error.h"
#include "util/safetensors.h"

using namespace judgeq;

TEST(Stories260K, GreedyMatchesGolden) {
  auto golden = nlohmann::json::parse(read_file(test::shared_data() + "/tokenizers/golden/stories260K_greedy.json"));
  std::vector<int64_t> prompt = golden["prompt_ids"].get<std::vector<int64_t>>();
  std::vector<int64_t> want;
  for (auto& key : {"generated_ids", "ids", "tokens", "generated"})
    if (golden.contains(key)) want = golden[key].get<std::vector<int64_t>>();
  ASSERT_FALSE(want.empty()) << "golden file layout changed";
  auto model = LlamaModel::load(test::fixtures() + "/stories260K", torch::kCPU, torch::kFloat32);
  GenerateOptions go;
  go.max_new_tokens = static_cast<int64_t>(want.size());
  go.stop_ids = {1};  // llama2.c stops when BOS is produced
  auto r = generate(*model, {prompt}, go);
  EXPECT_EQ(r.tokens[0], want);
}

TEST(Stories260K, ConverterReproducesCommittedFixture) {
  const std::string bin = test::shared_data() + "/tokenizers/llama2c-stories260K/stories260K.bin";
  auto out = test::temp_dir("l2c");
  convert_llama2c(bin, out, test::shared_data() + "/tokenizers/llama2c-stories260K/tok512.model");
  SafetensorsFile a(out + "/model.safetensors"), b(test::fixtures() + "/stories260K/model.safetensors");
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (auto& [name, info] : b.tensors()) EXPECT_TRUE(torch::equal(a.get(name), b.get(name))) << name;
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.model"));
}

TEST(Stories260K, ConverterRejectsGarbage) {
  auto dir = test::temp_dir("l2c_bad");
  write_file_atomic(dir + "/bad.bin", std::string(10, 'x'));
  EXPECT_THROW(convert_llama2c(dir + "/bad.bin", dir + "/out"), Error);
  std::string header(28, '\0');
  int32_t h[7] = {64, 172, 5, 8, 4, 512, 512};
  std::memcpy(header.data(), h, 28);
  write_file_atomic(dir + "/trunc.bin", header + std::string(1000, '\0'));
  try {
    convert_llama2c(dir + "/trunc.bin", dir + "/out");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out/model.safetensors"));
}
