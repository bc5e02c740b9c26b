#include "model/config.h"

#include <filesystem>
#include <sstream>

#include "util/error.h"
#include "util/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace judgeq {

const std::vector<std::string>& ModelConfig::supported_types() {
  static const std::vector<std::string> kTypes = {"llama", "mistral"};
  return kTypes;
}

namespace {

std::vector<int64_t> id_list(const json& j) {
  std::vector<int64_t> out;
  if (j.is_number_integer()) out.push_back(j.get<int64_t>());
  if (j.is_array())
    for (auto& e : j)
      if (e.is_number_integer()) out.push_back(e.get<int64_t>());
  return out;
}

template <typename T>
T required(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || j[key].is_null())
    fail(source, " has no '", key, "'; it is not a complete Hugging Face config.json");
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    fail(source, ": '", key, "' has the wrong type (got ", j[key].dump(), ")");
  }
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  ModelConfig c;
  check(j.is_object(), source, " is not a JSON object; it must be a Hugging Face config.json");
  c.model_type = j.value("model_type", std::string());
  bool known = false;
  std::string list;
  for (auto& t : supported_types()) {
    known |= t == c.model_type;
    list += (list.empty() ? "" : ", ") + t;
  }
  if (!known)
    fail("unsupported model_type in ", source, " (got '", c.model_type, "', expected one of ", list,
         "); judgeq runs Llama- and Mistral-family checkpoints");
  c.name = j.value("_name_or_path", std::string());
  c.vocab_size = required<int64_t>(j, "vocab_size", source);
  c.hidden_size = required<int64_t>(j, "hidden_size", source);
  c.intermediate_size = required<int64_t>(j, "intermediate_size", source);
  c.n_layers = required<int64_t>(j, "num_hidden_layers", source);
  c.n_heads = required<int64_t>(j, "num_attention_heads", source);
  c.n_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                     ? j["num_key_value_heads"].get<int64_t>()
                     : c.n_heads;
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? j["head_dim"].get<int64_t>()
                                                                  : c.hidden_size / std::max<int64_t>(c.n_heads, 1);
  c.rms_norm_eps = j.value("rms_norm_eps", 1e-5);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  c.max_position_embeddings = j.value("max_position_embeddings", int64_t(4096));
  if (j.contains("sliding_window") && j["sliding_window"].is_number_integer())
    c.sliding_window = j["sliding_window"].get<int64_t>();
  if (j.contains("bos_token_id")) {
    auto b = id_list(j["bos_token_id"]);
    if (!b.empty()) c.bos_token_id = b[0];
  }
  if (j.contains("eos_token_id")) c.eos_token_ids = id_list(j["eos_token_id"]);
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.torch_dtype = j["torch_dtype"];
  if (j.contains("dtype") && j["dtype"].is_string()) c.torch_dtype = j["dtype"];

  // RoPE: transformers <= 4.x writes rope_theta + rope_scaling; 5.x writes rope_parameters.
  c.rope_theta = j.value("rope_theta", 10000.0);
  json rs;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    rs = j["rope_parameters"];
    c.rope_theta = rs.value("rope_theta", c.rope_theta);
  } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    rs = j["rope_scaling"];
  }
  if (rs.is_object()) {
    std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
    if (type != "default" && type != "linear" && type != "llama3")
      fail("unsupported rope_scaling type in ", source, " (got '", type,
           "', expected default, linear or llama3)");
    c.rope_scaling.type = type;
    c.rope_scaling.factor = rs.value("factor", 1.0);
    c.rope_scaling.low_freq_factor = rs.value("low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = rs.value("high_freq_factor", 4.0);
    c.rope_scaling.original_max_position_embeddings =
        rs.value("original_max_position_embeddings", int64_t(8192));
  }
  if (j.value("attention_bias", false) || j.value("mlp_bias", false))
    fail(source, " asks for attention_bias/mlp_bias, which Llama/Mistral checkpoints do not use; not supported");
  const std::string act = j.value("hidden_act", std::string("silu"));
  check(act == "silu", source, ": unsupported hidden_act (got '", act, "', expected silu)");

  check(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, source,
        ": num_attention_heads (", c.n_heads, ") must be a positive multiple of num_key_value_heads (",
        c.n_kv_heads, ")");
  check(c.head_dim > 0 && c.head_dim % 2 == 0, source, ": head_dim must be positive and even (got ",
        c.head_dim, ")");
  check(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 && c.n_layers > 0, source,
        ": sizes must be positive");
  return c;
}

ModelConfig ModelConfig::load(const std::string& dir) {
  fs::path d(dir);
  check(fs::is_directory(d), "model folder ", dir,
        " does not exist; pass --model a Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer)");
  fs::path cfg = d / "config.json";
  check(fs::exists(cfg), "missing config.json in ", dir,
        "; pass --model a Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer)");
  json j;
  try {
    j = json::parse(read_file(cfg.string()));
  } catch (const json::exception& e) {
    fail("cannot parse ", cfg.string(), " (", e.what(), "); re-download the checkpoint's config.json");
  }
  ModelConfig c = from_json(j, cfg.string());
  if (c.name.empty()) c.name = fs::absolute(d).lexically_normal().filename().string();
  fs::path gen = d / "generation_config.json";
  if (fs::exists(gen)) {
    json g;
    try {
      g = json::parse(read_file(gen.string()));
    } catch (const json::exception& e) {
      fail("cannot parse ", gen.string(), " (", e.what(), "); fix or remove generation_config.json");
    }
    if (g.contains("eos_token_id"))
      for (auto id : id_list(g["eos_token_id"]))
        if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end())
          c.eos_token_ids.push_back(id);
    if (c.bos_token_id < 0 && g.contains("bos_token_id")) {
      auto b = id_list(g["bos_token_id"]);
      if (!b.empty()) c.bos_token_id = b[0];
    }
  }
  return c;
}

json ModelConfig::to_json() const {
  json j = {{"model_type", model_type},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", n_layers},
            {"num_attention_heads", n_heads},
            {"num_key_value_heads", n_kv_heads},
            {"head_dim", head_dim},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"rope_scaling",
             {{"rope_type", rope_scaling.type},
              {"factor", rope_scaling.factor},
              {"low_freq_factor", rope_scaling.low_freq_factor},
              {"high_freq_factor", rope_scaling.high_freq_factor},
              {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}}},
            {"tie_word_embeddings", tie_word_embeddings},
            {"max_position_embeddings", max_position_embeddings}};
  j["sliding_window"] = sliding_window ? json(*sliding_window) : json(nullptr);
  return j;
}

std::string fnv1a_hex(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  std::ostringstream os;
  os << std::hex;
  os.width(16);
  os.fill('0');
  os << h;
  return os.str();
}

std::string ModelConfig::hash() const { return fnv1a_hex(to_json().dump()); }

}  // namespace judgeq
