// Every difference between the LibTorch versions judgeq builds against (Debian's 1.13 on CPU
// machines, 2.x with CUDA on GPU machines) lives here.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#include <utility>
#include <vector>

#if TORCH_VERSION_MAJOR >= 2
#define JUDGEQ_HAVE_SDPA 1
#else
#define JUDGEQ_HAVE_SDPA 0
#endif
// c10d (util/distributed.cpp): 2.x's ProcessGroupGloo/NCCL derive from c10d::Backend, 1.13's
// from c10d::ProcessGroup (same allreduce/broadcast signatures).
#if TORCH_VERSION_MAJOR >= 2
#define JUDGEQ_C10D_BACKEND_BASE 1
#else
#define JUDGEQ_C10D_BACKEND_BASE 0
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define JUDGEQ_HAVE_SDPA_GQA 1
#else
#define JUDGEQ_HAVE_SDPA_GQA 0
#endif

#if JUDGEQ_HAVE_SDPA
#include <ATen/core/dispatch/Dispatcher.h>
#endif

namespace judgeq::compat {

inline constexpr bool kHaveFusedAttention = JUDGEQ_HAVE_SDPA;

inline std::string torch_version() { return TORCH_VERSION; }

// Scaled scores alpha * a @ b in float32 from half-precision a, b [N, n, d] / [N, d, m] on tensor
// cores (LibTorch >= 2.8 on CUDA); undefined where that is not available, so the caller keeps its
// float32 path. No autograd.
inline bool have_half_bmm_float(const torch::Tensor& a) {
#ifdef JUDGEQ_HAVE_GEMM_OUT_DTYPE
  return a.is_cuda() && (a.scalar_type() == torch::kBFloat16 || a.scalar_type() == torch::kHalf);
#else
  (void)a;
  return false;
#endif
}
inline torch::Tensor half_bmm_float(const torch::Tensor& a, const torch::Tensor& b, double alpha) {
#ifdef JUDGEQ_HAVE_GEMM_OUT_DTYPE
  if (have_half_bmm_float(a) && b.scalar_type() == a.scalar_type())
    return at::baddbmm(torch::empty({a.size(0), a.size(1), b.size(2)}, a.options().dtype(torch::kFloat32)), a, b,
                       torch::kFloat32, /*beta=*/0, /*alpha=*/alpha);
#endif
  (void)a;
  (void)b;
  (void)alpha;
  return torch::Tensor();
}

// A host tensor (token ids, positions, masks) moved to `device` without blocking the host: a
// plain copy from pageable memory synchronises the stream, so the host would wait for all queued
// GPU work (e.g. a whole prefill) before it could issue the next operator. Through a pinned
// staging buffer the copy is queued like a kernel (the caching host allocator keeps the buffer
// until the copy has run).
inline torch::Tensor to_device(const torch::Tensor& t, torch::Device device, torch::ScalarType dtype) {
  if (t.device() == device || !device.is_cuda() || !t.device().is_cpu()) return t.to(device, dtype);
  return t.to(dtype).contiguous().pin_memory().to(device, dtype, /*non_blocking=*/true);
}

#if JUDGEQ_HAVE_SDPA
// q [B,H,Tq,D]; k, v [B,H_kv,Tk,D]; mask: bool [.., Tq, Tk] (true = attend) or undefined.
inline torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& mask,
                                     bool is_causal, double scale) {
#if JUDGEQ_HAVE_SDPA_GQA
  return at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask)
                                                                  : c10::nullopt,
                                          0.0, is_causal, scale, /*enable_gqa=*/k.size(1) != q.size(1));
#else
  const int64_t group = q.size(1) / k.size(1);
  auto kk = group == 1 ? k : k.repeat_interleave(group, 1);
  auto vv = group == 1 ? v : v.repeat_interleave(group, 1);
  return at::scaled_dot_product_attention(q, kk, vv, mask.defined() ? c10::optional<at::Tensor>(mask)
                                                                    : c10::nullopt,
                                          0.0, is_causal, scale);
#endif
}

// Fused kernels that also return each query row's log-sum-exp of its scaled scores ([B, H, Tq]
// float32) for causal attention over a fresh prompt (no past keys, no padding). q [B,H,Tq,D];
// k, v [B,H_kv,Tk,D]. Undefined tensors where the kernel does not take the inputs. cuDNN's op is
// private and its signature moves between releases: it is called through the dispatcher after
// checking its schema.
enum class LseKernel { none, cudnn, flash };

inline torch::Tensor row_lse_of(torch::Tensor lse, int64_t Tq) {
  if (lse.dim() == 4) lse = lse.squeeze(-1);  // cuDNN: [B, H, Tq, 1]
  return lse.narrow(-1, 0, Tq).to(torch::kFloat32);  // Flash may pad the rows
}

inline std::pair<torch::Tensor, torch::Tensor> causal_attention_with_lse(const torch::Tensor& q,
                                                                         const torch::Tensor& k,
                                                                         const torch::Tensor& v, double scale,
                                                                         LseKernel kernel) {
  if (!q.is_cuda()) return {};
  try {
    if (kernel == LseKernel::flash) {
      auto r = at::_scaled_dot_product_flash_attention(q, k, v, 0.0, true, false, scale);
      return {std::get<0>(r), row_lse_of(std::get<1>(r), q.size(2))};
    }
    if (kernel == LseKernel::cudnn) {
      auto op = c10::Dispatcher::singleton().findSchemaOrThrow("aten::_scaled_dot_product_cudnn_attention", "");
      const auto& args = op.schema().arguments();
      if (args.size() != 9 || args[4].name() != "compute_log_sumexp" || args[8].name() != "scale") return {};
      std::vector<c10::IValue> st{q, k, v, c10::IValue(), true, 0.0, true, false, scale};
      op.callBoxed(&st);
      return {st.at(0).toTensor(), row_lse_of(st.at(1).toTensor(), q.size(2))};
    }
  } catch (const c10::Error&) {
  }
  return {};
}
#endif

}  // namespace judgeq::compat
