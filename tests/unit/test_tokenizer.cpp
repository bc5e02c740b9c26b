// Tokenizers against golden ids (../shared/data/tokenizers/golden): Llama-3 from both tiktoken
// ranks and HF tokenizer.json, sentencepiece for Mistral v0.3 / v0.1 and llama2.c tok512; whole
// essays by count and id hash; round trips, special tokens, and the errors bad files give.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "util/hash.h"
#include "model/tokenizer.h"
#include "util/error.h"

namespace judgeq {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;

std::string tok_dir() { return test::shared_data() + "/tokenizers"; }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_text(path)); }

// Loaded once per binary: the json and the tiktoken file take a noticeable fraction of a second.
const Tokenizer& cached(const std::string& rel) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[rel];
  if (!t) t = Tokenizer::load(tok_dir() + "/" + rel);
  return *t;
}
const Tokenizer& llama3_tiktoken() { return cached("llama3/tokenizer.model"); }
const Tokenizer& llama3_json() { return cached("llama3-hf-json/tokenizer.json"); }
const Tokenizer& mistral_v03() { return cached("mistral/mistral_instruct_tokenizer_240216.model.v2"); }
const Tokenizer& mistral_v03_alt() { return cached("mistral/mistral_instruct_tokenizer_240323.model.v3"); }
const Tokenizer& mistral_v01() { return cached("mistral/tokenizer.model.v1"); }
const Tokenizer& tok512() { return cached("llama2c-stories260K/tok512.model"); }

Ids ids_of(const nlohmann::json& j) { return j.get<Ids>(); }

std::string ids_sha256(const Ids& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return sha256_hex(s);
}

// Expects a judgeq::Error whose message contains every fragment.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected judgeq::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

void expect_llama3_golden(const Tokenizer& tok) {
  auto golden = read_json(tok_dir() + "/golden/llama3_golden.json");
  ASSERT_GE(golden["cases"].size(), 20u);
  for (const auto& c : golden["cases"]) {
    const std::string text = c["text"];
    const std::string name = c["name"];
    Ids ids = tok.encode(text);
    EXPECT_EQ(ids, ids_of(c["ids"])) << name;
    EXPECT_EQ(tok.decode(ids), text) << name;
    if (c.contains("ids_hf_special_strings_parsed")) {
      Ids parsed = tok.encode(text, false, true);
      EXPECT_EQ(parsed, ids_of(c["ids_hf_special_strings_parsed"])) << name;
      EXPECT_EQ(tok.decode(parsed, /*skip_special=*/false), text) << name;
    } else {
      EXPECT_EQ(tok.encode(text, false, true), ids) << name << ": no special strings, same ids";
    }
  }
}

// Cases checked against Python's bytes.decode("utf-8", "replace").
TEST(TokenizerUtil, Utf8LossyReplacesMaximalInvalidSubparts) {
  const std::string R = "\xEF\xBF\xBD";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain ascii", "plain ascii"},
      {"caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80"},  // valid 2- and 4-byte characters
      {"a\xE2\x82 b", "a" + R + " b"},                                   // a character cut by a token boundary
      {"end\xE2\x82", "end" + R},                                        // cut at the end
      {"\x80x", R + "x"},                                                 // stray continuation byte
      {"\xC0\xAF", R + R},                                               // overlong lead: each byte alone
      {"\xED\xA0\x80", R + R + R},                                      // surrogate
      {"\xF4\x90\x80\x80", R + R + R + R},                             // above U+10FFFF
      {"\xF0\x9F\x98", R},                                              // 3 of 4 bytes: one replacement
      {"\xE0\x80\x80", R + R + R},                                      // overlong 3-byte form
  };
  for (auto& [in, want] : cases) EXPECT_EQ(utf8_lossy(in), want) << in;
}

TEST(TokenizerUtil, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000, 'a')), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(TokenizerLlama3, GoldenFromTiktoken) {
  EXPECT_EQ(llama3_tiktoken().kind(), "bpe-bytelevel");
  expect_llama3_golden(llama3_tiktoken());
}

TEST(TokenizerLlama3, GoldenFromHfJson) {
  EXPECT_EQ(llama3_json().kind(), "bpe-bytelevel");
  expect_llama3_golden(llama3_json());
}

TEST(TokenizerLlama3, SpecialTokens) {
  for (const Tokenizer* tok : {&llama3_tiktoken(), &llama3_json()}) {
    EXPECT_EQ(tok->vocab_size(), 128256);
    EXPECT_EQ(tok->bos_id(), 128000);
    EXPECT_EQ(tok->eos_id(), 128001);
    EXPECT_EQ(tok->token_id("<|begin_of_text|>"), 128000);
    EXPECT_EQ(tok->token_id("<|end_of_text|>"), 128001);
    EXPECT_EQ(tok->token_id("<|reserved_special_token_0|>"), 128002);
    EXPECT_EQ(tok->token_id("<|start_header_id|>"), 128006);
    EXPECT_EQ(tok->token_id("<|end_header_id|>"), 128007);
    EXPECT_EQ(tok->token_id("<|eot_id|>"), 128009);
    EXPECT_TRUE(tok->is_special(128000));
    EXPECT_TRUE(tok->is_special(128255));
    EXPECT_FALSE(tok->is_special(127999));
    EXPECT_EQ(tok->id_to_piece(128009), "<|eot_id|>");
    // Regular pieces use HF's byte-level spelling; raw bytes are accepted too.
    EXPECT_EQ(tok->id_to_piece(15339), "hello");
    EXPECT_EQ(tok->id_to_piece(24748), "\xC4\xA0hello");  // "Ġhello"
    EXPECT_EQ(tok->token_id("\xC4\xA0hello"), 24748);
    EXPECT_EQ(tok->token_id(" hello"), 24748);
    EXPECT_EQ(tok->token_id("no-such-piece-xyz"), std::nullopt);

    const std::string text = "<|begin_of_text|>hi<|eot_id|>";
    Ids plain = tok->encode(text), parsed = tok->encode(text, false, true);
    EXPECT_EQ(parsed, (Ids{128000, 6151, 128009}));
    for (int64_t id : plain) EXPECT_LT(id, 128000) << "specials must not be parsed unless asked";
    EXPECT_EQ(tok->decode(parsed), "hi");
    EXPECT_EQ(tok->decode(parsed, false), text);
    EXPECT_EQ(tok->encode("hi", true), (Ids{128000, 6151}));
  }
  // Llama-3.1 names from code (tiktoken); the npm tokenizer.json carries Llama-3 names.
  const Tokenizer& t = llama3_tiktoken();
  EXPECT_EQ(t.token_id("<|finetune_right_pad_id|>"), 128004);
  EXPECT_EQ(t.token_id("<|reserved_special_token_2|>"), 128005);
  EXPECT_EQ(t.token_id("<|eom_id|>"), 128008);
  EXPECT_EQ(t.token_id("<|python_tag|>"), 128010);
  EXPECT_EQ(t.token_id("<|reserved_special_token_3|>"), 128011);
  EXPECT_EQ(t.token_id("<|reserved_special_token_247|>"), 128255);
  EXPECT_EQ(llama3_json().token_id("<|eom_id|>"), std::nullopt);
}

TEST(TokenizerLlama3, RoundTripsOddInput) {
  const Tokenizer& tok = llama3_tiktoken();
  // Invalid UTF-8 is never matched by the regex; its bytes still become (byte) tokens.
  for (std::string s : {std::string("a\xff\xfe b\x80"), std::string("\xe4\xbd"), std::string(1, '\0') + "x",
                        std::string("\r\n\r\n  \t\n"), std::string("")}) {
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
    EXPECT_EQ(llama3_json().encode(s), tok.encode(s));
  }
  // Long single pieces take the heap path; long whitespace runs stress the regex.
  std::string letters(200000, 'a'), spaces(200000, ' '), cjk;
  for (int i = 0; i < 20000; ++i) cjk += "\xE5\x9B\xBD\xE5\xAE\xB6";  // 国家
  for (const std::string* s : {&letters, &spaces, &cjk}) {
    Ids ids = tok.encode(*s + "x");
    EXPECT_EQ(tok.decode(ids), *s + "x");
    EXPECT_LT(ids.size(), s->size() / 2);
  }
}

TEST(TokenizerLlama3, DecodeRejectsBadIds) {
  expect_error([] { llama3_tiktoken().decode({1, 128256}); }, {"128256", "out of range"});
  expect_error([] { llama3_tiktoken().decode({-1}); }, {"-1"});
}

// ---- sentencepiece -------------------------------------------------------------------------------

void expect_sp_golden(const Tokenizer& tok, const std::string& key, const std::set<std::string>& no_round_trip) {
  auto golden = read_json(tok_dir() + "/golden/sentencepiece_golden.json");
  ASSERT_GE(golden["cases"].size(), 20u);
  for (const auto& c : golden["cases"]) {
    const std::string text = c["text"], name = c["name"];
    Ids ids = tok.encode(text);
    EXPECT_EQ(ids, ids_of(c[key])) << name;
    if (!no_round_trip.count(name)) {
      EXPECT_EQ(tok.decode(ids), text) << name;
    }
    Ids with_bos = tok.encode(text, true);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], tok.bos_id());
    EXPECT_EQ(Ids(with_bos.begin() + 1, with_bos.end()), ids) << name;
  }
}

TEST(TokenizerSentencepiece, GoldenMistralV03) {
  EXPECT_EQ(mistral_v03().kind(), "sentencepiece");
  EXPECT_EQ(mistral_v03().vocab_size(), 32768);
  expect_sp_golden(mistral_v03(), "ids_mistral_v0_3", {});
  // mistral-common's "v3" file renames some control pieces; text is tokenised the same way.
  expect_sp_golden(mistral_v03_alt(), "ids_mistral_v0_3", {});
}

TEST(TokenizerSentencepiece, GoldenMistralV01) {
  EXPECT_EQ(mistral_v01().vocab_size(), 32000);
  expect_sp_golden(mistral_v01(), "ids_mistral_v0_1", {});
}

TEST(TokenizerSentencepiece, GoldenTok512) {
  EXPECT_EQ(tok512().vocab_size(), 512);
  // tok512 normalises (NFKC, collapsed whitespace, control characters such as U+0097 dropped):
  // these texts cannot come back unchanged.
  expect_sp_golden(tok512(), "ids_tok512",
                   {"whitespace", "unicode_cjk", "single_space", "pg_before_first3000", "pg_gap_first3000",
                    "pg_worked_first3000", "longbench_multifieldqa_zh_0_context_first1500"});
}

TEST(TokenizerSentencepiece, ControlTokens) {
  const Tokenizer& tok = mistral_v03();
  EXPECT_EQ(tok.token_id("[INST]"), 3);
  EXPECT_EQ(tok.token_id("[/INST]"), 4);
  EXPECT_EQ(tok.token_id("<s>"), 1);
  EXPECT_EQ(tok.token_id("<unk>"), 0);
  EXPECT_EQ(tok.token_id("\xE2\x96\x81Hello"), 23325);
  EXPECT_EQ(tok.token_id("no-such-piece-xyz"), std::nullopt);
  EXPECT_EQ(tok.id_to_piece(3), "[INST]");
  EXPECT_TRUE(tok.is_special(3));
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(23325));
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);

  const std::string text = "[INST] Hello [/INST]";
  // Not parsed: plain text (the golden ids). Parsed: control ids, and the text after a control
  // token gets no dummy-prefix space, so the round trip is exact.
  EXPECT_EQ(tok.encode(text), (Ids{1501, 17057, 29561, 23325, 1501, 29516, 17057, 29561}));
  Ids parsed = tok.encode(text, false, true);
  EXPECT_EQ(parsed, (Ids{3, 23325, 29473, 4}));
  EXPECT_EQ(tok.decode(parsed, false), text);
  EXPECT_EQ(tok.decode(parsed), "Hello ");
  EXPECT_EQ(tok.encode("Hi</s>", true, true), (Ids{1, 16127, 2}));
  EXPECT_EQ(tok.encode("Hi</s>", false, false).size(), 4u);
  // Text at the start keeps the dummy prefix whether or not specials are parsed.
  EXPECT_EQ(tok.encode("Hello [INST]", false, true), (Ids{23325, 29473, 3}));
  EXPECT_EQ(tok.decode({1, 23325}), "Hello");
  EXPECT_EQ(tok.decode({1, 23325}, false), "<s> Hello");

  // v0.1 has no [INST] piece: it stays text either way.
  EXPECT_EQ(mistral_v01().token_id("[INST]"), std::nullopt);
  EXPECT_EQ(mistral_v01().encode(text, false, true), mistral_v01().encode(text));
  expect_error([] { mistral_v03().decode({32768}); }, {"32768"});
}

// Long inputs are merged word by word; they must give what sentencepiece 0.1.97 gives
// for the whole text (counts and hashes from a standalone program calling
// SentencePieceProcessor::Encode on each full string), whitespace runs, tabs, CRLF and
// byte-fallback characters included.
TEST(TokenizerSentencepiece, LongMixedTextMatchesLibrary) {
  std::string text;
  const char* parts[] = {"word ", "  ", "\t", "\r\n", "x", " 12345 ", "\xE5\x9B\xBD ", "\xF0\x9F\x91\x8D", "   y", "\n\n"};
  uint32_t state = 12345;
  while (text.size() < 40000) {
    state = state * 1103515245u + 12345u;
    text += parts[(state >> 16) % 10];
  }
  const std::vector<std::string> inputs = {text, " " + text, "  " + text.substr(0, 5000)};
  struct Want {
    const char* model;
    size_t count[3];
    const char* sha[3];
  };
  const Want wants[] = {
      {"mistral/mistral_instruct_tokenizer_240216.model.v2",
       {23623, 23623, 2936},
       {"5282829825986d6cbd7878aeb18753b27df49e904d11191ad6aa2adbcfa1511b",
        "e81ba82fe2541e414cc4e7e5ae22b535310b5269f6d232025155583b3bcd2c6c",
        "3721a53d9a751763a693b16db8a9054a14a90df2a89110a704c8ca7342f329d8"}},
      {"mistral/tokenizer.model.v1",
       {23623, 23623, 2936},
       {"0fce1af268d6b1c562cf2764f04111dfe96cf8912435739f3f0f3285ad03b076",
        "4ef5fcce30799149ec4b19e08f77ce34f15d7c4abc3326edbb07b51eb151c31e",
        "951d1c501bce4020d9c5ec18fbd8b7072e5656e82c702f54fc834750ddcf8e7e"}}};
  for (const Want& w : wants) {
    const Tokenizer& tok = cached(w.model);
    for (size_t i = 0; i < inputs.size(); ++i) {
      Ids ids = tok.encode(inputs[i]);
      EXPECT_EQ(ids.size(), w.count[i]) << w.model << " input " << i;
      EXPECT_EQ(ids_sha256(ids), w.sha[i]) << w.model << " input " << i;
      EXPECT_EQ(tok.decode(ids), inputs[i]) << w.model << " input " << i;
    }
  }
}

// Unigram models and normalising ones (nmt_nfkc's precompiled map, collapsed whitespace,
// user-defined symbols, merged unknowns) have no golden file here: when the sentencepiece command
// line tools are installed (Debian package "sentencepiece"), train small models and compare with
// spm_encode line by line.
TEST(TokenizerSentencepiece, MatchesSpmEncodeOnTrainedModels) {
  if (std::system("command -v spm_train > /dev/null 2>&1 && command -v spm_encode > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "spm_train / spm_encode not installed (apt-get install sentencepiece)";
  const std::string dir = test::temp_dir("spm_cli");
  // Corpus: an English book and the golden strings (CJK, emoji, accents, code, whitespace).
  std::string corpus = read_text(test::shared_data() + "/filler/gutenberg/pg11.txt").substr(0, 60000);
  std::vector<std::string> lines;
  auto golden = read_json(tok_dir() + "/golden/sentencepiece_golden.json");
  for (const auto& c : golden["cases"]) {
    std::string text = c["text"];
    for (size_t b = 0, e; b <= text.size(); b = e + 1) {
      e = text.find('\n', b) == std::string::npos ? text.size() : text.find('\n', b);
      std::string line = text.substr(b, e - b);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) lines.push_back(line);
    }
  }
  for (const std::string& l : lines) corpus += l + "\n";
  std::ofstream(dir + "/corpus.txt", std::ios::binary) << corpus;
  // Strings the models were not trained on: full-width forms, ligatures, odd spaces, symbols.
  for (const char* extra : {"\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3\xEF\xBC\x91\xEF\xBC\x92 \xEF\xAC\x81ne", "  two  spaces\tand\ttabs  ",
                            "foo<sep>bar <sep> baz", "\xE2\x85\xA2 \xE2\x91\xA0 \xC2\xBD km\xC2\xB2", "\xE3\x80\x80wide\xE3\x80\x80space",
                            "\xF0\x9F\xA6\x84\xF0\x9F\xA6\x84 unicorn \xE4\xB8\x96\xE7\x95\x8C\xE9\xBE\x98", "trailing   "})
    lines.push_back(extra);
  std::ofstream in(dir + "/lines.txt", std::ios::binary);
  for (const std::string& l : lines) in << l << "\n";
  in.close();

  struct Config {
    const char* name;
    const char* flags;
  };
  const Config configs[] = {
      {"unigram_nfkc", "--model_type=unigram --user_defined_symbols='<sep>'"},
      {"unigram_identity", "--model_type=unigram --normalization_rule_name=identity --remove_extra_whitespaces=false"},
      {"bpe_nfkc", "--model_type=bpe --byte_fallback=true --split_digits=true"},
      {"bpe_identity_unk", "--model_type=bpe --normalization_rule_name=identity --user_defined_symbols='<sep>'"},
      {"unigram_suffix", "--model_type=unigram --treat_whitespace_as_suffix=true --byte_fallback=true"},
  };
  for (const Config& c : configs) {
    const std::string prefix = dir + "/" + c.name;
    const std::string train = "spm_train --minloglevel=2 --input=" + dir + "/corpus.txt --model_prefix=" + prefix +
                              " --vocab_size=700 --character_coverage=0.98 --num_threads=1 " + c.flags + " > /dev/null 2>&1";
    ASSERT_EQ(std::system(train.c_str()), 0) << train;
    const std::string encode = "spm_encode --model=" + prefix + ".model --output_format=id < " + dir + "/lines.txt > " +
                               prefix + ".ids 2> /dev/null";
    ASSERT_EQ(std::system(encode.c_str()), 0) << encode;
    auto tok = Tokenizer::load(prefix + ".model");
    std::ifstream ids_in(prefix + ".ids");
    std::string row;
    size_t i = 0, mismatches = 0;
    for (; std::getline(ids_in, row) && i < lines.size(); ++i) {
      Ids want;
      std::istringstream ss(row);
      for (int64_t id; ss >> id;) want.push_back(id);
      Ids got = tok->encode(lines[i]);
      if (got != want && ++mismatches <= 3) ADD_FAILURE() << c.name << " line " << i << ": '" << lines[i] << "'";
    }
    EXPECT_EQ(i, lines.size()) << c.name;
    EXPECT_EQ(mismatches, 0u) << c.name;
  }
  fs::remove_all(dir);
}

// ---- whole essays ------------------------------------------------------------------------------

TEST(TokenizerEssays, CountsAndHashes) {
  auto essays = read_json(tok_dir() + "/golden/essay_token_counts.json");
  ASSERT_GE(essays.size(), 50u);
  struct Timing {
    double seconds = 0;
    size_t tokens = 0;
  };
  std::map<std::string, Timing> longest;
  for (const auto& e : essays) {
    std::string file = e["file"];
    std::string text;
    if (file.size() > 6 && file.substr(file.size() - 6) == "[text]") {  // a JSON file's "text" field
      text = read_json(test::shared_data() + "/" + file.substr(0, file.size() - 6))["text"];
    } else {
      text = read_text(test::shared_data() + "/" + file);
    }
    struct Case {
      const char* name;
      const Tokenizer* tok;
      const char* key;
    };
    for (const Case& c : {Case{"llama3-tiktoken", &llama3_tiktoken(), "llama3"},
                          Case{"llama3-json", &llama3_json(), "llama3"},
                          Case{"mistral-v0.3", &mistral_v03(), "mistral_v0_3"},
                          Case{"mistral-v0.1", &mistral_v01(), "mistral_v0_1"}}) {
      auto t0 = std::chrono::steady_clock::now();
      Ids ids = c.tok->encode(text);
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      EXPECT_EQ(ids.size(), e[std::string(c.key) + "_tokens"].get<size_t>()) << c.name << " " << file;
      EXPECT_EQ(ids_sha256(ids), e[std::string(c.key) + "_ids_sha256"].get<std::string>()) << c.name << " " << file;
      if (ids.size() > longest[c.name].tokens) longest[c.name] = {dt, ids.size()};
    }
  }
  for (const auto& [name, t] : longest)
    std::printf("[ timing   ] %s: longest text, %zu tokens encoded in %.3f s (%.0f tokens/s)\n", name.c_str(),
                t.tokens, t.seconds, t.tokens / t.seconds);
}

// ---- loading -----------------------------------------------------------------------------------

TEST(TokenizerLoad, FoldersAndFormats) {
  EXPECT_EQ(Tokenizer::load(tok_dir() + "/llama3")->encode("hello world"), (Ids{15339, 1917}));
  EXPECT_EQ(Tokenizer::load(tok_dir() + "/llama3-hf-json")->encode("hello world"), (Ids{15339, 1917}));
  // A folder with only tokenizer.model, and one where a sentencepiece-style tokenizer.json sits
  // beside it (as in Mistral checkpoints): both use the sentencepiece model.
  std::string dir = test::temp_dir("tok_folder");
  fs::copy_file(tok_dir() + "/mistral/tokenizer.model.v1", dir + "/tokenizer.model");
  EXPECT_EQ(Tokenizer::load(dir)->kind(), "sentencepiece");
  std::ofstream(dir + "/tokenizer.json") << R"({"model": {"type": "BPE", "byte_fallback": true}, "decoder": {"type": "Sequence"}})";
  EXPECT_EQ(Tokenizer::load(dir)->kind(), "sentencepiece");
  fs::remove_all(dir);
}

TEST(TokenizerLoad, BadInputThrows) {
  std::string dir = test::temp_dir("tok_bad");
  expect_error([&] { Tokenizer::load(dir + "/missing.model"); }, {dir + "/missing.model", "does not exist"});
  expect_error([&] { Tokenizer::load(dir); }, {"no tokenizer in folder", dir, "tokenizer.json"});

  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir + "/" + name, std::ios::binary) << content;
    return dir + "/" + name;
  };
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage += static_cast<char>((i * 7919 + 13) % 251);
  std::string p = write("garbage.model", garbage);
  expect_error([&] { Tokenizer::load(p); }, {p, "unrecognised tokenizer file"});
  p = write("empty.model", "");
  expect_error([&] { Tokenizer::load(p); }, {p, "empty"});
  p = write("truncated.json", R"({"model": {"type": "BPE", "vocab": {"a": 0)");
  expect_error([&] { Tokenizer::load(p); }, {p, "cannot parse"});
  p = write("wordpiece.json", R"({"model": {"type": "WordPiece"}})");
  expect_error([&] { Tokenizer::load(p); }, {p, "WordPiece"});
  p = write("bad.tiktoken", "IQ== 0\nIg== 1\nnot base64 at all\n");
  expect_error([&] { Tokenizer::load(p); }, {p, "line 3"});
  p = write("gappy.tiktoken", "IQ== 0\nIg== 2\n");
  expect_error([&] { Tokenizer::load(p); }, {p, "rank 1"});
  // Parses as protobuf wire format but is no sentencepiece model.
  p = write("fake_proto.model", std::string("\x0a\x03" "abc", 5));
  expect_error([&] { Tokenizer::load(p); }, {p, "sentencepiece"});
  // A truncated real model.
  std::string real = read_text(tok_dir() + "/llama2c-stories260K/tok512.model");
  p = write("cut.model", real.substr(0, real.size() / 2));
  expect_error([&] { Tokenizer::load(p); }, {p});
  fs::remove_all(dir);
}

}  // namespace
}  // namespace judgeq
