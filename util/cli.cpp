#include "util/cli.h"

#include <execinfo.h>
#include <unistd.h>

#include <csignal>
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
// A crash (a bug, never bad input) prints one line naming the signal and a raw backtrace for the
// report, then dies of the same signal so the exit status stays 128 + signal.
extern "C" void on_fatal_signal(int sig) {
  const char* name = sig == SIGSEGV ? "segmentation fault" : sig == SIGBUS ? "bus error" : sig == SIGFPE ? "arithmetic fault"
                                                                                                          : "illegal instruction";
  const char head[] = "error: internal crash (";
  const char tail[] = "); please report it with the command you ran and this backtrace:\n";
  ssize_t ignored = write(STDERR_FILENO, head, sizeof(head) - 1);
  ignored = write(STDERR_FILENO, name, std::strlen(name));
  ignored = write(STDERR_FILENO, tail, sizeof(tail) - 1);
  (void)ignored;
  void* frames[64];
  backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
}  // namespace

int run_main(const std::function<int()>& body) {
  {
    void* warm[1];
    backtrace(warm, 1);  // loads libgcc before any crash, so the handler does not allocate
  }
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_fatal_signal);
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
