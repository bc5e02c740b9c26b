#include "eval/grid.h"

#include <algorithm>
#include <chrono>

#include "kv/compress.h"
#include "kv/scoring.h"
#include "model/generate.h"
#include "util/error.h"

namespace judgeq {

namespace {
std::vector<int64_t> templated(const Tokenizer& tok, ChatTemplate chat, const std::string& text) {
  return apply_chat_template(tok, chat, {{"user", text}}, true);
}
}  // namespace

std::string question_first_text(const BenchSample& s) {
  check(!s.question.empty() && !s.answer_prefix.empty(), "protocol question-first needs samples with a question and an ",
        "answer prefix (RULER's tasks); got ", s.bench, " task ", s.task, "; use --protocol paper or kvpress for it");
  const auto first = s.question.find_first_not_of(" \n\t"), last = s.question.find_last_not_of(" \n\t");
  return s.question.substr(first, last - first + 1) + "\n\n" + s.context;
}

SampleIds build_sample_ids(const Tokenizer& tok, const BenchSample& s, ChatTemplate chat, const std::string& protocol) {
  const ChatTemplate c = s.use_chat_template ? chat : ChatTemplate::None;
  const bool bos = tok.bos_id() >= 0;
  SampleIds out;
  const std::string body = protocol == "question-first" ? question_first_text(s) : s.context + s.question;
  if (c == ChatTemplate::None) {
    // One string, encoded at once (as RULER and the HF pipelines do): encoding the answer prefix
    // separately would give sentencepiece a second dummy-prefix space.
    out.ids = tok.encode(body + s.answer_prefix, bos, false);
  } else {
    out.ids = templated(tok, c, body);
    if (!s.answer_prefix.empty()) {
      auto p = tok.encode(s.answer_prefix, false, false);
      out.ids.insert(out.ids.end(), p.begin(), p.end());
    }
  }
  out.n_ctx = static_cast<int64_t>(out.ids.size());
  if (protocol == "kvpress" && !s.question.empty()) {
    // The context part is the longest common prefix of the whole prompt's ids and the ids of the
    // context alone: a token merged across the boundary goes with the question.
    auto ctx = c == ChatTemplate::None ? tok.encode(s.context, bos, false) : templated(tok, c, s.context);
    int64_t n = 0;
    while (n < static_cast<int64_t>(std::min(ctx.size(), out.ids.size())) && ctx[n] == out.ids[n]) ++n;
    out.n_ctx = std::max<int64_t>(1, n);
  }
  return out;
}

std::vector<GridVariant> make_grid(const std::vector<std::string>& methods, const std::vector<std::string>& budgets,
                                   const nlohmann::json& method_options) {
  check(!methods.empty(), "no methods given; pass --methods, e.g. full,snapkv,judgeq");
  std::vector<Budget> bs;
  for (auto& b : budgets) bs.push_back(Budget::parse(b));
  std::vector<GridVariant> out;
  for (auto& name : methods) {
    nlohmann::json o = method_options.contains(name) ? method_options[name] : nlohmann::json::object();
    std::shared_ptr<Method> m = make_method(name, o);
    if (name == "full") {
      out.push_back({name, Budget{Budget::Kind::Tokens, 1e18}, "full", m});
      continue;
    }
    check(!bs.empty(), "no budgets given for method ", name, "; pass --budgets, e.g. 128,256");
    for (auto& b : bs) {
      if (b.kind == Budget::Kind::Tokens && b.value < m->protected_tokens())
        fail("budget ", b.str(), " is smaller than the ", m->protected_tokens(), " entries method ", name,
             " always keeps (window and sinks); use budgets >= ", m->protected_tokens(), " or a smaller window");
      out.push_back({name, b, b.str(), m});
    }
  }
  return out;
}

std::vector<int64_t> stop_ids_for(const LlamaModel& model, const Tokenizer& tok, ChatTemplate chat) {
  std::vector<int64_t> ids = model.config().eos_token_ids;
  for (auto id : chat_stop_ids(tok, chat))
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

namespace {

struct Prepared {
  KVCache cache;
  VariantOutput out;
};

// Now, after the device has finished the work queued so far (only when times are measured).
double lap(const GridOptions& opt, const torch::Device& dev) {
  if (opt.times == nullptr) return 0;
  if (dev.is_cuda()) torch::cuda::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Compresses the prompt for one variant and measures what it kept.
Prepared prepare_variant(const PromptState& st, const GridVariant& v, const GridOptions& opt, int64_t answer_tokens) {
  Prepared p;
  const torch::Device dev = st.model->device();
  const double t0 = lap(opt, dev);
  Selection sel = v.impl->select(st, v.budget);
  p.cache = apply_selection(*st.cache, sel);
  p.out.method = v.method;
  p.out.budget = v.budget_label;
  p.out.kept_mean = p.cache.kept_counts().to(torch::kFloat64).mean().item<double>();
  p.out.cache_bytes = p.cache.bytes_in_use();
  const double t1 = lap(opt, dev);
  if (opt.times) opt.times->select_s += t1 - t0;
  if (opt.hit_rate && v.method != "oracle") {
    const int64_t keep = std::min<int64_t>(st.n_ctx, v.budget.tokens(st.n_ctx));
    const DecodeTrace& tr = oracle_trace(st, answer_tokens);
    Selection ref;
    for (auto& sums : tr.attn_sum) ref.idx.push_back(select_topk(reduce_groups(sums, st.cache->n_kv_heads(), "mean"), keep, 0, 0));
    p.out.hit_rate = hit_rate(sel, ref, st.n_ctx, st.model->config().n_heads).overall;
    if (opt.times) opt.times->hit_rate_s += lap(opt, dev) - t1;
  }
  return p;
}

// Decodes groups of variants together. Each group's caches form one batch (padded to its longest
// cache; the kvpress protocol's uncompressed tail is appended to it), and the groups decode as
// segments of one greedy decode: one graph step reads the weights once for all of them, and each
// group's rows attend over its own length.
void decode_groups(const LlamaModel& model, const Tokenizer& tok, const std::vector<std::vector<Prepared*>>& groups,
                   const std::vector<int64_t>& tail, const torch::Tensor& last_logits, const GenerateOptions& go) {
  std::vector<KVCache> batches;
  batches.reserve(groups.size());
  std::vector<torch::Tensor> logits;
  for (auto& group : groups) {
    std::vector<const KVCache*> caches;
    for (auto* p : group) caches.push_back(&p->cache);
    batches.push_back(caches.size() == 1 ? group[0]->cache.clone() : KVCache::cat_batch(caches));
    KVCache& batch = batches.back();
    const int64_t B = batch.batch();
    if (tail.empty()) {
      logits.push_back(last_logits.expand({B, last_logits.size(1)}));
    } else {
      auto ids = torch::tensor(tail, torch::kInt64).view({1, -1}).expand({B, static_cast<int64_t>(tail.size())});
      ForwardOptions fo;
      fo.chunk = go.chunk;
      logits.push_back(model.forward(ids.contiguous(), batch, fo).select(1, 0));
    }
  }
  std::vector<KVCache*> segments;
  for (auto& b : batches) segments.push_back(&b);
  auto r = decode_greedy(model, segments, logits.size() == 1 ? logits[0] : torch::cat(logits, 0), go);
  size_t row = 0;
  for (auto& group : groups)
    for (auto* p : group) {
      auto t = r.tokens[row];
      if (r.finish[row] == "stop" && !t.empty()) t.pop_back();
      p->out.tokens = t;
      p->out.prediction = utf8_lossy(tok.decode(t, true));
      ++row;
    }
}

}  // namespace

std::vector<VariantOutput> run_sample(const LlamaModel& model, const Tokenizer& tok, const BenchSample& s,
                                      const std::vector<GridVariant>& variants, const GridOptions& opt,
                                      bool decode_alone) {
  torch::NoGradGuard ng;
  const SampleIds sid = build_sample_ids(tok, s, opt.chat, opt.protocol);
  const int64_t max_pos = model.config().max_position_embeddings;
  const int64_t total = static_cast<int64_t>(sid.ids.size()) + s.max_new_tokens;
  check(total <= max_pos, "sample ", s.id, " needs ", total, " positions (prompt + answer), beyond the model's maximum ",
        max_pos, "; use shorter --lengths or a model with a longer context");
  std::vector<int64_t> ctx(sid.ids.begin(), sid.ids.begin() + sid.n_ctx), tail(sid.ids.begin() + sid.n_ctx, sid.ids.end());
  GenerateOptions go;
  go.max_new_tokens = std::max(1, s.max_new_tokens);
  go.stop_ids = stop_ids_for(model, tok, s.use_chat_template ? opt.chat : ChatTemplate::None);
  go.chunk = opt.chunk;
  const int64_t answer_tokens = go.max_new_tokens;

  std::vector<const Method*> ms;
  for (auto& v : variants) ms.push_back(v.impl.get());
  const Needs needs = merge_needs(ms);

  auto prefill_state = [&](KVCache& cache, const Needs& what) {
    PromptState st = prefill_for_compression(model, ctx, cache, what, opt.chunk);
    st.answer_tokens = answer_tokens;
    st.stop_ids = go.stop_ids;
    return st;
  };

  std::vector<VariantOutput> outs;
  if (decode_alone) {
    // One variant at a time, the way single-method tools run (a prefill each, capturing only what
    // that method needs): the reference the grid is checked and timed against.
    for (auto& v : variants) {
      const double t0 = lap(opt, model.device());
      KVCache cache = model.new_cache(1);
      PromptState st = prefill_state(cache, v.impl->needs());
      if (opt.times) opt.times->prefill_s += lap(opt, model.device()) - t0;
      Prepared p = prepare_variant(st, v, opt, answer_tokens);
      const double t1 = lap(opt, model.device());
      decode_groups(model, tok, {{&p}}, tail, st.last_logits, go);
      if (opt.times) {
        opt.times->decode_s += lap(opt, model.device()) - t1;
        ++opt.times->decode_groups;
      }
      outs.push_back(p.out);
    }
    if (opt.times) ++opt.times->samples;
    return outs;
  }
  const double t0 = lap(opt, model.device());
  KVCache cache = model.new_cache(1);
  PromptState st = prefill_state(cache, needs);
  if (opt.times) {
    opt.times->prefill_s += lap(opt, model.device()) - t0;
    ++opt.times->samples;
  }
  std::vector<Prepared> prepared;
  prepared.reserve(variants.size());
  for (auto& v : variants) prepared.push_back(prepare_variant(st, v, opt, answer_tokens));
  const double t1 = lap(opt, model.device());
  // Batch variants of similar cache length together so that padding stays small: large caches
  // (>= half the prompt, e.g. full) decode on their own.
  std::vector<Prepared*> small, large;
  for (auto& p : prepared) (p.cache.len(0) * 2 >= st.n_ctx ? large : small).push_back(&p);
  std::vector<std::vector<Prepared*>> groups;
  for (auto* p : large) groups.push_back({p});
  for (size_t i = 0; i < small.size(); i += opt.max_batch)
    groups.emplace_back(small.begin() + i, small.begin() + std::min(small.size(), i + opt.max_batch));
  // The groups decode together, as segments of one batch of at most max_batch rows.
  std::vector<std::vector<Prepared*>> pack;
  size_t rows = 0;
  for (auto& g : groups) {
    if (!pack.empty() && rows + g.size() > static_cast<size_t>(opt.max_batch)) {
      decode_groups(model, tok, pack, tail, st.last_logits, go);
      pack.clear();
      rows = 0;
    }
    pack.push_back(g);
    rows += g.size();
  }
  if (!pack.empty()) decode_groups(model, tok, pack, tail, st.last_logits, go);
  if (opt.times) {
    opt.times->decode_s += lap(opt, model.device()) - t1;
    opt.times->decode_groups += static_cast<int64_t>(groups.size());
  }
  for (auto& p : prepared) outs.push_back(p.out);
  return outs;
}

}  // namespace judgeq
