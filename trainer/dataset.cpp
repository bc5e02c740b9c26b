#include "trainer/dataset.h"
#include "judgeq_git_commit.h"

#include <H5Cpp.h>

#include <filesystem>
#include <iostream>
#include <unistd.h>

#include "util/error.h"
#include "util/hash.h"

namespace judgeq {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---- JSONL ----------------------------------------------------------------------------------

namespace {

std::string where(const std::string& source, int64_t line_no) { return source + ":" + std::to_string(line_no); }

std::string role_of(const json& turn, const std::string& at) {
  const char* keys[] = {"from", "role"};
  for (auto k : keys)
    if (turn.contains(k)) {
      check(turn[k].is_string(), "malformed conversation turn at ", at, " ('", k, "' is ", turn[k].type_name(),
            ", expected a string); fix or remove the line");
      const std::string r = turn[k].get<std::string>();
      if (r == "human" || r == "user") return "user";
      if (r == "gpt" || r == "assistant" || r == "chatgpt" || r == "bard" || r == "bing") return "assistant";
      if (r == "system") return "system";
      fail("unknown speaker in conversation at ", at, " (got '", r,
           "', expected human, gpt, user, assistant or system); fix or remove the line");
    }
  fail("malformed conversation turn at ", at, " (got ", turn.dump().substr(0, 60),
       ", expected {\"from\": ..., \"value\": ...}); fix or remove the line");
}

std::string text_of(const json& turn, const std::string& at) {
  const char* keys[] = {"value", "content"};
  for (auto k : keys)
    if (turn.contains(k)) {
      check(turn[k].is_string(), "malformed conversation turn at ", at, " ('", k, "' is ", turn[k].type_name(),
            ", expected a string); fix or remove the line");
      return turn[k].get<std::string>();
    }
  fail("malformed conversation turn at ", at, " (no 'value'); fix or remove the line");
}

}  // namespace

TextExample parse_example(const std::string& line, int64_t line_no, const std::string& source) {
  const std::string at = where(source, line_no);
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  check(!j.is_discarded(), "malformed JSON at ", at, " (got '", line.substr(0, 60),
        "'); fix or remove the line (one JSON object per line)");
  check(j.is_object(), "malformed example at ", at, " (got a JSON ", j.type_name(),
        ", expected an object with \"conversations\" or \"prompt\"); fix or remove the line");
  TextExample ex;
  ex.line = line_no;
  if (j.contains("conversations")) {
    const json& conv = j["conversations"];
    check(conv.is_array(), "malformed example at ", at, " ('conversations' is ", conv.type_name(),
          ", expected an array of turns); fix or remove the line");
    size_t i = 0;
    for (; i < conv.size(); ++i) {
      check(conv[i].is_object(), "malformed conversation turn at ", at, " (got ", conv[i].dump().substr(0, 60),
            ", expected {\"from\": ..., \"value\": ...}); fix or remove the line");
      const std::string role = role_of(conv[i], at);
      if (role == "system") {
        ex.system += (ex.system.empty() ? "" : "\n\n") + text_of(conv[i], at);
        continue;
      }
      if (role == "user") {
        ex.prompt = text_of(conv[i], at);
        break;
      }
      // Conversations that open with the assistant: skip to the first human turn.
    }
    check(i < conv.size(), "no human turn in the conversation at ", at,
          " (expected a turn with \"from\": \"human\"); fix or remove the line");
    if (i + 1 < conv.size() && conv[i + 1].is_object() && role_of(conv[i + 1], at) == "assistant")
      ex.response = text_of(conv[i + 1], at);
  } else if (j.contains("prompt")) {
    check(j["prompt"].is_string(), "malformed example at ", at, " ('prompt' is ", j["prompt"].type_name(),
          ", expected a string); fix or remove the line");
    ex.prompt = j["prompt"].get<std::string>();
    if (j.contains("response")) {
      check(j["response"].is_string(), "malformed example at ", at, " ('response' is ", j["response"].type_name(),
            ", expected a string); fix or remove the line");
      ex.response = j["response"].get<std::string>();
    }
    if (j.contains("system") && j["system"].is_string()) ex.system = j["system"].get<std::string>();
  } else {
    fail("malformed example at ", at, " (no \"conversations\" or \"prompt\" field; got keys ",
         j.dump().substr(0, 60), "); use ShareGPT lines or {\"prompt\": ..., \"response\": ...}");
  }
  check(!ex.prompt.empty(), "empty prompt at ", at, "; fix or remove the line");
  return ex;
}

JsonlExampleReader::JsonlExampleReader(const std::string& path, bool strict)
    : path_(path), in_(path, std::ios::binary), strict_(strict) {
  check(fs::is_regular_file(path) && in_.good(), "cannot read the data file (got '", path,
        "'); pass an existing .jsonl file with --data");
  on_warning = [](const std::string& msg) { std::cerr << "warning: " << msg << "\n"; };
}

bool JsonlExampleReader::next(TextExample& ex) {
  std::string line;
  while (std::getline(in_, line)) {
    ++line_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      ex = parse_example(line, line_, path_);
      return true;
    } catch (const Error& e) {
      if (strict_) throw Error(std::string(e.what()) + " (or drop --strict to skip such lines)");
      ++n_malformed_;
      if (on_warning) on_warning(std::string(e.what()) + "; skipped");
    }
  }
  return false;
}

void JsonlExampleReader::skip(int64_t n) {
  std::string line;
  for (int64_t i = 0; i < n && std::getline(in_, line); ++i) ++line_;
}

int64_t count_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot read ", path, "; check the path");
  int64_t n = 0;
  char last = '\n';
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize got = in.gcount();
    for (std::streamsize i = 0; i < got; ++i) n += buf[i] == '\n';
    if (got > 0) last = buf[got - 1];
  }
  return n + (last != '\n');
}

// ---- HDF5 training sets ---------------------------------------------------------------------

void TrainSet::add(const TrainSample& s) {
  check(!s.prompt.empty(), "training sample from line ", s.source_line, " has an empty prompt");
  for (auto id : s.prompt) tokens_.push_back(static_cast<int32_t>(id));
  for (auto id : s.response) tokens_.push_back(static_cast<int32_t>(id));
  offsets_.push_back(static_cast<int64_t>(tokens_.size()));
  prompt_len_.push_back(static_cast<int32_t>(s.prompt.size()));
  response_len_.push_back(static_cast<int32_t>(s.response.size()));
  source_line_.push_back(s.source_line);
}

void TrainSet::append(const TrainSet& o) {
  const int64_t base = offsets_.back();
  tokens_.insert(tokens_.end(), o.tokens_.begin(), o.tokens_.end());
  for (size_t i = 1; i < o.offsets_.size(); ++i) offsets_.push_back(base + o.offsets_[i]);
  prompt_len_.insert(prompt_len_.end(), o.prompt_len_.begin(), o.prompt_len_.end());
  response_len_.insert(response_len_.end(), o.response_len_.begin(), o.response_len_.end());
  source_line_.insert(source_line_.end(), o.source_line_.begin(), o.source_line_.end());
}

TrainSample TrainSet::get(int64_t i) const {
  check(i >= 0 && i < size(), "training sample index out of range (got ", i, ", expected 0..", size() - 1, ")");
  TrainSample s;
  const int32_t* p = tokens_.data() + offsets_[i];
  s.prompt.assign(p, p + prompt_len_[i]);
  s.response.assign(p + prompt_len_[i], p + prompt_len_[i] + response_len_[i]);
  s.source_line = source_line_[i];
  return s;
}

std::string TrainSet::content_hash() const {
  Sha256 h;
  auto feed = [&](const auto& v) {
    const uint64_t n = v.size();
    h.update(&n, sizeof n);
    if (n) h.update(v.data(), n * sizeof(v[0]));
  };
  feed(tokens_);
  feed(offsets_);
  feed(prompt_len_);
  feed(response_len_);
  return h.hex_digest();
}

namespace {

// HDF5's C++ exceptions do not derive from std::exception: every call goes through this guard.
template <typename F>
auto h5_guard(const std::string& what, const std::string& path, F&& f) -> decltype(f()) {
  try {
    H5::Exception::dontPrint();
    return f();
  } catch (const H5::Exception& e) {
    fail(what, " ", path, " failed (", e.getDetailMsg(), "); ",
         what.rfind("read", 0) == 0 ? "regenerate it with judgeq-train prepare"
                                    : "check free space and that the folder is writable");
  }
}

template <typename T>
void write_1d(H5::H5File& f, const std::string& name, const std::vector<T>& v, const H5::PredType& file_type,
              const H5::PredType& mem_type) {
  hsize_t dims[1] = {static_cast<hsize_t>(v.size())};
  H5::DataSpace space(1, dims);
  H5::DSetCreatPropList props;
  if (!v.empty()) {
    hsize_t chunk[1] = {std::min<hsize_t>(dims[0], 1 << 16)};
    props.setChunk(1, chunk);
    props.setDeflate(1);
  }
  H5::DataSet ds = f.createDataSet(name, file_type, space, props);
  if (!v.empty()) ds.write(v.data(), mem_type);
}

template <typename T>
std::vector<T> read_1d(H5::H5File& f, const std::string& name, const H5::PredType& mem_type, const std::string& path) {
  check(f.nameExists(name), "training set ", path, " has no '", name, "' dataset; regenerate it with judgeq-train prepare");
  H5::DataSet ds = f.openDataSet(name);
  H5::DataSpace space = ds.getSpace();
  check(space.getSimpleExtentNdims() == 1, "training set ", path, ": '", name,
        "' is not one-dimensional; regenerate it with judgeq-train prepare");
  hsize_t n = 0;
  space.getSimpleExtentDims(&n);
  std::vector<T> v(n);
  if (n) ds.read(v.data(), mem_type);
  return v;
}

void write_attr(H5::H5File& f, const std::string& key, const json& v) {
  H5::DataSpace scalar(H5S_SCALAR);
  if (v.is_number_integer() || v.is_boolean()) {
    const int64_t x = v.is_boolean() ? int64_t(v.get<bool>()) : v.get<int64_t>();
    f.createAttribute(key, H5::PredType::STD_I64LE, scalar).write(H5::PredType::NATIVE_INT64, &x);
  } else if (v.is_number_float()) {
    const double x = v.get<double>();
    f.createAttribute(key, H5::PredType::IEEE_F64LE, scalar).write(H5::PredType::NATIVE_DOUBLE, &x);
  } else {
    H5::StrType st(H5::PredType::C_S1, H5T_VARIABLE);
    st.setCset(H5T_CSET_UTF8);
    const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
    f.createAttribute(key, st, scalar).write(st, s);
  }
}

json read_attrs(H5::H5File& f) {
  json out = json::object();
  const int n = f.getNumAttrs();
  for (int i = 0; i < n; ++i) {
    H5::Attribute a = f.openAttribute(static_cast<unsigned>(i));
    const std::string key = a.getName();
    switch (a.getTypeClass()) {
      case H5T_INTEGER: {
        int64_t x = 0;
        a.read(H5::PredType::NATIVE_INT64, &x);
        out[key] = x;
        break;
      }
      case H5T_FLOAT: {
        double x = 0;
        a.read(H5::PredType::NATIVE_DOUBLE, &x);
        out[key] = x;
        break;
      }
      case H5T_STRING: {
        std::string s;
        a.read(a.getStrType(), s);
        json parsed = (!s.empty() && (s[0] == '{' || s[0] == '[')) ? json::parse(s, nullptr, false) : json();
        out[key] = parsed.is_object() || parsed.is_array() ? parsed : json(s);
        break;
      }
      default:
        break;  // not written by judgeq: ignored
    }
  }
  return out;
}

}  // namespace

void TrainSet::write(const std::string& path) const {
  check(attributes.contains("model_config_hash"), "training set attributes lack model_config_hash (internal)");
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  h5_guard("writing training set", path, [&] {
    H5::H5File f(tmp, H5F_ACC_TRUNC);
    json a = attributes;
    a["format"] = kTrainSetFormat;
    a["format_version"] = kTrainSetFormatVersion;
    a["n_samples"] = size();
    if (!a.contains("tool_version")) a["tool_version"] = JUDGEQ_VERSION;
    if (!a.contains("git_commit")) a["git_commit"] = JUDGEQ_GIT_COMMIT;
    for (auto& [k, v] : a.items()) write_attr(f, k, v);
    write_1d(f, "tokens", tokens_, H5::PredType::STD_I32LE, H5::PredType::NATIVE_INT32);
    write_1d(f, "offsets", offsets_, H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64);
    write_1d(f, "prompt_lengths", prompt_len_, H5::PredType::STD_I32LE, H5::PredType::NATIVE_INT32);
    write_1d(f, "response_lengths", response_len_, H5::PredType::STD_I32LE, H5::PredType::NATIVE_INT32);
    write_1d(f, "source_lines", source_line_, H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64);
    f.close();
  });
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    fail("cannot move ", tmp, " to ", path, " (", ec.message(), "); check that the folder is writable");
  }
}

TrainSet TrainSet::read(const std::string& path) {
  check(fs::is_regular_file(path), "training set not found (got '", path,
        "'); make one with judgeq-train prepare --model DIR --data FILE.jsonl --out FILE.h5");
  const std::string regen = "; regenerate it with judgeq-train prepare";
  bool is_h5 = false;
  try {
    H5::Exception::dontPrint();
    is_h5 = H5::H5File::isHdf5(path);
  } catch (const H5::Exception&) {
  }
  check(is_h5, "not an HDF5 training set: ", path, regen);
  TrainSet s;
  h5_guard("reading training set", path, [&] {
    H5::H5File f(path, H5F_ACC_RDONLY);
    s.attributes = read_attrs(f);
    const std::string fmt = s.attributes.value("format", std::string());
    check(fmt == kTrainSetFormat, "not a judgeq training set: ", path, " (got format '", fmt, "', expected '",
          kTrainSetFormat, "')", regen);
    const json ver = s.attributes.value("format_version", json());
    check(ver == kTrainSetFormatVersion, "unsupported training-set format version in ", path, " (got ", ver.dump(),
          ", expected ", kTrainSetFormatVersion, ")", regen);
    s.tokens_ = read_1d<int32_t>(f, "tokens", H5::PredType::NATIVE_INT32, path);
    s.offsets_ = read_1d<int64_t>(f, "offsets", H5::PredType::NATIVE_INT64, path);
    s.prompt_len_ = read_1d<int32_t>(f, "prompt_lengths", H5::PredType::NATIVE_INT32, path);
    s.response_len_ = read_1d<int32_t>(f, "response_lengths", H5::PredType::NATIVE_INT32, path);
    s.source_line_ = read_1d<int64_t>(f, "source_lines", H5::PredType::NATIVE_INT64, path);
  });
  const size_t n = s.source_line_.size();
  bool ok = s.offsets_.size() == n + 1 && s.prompt_len_.size() == n && s.response_len_.size() == n &&
            s.offsets_.front() == 0 && s.offsets_.back() == static_cast<int64_t>(s.tokens_.size());
  for (size_t i = 0; ok && i < n; ++i)
    ok = s.prompt_len_[i] > 0 && s.response_len_[i] >= 0 &&
         s.offsets_[i + 1] - s.offsets_[i] == int64_t(s.prompt_len_[i]) + s.response_len_[i];
  check(ok, "training set ", path, " is inconsistent (offsets and lengths disagree)", regen);
  return s;
}

TrainSet TrainSet::read_for_model(const std::string& path, const ModelConfig& config) {
  TrainSet s = read(path);
  const std::string hash = s.attributes.value("model_config_hash", std::string("?"));
  if (hash != config.hash())
    fail("training set ", path, " was made with another model (got '", s.attributes.value("model_name", std::string("?")),
         "', config hash ", hash, "; expected '", config.name, "', config hash ", config.hash(),
         "); prepare it with this model: judgeq-train prepare --model DIR ...");
  for (auto id : s.tokens_)
    check(id >= 0 && id < config.vocab_size, "training set ", path, " holds token id ", id,
          " outside this model's vocabulary (expected 0..", config.vocab_size - 1, "); regenerate it with judgeq-train prepare");
  return s;
}

}  // namespace judgeq
