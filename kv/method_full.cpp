// full: keeps every entry (the reference every budget is compared with).
#include "kv/methods.h"
#include "kv/scoring.h"

namespace judgeq {
namespace {
class Full : public Method {
 public:
  explicit Full(const nlohmann::json& o) : opt_("full", info_full().defaults, o) {}
  std::string name() const override { return "full"; }
  nlohmann::json options() const override { return opt_.resolved(); }
  Selection select(const PromptState& st, const Budget&) override { return keep_all(st); }

 private:
  Options opt_;
};
}  // namespace
MethodInfo info_full() { return {"full", "keep the whole cache (no eviction)", nlohmann::json::object(), nlohmann::json::object()}; }
std::unique_ptr<Method> make_full(const nlohmann::json& o) { return std::make_unique<Full>(o); }
}  // namespace judgeq
