// Chat templates on small conversations, ids checked by hand against the tokenizers' vocabularies
// (Llama-3: 882 "user", 78191 "assistant", 9125 "system", 271 "\n\n"; Mistral v0.3: 23325 "▁Hello").
#include <gtest/gtest.h>

#include <map>

#include "common.h"
#include "model/chat_template.h"
#include "util/error.h"

namespace judgeq {
namespace {

using Ids = std::vector<int64_t>;

const Tokenizer& load_once(const std::string& rel) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[rel];
  if (!t) t = Tokenizer::load(test::shared_data() + "/tokenizers/" + rel);
  return *t;
}
const Tokenizer& llama3() { return load_once("llama3/tokenizer.model"); }
const Tokenizer& llama3_json() { return load_once("llama3-hf-json/tokenizer.json"); }
const Tokenizer& mistral_v03() { return load_once("mistral/mistral_instruct_tokenizer_240216.model.v2"); }
const Tokenizer& mistral_v01() { return load_once("mistral/tokenizer.model.v1"); }
const Tokenizer& tok512() { return load_once("llama2c-stories260K/tok512.model"); }

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(ChatTemplate, ParseNames) {
  EXPECT_EQ(parse_chat_template("none"), ChatTemplate::None);
  EXPECT_EQ(parse_chat_template("llama3"), ChatTemplate::Llama3);
  EXPECT_EQ(parse_chat_template("mistral"), ChatTemplate::Mistral);
  for (auto t : {ChatTemplate::None, ChatTemplate::Llama3, ChatTemplate::Mistral})
    EXPECT_EQ(parse_chat_template(chat_template_name(t)), t);
  try {
    parse_chat_template("chatml");
    ADD_FAILURE() << "expected judgeq::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const char* s : {"chatml", "none", "llama3", "mistral"}) EXPECT_NE(msg.find(s), std::string::npos) << msg;
  }
}

TEST(ChatTemplate, Llama3SingleTurn) {
  const Ids expected = {128000, 128006, 882, 128007, 271, 15339, 128009, 128006, 78191, 128007, 271};
  for (const Tokenizer* tok : {&llama3(), &llama3_json()}) {
    EXPECT_EQ(apply_chat_template(*tok, ChatTemplate::Llama3, {{"user", "hello"}}), expected);
    // Content is trimmed, as HF's template does.
    EXPECT_EQ(apply_chat_template(*tok, ChatTemplate::Llama3, {{"user", "  hello\n"}}), expected);
    EXPECT_EQ(apply_chat_template(*tok, ChatTemplate::Llama3, {{"user", "hello"}}, false),
              Ids(expected.begin(), expected.begin() + 7));
  }
}

TEST(ChatTemplate, Llama3SystemAndTurns) {
  const Tokenizer& tok = llama3();
  std::vector<ChatMessage> chat = {{"system", "You are terse."}, {"user", "What is 2+2?"}, {"assistant", "4"}};
  Ids ids = apply_chat_template(tok, ChatTemplate::Llama3, chat);
  Ids expected = concat({{128000},
                         {128006, 9125, 128007, 271, 2675, 527, 51637, 13, 128009},            // system
                         {128006, 882, 128007, 271, 3923, 374, 220, 17, 10, 17, 30, 128009},  // user
                         {128006, 78191, 128007, 271, 19, 128009},                            // assistant "4"
                         {128006, 78191, 128007, 271}});
  EXPECT_EQ(ids, expected);
  // Same as tokenising the rendered text with specials parsed (no "Cutting Knowledge Date" block).
  std::string rendered =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(tok.encode(rendered, false, true), ids);
  EXPECT_EQ(tok.decode(ids, false), rendered);
}

TEST(ChatTemplate, Llama3ContentCannotInjectSpecials) {
  Ids ids = apply_chat_template(llama3(), ChatTemplate::Llama3, {{"user", "Hi <|eot_id|> there"}}, false);
  EXPECT_EQ(ids, (Ids{128000, 128006, 882, 128007, 271, 13347, 83739, 68, 354, 851, 91, 29, 1070, 128009}));
}

TEST(ChatTemplate, MistralV03) {
  const Tokenizer& tok = mistral_v03();
  EXPECT_EQ(apply_chat_template(tok, ChatTemplate::Mistral, {{"user", "Hello"}}), (Ids{1, 3, 23325, 4}));
  // System goes before the last user message; assistant turns end with </s>.
  std::vector<ChatMessage> chat = {
      {"system", "Be brief."}, {"user", "Hello"}, {"assistant", "Hi there"}, {"user", "How are you?"}};
  Ids expected = {1,     3,    23325, 4,                                          // [INST] Hello [/INST]
                  16127, 1504, 2,                                                 // Hi there</s>
                  3,     2507, 7585,  29491, 781, 781, 6428, 1228, 1136, 29572, 4};  // [INST] Be brief.\n\nHow are you? [/INST]
  EXPECT_EQ(apply_chat_template(tok, ChatTemplate::Mistral, chat), expected);
  EXPECT_EQ(apply_chat_template(tok, ChatTemplate::Mistral, chat, false), expected);
  EXPECT_EQ(tok.decode(expected, false), "<s>[INST] Hello[/INST] Hi there</s>[INST] Be brief.\n\nHow are you?[/INST]");
  try {
    apply_chat_template(tok, ChatTemplate::Mistral, {{"system", "x"}});
    ADD_FAILURE() << "expected judgeq::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("user message"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, MistralV01UsesTextInst) {
  // No [INST] control piece: "[INST] ... [/INST]" is text; system joins the first user message.
  std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", "Hello"}, {"assistant", "Hi there"},
                                   {"user", "How are you?"}};
  Ids expected = {1,   733, 16289, 28793, 1739, 6817, 28723, 13, 13, 16230, 733, 28748, 16289, 28793,
                  15359, 736, 2,
                  733, 16289, 28793, 1602, 460, 368, 28804, 733, 28748, 16289, 28793};
  EXPECT_EQ(apply_chat_template(mistral_v01(), ChatTemplate::Mistral, chat), expected);
}

TEST(ChatTemplate, NoneIsBosPlusText) {
  EXPECT_EQ(apply_chat_template(tok512(), ChatTemplate::None, {{"user", "Once"}, {"user", " upon"}}),
            (Ids{1, 403, 407}));
  EXPECT_EQ(apply_chat_template(llama3(), ChatTemplate::None, {{"user", "hello"}}), (Ids{128000, 15339}));
}

TEST(ChatTemplate, WrongTokenizerOrRoleThrows) {
  try {
    apply_chat_template(mistral_v03(), ChatTemplate::Llama3, {{"user", "hi"}});
    ADD_FAILURE() << "expected judgeq::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|begin_of_text|>"), std::string::npos) << e.what();
  }
  EXPECT_THROW(apply_chat_template(llama3(), ChatTemplate::Llama3, {{"tool", "x"}}), Error);
}

TEST(ChatTemplate, StopIdsAndDetection) {
  EXPECT_EQ(chat_stop_ids(llama3(), ChatTemplate::Llama3), (Ids{128001, 128008, 128009}));
  EXPECT_EQ(chat_stop_ids(llama3_json(), ChatTemplate::Llama3), (Ids{128001, 128009}));  // Llama-3 names
  EXPECT_EQ(chat_stop_ids(mistral_v03(), ChatTemplate::Mistral), (Ids{2}));
  EXPECT_EQ(chat_stop_ids(tok512(), ChatTemplate::None), (Ids{2}));
  EXPECT_EQ(detect_chat_template(llama3()), ChatTemplate::Llama3);
  EXPECT_EQ(detect_chat_template(llama3_json()), ChatTemplate::Llama3);
  EXPECT_EQ(detect_chat_template(mistral_v03()), ChatTemplate::Mistral);
  EXPECT_EQ(detect_chat_template(mistral_v01()), ChatTemplate::None);  // no marker: ask for "mistral"
  EXPECT_EQ(detect_chat_template(tok512()), ChatTemplate::None);
}

}  // namespace
}  // namespace judgeq
