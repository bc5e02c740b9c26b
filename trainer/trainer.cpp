#include "trainer/trainer.h"
#include "judgeq_git_commit.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "model/chat_template.h"
#include "model/generate.h"
#include "model/tokenizer.h"
#include "util/cli.h"
#include "util/compat.h"
#include "util/distributed.h"
#include "util/error.h"
#include "util/files.h"
#include "util/hash.h"
#include "util/safetensors.h"

namespace judgeq {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", (long long)(t / 3600), (long long)(t % 3600 / 60), (long long)(t % 60));
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", (long long)t);
  return buf;
}

// A progress bar with rate and ETA on a terminal (stderr), one plain line every `every` units
// otherwise (stdout), so that logs of batch jobs stay readable.
class Progress {
 public:
  Progress(std::string what, int64_t total, int64_t every, bool quiet)
      : what_(std::move(what)), total_(total), every_(std::max<int64_t>(1, every)), quiet_(quiet),
        tty_(::isatty(::fileno(stderr)) != 0), t0_(Clock::now()) {}

  // done/total: work units (lines); count: what the rate is about (samples).
  void update(int64_t done, int64_t count, int64_t start_done, bool force = false) {
    if (quiet_) return;
    const double el = seconds_since(t0_);
    const double rate = el > 0 ? (count - count0_) / el : 0;
    const double unit_rate = el > 0 ? (done - start_done) / el : 0;
    const double eta = unit_rate > 0 ? (total_ - done) / unit_rate : NAN;
    if (tty_) {
      if (!force && std::chrono::duration<double>(Clock::now() - last_).count() < 0.2) return;
      last_ = Clock::now();
      const int width = 30;
      const int fill = total_ > 0 ? static_cast<int>(width * std::min<double>(1.0, double(done) / total_)) : 0;
      std::fprintf(stderr, "\r%s [%s%s] %lld/%lld lines | %lld samples | %.2f samples/s | ETA %s   ", what_.c_str(),
                   std::string(fill, '#').c_str(), std::string(width - fill, '.').c_str(), (long long)done,
                   (long long)total_, (long long)count, rate, format_duration(eta).c_str());
      std::fflush(stderr);
    } else if (force || count / every_ > last_count_ / every_) {
      std::printf("%s: %lld/%lld lines, %lld samples, %.2f samples/s, ETA %s\n", what_.c_str(), (long long)done,
                  (long long)total_, (long long)count, rate, format_duration(eta).c_str());
      std::fflush(stdout);
    }
    last_count_ = count;
  }
  void set_start_count(int64_t c) { count0_ = last_count_ = c; }
  void finish() {
    if (!quiet_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  std::string what_;
  int64_t total_, every_;
  bool quiet_, tty_;
  Clock::time_point t0_, last_ = Clock::time_point();
  int64_t count0_ = 0, last_count_ = 0;
};

// Differences between two flat JSON objects, skipping `free` keys: "key: was a, now b; ...".
std::string config_differences(const json& a, const json& b, const std::vector<std::string>& free) {
  std::set<std::string> keys;
  for (auto& [k, v] : a.items()) keys.insert(k);
  for (auto& [k, v] : b.items()) keys.insert(k);
  std::string out;
  int n = 0;
  for (auto& k : keys) {
    if (std::find(free.begin(), free.end(), k) != free.end()) continue;
    const json va = a.value(k, json()), vb = b.value(k, json());
    if (va == vb) continue;
    if (n++ < 4) out += (out.empty() ? "" : "; ") + k + ": was " + va.dump() + ", now " + vb.dump();
  }
  if (n > 4) out += "; ... (" + std::to_string(n) + " in all)";
  return out;
}

json filtered(const json& j, const std::vector<std::string>& drop) {
  json out = json::object();
  for (auto& [k, v] : j.items())
    if (std::find(drop.begin(), drop.end(), k) == drop.end()) out[k] = v;
  return out;
}

}  // namespace

// ---- prepare --------------------------------------------------------------------------------

json PrepareOptions::to_json() const {
  return json{{"model", model},
              {"data", data},
              {"out", out},
              {"chat_template", chat_template},
              {"max_new_tokens", max_new_tokens},
              {"min_prompt_tokens", min_prompt_tokens},
              {"max_prompt_tokens", max_prompt_tokens},
              {"batch", batch},
              {"checkpoint_every", checkpoint_every},
              {"limit", limit},
              {"stop_after", stop_after},
              {"log_every", log_every},
              {"resume", resume},
              {"strict", strict},
              {"device", device},
              {"dtype", dtype}};
}

namespace {

// Keys that may change when a preparation is resumed.
const std::vector<std::string> kPrepareFreeKeys = {"out",   "resume", "log_every", "checkpoint_every", "limit",
                                                   "stop_after", "device", "model", "data", "strict", "quiet"};

std::string part_name(const std::string& dir, int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/part-%06lld.h5", (long long)i);
  return dir + buf;
}

}  // namespace

PrepareStats prepare_train_set(const PrepareOptions& o) {
  check(!o.model.empty(), "no model given; pass --model DIR");
  check(!o.out.empty(), "no output given; pass --out FILE.h5");
  check(o.max_new_tokens >= 1, "--max-new-tokens must be positive (got ", o.max_new_tokens, ")");
  check(o.batch >= 1, "--batch must be positive (got ", o.batch, ")");
  check(o.checkpoint_every >= 1, "--checkpoint-every must be positive (got ", o.checkpoint_every, ")");
  check(o.limit >= 0 && o.stop_after >= 0, "--limit and --stop-after must be >= 0 (got ", o.limit, ", ", o.stop_after, ")");
  check(o.min_prompt_tokens >= 1, "--min-prompt-tokens must be at least 1 (got ", o.min_prompt_tokens, ")");
  check(o.max_prompt_tokens >= 0, "--max-prompt-tokens must be >= 0 (got ", o.max_prompt_tokens, "; 0 = the model's limit)");
  check(fs::is_regular_file(o.data), "cannot read the data file (got '", o.data, "'); pass an existing .jsonl file with --data");
  const ModelConfig cfg = ModelConfig::load(o.model);
  const int64_t max_pos = cfg.max_position_embeddings;
  check(o.max_new_tokens < max_pos, "--max-new-tokens too large (got ", o.max_new_tokens,
        ", expected less than max_position_embeddings = ", max_pos, "); lower it");
  const int64_t prompt_limit = max_pos - o.max_new_tokens;
  check(o.max_prompt_tokens <= prompt_limit, "--max-prompt-tokens too large (got ", o.max_prompt_tokens,
        ", expected at most max_position_embeddings - max_new_tokens = ", prompt_limit,
        "); prompt and response must fit in the model's ", max_pos, " positions");
  const int64_t max_prompt = o.max_prompt_tokens > 0 ? o.max_prompt_tokens : prompt_limit;
  check(o.min_prompt_tokens <= max_prompt, "--min-prompt-tokens (got ", o.min_prompt_tokens,
        ") exceeds the longest allowed prompt (", max_prompt, "); lower it");
  const ChatTemplate tmpl = parse_chat_template(o.chat_template);
  auto tok = Tokenizer::load(o.model);
  check(tok->vocab_size() <= cfg.vocab_size, "the tokenizer in ", o.model, " has more tokens than the model (got ",
        tok->vocab_size(), ", expected at most vocab_size = ", cfg.vocab_size, "); check the checkpoint folder");
  const torch::Device device = resolve_device(o.device);
  const torch::Dtype dtype = resolve_dtype(o.dtype, device);

  // Identity of this preparation: a resume must not mix outputs of different settings.
  json ident = filtered(o.to_json(), kPrepareFreeKeys);
  ident["dtype"] = dtype_name(dtype);
  ident["model_config_hash"] = cfg.hash();
  ident["source_sha256"] = sha256_file(o.data);

  PrepareStats st;
  TrainSet done;  // samples of earlier parts
  const std::string parts = o.out + ".parts";
  int64_t n_parts = 0;
  if (fs::exists(parts)) {
    check(o.resume, "found an unfinished preparation in ", parts, " (got no --resume); pass --resume to continue it, "
          "or delete that folder to start over");
    json prev = json::parse(read_file(parts + "/prepare.json"), nullptr, false);
    check(!prev.is_discarded(), "cannot resume from ", parts, " (prepare.json is damaged); delete the folder to start over");
    const std::string diff = config_differences(prev, ident, {});
    check(diff.empty(), "cannot resume ", parts, ": it was made with other settings (", diff,
          "); use the same flags and data, or delete the folder to start over");
    while (fs::exists(part_name(parts, n_parts))) {
      TrainSet p = TrainSet::read(part_name(parts, n_parts));
      done.append(p);
      st.resumed_after_line = p.attributes.value("last_line", int64_t(0));
      st.malformed = p.attributes.value("malformed", int64_t(0));
      st.empty_responses = p.attributes.value("empty_responses", int64_t(0));
      st.too_short = p.attributes.value("too_short", int64_t(0));
      st.too_long = p.attributes.value("too_long", int64_t(0));
      ++n_parts;
    }
    if (!o.quiet)
      std::cout << "resuming after line " << st.resumed_after_line << " (" << done.size() << " samples in "
                << n_parts << " parts)\n";
  } else {
    fs::create_directories(parts);
    write_file_atomic(parts + "/prepare.json", ident.dump(2));
  }
  try {
    auto model = LlamaModel::load(o.model, device, dtype);
    torch::NoGradGuard no_grad;
    std::vector<int64_t> stop_ids = cfg.eos_token_ids;
    for (auto id : chat_stop_ids(*tok, tmpl))
      if (std::find(stop_ids.begin(), stop_ids.end(), id) == stop_ids.end()) stop_ids.push_back(id);
    GenerateOptions gen;
    gen.max_new_tokens = o.max_new_tokens;
    gen.stop_ids = stop_ids;

    JsonlExampleReader reader(o.data, o.strict);
    reader.skip(st.resumed_after_line);
    const int64_t malformed0 = st.malformed;
    Progress progress("prepare", count_lines(o.data), o.log_every, o.quiet);
    progress.set_start_count(done.size());

    TrainSet part;
    std::vector<std::pair<int64_t, std::vector<int64_t>>> pending;  // (line, prompt ids)
    auto flush_part = [&] {
      part.attributes = {{"model_config_hash", cfg.hash()},      {"last_line", reader.line()},
                         {"malformed", st.malformed},            {"empty_responses", st.empty_responses},
                         {"too_short", st.too_short},            {"too_long", st.too_long}};
      part.write(part_name(parts, n_parts++));
      done.append(part);
      part = TrainSet();
    };
    auto run_batch = [&] {
      if (pending.empty()) return;
      std::vector<std::vector<int64_t>> prompts;
      for (auto& p : pending) prompts.push_back(p.second);
      GenerateResult r = generate(*model, prompts, gen);
      for (size_t i = 0; i < pending.size(); ++i) {
        std::vector<int64_t> resp = r.tokens[i];
        if (r.finish[i] == "stop" && !resp.empty()) resp.pop_back();  // the stop token is never fed back
        if (resp.empty()) {
          ++st.empty_responses;
          continue;
        }
        part.add({pending[i].second, resp, pending[i].first});
      }
      pending.clear();
    };
    auto total = [&] { return done.size() + part.size(); };

    const int64_t start_samples = done.size();
    TextExample ex;
    while ((o.limit == 0 || total() + int64_t(pending.size()) < o.limit) && reader.next(ex)) {
      st.malformed = malformed0 + reader.n_malformed();
      std::vector<int64_t> ids;
      if (tmpl == ChatTemplate::None) {
        // No template: the system text, if any, simply precedes the prompt.
        const std::string text = ex.system.empty() ? ex.prompt : ex.system + "\n\n" + ex.prompt;
        ids = apply_chat_template(*tok, tmpl, {ChatMessage{"user", text}}, true);
      } else {
        std::vector<ChatMessage> msgs;
        if (!ex.system.empty()) msgs.push_back({"system", ex.system});
        msgs.push_back({"user", ex.prompt});
        ids = apply_chat_template(*tok, tmpl, msgs, true);
      }
      const int64_t n = static_cast<int64_t>(ids.size());
      if (n < o.min_prompt_tokens) {
        ++st.too_short;
        continue;
      }
      if (n > max_prompt) {
        ++st.too_long;
        continue;
      }
      pending.push_back({ex.line, std::move(ids)});
      if (static_cast<int64_t>(pending.size()) == o.batch) {
        run_batch();
        // Parts end at batch boundaries: a resumed run then batches the remaining prompts exactly
        // as an uninterrupted one would.
        if (part.size() >= o.checkpoint_every) flush_part();
        progress.update(reader.line(), total(), st.resumed_after_line);
        if (o.stop_after > 0 && part.size() == 0 && done.size() - start_samples >= o.stop_after) {
          st.finished = false;
          break;
        }
      }
    }
    st.malformed = malformed0 + reader.n_malformed();
    if (st.finished) {
      run_batch();
      flush_part();
    }
    progress.update(reader.line(), total(), st.resumed_after_line, true);
    progress.finish();
    st.lines = reader.line();
  } catch (...) {
    // A preparation that failed before its first part leaves nothing behind; parts already
    // written stay for --resume.
    if (n_parts == 0) remove_tree(parts);
    throw;
  }
  st.written = done.size();
  if (!st.finished) {
    if (!o.quiet)
      std::cout << "paused after line " << st.lines << " with " << done.size() << " samples in " << parts
                << "; continue with --resume\n";
    return st;
  }
  if (done.size() == 0) {
    remove_tree(parts);
    fail("no usable samples in ", o.data, " (got ", st.lines, " lines: ", st.malformed, " malformed, ",
         st.empty_responses, " empty responses, ", st.too_short, " prompts shorter than ", o.min_prompt_tokens,
         " tokens, ", st.too_long, " longer than ", max_prompt, "); check the file and the length limits");
  }
  done.attributes = {{"model_config_hash", cfg.hash()},
                     {"model_name", cfg.name},
                     {"chat_template", chat_template_name(tmpl)},
                     {"max_new_tokens", o.max_new_tokens},
                     {"source", o.data},
                     {"source_sha256", ident["source_sha256"]},
                     {"dtype", dtype_name(dtype)},
                     {"n_malformed", st.malformed},
                     {"n_empty_responses", st.empty_responses},
                     {"n_too_short", st.too_short},
                     {"n_too_long", st.too_long},
                     {"prepare_config", filtered(o.to_json(), {"resume", "quiet"})}};
  done.write(o.out);
  remove_tree(parts);
  return st;
}

// ---- the loss -------------------------------------------------------------------------------

namespace {

// Mean over query rows of softmax(q kᵀ/√d) restricted to the first T keys. q [1, H, R, D] (rows
// are the new tokens, at key indices T.. of k), k [1, H_kv, T + R, D], key_valid [1, H_kv, T + R]
// or undefined. New-token keys are causal: row i sees prompt keys and new keys 0..i. Returns
// [H, T] (per-head) or [H_kv, T] (per-group), float32 or float64 (when q is). Differentiable.
torch::Tensor mean_prompt_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& key_valid,
                                    int64_t T, const LossOptions& opt) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && q.size(0) == 1 && k.size(0) == 1, "probe expects batch 1");
  const int64_t H = q.size(1), R = q.size(2), D = q.size(3), Hkv = k.size(1), Tk = k.size(2), G = H / Hkv;
  TORCH_CHECK(Tk == T + R, "probe: expected ", T + R, " keys, got ", Tk);
  const auto ct = q.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat32;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  // Without autograd (the target), half-precision q and k multiply on tensor cores straight into
  // scaled float32 scores: the same products as upcasting first (bf16 x bf16 is exact in float32,
  // accumulated in float32), without float32 copies of the keys or a separate scaling pass.
  const bool half_gemm = !torch::GradMode::is_enabled() && compat::have_half_bmm_float(q) && k.scalar_type() == q.scalar_type();
  const auto qt = half_gemm ? q.scalar_type() : ct;
  auto qg = q.select(0, 0).to(qt).view({Hkv, G, R, D});
  // The prompt's keys come from the cache: no gradient flows into them (detached, so that backward
  // builds no [T, D] key gradient only to drop it). Each product reads the keys as stored, a
  // transposed GEMM operand, never a copy expanded over the G query heads of a group.
  auto kk = k.select(0, 0);
  auto kp = kk.narrow(1, 0, T).detach().to(qt);  // [H_kv, T, D]
  auto kn = kk.narrow(1, T, R).to(qt);           // [H_kv, R, D]: the new rows' own keys
  auto iopt = torch::TensorOptions().dtype(torch::kInt64).device(q.device());
  auto kj = torch::arange(R, iopt).view({1, R});
  torch::Tensor valid_p, valid_n;  // [H_kv, 1, 1, T] / [H_kv, 1, 1, R]
  if (key_valid.defined()) {
    valid_p = key_valid.select(0, 0).narrow(-1, 0, T).view({Hkv, 1, 1, T});
    valid_n = key_valid.select(0, 0).narrow(-1, T, R).view({Hkv, 1, 1, R});
  }
  const int64_t rows = std::max<int64_t>(1, score_block_elements(q.device()) / std::max<int64_t>(1, H * Tk));
  const double neg_inf = -std::numeric_limits<double>::infinity();
  torch::Tensor acc;
  for (int64_t r0 = 0; r0 < R; r0 += rows) {
    const int64_t r1 = std::min(R, r0 + rows), n = r1 - r0;
    auto qb = qg.narrow(2, r0, n).reshape({Hkv, G * n, D});
    // Scores already scaled on the half-precision path, scaled after the concatenation otherwise.
    auto sp = (half_gemm ? compat::half_bmm_float(qb, kp.transpose(1, 2), scale) : torch::bmm(qb, kp.transpose(1, 2))).view({Hkv, G, n, T});
    auto sn = (half_gemm ? compat::half_bmm_float(qb, kn.transpose(1, 2), scale) : torch::bmm(qb, kn.transpose(1, 2))).view({Hkv, G, n, R});
    auto allowed = (kj <= torch::arange(r0, r1, iopt).view({n, 1})).view({1, 1, n, R});  // causal among new rows
    if (key_valid.defined()) {
      allowed = allowed.logical_and(valid_n);
      sp = sp.masked_fill(valid_p.logical_not(), neg_inf);
    }
    sn = sn.masked_fill(allowed.logical_not(), neg_inf);
    auto all = torch::cat({sp, sn}, -1);
    auto p = torch::softmax(half_gemm ? all : all * scale, -1).narrow(-1, 0, T);  // [H_kv, G, n, T]
    if (opt.renormalize) p = p / p.sum(-1, true).clamp_min(1e-30);
    auto part = p.sum(2);  // [H_kv, G, T]
    acc = acc.defined() ? acc + part : part;
  }
  acc = acc / static_cast<double>(R);
  return opt.map == "per-group" ? acc.mean(1) : acc.reshape({H, T});
}

// Collects mean_prompt_attention per layer.
class PromptAttentionProbe : public AttentionProbe {
 public:
  PromptAttentionProbe(int64_t T, int64_t n_layers, const LossOptions& opt) : T_(T), opt_(opt), rows_(n_layers) {}
  // k holds the T prompt keys and then the R new rows' keys; q holds those R rows last (all of q
  // when the pass ran on the new rows only, its tail when prompt and new rows ran together).
  void on_layer(int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor&,
                const torch::Tensor& key_valid) override {
    const int64_t R = k.size(2) - T_;
    rows_.at(layer) = mean_prompt_attention(q.size(2) == R ? q : q.narrow(2, q.size(2) - R, R), k, key_valid, T_, opt_);
  }
  std::vector<torch::Tensor> take() { return std::move(rows_); }

 private:
  int64_t T_;
  LossOptions opt_;
  std::vector<torch::Tensor> rows_;  // [L][H or H_kv, T]
};

void check_loss_options(const LossOptions& o) {
  check(o.loss == "mse" || o.loss == "kl", "unknown loss (got '", o.loss, "', expected mse or kl)");
  check(o.map == "per-head" || o.map == "per-group", "unknown attention map (got '", o.map,
        "', expected per-head or per-group)");
}

}  // namespace

std::vector<torch::Tensor> response_attention_target(const LlamaModel& model, KVCache& cache,
                                                     const std::vector<int64_t>& response, const LossOptions& opt) {
  check_loss_options(opt);
  check(cache.batch() == 1, "response_attention_target expects a cache of one prompt (got batch ", cache.batch(), ")");
  check(!response.empty(), "a training sample has no response tokens; regenerate the set with judgeq-train prepare");
  std::vector<int64_t> resp = response;
  if (opt.max_response_tokens > 0 && static_cast<int64_t>(resp.size()) > opt.max_response_tokens)
    resp.resize(opt.max_response_tokens);
  const int64_t R = static_cast<int64_t>(resp.size());
  torch::NoGradGuard no_grad;
  PromptAttentionProbe probe(cache.len(0), model.config().n_layers, opt);
  ForwardOptions fo;
  fo.append = false;
  fo.logit_rows = {};
  fo.probe = &probe;
  fo.chunk = opt.chunk;
  model.forward(torch::tensor(resp, torch::kInt64).view({1, R}), cache, fo);  // [1, R]
  return probe.take();
}

std::vector<torch::Tensor> prefill_with_response_target(const LlamaModel& model, KVCache& cache,
                                                        const std::vector<int64_t>& prompt,
                                                        const std::vector<int64_t>& response,
                                                        const LossOptions& opt) {
  check_loss_options(opt);
  check(cache.batch() == 1 && cache.len(0) == 0, "prefill_with_response_target expects an empty cache of batch 1");
  check(!prompt.empty(), "a training sample has an empty prompt; regenerate the set with judgeq-train prepare");
  check(!response.empty(), "a training sample has no response tokens; regenerate the set with judgeq-train prepare");
  std::vector<int64_t> ids = prompt;
  const int64_t T = static_cast<int64_t>(prompt.size());
  int64_t R = static_cast<int64_t>(response.size());
  if (opt.max_response_tokens > 0) R = std::min(R, opt.max_response_tokens);
  ids.insert(ids.end(), response.begin(), response.begin() + R);
  torch::NoGradGuard no_grad;
  PromptAttentionProbe probe(T, model.config().n_layers, opt);
  ForwardOptions fo;
  fo.logit_rows = {};
  fo.probe = &probe;
  fo.chunk = opt.chunk;
  model.forward(torch::tensor(ids, torch::kInt64).view({1, T + R}), cache, fo);
  cache.truncate(T);
  auto next = cache.next_positions();
  next[0] -= R;
  cache.set_next_positions(next);
  return probe.take();
}

std::vector<torch::Tensor> soft_token_attention(const LlamaModel& model, KVCache& cache, const torch::Tensor& soft,
                                                const LossOptions& opt) {
  check_loss_options(opt);
  TORCH_CHECK(soft.dim() == 2 && soft.size(1) == model.config().hidden_size, "soft tokens must be [S, hidden]");
  check(cache.batch() == 1, "soft_token_attention expects a cache of one prompt (got batch ", cache.batch(), ")");
  const int64_t S = soft.size(0);
  PromptAttentionProbe probe(cache.len(0), model.config().n_layers, opt);
  ForwardOptions fo;
  fo.inputs_embeds = soft.unsqueeze(0);  // [1, S, hidden]; forward casts to the model dtype
  fo.positions = soft_token_positions(cache.next_positions(), S);
  fo.append = false;
  fo.logit_rows = {};
  fo.probe = &probe;
  fo.chunk = opt.chunk;
  // S rows over T keys: the batched-matmul attention is cheaper here, forward and backward, than the
  // fused kernel with an explicit mask, whose backward computes key/value gradients for all T keys.
  fo.force_manual_attention = true;
  model.forward(torch::Tensor(), cache, fo);
  return probe.take();
}

torch::Tensor attention_matching_loss(const std::vector<torch::Tensor>& student, const std::vector<torch::Tensor>& target,
                                      const LossOptions& opt) {
  check_loss_options(opt);
  TORCH_CHECK(!student.empty() && student.size() == target.size(), "loss: student and target layer counts differ");
  torch::Tensor total;
  for (size_t l = 0; l < student.size(); ++l) {
    const auto& s = student[l];
    auto t = target[l].to(s.scalar_type());
    TORCH_CHECK(s.sizes() == t.sizes(), "loss: student ", s.sizes(), " vs target ", t.sizes(), " at layer ", l);
    torch::Tensor per_head;  // [H or H_kv]
    if (opt.loss == "mse") {
      // Squared L2 distance between the rows: a plain per-element mean would scale with 1/T and
      // vanish on long prompts.
      per_head = (s - t).pow(2).sum(-1);
    } else {
      // Generalised KL(target || student); equals KL when both rows sum to one (--renormalize).
      const double eps = 1e-12;
      per_head = (t * (t.clamp_min(eps).log() - s.clamp_min(eps).log()) - t + s).sum(-1);
    }
    total = total.defined() ? total + per_head.mean() : per_head.mean();
  }
  return total / static_cast<double>(student.size());
}

torch::Tensor sample_loss(const LlamaModel& model, const TrainSample& sample, const torch::Tensor& soft,
                          const LossOptions& opt) {
  KVCache cache = model.new_cache(1);
  auto target = prefill_with_response_target(model, cache, sample.prompt, sample.response, opt);
  auto student = soft_token_attention(model, cache, soft, opt);
  return attention_matching_loss(student, target, opt);
}

// ---- fit options ----------------------------------------------------------------------------

namespace {

// One table of (key, field) for to_json/from_json: the CLI, config files and checkpoints all
// use these names.
template <typename O, typename F>
void visit_fit_fields(O& o, F&& f) {
  f("model", o.model);
  f("train", o.train);
  f("val", o.val);
  f("out", o.out);
  f("soft_tokens", o.soft_tokens);
  f("steps", o.steps);
  f("epochs", o.epochs);
  f("batch", o.batch);
  f("lr", o.lr);
  f("min_lr_ratio", o.min_lr_ratio);
  f("warmup_steps", o.warmup_steps);
  f("weight_decay", o.weight_decay);
  f("beta1", o.beta1);
  f("beta2", o.beta2);
  f("adam_eps", o.adam_eps);
  f("clip", o.clip);
  f("loss", o.loss);
  f("map", o.map);
  f("renormalize", o.renormalize);
  f("max_response_tokens", o.max_response_tokens);
  f("init", o.init);
  f("init_tokens", o.init_tokens);
  f("seed", o.seed);
  f("shuffle", o.shuffle);
  f("log_every", o.log_every);
  f("val_every", o.val_every);
  f("val_samples", o.val_samples);
  f("checkpoint_every", o.checkpoint_every);
  f("stop_after", o.stop_after);
  f("resume", o.resume);
  f("quiet", o.quiet);
  f("device", o.device);
  f("dtype", o.dtype);
}

template <typename T>
std::string json_kind() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else return "an array of integers";
}

template <typename T>
bool json_fits(const json& v) {
  if constexpr (std::is_same_v<T, bool>) return v.is_boolean();
  else if constexpr (std::is_unsigned_v<T>) return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  else if constexpr (std::is_integral_v<T>) return v.is_number_integer();
  else if constexpr (std::is_floating_point_v<T>) return v.is_number();
  else if constexpr (std::is_same_v<T, std::string>) return v.is_string();
  else {
    if (!v.is_array()) return false;
    for (auto& e : v)
      if (!e.is_number_integer()) return false;
    return true;
  }
}

}  // namespace

json FitOptions::to_json() const {
  json j = json::object();
  visit_fit_fields(*this, [&](const char* key, const auto& v) { j[key] = v; });
  return j;
}

FitOptions FitOptions::from_json(const json& j) {
  check(j.is_object(), "a training config must be a JSON object (got ", j.type_name(), ")");
  FitOptions o;
  std::set<std::string> known;
  std::string names;
  visit_fit_fields(o, [&](const char* key, auto& field) {
    known.insert(key);
    names += (names.empty() ? "" : ", ") + std::string(key);
    if (!j.contains(key) || j[key].is_null()) return;
    using T = std::decay_t<decltype(field)>;
    check(json_fits<T>(j[key]), "config key '", key, "' has the wrong type (got ", j[key].dump(), ", expected ",
          json_kind<T>(), ")");
    field = j[key].get<T>();
  });
  for (auto& [k, v] : j.items())
    check(known.count(k) > 0, "unknown config key (got '", k, "', expected one of ", names, ")");
  return o;
}

LossOptions FitOptions::loss_options() const {
  LossOptions l;
  l.loss = loss;
  l.map = map;
  l.renormalize = renormalize;
  l.max_response_tokens = max_response_tokens;
  return l;
}

const std::vector<std::string>& fit_resume_free_keys() {
  // Paths may move (the model and data are checked by hash), and logging/checkpoint cadence and
  // the device do not change what is computed on one machine.
  static const std::vector<std::string> keys = {"model", "train", "val", "out", "resume", "quiet", "log_every",
                                                "val_every", "val_samples", "checkpoint_every", "stop_after",
                                                "device"};
  return keys;
}

// ---- checkpoints ----------------------------------------------------------------------------

namespace {

struct TrainState {
  int64_t step = 0;
  int64_t samples_seen = 0;
  int64_t perm_epoch = 0;  // the epoch whose sample order is in use
  std::string epoch_rng;   // the shuffle RNG as it was when that order was drawn
  double last_loss = 0;
  torch::Tensor master, adam_m, adam_v;  // [S, hidden] float32
};

std::string checkpoint_path(const std::string& dir) { return dir + "/checkpoint.safetensors"; }

void save_checkpoint(const std::string& dir, const TrainState& s, const json& train_config, const json& soft_meta,
                     const std::string& dtype) {
  std::map<std::string, std::string> meta = {
      {"format", kCheckpointFormat},
      {"format_version", std::to_string(kCheckpointFormatVersion)},
      {"tool_version", JUDGEQ_VERSION},
      {"git_commit", JUDGEQ_GIT_COMMIT},
      {"step", std::to_string(s.step)},
      {"samples_seen", std::to_string(s.samples_seen)},
      {"perm_epoch", std::to_string(s.perm_epoch)},
      {"epoch_rng", s.epoch_rng},
      {"last_loss", json(s.last_loss).dump()},
      {"dtype", dtype},
      {"train_config", train_config.dump()},
      {"soft_tokens_metadata", soft_meta.dump()}};
  write_safetensors(checkpoint_path(dir), {{"soft_master", s.master}, {"adam_m", s.adam_m}, {"adam_v", s.adam_v}}, meta);
}

struct LoadedCheckpoint {
  TrainState state;
  json train_config, soft_meta;
  std::string dtype;
};

LoadedCheckpoint load_checkpoint(const std::string& dir) {
  const std::string path = checkpoint_path(dir);
  check(fs::is_regular_file(path), "no checkpoint in ", dir, " (expected ", path, "); pass the --out folder of a judgeq-train fit run");
  SafetensorsFile f(path);
  auto meta = [&](const std::string& k) {
    auto it = f.metadata().find(k);
    check(it != f.metadata().end(), "checkpoint ", path, " lacks '", k, "'; it was not written by judgeq-train fit");
    return it->second;
  };
  const std::string format = f.metadata().count("format") ? f.metadata().at("format") : "";
  check(format == kCheckpointFormat, "not a judgeq training checkpoint: ", path, " (got format '", format,
        "', expected '", kCheckpointFormat, "'); pass the --out folder of a judgeq-train fit run");
  check(meta("format_version") == std::to_string(kCheckpointFormatVersion), "unsupported checkpoint format version in ",
        path, " (got ", meta("format_version"), ", expected ", kCheckpointFormatVersion,
        "); continue it with the judgeq version that wrote it (", f.metadata().count("tool_version") ? f.metadata().at("tool_version") : "?",
        ") or start a new run");
  LoadedCheckpoint c;
  try {
    c.state.step = std::stoll(meta("step"));
    c.state.samples_seen = std::stoll(meta("samples_seen"));
    c.state.perm_epoch = std::stoll(meta("perm_epoch"));
    c.state.last_loss = json::parse(meta("last_loss")).get<double>();
    c.train_config = json::parse(meta("train_config"));
    c.soft_meta = json::parse(meta("soft_tokens_metadata"));
  } catch (const std::exception&) {
    fail("checkpoint ", path, " has damaged metadata; start a new run");
  }
  c.state.epoch_rng = meta("epoch_rng");
  c.dtype = meta("dtype");
  for (const char* t : {"soft_master", "adam_m", "adam_v"})
    check(f.contains(t), "checkpoint ", path, " lacks tensor '", t, "'; start a new run");
  c.state.master = f.get("soft_master", torch::kFloat32);
  c.state.adam_m = f.get("adam_m", torch::kFloat32);
  c.state.adam_v = f.get("adam_v", torch::kFloat32);
  return c;
}

std::string rng_to_string(const std::mt19937_64& rng) {
  std::ostringstream os;
  os << rng;
  return os.str();
}

std::mt19937_64 rng_from_string(const std::string& s) {
  std::mt19937_64 rng;
  std::istringstream is(s);
  is >> rng;
  check(!is.fail(), "checkpoint holds a damaged RNG state; start a new run");
  return rng;
}

// Fisher–Yates with the raw engine: the same order on every standard library.
std::vector<int64_t> permutation(int64_t n, std::mt19937_64& rng, bool shuffle) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  if (shuffle)
    for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[static_cast<int64_t>(rng() % uint64_t(i + 1))]);
  return p;
}

// Warmup then cosine decay; `step` counts updates from 0.
double lr_at(int64_t step, int64_t total, int64_t warmup, const FitOptions& o) {
  if (warmup > 0 && step < warmup) return o.lr * double(step + 1) / double(warmup);
  const double progress = total > warmup ? double(step - warmup) / double(std::max<int64_t>(1, total - warmup)) : 1.0;
  const double lr_min = o.lr * o.min_lr_ratio;
  return lr_min + (o.lr - lr_min) * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
}

torch::Tensor init_soft(const LlamaModel& model, const FitOptions& o) {
  const int64_t S = o.soft_tokens, hidden = model.config().hidden_size;
  auto table = model.embedding_table().to(torch::kFloat32);  // [V, hidden]
  if (o.init == "mean") return table.mean(0, true).repeat({S, 1}).contiguous();
  if (o.init == "random") {
    // Box–Muller on the seeded engine, scaled to the embedding table's spread.
    std::mt19937_64 rng(o.seed ^ 0x5eedULL);
    std::vector<float> v(S * hidden);
    const double two_pi = 2.0 * M_PI;
    for (size_t i = 0; i < v.size(); ++i) {
      const double u1 = (double(rng() >> 11) + 1.0) / 9007199254740993.0, u2 = double(rng() >> 11) / 9007199254740992.0;
      v[i] = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2));
    }
    return torch::tensor(v).view({S, hidden}).to(table.device()) * table.std().item<double>();
  }
  check(!o.init_tokens.empty(), "--init tokens needs --init-tokens (got none, expected ids like [1,2,3])");
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < S; ++i) {
    const int64_t id = o.init_tokens[i % o.init_tokens.size()];
    check(id >= 0 && id < model.config().vocab_size, "--init-tokens holds an id out of range (got ", id, ", expected 0..",
          model.config().vocab_size - 1, ")");
    ids.push_back(id);
  }
  return table.index_select(0, torch::tensor(ids, torch::kInt64).to(table.device())).contiguous();
}

void validate_fit_options(const FitOptions& o) {
  check(!o.model.empty(), "no model given; pass --model DIR");
  check(!o.train.empty(), "no training set given; pass --train FILE.h5 (made by judgeq-train prepare)");
  check(!o.out.empty(), "no run folder given; pass --out DIR");
  check(o.soft_tokens >= 1, "--soft-tokens must be at least 1 (got ", o.soft_tokens, ")");
  check(o.steps >= 0, "--steps must be >= 0 (got ", o.steps, ")");
  check(o.epochs >= 0, "--epochs must be >= 0 (got ", o.epochs, ")");
  check(o.batch >= 1, "--batch must be at least 1 (got ", o.batch, ")");
  check(o.lr > 0 && std::isfinite(o.lr), "--lr must be positive (got ", o.lr, ")");
  check(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, "--min-lr-ratio must be in [0, 1] (got ", o.min_lr_ratio, ")");
  check(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "Adam betas must be in [0, 1) (got ", o.beta1, ", ",
        o.beta2, ")");
  check(o.clip >= 0, "--clip must be >= 0 (got ", o.clip, "; 0 turns clipping off)");
  check(o.init == "mean" || o.init == "random" || o.init == "tokens", "unknown --init (got '", o.init,
        "', expected mean, random or tokens)");
  check(o.log_every >= 1 && o.val_every >= 1 && o.checkpoint_every >= 1,
        "--log-every, --val-every and --checkpoint-every must be positive (got ", o.log_every, ", ", o.val_every, ", ",
        o.checkpoint_every, ")");
  check(o.stop_after >= 0 && o.val_samples >= 0 && o.max_response_tokens >= 0,
        "--stop-after, --val-samples and --max-response-tokens must be >= 0");
  check_loss_options(o.loss_options());
}

// Every sample must fit: prompt + soft tokens and prompt + response within the model's positions.
void check_fits(const TrainSet& set, const std::string& path, const ModelConfig& cfg, int64_t S) {
  const int64_t max_pos = cfg.max_position_embeddings;
  for (int64_t i = 0; i < set.size(); ++i) {
    const int64_t T = set.prompt_length(i), R = set.response_length(i);
    check(R > 0, "training set ", path, ": the sample from line ", set.source_line(i),
          " has an empty response; regenerate the set with judgeq-train prepare");
    check(T + S <= max_pos && T + R <= max_pos, "training set ", path, ": the sample from line ", set.source_line(i),
          " does not fit the model (got a prompt of ", T, " tokens + ", std::max(S, R),
          " soft/response tokens, expected at most max_position_embeddings = ", max_pos,
          "); prepare with --max-prompt-tokens ", max_pos - std::max(S, R), " or use fewer --soft-tokens");
  }
}

}  // namespace

// ---- fit ------------------------------------------------------------------------------------

namespace {
// The samples of one global batch this rank computes: longest first, each to the rank with the
// fewest tokens so far (ties to the lower rank), so that ranks finish their shares together. Every
// rank computes the same split; one process takes the whole batch in order.
std::vector<int64_t> rank_share(const std::vector<int64_t>& batch, const TrainSet& set, int world, int rank) {
  if (world <= 1) return batch;
  std::vector<size_t> order(batch.size());
  std::iota(order.begin(), order.end(), size_t(0));
  auto cost = [&](size_t i) { return set.prompt_length(batch[i]) + set.response_length(batch[i]); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost(a) > cost(b); });
  std::vector<int64_t> load(world, 0), mine;
  for (size_t i : order) {
    const int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[r] += cost(i);
    if (r == rank) mine.push_back(batch[i]);
  }
  return mine;
}
}  // namespace

FitResult fit(const FitOptions& o, const FitHooks& hooks) {
  validate_fit_options(o);
  const ModelConfig cfg = ModelConfig::load(o.model);
  const TrainSet train = TrainSet::read_for_model(o.train, cfg);
  check(train.size() > 0, "training set ", o.train, " holds no samples; prepare it from more data");
  check_fits(train, o.train, cfg, o.soft_tokens);
  TrainSet val;
  if (!o.val.empty()) {
    val = TrainSet::read_for_model(o.val, cfg);
    check_fits(val, o.val, cfg, o.soft_tokens);
  }
  // Under torchrun each rank takes its share of every global batch (samples b with
  // b % world == rank); the gradients are summed over ranks before clipping and AdamW, and rank 0
  // writes the run folder. One process (WORLD_SIZE unset or 1) has no group at all.
  const int world = DistEnv::read().world;
  check(o.batch >= world, "--batch must be at least the number of processes (got ", o.batch, " and ", world,
        " processes); every rank needs a sample of each optimizer step: raise --batch or launch fewer processes");
  const torch::Device requested = resolve_device(o.device);
  const Dist& dist = Dist::from_env(requested);
  const bool quiet = o.quiet || !dist.is_root();
  const torch::Device device = dist.device;
  const torch::Dtype dtype = resolve_dtype(o.dtype, device);
  const int64_t N = train.size();
  const double epochs = o.epochs > 0 ? o.epochs : 1.0;
  const int64_t total = o.steps > 0 ? o.steps : std::max<int64_t>(1, int64_t(std::ceil(epochs * N / double(o.batch))));
  const int64_t warmup = o.warmup_steps >= 0 ? std::min(o.warmup_steps, total) : int64_t(std::llround(0.05 * total));
  const std::string data_hash = train.content_hash();
  const LossOptions lopt = o.loss_options();

  // What a resume must match: the options (minus free keys) and these derived facts.
  json train_config = filtered(o.to_json(), fit_resume_free_keys());
  train_config["dtype"] = dtype_name(dtype);
  json soft_meta = soft_tokens_metadata(cfg, o.soft_tokens);
  soft_meta["dtype"] = dtype_name(dtype);
  soft_meta["loss"] = o.loss;
  soft_meta["map"] = o.map;
  soft_meta["renormalize"] = o.renormalize;
  soft_meta["init"] = o.init;
  soft_meta["training_data_hash"] = data_hash;
  soft_meta["steps"] = 0;
  soft_meta["scorer"] = {{"soft_reduce", "mean"},
                         {"head_map", o.map},
                         {"kv_head_reduce", "mean"},
                         {"renormalize", o.renormalize}};
  soft_meta["train_config"] = train_config;

  const std::string ckpt = checkpoint_path(o.out);
  const bool have_ckpt = fs::exists(ckpt);
  check(!have_ckpt || o.resume, o.out, " already holds a training run (got no --resume); pass --resume to continue it, "
        "or choose another --out");
  TrainState state;
  bool resumed = false;
  if (have_ckpt) {
    LoadedCheckpoint c = load_checkpoint(o.out);
    const std::string prev_hash = c.soft_meta.value("config_hash", std::string("?"));
    check(prev_hash == cfg.hash(), "cannot resume ", o.out, ": it was trained for another model (got '",
          c.soft_meta.value("base_model", std::string("?")), "', config hash ", prev_hash, "; expected '", cfg.name,
          "', config hash ", cfg.hash(), "); pass that model with --model, or choose another --out");
    const std::string prev_data = c.soft_meta.value("training_data_hash", std::string("?"));
    check(prev_data == data_hash, "cannot resume ", o.out, ": it was trained on other data (got training-data hash ",
          prev_data.substr(0, 16), ", expected ", data_hash.substr(0, 16), "); pass the same --train file, or choose another --out");
    const std::string diff = config_differences(c.train_config, train_config, {});
    check(diff.empty(), "cannot resume ", o.out, ": it was trained with another config (", diff,
          "); resume with the same settings, or choose another --out");
    check(c.state.master.sizes() == torch::IntArrayRef({o.soft_tokens, cfg.hidden_size}),
          "cannot resume ", o.out, ": its checkpoint holds soft tokens of shape ", c.state.master.sizes(),
          " (expected [", o.soft_tokens, ", ", cfg.hidden_size, "]); start a new run");
    state = std::move(c.state);
    resumed = true;
  }

  auto model = LlamaModel::load(o.model, device, dtype);  // before the run folder is touched
  if (!resumed) {
    std::mt19937_64 rng(o.seed);
    state.epoch_rng = rng_to_string(rng);
    state.master = init_soft(*model, o).to(torch::kCPU);
    state.adam_m = torch::zeros_like(state.master);
    state.adam_v = torch::zeros_like(state.master);
  }

  if (dist.is_root()) fs::create_directories(o.out);
  json resolved = o.to_json();
  resolved["resolved"] = {{"total_steps", total},     {"warmup_steps", warmup},          {"device", device.str()},
                          {"dtype", dtype_name(dtype)}, {"n_train_samples", N},          {"n_val_samples", val.size()},
                          {"model_name", cfg.name},   {"model_config_hash", cfg.hash()}, {"training_data_hash", data_hash},
                          {"tool_version", version_string()}, {"world_size", dist.world}};
  if (dist.is_root()) write_file_atomic(o.out + "/config.json", resolved.dump(2) + "\n");
  if (!quiet) std::cout << "config: " << resolved.dump(2) << "\n";

  // log.jsonl: on resume, records past the checkpoint (written before an interruption) go.
  const std::string log_path = o.out + "/log.jsonl";
  std::ofstream log;
  if (dist.is_root()) {
    std::string kept;
    if (resumed && fs::exists(log_path)) {
      std::istringstream in(read_file(log_path));
      std::string line;
      while (std::getline(in, line)) {
        json r = json::parse(line, nullptr, false);
        if (!r.is_discarded() && r.value("step", int64_t(0)) <= state.step) kept += line + "\n";
      }
    }
    write_file_atomic(log_path, kept);
    log.open(log_path, std::ios::app);
    check(log.good(), "cannot write ", log_path, "; check that the folder is writable");
  }
  auto emit = [&](const json& rec) {
    if (!dist.is_root()) return;
    log << rec.dump() << "\n";
    log.flush();
    if (hooks.on_log) hooks.on_log(rec);
  };
  if (!quiet && resumed) std::cout << "resuming " << o.out << " at step " << state.step << "/" << total << "\n";

  // Device copies of the optimizer state; the master weights stay float32.
  torch::Tensor master = state.master.to(device), adam_m = state.adam_m.to(device), adam_v = state.adam_v.to(device);
  if (dist.active()) {
    // Every rank read the same checkpoint (the run folder must be on a filesystem all ranks see).
    auto cursor = torch::tensor({double(state.step), double(state.samples_seen), -double(state.step),
                                 -double(state.samples_seen)}, torch::kFloat64);
    dist.all_reduce_max(cursor);
    check(cursor[0].item<double>() == -cursor[2].item<double>() && cursor[1].item<double>() == -cursor[3].item<double>(),
          "the ranks found different checkpoints in ", o.out, " (steps ", -cursor[2].item<double>(), "..",
          cursor[0].item<double>(), "); put --out on a filesystem every rank sees");
    dist.broadcast(master);
    dist.broadcast(adam_m);
    dist.broadcast(adam_v);
  }
  // The permutation of epoch `perm_epoch` is drawn from the RNG state saved at its start.
  std::mt19937_64 rng = rng_from_string(state.epoch_rng);
  std::vector<int64_t> perm = permutation(N, rng, o.shuffle);

  auto current_soft = [&] {
    SoftTokens st;
    st.embeddings = master.detach().to(torch::kCPU, dtype).contiguous();
    st.metadata = soft_meta;
    st.metadata["steps"] = state.step;
    return st;
  };
  auto checkpoint = [&] {
    if (!dist.is_root()) return;
    state.master = master.detach().to(torch::kCPU);
    state.adam_m = adam_m.to(torch::kCPU);
    state.adam_v = adam_v.to(torch::kCPU);
    json sm = soft_meta;
    sm["steps"] = state.step;
    save_checkpoint(o.out, state, train_config, sm, dtype_name(dtype));
  };
  auto validate = [&] {
    if (val.size() == 0) return;
    torch::NoGradGuard no_grad;
    const int64_t n = o.val_samples > 0 ? std::min(o.val_samples, val.size()) : val.size();
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += sample_loss(*model, val.get(i), master, lopt).item<double>();
    json rec = {{"type", "val"}, {"step", state.step}, {"val_loss", sum / n}, {"val_samples", n}};
    if (hooks.validate) {
      json extra = hooks.validate(*model, current_soft(), val);
      if (extra.is_object())
        for (auto& [k, v] : extra.items()) rec[k] = v;
    }
    emit(rec);
    if (!o.quiet) std::cout << "val step " << state.step << " | val_loss " << std::setprecision(6) << sum / n << std::endl;
  };

  const auto t_run = Clock::now();
  const int64_t first_step = state.step;
  FitResult result;
  while (state.step < total && (o.stop_after == 0 || state.step - first_step < o.stop_after)) {
    const auto t0 = Clock::now();
    const double lr = lr_at(state.step, total, warmup, o);
    auto soft = master.detach().clone().requires_grad_(true);  // [S, hidden] float32 leaf
    double loss_sum = 0;
    torch::Tensor loss_dev;
    int64_t tokens = 0;
    // The global batch (identical on every rank), then this rank's share of it.
    std::vector<int64_t> batch_ids;
    for (int64_t b = 0; b < o.batch; ++b) {
      if (state.samples_seen / N != state.perm_epoch) {
        state.perm_epoch = state.samples_seen / N;
        state.epoch_rng = rng_to_string(rng);
        perm = permutation(N, rng, o.shuffle);
      }
      batch_ids.push_back(perm[state.samples_seen % N]);
      ++state.samples_seen;
    }
    for (int64_t id : rank_share(batch_ids, train, dist.world, dist.rank)) {
      const TrainSample sample = train.get(id);
      auto loss = sample_loss(*model, sample, soft, lopt);
      (loss / double(o.batch)).backward();
      // Summed on the device: reading it here would make the host wait for this sample's backward
      // before it could queue the next sample's prefill.
      loss_dev = loss_dev.defined() ? loss_dev + loss.detach().to(torch::kFloat64) : loss.detach().to(torch::kFloat64);
      tokens += static_cast<int64_t>(sample.prompt.size() + sample.response.size()) + o.soft_tokens;
    }
    if (loss_dev.defined()) loss_sum = loss_dev.item<double>();
    if (dist.active()) {
      // The global batch: each rank's gradient already holds its samples' sum of loss / batch.
      if (!soft.grad().defined()) soft.mutable_grad() = torch::zeros_like(soft);
      dist.all_reduce_sum(soft.mutable_grad());
      auto sums = torch::tensor({loss_sum, double(tokens)}, torch::kFloat64);
      dist.all_reduce_sum(sums);
      loss_sum = sums[0].item<double>();
      tokens = static_cast<int64_t>(sums[1].item<double>());
    }
    const double loss = loss_sum / o.batch;
    torch::Tensor g = soft.grad();
    const double gnorm = g.norm().item<double>();
    check(std::isfinite(loss) && std::isfinite(gnorm), "training diverged at step ", state.step + 1, " (got loss ", loss,
          ", gradient norm ", gnorm, "); lower --lr or raise --warmup-steps, then --resume from the last checkpoint");
    {
      // AdamW with decoupled weight decay, on the float32 master copy.
      torch::NoGradGuard no_grad;
      if (o.clip > 0 && gnorm > o.clip) g = g * (o.clip / (gnorm + 1e-6));
      const int64_t t = state.step + 1;
      if (o.weight_decay > 0) master.mul_(1.0 - lr * o.weight_decay);
      adam_m.mul_(o.beta1).add_(g, 1.0 - o.beta1);
      adam_v.mul_(o.beta2).addcmul_(g, g, 1.0 - o.beta2);
      const double bc1 = 1.0 - std::pow(o.beta1, double(t)), bc2 = 1.0 - std::pow(o.beta2, double(t));
      auto denom = (adam_v.sqrt() / std::sqrt(bc2)).add_(o.adam_eps);
      master.addcdiv_(adam_m, denom, -lr / bc1);
    }
    ++state.step;
    state.last_loss = loss;
    const double dt = seconds_since(t0), elapsed = seconds_since(t_run);
    const double eta = elapsed / double(state.step - first_step) * double(total - state.step);
    json rec = {{"type", "train"},   {"step", state.step},  {"loss", loss},
                {"lr", lr},          {"grad_norm", gnorm},  {"tokens_per_s", tokens / std::max(dt, 1e-9)},
                {"samples_per_s", double(o.batch) / std::max(dt, 1e-9)},  {"step_s", dt},
                {"epoch", double(state.samples_seen) / N},  {"elapsed_s", elapsed}, {"eta_s", eta}};
    emit(rec);
    if (!quiet && (state.step % o.log_every == 0 || state.step == total)) {
      std::ostringstream os;
      os << "step " << state.step << "/" << total << " | loss " << std::setprecision(6) << loss << " | lr "
         << std::scientific << std::setprecision(2) << lr << " | grad_norm " << gnorm << std::defaultfloat << " | "
         << std::fixed << std::setprecision(0) << rec["tokens_per_s"].get<double>() << " tok/s | eta "
         << format_duration(eta);
      std::cout << os.str() << std::endl;
    }
    if (dist.is_root() && (state.step % o.val_every == 0 || state.step == total)) validate();
    if (state.step % o.checkpoint_every == 0 || state.step == total) checkpoint();
  }
  if (state.step % o.checkpoint_every != 0 && state.step != total) checkpoint();  // stopped by stop_after

  result.step = state.step;
  result.last_loss = state.last_loss;
  result.finished = state.step >= total;
  if (result.finished) {
    result.soft_tokens = o.out + "/judgeq.safetensors";
    if (dist.is_root()) export_soft_tokens(o.out, result.soft_tokens);
    if (!quiet) std::cout << "wrote " << result.soft_tokens << "\n";
  } else if (!quiet) {
    std::cout << "stopped at step " << state.step << "/" << total << "; continue with --resume\n";
  }
  dist.barrier();  // every rank returns once rank 0's checkpoint and export are written
  return result;
}

// ---- export ---------------------------------------------------------------------------------

SoftTokens soft_tokens_from_checkpoint(const std::string& run_dir) {
  LoadedCheckpoint c = load_checkpoint(run_dir);
  SoftTokens st;
  st.embeddings = c.state.master.to(parse_dtype(c.dtype)).contiguous();
  st.metadata = c.soft_meta;
  st.metadata["steps"] = c.state.step;
  return st;
}

void export_soft_tokens(const std::string& run_dir, const std::string& out) {
  save_soft_tokens(out, soft_tokens_from_checkpoint(run_dir));
}

}  // namespace judgeq
