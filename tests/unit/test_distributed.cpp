// util/distributed: the torchrun environment (and its one-line errors), and a 2-rank Gloo group
// run as two threads of this process. The end-to-end multi-process runs are tests/cli/distributed.sh.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "util/distributed.h"
#include "util/error.h"

using namespace judgeq;

namespace {

const char* const kVars[] = {"RANK",
                             "WORLD_SIZE",
                             "LOCAL_RANK",
                             "MASTER_ADDR",
                             "MASTER_PORT",
                             "JUDGEQ_DIST",
                             "JUDGEQ_DIST_TIMEOUT_S",
                             "JUDGEQ_PROCS_PER_GPU",
                             "JUDGEQ_DIST_BACKEND",
                             "TORCHELASTIC_USE_AGENT_STORE",
                             "TORCHELASTIC_RESTART_COUNT"};

// Sets the launch variables for one test (the others unset) and restores them afterwards.
class LaunchEnv {
 public:
  explicit LaunchEnv(const std::map<std::string, std::string>& vars) {
    for (const char* k : kVars) {
      const char* v = std::getenv(k);
      if (v != nullptr) saved_[k] = v;
      ::unsetenv(k);
    }
    for (auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~LaunchEnv() {
    for (const char* k : kVars) ::unsetenv(k);
    for (auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
  }

 private:
  std::map<std::string, std::string> saved_;
};

// A TCP port the kernel just handed out (free a moment ago).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

TEST(DistEnv, NoVariablesIsOneProcessWithoutAGroup) {
  LaunchEnv env({});
  const DistEnv e = DistEnv::read();
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world, 1);
  EXPECT_FALSE(e.wants_group());
  Dist d = Dist::create(e, torch::kCPU);
  EXPECT_FALSE(d.active());
  EXPECT_EQ(d.backend(), "none");
  auto t = torch::tensor({1.5f, -2.0f});
  d.all_reduce_sum(t);
  d.all_reduce_mean(t);
  d.broadcast(t);
  d.barrier();
  EXPECT_TRUE(torch::equal(t, torch::tensor({1.5f, -2.0f})));
}

TEST(DistEnv, ReadsWhatTorchrunSets) {
  LaunchEnv env({{"RANK", "3"},
                 {"WORLD_SIZE", "4"},
                 {"LOCAL_RANK", "1"},
                 {"MASTER_ADDR", "10.1.2.3"},
                 {"MASTER_PORT", "29501"},
                 {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                 {"TORCHELASTIC_RESTART_COUNT", "2"},
                 {"JUDGEQ_DIST_TIMEOUT_S", "90"},
                 {"JUDGEQ_PROCS_PER_GPU", "4"}});
  const DistEnv e = DistEnv::read();
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "10.1.2.3");
  EXPECT_EQ(e.master_port, 29501);
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.restart_count, "2");
  EXPECT_EQ(e.timeout_ms, 90000);
  EXPECT_EQ(e.procs_per_gpu, 4);
  EXPECT_TRUE(e.wants_group());
}

TEST(DistEnv, OneProcessNeedsNoRendezvous) {
  LaunchEnv env({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}});
  const DistEnv e = DistEnv::read();
  EXPECT_FALSE(e.wants_group());
  EXPECT_FALSE(Dist::create(e, torch::kCPU).active());
}

TEST(DistEnv, BadVariablesAreOneLineErrors) {
  const std::vector<std::pair<std::map<std::string, std::string>, std::string>> cases = {
      {{{"RANK", "1"}, {"WORLD_SIZE", "2"}}, "MASTER_ADDR is not set"},
      {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}}, "MASTER_PORT is not set"},
      {{{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1234"}},
       "RANK must be below WORLD_SIZE (got RANK=2, WORLD_SIZE=2)"},
      {{{"RANK", "0"}}, "RANK is set (got 0) but WORLD_SIZE is not"},
      {{{"WORLD_SIZE", "2"}}, "RANK is not set"},
      {{{"RANK", "x"}, {"WORLD_SIZE", "2"}}, "bad RANK in the environment (got 'x'"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "0"}}, "bad WORLD_SIZE"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}, "bad MASTER_PORT"},
      {{{"JUDGEQ_DIST", "1"}}, "MASTER_ADDR is not set"},
      {{{"JUDGEQ_PROCS_PER_GPU", "0"}}, "bad JUDGEQ_PROCS_PER_GPU"},
      {{{"JUDGEQ_PROCS_PER_GPU", "two"}}, "bad JUDGEQ_PROCS_PER_GPU"},
  };
  for (auto& [vars, needle] : cases) {
    LaunchEnv env(vars);
    try {
      DistEnv::read();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

namespace {
// Two ranks as threads: sums, means, maxes, a broadcast, barriers and a strided reduction, through
// Gloo or (store = true) through the rendezvous store.
void two_ranks_reduce_broadcast_and_wait(bool store) {
  LaunchEnv env({});
  const int port = free_port();
  ASSERT_GT(port, 0);
  std::vector<torch::Tensor> sums(2), means(2), maxes(2), casts(2), strided(2);
  std::vector<std::string> errors(2), backends(2);
  auto rank_main = [&](int r) {
    try {
      DistEnv e;
      e.rank = r;
      e.world = 2;
      e.local_rank = r;
      e.master_addr = "127.0.0.1";
      e.master_port = port;
      e.timeout_ms = 60000;
      e.store_backend = store;
      Dist d = Dist::create(e, torch::kCPU);
      backends[r] = d.backend();
      sums[r] = torch::tensor({1.0f + r, 10.0f * r});
      d.all_reduce_sum(sums[r]);
      means[r] = torch::tensor({1.0, 2.0 + 2 * r}, torch::kFloat64);
      d.all_reduce_mean(means[r]);
      maxes[r] = torch::tensor({double(r), -double(r)}, torch::kFloat64);
      d.all_reduce_max(maxes[r]);
      casts[r] = torch::full({3}, float(r + 7));
      d.broadcast(casts[r], /*root=*/1);
      d.barrier();
      // A non-contiguous view is reduced through a copy and written back.
      auto base = torch::arange(6, torch::kFloat32).view({2, 3}) * float(r + 1);
      strided[r] = base.t();
      d.all_reduce_sum(strided[r]);
      d.barrier();
    } catch (const std::exception& ex) {
      errors[r] = ex.what();
    }
  };
  std::thread t0(rank_main, 0), t1(rank_main, 1);
  t0.join();
  t1.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    EXPECT_EQ(backends[r], store ? "store" : "gloo");
    EXPECT_TRUE(torch::equal(sums[r], torch::tensor({3.0f, 10.0f}))) << sums[r];
    EXPECT_TRUE(torch::equal(means[r], torch::tensor({1.0, 3.0}, torch::kFloat64))) << means[r];
    EXPECT_TRUE(torch::equal(maxes[r], torch::tensor({1.0, 0.0}, torch::kFloat64))) << maxes[r];
    EXPECT_TRUE(torch::equal(casts[r], torch::full({3}, 8.0f))) << casts[r];
    EXPECT_TRUE(torch::equal(strided[r], (torch::arange(6, torch::kFloat32).view({2, 3}) * 3.0f).t())) << strided[r];
  }
}
}  // namespace

TEST(Dist, TwoGlooRanksReduceBroadcastAndWait) {
  if (Dist::compiled_backends().find("gloo") == std::string::npos) GTEST_SKIP() << "built without Gloo";
  two_ranks_reduce_broadcast_and_wait(false);
}

// What ranks sharing a GPU use when the build has no Gloo (JUDGEQ_PROCS_PER_GPU).
TEST(Dist, TwoStoreRanksReduceBroadcastAndWait) { two_ranks_reduce_broadcast_and_wait(true); }

TEST(DistEnv, StoreBackendFromTheEnvironment) {
  {
    LaunchEnv env(std::map<std::string, std::string>{{"JUDGEQ_DIST_BACKEND", "store"}});
    EXPECT_TRUE(DistEnv::read().store_backend);
  }
  LaunchEnv env(std::map<std::string, std::string>{{"JUDGEQ_DIST_BACKEND", "nccl2"}});
  try {
    DistEnv::read();
    ADD_FAILURE() << "no error for JUDGEQ_DIST_BACKEND=nccl2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad JUDGEQ_DIST_BACKEND"), std::string::npos) << e.what();
  }
}
