#include "model/llama2c.h"

#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/safetensors.h"

namespace fs = std::filesystem;

namespace judgeq {

namespace {
// llama2.c rotates interleaved pairs (x[2i], x[2i+1]); HF rotates halves. Reorder each head's
// output rows so that pair i lands at (i, i + D/2): the permutation of HF's own converter.
torch::Tensor permute_rope(const torch::Tensor& w, int64_t n_heads) {
  const int64_t rows = w.size(0), cols = w.size(1);
  return w.view({n_heads, rows / n_heads / 2, 2, cols}).transpose(1, 2).reshape({rows, cols});
}
}  // namespace

void convert_llama2c(const std::string& bin_path, const std::string& out_dir, const std::string& tokenizer_model) {
  const std::string raw = read_file(bin_path);
  check(raw.size() >= 28, "llama2.c checkpoint ", bin_path, " is too short (got ", raw.size(),
        " bytes, expected a 28-byte header and weights); re-download it");
  int32_t h[7];
  std::memcpy(h, raw.data(), sizeof(h));
  const int64_t dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv = h[4], seq = h[6];
  const bool shared = h[5] > 0;
  const int64_t vocab = std::abs(h[5]);
  check(dim > 0 && hidden > 0 && n_layers > 0 && n_heads > 0 && n_kv > 0 && vocab > 0 && seq > 0 &&
            dim % n_heads == 0 && n_heads % n_kv == 0,
        "llama2.c header of ", bin_path, " is not plausible (dim ", dim, ", layers ", n_layers, ", heads ", n_heads,
        "/", n_kv, ", vocab ", vocab, "); is this a llama2.c .bin file?");
  const int64_t hd = dim / n_heads, kvd = n_kv * hd;
  const float* p = reinterpret_cast<const float*>(raw.data() + 28);
  const size_t n_floats = (raw.size() - 28) / 4;
  size_t used = 0;
  auto take = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    check(used + n <= n_floats, "llama2.c checkpoint ", bin_path, " is truncated (needs more than ", n_floats,
          " floats); re-download it");
    auto t = torch::from_blob(const_cast<float*>(p + used), shape, torch::kFloat32).clone();
    used += n;
    return t;
  };
  auto emb = take({vocab, dim});
  auto rms_att = take({n_layers, dim});
  auto wq = take({n_layers, dim, dim});
  auto wk = take({n_layers, kvd, dim});
  auto wv = take({n_layers, kvd, dim});
  auto wo = take({n_layers, dim, dim});
  auto rms_ffn = take({n_layers, dim});
  auto w1 = take({n_layers, hidden, dim});
  auto w2 = take({n_layers, dim, hidden});
  auto w3 = take({n_layers, hidden, dim});
  auto rms_final = take({dim});
  take({seq, hd / 2});  // freq_cis_real (recomputed by the decoder)
  take({seq, hd / 2});  // freq_cis_imag
  torch::Tensor wcls = shared ? emb : take({vocab, dim});

  std::vector<std::pair<std::string, torch::Tensor>> t;
  t.push_back({"model.embed_tokens.weight", emb});
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    t.push_back({pre + "self_attn.q_proj.weight", permute_rope(wq[l], n_heads)});
    t.push_back({pre + "self_attn.k_proj.weight", permute_rope(wk[l], n_kv)});
    t.push_back({pre + "self_attn.v_proj.weight", wv[l]});
    t.push_back({pre + "self_attn.o_proj.weight", wo[l]});
    t.push_back({pre + "mlp.gate_proj.weight", w1[l]});
    t.push_back({pre + "mlp.down_proj.weight", w2[l]});
    t.push_back({pre + "mlp.up_proj.weight", w3[l]});
    t.push_back({pre + "input_layernorm.weight", rms_att[l]});
    t.push_back({pre + "post_attention_layernorm.weight", rms_ffn[l]});
  }
  t.push_back({"model.norm.weight", rms_final});
  if (!shared) t.push_back({"lm_head.weight", wcls});

  fs::create_directories(out_dir);
  nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", "llama"},
                        {"vocab_size", vocab},
                        {"hidden_size", dim},
                        {"intermediate_size", hidden},
                        {"num_hidden_layers", n_layers},
                        {"num_attention_heads", n_heads},
                        {"num_key_value_heads", n_kv},
                        {"head_dim", hd},
                        {"max_position_embeddings", seq},
                        {"rms_norm_eps", 1e-5},
                        {"rope_theta", 10000.0},
                        {"hidden_act", "silu"},
                        {"tie_word_embeddings", shared},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2},
                        {"torch_dtype", "float32"},
                        {"_name_or_path", fs::path(bin_path).stem().string()}};
  nlohmann::json gen = {{"bos_token_id", 1}, {"eos_token_id", 2}, {"do_sample", false}};
  write_safetensors((fs::path(out_dir) / "model.safetensors").string(), t,
                    {{"format", "pt"}, {"converted_from", fs::path(bin_path).filename().string()}});
  write_file_atomic((fs::path(out_dir) / "config.json").string(), cfg.dump(2) + "\n");
  write_file_atomic((fs::path(out_dir) / "generation_config.json").string(), gen.dump(2) + "\n");
  if (!tokenizer_model.empty()) {
    check(fs::exists(tokenizer_model), "tokenizer ", tokenizer_model, " not found; pass the sentencepiece .model");
    write_file_atomic((fs::path(out_dir) / "tokenizer.model").string(), read_file(tokenizer_model));
  }
}

}  // namespace judgeq
