#include "util/distributed.h"

#include <chrono>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "util/compat.h"
#include "util/error.h"

// JUDGEQ_HAVE_GLOO / JUDGEQ_HAVE_NCCL come from CMake when the headers were found (see
// CMakeLists.txt); without either, a multi-process launch fails with a message saying so.
#if defined(JUDGEQ_HAVE_GLOO) || defined(JUDGEQ_HAVE_NCCL)
#define JUDGEQ_HAVE_C10D 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if JUDGEQ_C10D_BACKEND_BASE
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#endif
#ifdef JUDGEQ_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef JUDGEQ_HAVE_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace judgeq {

namespace {

const char* env_value(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

int64_t env_int(const char* name, const char* text, int64_t lo, int64_t hi) {
  const std::string s(text);
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  check(used == s.size() && used > 0 && v >= lo && v <= hi, "bad ", name, " in the environment (got '", s,
        "', expected an integer in ", lo, "..", hi, "); launch with torchrun, or fix the variable");
  return v;
}

[[maybe_unused]] std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

DistEnv DistEnv::read() {
  DistEnv e;
  const char* rank = env_value("RANK");
  const char* world = env_value("WORLD_SIZE");
  if (world != nullptr) e.world = static_cast<int>(env_int("WORLD_SIZE", world, 1, 1 << 20));
  if (rank != nullptr) {
    check(world != nullptr, "RANK is set (got ", rank, ") but WORLD_SIZE is not; launch with torchrun, or set both");
    e.rank = static_cast<int>(env_int("RANK", rank, 0, INT_MAX));
  } else {
    check(e.world == 1, "WORLD_SIZE is ", e.world, " but RANK is not set; launch with torchrun, or set RANK for each process");
  }
  check(e.rank < e.world, "RANK must be below WORLD_SIZE (got RANK=", e.rank, ", WORLD_SIZE=", e.world,
        "); give each of the WORLD_SIZE processes a RANK 0..WORLD_SIZE-1");
  const char* local = env_value("LOCAL_RANK");
  e.local_rank = local != nullptr ? static_cast<int>(env_int("LOCAL_RANK", local, 0, INT_MAX)) : e.rank;
  const char* force = env_value("JUDGEQ_DIST");
  e.force = force != nullptr && std::string(force) == "1";
  if (const char* share = env_value("JUDGEQ_PROCS_PER_GPU"))
    e.procs_per_gpu = static_cast<int>(env_int("JUDGEQ_PROCS_PER_GPU", share, 1, 64));
  if (const char* b = env_value("JUDGEQ_DIST_BACKEND")) {
    const std::string v = b;
    check(v == "store" || v == "auto", "bad JUDGEQ_DIST_BACKEND in the environment (got '", v,
          "', expected store or auto); unset it to let judgeq choose");
    e.store_backend = v == "store";
  }
  const char* timeout = env_value("JUDGEQ_DIST_TIMEOUT_S");
  if (timeout != nullptr) e.timeout_ms = env_int("JUDGEQ_DIST_TIMEOUT_S", timeout, 1, 30LL * 86400) * 1000;
  const char* agent = env_value("TORCHELASTIC_USE_AGENT_STORE");
  e.agent_store = agent != nullptr && std::string(agent) == "True";
  if (const char* restarts = env_value("TORCHELASTIC_RESTART_COUNT")) e.restart_count = restarts;
  if (e.wants_group()) {
    const char* addr = env_value("MASTER_ADDR");
    const char* port = env_value("MASTER_PORT");
    check(addr != nullptr, "WORLD_SIZE=", e.world, ", RANK=", e.rank,
          " ask for a multi-process run but MASTER_ADDR is not set (expected the rendezvous host, e.g. 127.0.0.1); "
          "launch with torchrun, or set MASTER_ADDR and MASTER_PORT");
    check(port != nullptr, "WORLD_SIZE=", e.world, ", RANK=", e.rank,
          " ask for a multi-process run but MASTER_PORT is not set (expected a free TCP port, e.g. 29500); "
          "launch with torchrun, or set MASTER_ADDR and MASTER_PORT");
    e.master_addr = addr;
    e.master_port = static_cast<int>(env_int("MASTER_PORT", port, 1, 65535));
  }
  return e;
}

#ifdef JUDGEQ_HAVE_C10D
#if JUDGEQ_C10D_BACKEND_BASE
using C10dGroup = c10d::Backend;
#else
using C10dGroup = c10d::ProcessGroup;
#endif
#endif

struct Dist::Impl {
#ifdef JUDGEQ_HAVE_C10D
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<C10dGroup> group;
#endif
  std::string backend = "none";
  torch::Device comm_device = torch::kCPU;  // where the backend wants tensors
  std::chrono::milliseconds barrier_timeout{0};
  bool hosts_store = false;  // this rank runs the store's server: it must outlive every rank's last call
  int64_t barriers = 0;
  int64_t collectives = 0;  // store backend: names each collective's keys
};

std::string Dist::compiled_backends() {
  std::string s;
#ifdef JUDGEQ_HAVE_GLOO
  s += "gloo";
#endif
#ifdef JUDGEQ_HAVE_NCCL
  s += s.empty() ? "nccl" : ",nccl";
#endif
  return s;
}

std::string Dist::backend() const { return impl_ ? impl_->backend : "none"; }

Dist Dist::create(const DistEnv& e, const torch::Device& requested) {
  Dist d;
  d.rank = e.rank;
  d.world = e.world;
  d.local_rank = e.local_rank;
  d.device = requested;
  if (!e.wants_group()) return d;
  if (requested.is_cuda() && !requested.has_index()) {
    const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
    const int64_t k = e.procs_per_gpu;
    check(e.local_rank < n * k, "LOCAL_RANK=", e.local_rank, " but only ", n, " CUDA devices are visible",
          k > 1 ? " (" + std::to_string(k) + " processes each, JUDGEQ_PROCS_PER_GPU)" : std::string(),
          "; launch at most ", n * k, " processes per host (torchrun --nproc-per-node ", n * k,
          "), or set JUDGEQ_PROCS_PER_GPU to share each GPU among more processes");
    d.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(e.local_rank / k));
  }
#ifndef JUDGEQ_HAVE_C10D
  fail("WORLD_SIZE=", e.world, " asks for a multi-process run, but this judgeq was built without distributed support "
       "(no gloo headers at build time); install libgloo-dev (scripts/setup.sh) and rebuild, or run one process");
#else
  auto impl = std::make_shared<Impl>();
  const std::chrono::milliseconds timeout(e.timeout_ms);
  // A week: ranks may reach the end of an unbalanced run far apart.
  impl->barrier_timeout = e.timeout_ms > 0 ? timeout : std::chrono::milliseconds(std::chrono::hours(24 * 7));
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(e.master_port);
    so.isServer = e.rank == 0 && !e.agent_store;
    impl->hosts_store = so.isServer;
    if (!e.agent_store) so.numWorkers = static_cast<std::size_t>(e.world);
    if (e.timeout_ms > 0) so.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(e.master_addr, so);
    // torchrun's agent store holds the agent's own keys: the workers' live under the attempt.
    if (e.agent_store) store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + e.restart_count, store);
    impl->store = c10::make_intrusive<c10d::PrefixStore>("judgeq", store);
  } catch (const std::exception& ex) {
    fail("cannot reach the rendezvous store at ", e.master_addr, ":", e.master_port, " as rank ", e.rank, " (",
         first_line(ex.what()), "); check MASTER_ADDR/MASTER_PORT (rank 0 must be able to listen on the port)");
  }
  try {
    if (e.store_backend) {
      impl->backend = "store";
    } else if (d.device.is_cuda() && e.procs_per_gpu == 1) {
#ifdef JUDGEQ_HAVE_NCCL
      // NVLink SHARP multicast (NVLS) hangs or fails on some hosts; off unless asked for.
      ::setenv("NCCL_NVLS_ENABLE", "0", 0);
      c10::cuda::set_device(d.device.index());
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      if (e.timeout_ms > 0) opts->timeout = timeout;
      impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, e.rank, e.world, opts);
      impl->backend = "nccl";
      impl->comm_device = d.device;
#endif
    }
    if (!impl->group && impl->backend != "store") {
#ifdef JUDGEQ_HAVE_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create();
      if (e.timeout_ms > 0) opts->timeout = timeout;
      const char* ifname = env_value("GLOO_SOCKET_IFNAME");
      const bool loopback = e.master_addr == "localhost" || e.master_addr.rfind("127.", 0) == 0;
      opts->devices.push_back(ifname != nullptr ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                              : loopback        ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                                : c10d::ProcessGroupGloo::createDefaultDevice());
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, e.rank, e.world, opts);
      impl->backend = "gloo";
      impl->comm_device = torch::kCPU;  // CUDA tensors are staged through host memory
#else
      // Ranks sharing a GPU (NCCL refuses them) and no Gloo: the store carries the few small
      // collectives judgeq makes.
      check(d.device.is_cuda() && e.procs_per_gpu > 1, "no process-group backend for ", d.device.str(),
            " in this build (got ", compiled_backends(), "); rebuild with libgloo-dev installed, or run one process");
      impl->backend = "store";
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& ex) {
    fail("cannot create the ", d.device.is_cuda() ? "CUDA" : "CPU", " process group as rank ", e.rank, " of ", e.world,
         " (", first_line(ex.what()), "); check that every rank was started with the same WORLD_SIZE and MASTER_ADDR");
  }
  d.impl_ = std::move(impl);
  return d;
#endif
}

Dist& Dist::from_env(const torch::Device& requested) {
  static std::mutex mu;
  // Never destroyed: the process group lives until the process exits, and tearing down Gloo's
  // threads during static destruction gains nothing.
  static Dist* instance = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (instance == nullptr) instance = new Dist(create(DistEnv::read(), requested));
  return *instance;
}

#ifdef JUDGEQ_HAVE_C10D
namespace {

std::vector<uint8_t> tensor_bytes(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return std::vector<uint8_t>(p, p + c.numel() * c.element_size());
}

torch::Tensor tensor_from_bytes(std::vector<uint8_t>& b, const torch::Tensor& like) {
  auto opt = torch::TensorOptions().dtype(like.scalar_type());
  check(b.size() == static_cast<size_t>(like.numel() * like.element_size()),
        "a collective through the store got ", b.size(), " bytes, expected ", like.numel() * like.element_size(),
        "; every rank must pass tensors of the same shape and dtype");
  return torch::from_blob(b.data(), like.sizes(), opt).clone();
}

// Store backend: each rank posts its tensor under the collective's key and reads all the others';
// every rank sums (or maxes) them in rank order, so all get the same bits.
void store_all_reduce(Dist::Impl& im, int rank, int world, torch::Tensor& t, bool max) {
  torch::NoGradGuard no_grad;
  const std::string key = "coll/" + std::to_string(im.collectives++) + "/";
  im.store->set(key + std::to_string(rank), tensor_bytes(t));
  std::vector<std::string> keys;
  for (int r = 0; r < world; ++r) keys.push_back(key + std::to_string(r));
  im.store->wait(keys, im.barrier_timeout);
  torch::Tensor acc;
  for (int r = 0; r < world; ++r) {
    auto b = im.store->get(keys[r]);
    auto x = tensor_from_bytes(b, t);
    acc = r == 0 ? x : max ? torch::maximum(acc, x) : acc + x;
  }
  t.copy_(acc);
  // The last rank to finish reading removes the keys, so a long run does not fill the store.
  if (im.store->add(key + "read", 1) == world) {
    for (auto& k : keys) im.store->deleteKey(k);
    im.store->deleteKey(key + "read");
  }
}

void all_reduce(const Dist::Impl& im, torch::Tensor& t, c10d::ReduceOp op) {
  torch::NoGradGuard no_grad;
  torch::Tensor buf = t.device() == im.comm_device && t.is_contiguous() ? t : t.to(im.comm_device).contiguous();
  std::vector<at::Tensor> v{buf};
  c10d::AllreduceOptions o;
  o.reduceOp = op;
  im.group->allreduce(v, o)->wait();
  if (!buf.is_same(t)) t.copy_(buf);
}

}  // namespace
#endif

void Dist::all_reduce_sum(torch::Tensor& t) const {
#ifdef JUDGEQ_HAVE_C10D
  if (impl_ && !impl_->group) store_all_reduce(*impl_, rank, world, t, false);
  else if (impl_) all_reduce(*impl_, t, c10d::ReduceOp::SUM);
#else
  (void)t;
#endif
}

void Dist::all_reduce_mean(torch::Tensor& t) const {
  if (!impl_) return;
  all_reduce_sum(t);
  torch::NoGradGuard no_grad;
  t.div_(world);
}

void Dist::all_reduce_max(torch::Tensor& t) const {
#ifdef JUDGEQ_HAVE_C10D
  if (impl_ && !impl_->group) store_all_reduce(*impl_, rank, world, t, true);
  else if (impl_) all_reduce(*impl_, t, c10d::ReduceOp::MAX);
#else
  (void)t;
#endif
}

void Dist::broadcast(torch::Tensor& t, int root) const {
#ifdef JUDGEQ_HAVE_C10D
  if (!impl_) return;
  torch::NoGradGuard no_grad;
  if (!impl_->group) {
    const std::string key = "coll/" + std::to_string(impl_->collectives++) + "/root";
    if (rank == root) {
      impl_->store->set(key, tensor_bytes(t));
    } else {
      impl_->store->wait({key}, impl_->barrier_timeout);
      auto b = impl_->store->get(key);
      t.copy_(tensor_from_bytes(b, t));
    }
    // Every rank counts itself once done (the root once it has posted); the last removes the keys.
    if (impl_->store->add(key + "/done", 1) == world) {
      impl_->store->deleteKey(key);
      impl_->store->deleteKey(key + "/done");
    }
    return;
  }
  torch::Tensor buf = t.device() == impl_->comm_device && t.is_contiguous() ? t : t.to(impl_->comm_device).contiguous();
  std::vector<at::Tensor> v{buf};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  impl_->group->broadcast(v, o)->wait();
  if (!buf.is_same(t)) t.copy_(buf);
#else
  (void)t;
  (void)root;
#endif
}

void Dist::barrier() const {
#ifdef JUDGEQ_HAVE_C10D
  if (!impl_) return;
  // The last rank to arrive opens the gate every other rank waits on.
  const std::string key = "barrier/" + std::to_string(impl_->barriers++);
  if (impl_->store->add(key, 1) == world) impl_->store->set(key + "/open", std::vector<uint8_t>{1});
  try {
    impl_->store->wait({key + "/open"}, impl_->barrier_timeout);
    // The rank that hosts the store leaves only once every rank has left: otherwise a rank still
    // waiting for the store's answer finds the server gone when the host exits after the barrier.
    if (impl_->store->add(key + "/left", 1) == world) impl_->store->set(key + "/closed", std::vector<uint8_t>{1});
    if (impl_->hosts_store) impl_->store->wait({key + "/closed"}, impl_->barrier_timeout);
  } catch (const std::exception& ex) {
    fail("rank ", rank, " waited too long for the other ranks (", first_line(ex.what()),
         "); one of them failed or is stuck: see its output");
  }
#endif
}

}  // namespace judgeq
