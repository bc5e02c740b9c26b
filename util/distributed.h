// Multi-process runs launched by torchrun (or by hand with the same variables): the rank and world
// size from the environment, and the few collectives judgeq needs, on LibTorch's own c10d (Gloo on
// CPU, NCCL on CUDA when built with it). A plain single-process run has no process group at all.
//
//   RANK, WORLD_SIZE      this process and the number of processes (unset: 1 process)
//   LOCAL_RANK            the process on this host; on CUDA it computes on cuda:LOCAL_RANK
//   JUDGEQ_PROCS_PER_GPU  K processes share each GPU (default 1): LOCAL_RANK computes on
//                         cuda:(LOCAL_RANK / K) and the group uses Gloo (NCCL refuses two ranks on
//                         one device). For small models, whose runs are bound by the host, not the GPU
//   MASTER_ADDR/PORT      the rendezvous store (a c10d::TCPStore; rank 0 serves it unless torchrun's
//                         agent already does: TORCHELASTIC_USE_AGENT_STORE=True)
//   JUDGEQ_DIST=1         a process group even for one process (tests of the collective path)
//   JUDGEQ_DIST_TIMEOUT_S collectives' and the store's timeout (default: LibTorch's)
//   JUDGEQ_DIST_BACKEND   store: collectives through the rendezvous store itself (small tensors;
//                         what ranks sharing a GPU use when the build has no Gloo); default: auto
//   GLOO_SOCKET_IFNAME    the network interface Gloo uses (default: loopback for a loopback
//                         MASTER_ADDR, else the host name's address)
// NCCL groups are made with NCCL_NVLS_ENABLE=0 unless it is set (NVLink SHARP multicast off).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

namespace judgeq {

// The launch environment. read() throws a one-line judgeq::Error for inconsistent variables
// (RANK >= WORLD_SIZE, WORLD_SIZE > 1 without MASTER_ADDR, non-numbers, ...).
struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool force = false;        // JUDGEQ_DIST=1
  bool agent_store = false;  // torchrun's agent hosts the TCPStore: every rank is a client
  std::string restart_count = "0";
  int64_t timeout_ms = 0;    // 0: LibTorch's defaults
  int procs_per_gpu = 1;     // JUDGEQ_PROCS_PER_GPU
  bool store_backend = false;  // JUDGEQ_DIST_BACKEND=store

  static DistEnv read();
  bool wants_group() const { return world > 1 || force; }
};

// This process's place in a run. Without a group (active() false) every collective is a no-op.
struct Dist {
  int rank = 0, world = 1, local_rank = 0;
  torch::Device device = torch::kCPU;  // where this rank computes (cuda:LOCAL_RANK / K on CUDA)

  bool active() const { return impl_ != nullptr; }
  bool is_root() const { return rank == 0; }
  std::string backend() const;  // "none", "gloo", "nccl" or "store"

  // In place over all ranks; t may live on any device (copied to the backend's device and back).
  void all_reduce_sum(torch::Tensor& t) const;
  void all_reduce_mean(torch::Tensor& t) const;
  void all_reduce_max(torch::Tensor& t) const;
  void broadcast(torch::Tensor& t, int root = 0) const;
  // Every rank waits for all others. Goes through the store, so it has no collective timeout
  // (ranks may arrive hours apart at the end of an unbalanced evaluation) unless
  // JUDGEQ_DIST_TIMEOUT_S is set.
  void barrier() const;

  // The process's group, made on the first call from the environment and kept for the process's
  // life (`requested` picks the backend: NCCL for CUDA, Gloo otherwise). Later calls return it.
  static Dist& from_env(const torch::Device& requested);
  // A group for `env` (tests run several ranks as threads of one process).
  static Dist create(const DistEnv& env, const torch::Device& requested);
  // Whether this build can make process groups ("gloo", "gloo,nccl", or "" when compiled out).
  static std::string compiled_backends();

  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace judgeq
