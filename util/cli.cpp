#include "util/cli.h"
#include "judgeq_git_commit.h"

#include <dlfcn.h>
#include <execinfo.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "util/compat.h"
#include "util/error.h"
#include "util/safetensors.h"

namespace judgeq {

namespace {
std::string first_line(const std::string& s) {
  auto n = s.find('\n');
  return n == std::string::npos ? s : s.substr(0, n);
}
// A crash (a bug, never bad input) prints one line naming the signal, the faulting code address
// (module + offset, for addr2line) and a raw backtrace for the report, then dies of the same signal
// so the exit status stays 128 + signal.
void put(const char* s) {
  ssize_t ignored = write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}
void put_code_address(const char* what, const void* pc) {
  char buf[512];
  Dl_info info{};
  if (pc && dladdr(pc, &info) && info.dli_fname)
    std::snprintf(buf, sizeof buf, "%s %p = %s+0x%lx (%s)\n", what, pc, info.dli_fname,
                  (unsigned long)((const char*)pc - (const char*)info.dli_fbase), info.dli_sname ? info.dli_sname : "?");
  else
    std::snprintf(buf, sizeof buf, "%s %p\n", what, pc);
  put(buf);
}
extern "C" void on_fatal_signal(int sig, siginfo_t* si, void* uctx) {
  const char* name = sig == SIGSEGV ? "segmentation fault" : sig == SIGBUS ? "bus error" : sig == SIGFPE ? "arithmetic fault"
                                                                                                          : "illegal instruction";
  put("error: internal crash (");
  put(name);
  put("); please report it with the command you ran and what follows:\n");
  char buf[64];
  std::snprintf(buf, sizeof buf, "fault address %p\n", si ? si->si_addr : nullptr);
  put(buf);
#if defined(__x86_64__) && defined(REG_RIP)
  if (uctx) {
    const auto* uc = static_cast<const ucontext_t*>(uctx);
    put_code_address("code address", reinterpret_cast<const void*>(uc->uc_mcontext.gregs[REG_RIP]));
    // After a call through a bad pointer the caller's return address is on top of the stack.
    put_code_address("top of stack", *reinterpret_cast<void* const*>(uc->uc_mcontext.gregs[REG_RSP]));
  }
#else
  (void)uctx;
#endif
  void* frames[64];
  backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

// glibc gives freed memory at the top of the heap back to the kernel as soon as more than a few
// MiB are free, so on CPU the tensors of the next layer or step fault their pages in again.
// Keeping 512 MiB of padding at the heap's top lets that memory be reused: in a CPU evaluation of
// the testbed, 6.4 s -> 5.4 s and 56 MB more peak resident memory (docs/performance.md, "On
// CPU"). MALLOC_TOP_PAD_ in the environment takes precedence.
void keep_freed_memory() {
#if defined(__GLIBC__)
  if (std::getenv("MALLOC_TOP_PAD_") == nullptr) mallopt(M_TOP_PAD, 512 << 20);
#endif
}
}  // namespace

int run_main(const std::function<int()>& body) {
  keep_freed_memory();
  {
    void* warm[1];
    backtrace(warm, 1);  // loads libgcc before any crash, so the handler does not allocate
  }
  struct sigaction sa {};
  sa.sa_sigaction = on_fatal_signal;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) sigaction(sig, &sa, nullptr);
  try {
    return body();
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "error: " << first_line(e.what_without_backtrace())
              << " (internal check failed; please report it with the command you ran)\n";
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory; use a smaller batch, shorter prompts or a lower-precision --dtype\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << first_line(e.what()) << "\n";
  }
  return 1;
}

torch::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  try {
    torch::Device d(name);
    if (d.is_cuda() && !torch::cuda::is_available())
      fail("--device ", name, " asked for, but CUDA is not available here; use --device cpu");
    return d;
  } catch (const c10::Error&) {
    fail("unknown device (got '", name, "', expected auto, cpu, cuda or cuda:N)");
  }
}

torch::Dtype resolve_dtype(const std::string& name, const torch::Device& device) {
  if (name == "auto") return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  return parse_dtype(name);
}

std::vector<int64_t> parse_id_list(const std::string& text, const std::string& what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    fail(what, " is not valid JSON (got '", text.substr(0, 60), "', expected an array of token ids like [1,2,3])");
  }
  check(j.is_array(), what, " must be a JSON array of token ids (got ", j.dump().substr(0, 60), ")");
  std::vector<int64_t> ids;
  for (auto& e : j) {
    check(e.is_number_integer(), what, " must hold integers only (got ", e.dump(), ")");
    ids.push_back(e.get<int64_t>());
  }
  return ids;
}

std::string version_string() {
  return std::string("judgeq ") + JUDGEQ_VERSION + " (" + JUDGEQ_GIT_COMMIT + "), LibTorch " + compat::torch_version();
}

}  // namespace judgeq
