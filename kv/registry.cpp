// The method registry: the one list of names. Adding a method adds a line here and a file.
#include <functional>

#include "kv/methods.h"
#include "util/error.h"

namespace judgeq {

namespace {
struct Entry {
  std::function<MethodInfo()> info;
  std::function<std::unique_ptr<Method>(const nlohmann::json&)> make;
};
const std::vector<Entry>& entries() {
  static const std::vector<Entry> kEntries = {
      {info_full, make_full},       {info_random, make_random}, {info_streamingllm, make_streamingllm},
      {info_h2o, make_h2o},         {info_snapkv, make_snapkv}, {info_pyramidkv, make_pyramidkv},
      {info_adakv, make_adakv},     {info_tova, make_tova},     {info_knorm, make_knorm},
      {info_laq, make_laq},         {info_judgeq, make_judgeq}, {info_oracle, make_oracle},
  };
  return kEntries;
}
}  // namespace

const std::vector<MethodInfo>& method_infos() {
  static const std::vector<MethodInfo> kInfos = [] {
    std::vector<MethodInfo> v;
    for (auto& e : entries()) v.push_back(e.info());
    return v;
  }();
  return kInfos;
}

std::unique_ptr<Method> make_method(const std::string& name, const nlohmann::json& options) {
  const auto& infos = method_infos();
  for (size_t i = 0; i < infos.size(); ++i)
    if (infos[i].name == name) return entries()[i].make(options);
  std::string valid;
  for (auto& m : infos) valid += (valid.empty() ? "" : ", ") + m.name;
  fail("unknown method '", name, "' (valid: ", valid, ")");
}

}  // namespace judgeq
