#include "kv/scoring.h"

#include <cmath>
#include <sstream>

#include "util/error.h"

namespace judgeq {

namespace {
// Scaled float32 scores of q [B, H, R, D] against k [B, H_kv, Tk, D] as [B, H_kv, G, R, Tk] (the G
// query heads of a group stacked as rows of one product; no repeat_kv copy).
torch::Tensor scaled_scores(const torch::Tensor& q, const torch::Tensor& k) {
  const int64_t B = q.size(0), H = q.size(1), R = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), G = H / Hkv;
  TORCH_CHECK(H % Hkv == 0 && k.size(3) == D && k.size(0) == B, "attention_rows: q/k shapes do not match");
  auto qg = q.to(torch::kFloat32).reshape({B, Hkv, G * R, D});
  auto s = torch::matmul(qg, k.to(torch::kFloat32).transpose(-1, -2));
  return s.div_(std::sqrt(static_cast<double>(D))).view({B, Hkv, G, R, Tk});
}
torch::Tensor softmax_rows(const torch::Tensor& s) {
  return torch::softmax(s, -1).view({s.size(0), s.size(1) * s.size(2), s.size(3), s.size(4)});
}
}  // namespace

torch::Tensor attention_rows(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& row_limit) {
  auto s = scaled_scores(q, k);
  const int64_t R = s.size(3), Tk = s.size(4);
  // The limits are built on the host; only the columns that some row cannot see are touched.
  auto lim = row_limit.to(torch::kCPU, torch::kInt64);
  const int64_t lo = std::min(Tk, lim.min().item<int64_t>());
  if (lo < Tk) {
    auto kj = torch::arange(lo, Tk, torch::kInt64).view({1, Tk - lo});
    auto hidden = (kj >= lim.view({R, 1})).to(q.device());
    s.narrow(-1, lo, Tk - lo).masked_fill_(hidden, -std::numeric_limits<float>::infinity());
  }
  return softmax_rows(s);
}

torch::Tensor attention_rows(const torch::Tensor& q, const torch::Tensor& k, int64_t causal_tail) {
  auto s = scaled_scores(q, k);
  const int64_t R = s.size(3), Tk = s.size(4), c = std::min(causal_tail, R);
  if (c > 1) {
    // Row R-c+i sees keys up to Tk-c+i: only the last c columns of the last c rows are hidden. The
    // mask is built on the device (no host-to-device copy, which would wait for the stream).
    auto opt = torch::TensorOptions().dtype(torch::kInt64).device(q.device());
    auto hidden = torch::arange(c, opt).view({1, c}) > torch::arange(c, opt).view({c, 1});
    s.narrow(-2, R - c, c).narrow(-1, Tk - c, c).masked_fill_(hidden, -std::numeric_limits<float>::infinity());
  }
  return softmax_rows(s);
}

torch::Tensor pool_scores(const torch::Tensor& scores, int64_t kernel, const std::string& pooling) {
  if (pooling == "none" || kernel <= 1) return scores;
  auto shape = scores.sizes().vec();
  const int64_t T = shape.back();
  auto x = scores.reshape({-1, 1, T});
  torch::Tensor y;
  if (pooling == "avg")
    y = torch::avg_pool1d(x, {kernel}, {1}, {kernel / 2}, false, true);
  else if (pooling == "max")
    y = torch::max_pool1d(x, {kernel}, {1}, {kernel / 2});
  else
    fail("unknown pooling (got '", pooling, "', expected avg, max or none)");
  return y.narrow(-1, 0, T).reshape(shape);
}

torch::Tensor reduce_groups(const torch::Tensor& scores, int64_t n_kv_heads, const std::string& how) {
  const int64_t B = scores.size(0), H = scores.size(1), T = scores.size(2);
  auto g = scores.view({B, n_kv_heads, H / n_kv_heads, T});
  if (how == "mean") return g.mean(2);
  if (how == "max") return std::get<0>(g.max(2));
  if (how == "sum") return g.sum(2);
  fail("unknown GQA reduction (got '", how, "', expected mean, max, sum or query-head)");
}

torch::Tensor select_topk(const torch::Tensor& scores, int64_t keep, int64_t sinks, int64_t window) {
  const int64_t B = scores.size(0), Hs = scores.size(1), N = scores.size(2);
  auto opt = torch::TensorOptions().dtype(torch::kInt64).device(scores.device());
  if (keep >= N) return torch::arange(N, opt).view({1, 1, N}).expand({B, Hs, N}).contiguous();
  sinks = std::min(sinks, N);
  window = std::min(window, N - sinks);
  const int64_t n_mid = keep - sinks - window;
  TORCH_CHECK(n_mid >= 0, "select_topk: keep smaller than the protected entries");
  std::vector<torch::Tensor> parts;
  if (sinks) parts.push_back(torch::arange(sinks, opt).view({1, 1, sinks}).expand({B, Hs, sinks}));
  if (n_mid) {
    auto mid = scores.narrow(2, sinks, N - sinks - window);
    parts.push_back(std::get<1>(mid.topk(n_mid, -1, true, false)) + sinks);
  }
  if (window) parts.push_back(torch::arange(N - window, N, opt).view({1, 1, window}).expand({B, Hs, window}));
  auto idx = torch::cat(parts, -1);
  return std::get<0>(idx.sort(-1));
}

Selection select_from_query_head_scores(const std::function<torch::Tensor(int64_t)>& scores, int64_t n_layers,
                                        int64_t n_kv_heads, const std::string& gqa, int64_t keep, int64_t window) {
  Selection s;
  s.query_head = gqa == "query-head";
  for (int64_t l = 0; l < n_layers; ++l) {
    auto sc = scores(l);
    if (!s.query_head) sc = reduce_groups(sc, n_kv_heads, gqa);
    s.idx.push_back(select_topk(sc, keep, 0, window));
  }
  return s;
}

std::vector<int64_t> pyramid_budgets(int64_t keep, int64_t window, int64_t n_ctx, int64_t n_layers, int64_t beta) {
  const int64_t avg = keep - window;
  int64_t min_num = avg / beta;
  int64_t max_num = avg * 2 - min_num;
  if (max_num >= n_ctx - window) {
    max_num = n_ctx - window;
    min_num = avg * 2 - max_num;
  }
  const int64_t steps = n_layers > 1 ? (max_num - min_num) / (n_layers - 1) : 0;
  std::vector<int64_t> out;
  for (int64_t l = 0; l < n_layers; ++l)
    out.push_back(std::max<int64_t>(0, std::min<int64_t>(n_ctx - window, max_num - l * steps)));
  return out;
}

torch::Tensor adakv_allocate(const torch::Tensor& scores, int64_t per_head, int64_t floor_n) {
  auto sc = scores.to(torch::kCPU, torch::kFloat32);
  const int64_t B = sc.size(0), Hkv = sc.size(1), C = sc.size(2);
  auto adj = sc.clone();
  if (floor_n > 0) adj.scatter_(2, std::get<1>(sc.topk(std::min(floor_n, C), -1)), std::numeric_limits<float>::infinity());
  auto chosen = std::get<1>(adj.view({B, Hkv * C}).topk(std::min(Hkv * per_head, Hkv * C), -1));
  return torch::zeros({B, Hkv * C}, torch::kBool).scatter_(1, chosen, true).view({B, Hkv, C});
}

Selection keep_all(const PromptState& st, bool query_head) {
  Selection s;
  s.query_head = query_head;
  const KVCache& c = *st.cache;
  const int64_t Hs = query_head ? st.model->config().n_heads : c.n_kv_heads();
  auto idx = torch::arange(st.n_ctx, torch::TensorOptions().dtype(torch::kInt64).device(c.device()))
                 .view({1, 1, st.n_ctx})
                 .expand({c.batch(), Hs, st.n_ctx})
                 .contiguous();
  for (int64_t l = 0; l < c.n_layers(); ++l) {
    s.idx.push_back(idx);
    s.valid.push_back(torch::Tensor());
  }
  return s;
}

Options::Options(const std::string& method, const nlohmann::json& defaults, const nlohmann::json& given)
    : method_(method), resolved_(defaults) {
  if (given.is_null()) return;
  check(given.is_object(), "options for method ", method, " must be a JSON object (got ", given.dump(), ")");
  for (auto it = given.begin(); it != given.end(); ++it) {
    if (!defaults.contains(it.key())) {
      std::string valid;
      for (auto d = defaults.begin(); d != defaults.end(); ++d) valid += (valid.empty() ? "" : ", ") + d.key();
      fail("unknown option '", it.key(), "' for method ", method, " (valid: ", valid.empty() ? "none" : valid,
           "); see `judgeq-eval methods`");
    }
    const auto& def = defaults[it.key()];
    const auto& v = it.value();
    const bool ok = (def.is_number() && v.is_number()) || (def.is_string() && v.is_string()) ||
                    (def.is_boolean() && v.is_boolean()) || def.is_null();
    check(ok, "option '", it.key(), "' of method ", method, " has the wrong type (got ", v.dump(), ", default is ",
          def.dump(), ")");
    resolved_[it.key()] = v;
  }
}

int64_t Options::integer(const std::string& k) const {
  const auto& v = resolved_.at(k);
  check(v.is_number() && std::floor(v.get<double>()) == v.get<double>(), "option '", k, "' of method ", method_,
        " must be an integer (got ", v.dump(), ")");
  return v.get<int64_t>();
}
double Options::number(const std::string& k) const { return resolved_.at(k).get<double>(); }
std::string Options::text(const std::string& k) const {
  return resolved_.at(k).is_string() ? resolved_.at(k).get<std::string>() : std::string();
}
bool Options::flag(const std::string& k) const { return resolved_.at(k).get<bool>(); }

int64_t resolve_budget(const Method& m, const Budget& b, int64_t n_ctx) {
  const int64_t keep = b.tokens(n_ctx);
  const int64_t prot = std::min(m.protected_tokens(), n_ctx);
  if (keep < prot)
    fail("budget ", b.str(), " keeps ", keep, " entries per layer, fewer than the ", prot,
         " that method ", m.name(), " always keeps (window and sinks); use a larger budget or a smaller window");
  return keep;
}

Budget Budget::parse(const std::string& s) {
  Budget b;
  try {
    size_t used = 0;
    if (s.rfind("cr", 0) == 0) {
      b.kind = Kind::Ratio;
      b.value = std::stod(s.substr(2), &used);
      if (used == s.size() - 2 && b.value >= 0 && b.value < 1) return b;
    } else {
      b.value = static_cast<double>(std::stoll(s, &used));
      if (used == s.size() && b.value > 0) return b;
    }
  } catch (const std::exception&) {
  }
  fail("bad budget (got '", s, "', expected a positive token count per layer like 256, or a kvpress compression ",
       "ratio like cr0.5 meaning half the context is removed)");
}

std::string Budget::str() const {
  if (kind == Kind::Tokens) return std::to_string(static_cast<int64_t>(value));
  std::ostringstream os;
  os << "cr" << value;
  return os.str();
}

int64_t Budget::tokens(int64_t n_ctx) const {
  if (kind == Kind::Tokens) return std::min<int64_t>(n_ctx, static_cast<int64_t>(value));
  // kvpress keeps int(n * (1 - ratio)) entries.
  return std::min<int64_t>(n_ctx, static_cast<int64_t>(n_ctx * (1.0 - value)));
}

nlohmann::json window_scorer_defaults(int64_t window, int64_t kernel, const std::string& pooling) {
  return {{"window", window}, {"kernel", kernel}, {"pooling", pooling}, {"reduce", "sum"}, {"gqa", "mean"}};
}

nlohmann::json window_scorer_help() {
  return {{"window", "observation window: the last N prompt tokens score the rest and are always kept"},
          {"kernel", "pooling kernel size along the sequence"},
          {"pooling", "avg | max | none"},
          {"reduce", "sum | mean of the attention over the observation rows"},
          {"gqa", "mean | max | sum over the query heads of a KV group, or query-head (KVCache-Factory layout, "
                  "group-size times the memory)"}};
}

void WindowScorer::read(const Options& o) {
  window = o.integer("window");
  kernel = o.integer("kernel");
  pooling = o.text("pooling");
  reduce = o.text("reduce");
  gqa = o.text("gqa");
  check(window >= 0, "window must be >= 0 (got ", window, ")");
  check(kernel >= 1, "kernel must be >= 1 (got ", kernel, ")");
  check(pooling == "avg" || pooling == "max" || pooling == "none", "unknown pooling (got '", pooling,
        "', expected avg, max or none)");
  check(reduce == "sum" || reduce == "mean", "unknown reduce (got '", reduce, "', expected sum or mean)");
  check(gqa == "mean" || gqa == "max" || gqa == "sum" || gqa == "query-head", "unknown gqa (got '", gqa,
        "', expected mean, max, sum or query-head)");
}

torch::Tensor WindowScorer::score(const torch::Tensor& q, const torch::Tensor& k, int64_t n_ctx, int64_t causal_tail,
                                  int64_t n_kv_heads) const {
  return finish(attention_rows(q, k, causal_tail), n_ctx, n_kv_heads);
}

torch::Tensor WindowScorer::score_limits(const torch::Tensor& q, const torch::Tensor& k, int64_t n_ctx,
                                         const torch::Tensor& row_limit, int64_t n_kv_heads) const {
  return finish(attention_rows(q, k, row_limit), n_ctx, n_kv_heads);
}

torch::Tensor WindowScorer::finish(const torch::Tensor& rows, int64_t n_ctx, int64_t n_kv_heads) const {
  auto p = rows.narrow(-1, 0, n_ctx);                  // [B, H, R, n_ctx]
  auto s = reduce == "mean" ? p.mean(2) : p.sum(2);    // [B, H, n_ctx]
  // Pool only the candidates: the window is always kept and must not bleed into its neighbours.
  const int64_t w = std::min(window, n_ctx);
  if (w > 0 && w < n_ctx)
    s = torch::cat({pool_scores(s.narrow(-1, 0, n_ctx - w), kernel, pooling), s.narrow(-1, n_ctx - w, w)}, -1);
  else if (w == 0)
    s = pool_scores(s, kernel, pooling);
  return query_head() ? s : reduce_groups(s, n_kv_heads, gqa);
}

const std::vector<torch::Tensor>& memo_layers(const PromptState& st, const std::string& key,
                                              const std::function<std::vector<torch::Tensor>()>& compute) {
  auto& slot = st.memo[key];
  if (!slot) slot = std::make_shared<std::vector<torch::Tensor>>(compute());
  return *slot;
}

std::string WindowScorer::key() const {
  std::ostringstream os;
  os << "window-scores w=" << window << " k=" << kernel << " pool=" << pooling << " reduce=" << reduce << " gqa=" << gqa;
  return os.str();
}

const std::vector<torch::Tensor>& WindowScorer::window_scores(const PromptState& st, const std::string& method) const {
  return memo_layers(st, key(), [&] {
    const int64_t w = std::min(window, st.n_ctx);
    std::vector<torch::Tensor> out;
    for (int64_t l = 0; l < st.cache->n_layers(); ++l) {
      const auto& q = st.q_window.at(l);
      check(q.defined() && q.size(2) >= w, method, " needs the last ", w, " prompt queries captured");
      out.push_back(score(q.narrow(2, q.size(2) - w, w), st.cache->keys(l), st.n_ctx, w, st.cache->n_kv_heads()));
    }
    return out;
  });
}

}  // namespace judgeq
