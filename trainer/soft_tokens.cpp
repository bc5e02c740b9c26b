#include "trainer/soft_tokens.h"
#include "judgeq_git_commit.h"

#include <filesystem>
#include <set>

#include "util/error.h"
#include "util/safetensors.h"

namespace judgeq {

using json = nlohmann::json;

namespace {

// Keys whose values are plain strings; every other value is JSON text in the file (numbers,
// booleans, objects), parsed back on reading.
const std::set<std::string>& string_keys() {
  static const std::set<std::string> keys = {
      "format", "tool_version", "git_commit", "base_model", "config_hash", "model_type", "position_rule",
      "dtype", "loss", "map", "init", "training_data_hash", "created"};
  return keys;
}

const std::vector<std::string>& required_keys() {
  static const std::vector<std::string> keys = {"format", "format_version", "base_model", "config_hash",
                                                "hidden_size", "n_soft_tokens", "position_rule"};
  return keys;
}

int64_t int_field(const json& m, const std::string& key, const std::string& path) {
  check(m.contains(key) && m[key].is_number_integer(), "soft-tokens file ", path, " has no valid '", key,
        "' in its metadata (got ", m.contains(key) ? m[key].dump() : std::string("nothing"),
        ", expected an integer); re-export it with judgeq-train export");
  return m[key].get<int64_t>();
}

std::string str_field(const json& m, const std::string& key) {
  return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() : std::string("?");
}

}  // namespace

json soft_tokens_metadata(const ModelConfig& config, int64_t n_soft) {
  return json{{"format", kSoftTokensFormat},
              {"format_version", kSoftTokensFormatVersion},
              {"tool_version", JUDGEQ_VERSION},
              {"git_commit", JUDGEQ_GIT_COMMIT},
              {"base_model", config.name},
              {"config_hash", config.hash()},
              {"model_type", config.model_type},
              {"hidden_size", config.hidden_size},
              {"vocab_size", config.vocab_size},
              {"n_layers", config.n_layers},
              {"n_heads", config.n_heads},
              {"n_kv_heads", config.n_kv_heads},
              {"n_soft_tokens", n_soft},
              {"position_rule", kSoftTokensPositionRule}};
}

void save_soft_tokens(const std::string& path, const SoftTokens& st) {
  check(st.embeddings.defined() && st.embeddings.dim() == 2 && st.embeddings.size(0) > 0,
        "soft-token embeddings must be [S, hidden] with S >= 1 (got ",
        st.embeddings.defined() ? st.embeddings.sizes() : c10::IntArrayRef{}, "); nothing to save to ", path);
  check(st.metadata.is_object(), "soft-token metadata must be a JSON object; build it with soft_tokens_metadata()");
  for (auto& k : required_keys())
    check(st.metadata.contains(k), "soft-token metadata lacks '", k, "'; build it with soft_tokens_metadata()");
  check(st.metadata["hidden_size"] == st.embeddings.size(1) && st.metadata["n_soft_tokens"] == st.embeddings.size(0),
        "soft-token metadata does not match the embeddings (got [", st.embeddings.size(0), ", ",
        st.embeddings.size(1), "], metadata says S = ", st.metadata["n_soft_tokens"].dump(), ", hidden = ",
        st.metadata["hidden_size"].dump(), "); rebuild the metadata for these embeddings");
  std::map<std::string, std::string> meta;
  for (auto& [k, v] : st.metadata.items()) meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
  meta["dtype"] = dtype_name(st.embeddings.scalar_type());
  write_safetensors(path, {{kSoftTokensTensor, st.embeddings.detach().contiguous()}}, meta);
}

SoftTokens read_soft_tokens(const std::string& path) {
  check(std::filesystem::is_regular_file(path), "soft-tokens file not found (got ", path,
        "); pass the judgeq.safetensors written by judgeq-train fit or export");
  SafetensorsFile f(path);
  json m = json::object();
  for (auto& [k, v] : f.metadata()) {
    if (string_keys().count(k)) {
      m[k] = v;
      continue;
    }
    json parsed = json::parse(v, nullptr, /*allow_exceptions=*/false);
    m[k] = parsed.is_discarded() ? json(v) : parsed;
  }
  const std::string format = m.contains("format") && m["format"].is_string() ? m["format"].get<std::string>() : "";
  check(format == kSoftTokensFormat, "not a judgeq soft-tokens file: ", path, " (got format '", format,
        "', expected '", kSoftTokensFormat, "'); pass the judgeq.safetensors written by judgeq-train fit or export");
  const int64_t version = int_field(m, "format_version", path);
  check(version == kSoftTokensFormatVersion, "unsupported soft-tokens format version in ", path, " (got ", version,
        ", expected ", kSoftTokensFormatVersion, "); re-export it with this judgeq: judgeq-train export --checkpoint RUN_DIR --out ",
        path);
  check(f.contains(kSoftTokensTensor), "soft-tokens file ", path, " has no '", kSoftTokensTensor,
        "' tensor; re-export it with judgeq-train export");
  const int64_t hidden = int_field(m, "hidden_size", path), n_soft = int_field(m, "n_soft_tokens", path);
  const auto& shape = f.tensors().at(kSoftTokensTensor).shape;
  check(shape.size() == 2 && shape[0] == n_soft && shape[1] == hidden && n_soft > 0, "soft-tokens file ", path,
        " is inconsistent (got tensor shape ", c10::IntArrayRef(shape), ", expected [", n_soft, ", ", hidden,
        "] from its metadata); re-export it with judgeq-train export");
  SoftTokens st;
  st.embeddings = f.get(kSoftTokensTensor);
  st.metadata = std::move(m);
  return st;
}

SoftTokens load_soft_tokens(const std::string& path, const ModelConfig& config) {
  SoftTokens st = read_soft_tokens(path);
  const json& m = st.metadata;
  const int64_t hidden = m["hidden_size"].get<int64_t>();
  const std::string hash = str_field(m, "config_hash");
  if (hidden != config.hidden_size || hash != config.hash())
    fail("soft tokens in ", path, " were made for another model (got '", str_field(m, "base_model"), "', hidden ",
         hidden, ", config hash ", hash, "; expected '", config.name, "', hidden ", config.hidden_size,
         ", config hash ", config.hash(), "); train soft tokens for this model with judgeq-train fit, or export "
         "the run made for it");
  return st;
}

torch::Tensor soft_token_positions(const std::vector<int64_t>& next_positions, int64_t n_soft) {
  const int64_t B = static_cast<int64_t>(next_positions.size());
  auto start = torch::tensor(next_positions, torch::kInt64).view({B, 1});
  return start + torch::arange(n_soft, torch::kInt64).view({1, n_soft});  // [B, S]
}

}  // namespace judgeq
