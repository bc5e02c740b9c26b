// Factories of the registered methods, one source file each (kv/method_<name>.cpp).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>

#include "kv/method.h"

namespace judgeq {

#define JUDGEQ_METHOD(id)                                              \
  std::unique_ptr<Method> make_##id(const nlohmann::json& options);   \
  MethodInfo info_##id();
JUDGEQ_METHOD(full)
JUDGEQ_METHOD(random)
JUDGEQ_METHOD(streamingllm)
JUDGEQ_METHOD(h2o)
JUDGEQ_METHOD(snapkv)
JUDGEQ_METHOD(pyramidkv)
JUDGEQ_METHOD(adakv)
JUDGEQ_METHOD(tova)
JUDGEQ_METHOD(knorm)
JUDGEQ_METHOD(laq)
JUDGEQ_METHOD(judgeq)
JUDGEQ_METHOD(oracle)
#undef JUDGEQ_METHOD

}  // namespace judgeq
