#include "model/chat_template.h"

#include "util/error.h"

namespace judgeq {
namespace {

int64_t require_token(const Tokenizer& tok, const std::string& piece, const char* tmpl) {
  auto id = tok.token_id(piece);
  check(id.has_value(), "chat template '", tmpl, "' needs the token ", piece, " but this ", tok.kind(),
        " tokenizer has none; pick the template that matches the model (--chat-template none|llama3|mistral)");
  return *id;
}

void append(std::vector<int64_t>& out, const std::vector<int64_t>& ids) { out.insert(out.end(), ids.begin(), ids.end()); }

// Jinja's trim (HF's Llama-3 template strips each message); ASCII whitespace only.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

void check_roles(const std::vector<ChatMessage>& messages) {
  for (const ChatMessage& m : messages)
    check(m.role == "system" || m.role == "user" || m.role == "assistant", "unknown chat role (got '", m.role,
          "', expected system, user or assistant); fix the conversation data");
}

// Llama-3.1 as HF renders it, minus the "Cutting Knowledge Date: ... Today Date: ..." system block
// that HF's 3.1 template inserts by default (and merges into a given system message): prompts stay
// date-free and identical to the Llama-3 template, as KV-eviction harnesses build them.
std::vector<int64_t> llama3(const Tokenizer& tok, const std::vector<ChatMessage>& messages, bool gen) {
  const int64_t bos = require_token(tok, "<|begin_of_text|>", "llama3");
  const int64_t start = require_token(tok, "<|start_header_id|>", "llama3");
  const int64_t end = require_token(tok, "<|end_header_id|>", "llama3");
  const int64_t eot = require_token(tok, "<|eot_id|>", "llama3");
  std::vector<int64_t> out{bos};
  auto header = [&](const std::string& role) {
    out.push_back(start);
    append(out, tok.encode(role));
    out.push_back(end);
  };
  for (const ChatMessage& m : messages) {
    header(m.role);
    // "\n\n" and the content are one text segment in HF's rendering, so they are tokenised together.
    append(out, tok.encode("\n\n" + trim(m.content)));
    out.push_back(eot);
  }
  if (gen) {
    header("assistant");
    append(out, tok.encode("\n\n"));
  }
  return out;
}

// mistral-common's instruct tokenisation. v3 (Mistral v0.3, control tokens [INST]/[/INST]):
//   <s>[INST]{enc(user)}[/INST]{enc(assistant)}</s>[INST]...   system -> last user message
// v1 (Mistral v0.1/v0.2, no control tokens): [INST] is plain text,
//   <s>{enc("[INST] " + user + " [/INST]")}{enc(assistant)}</s>...   system -> first user message
// enc() adds sentencepiece's dummy-prefix space, which is where the spaces around the text go.
std::vector<int64_t> mistral(const Tokenizer& tok, const std::vector<ChatMessage>& messages) {
  check(tok.bos_id() >= 0 && tok.eos_id() >= 0, "chat template 'mistral' needs BOS and EOS tokens but this ",
        tok.kind(), " tokenizer lacks them; use --chat-template none");
  auto inst = tok.token_id("[INST]"), end_inst = tok.token_id("[/INST]");
  const bool control = inst && end_inst && tok.is_special(*inst) && tok.is_special(*end_inst);

  std::string system;
  int first_user = -1, last_user = -1;
  for (int i = 0; i < static_cast<int>(messages.size()); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") system += (system.empty() ? "" : "\n\n") + m.content;
    if (m.role == "user") {
      if (first_user < 0) first_user = i;
      last_user = i;
    }
  }
  check(first_user >= 0 || messages.empty(), "chat template 'mistral' needs at least one user message (got ",
        messages.size(), " messages, none from the user); add the prompt as a user message");
  const int system_target = control ? last_user : first_user;

  std::vector<int64_t> out{tok.bos_id()};
  for (int i = 0; i < static_cast<int>(messages.size()); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      std::string content = (i == system_target && !system.empty()) ? system + "\n\n" + m.content : m.content;
      if (control) {
        out.push_back(*inst);
        append(out, tok.encode(content));
        out.push_back(*end_inst);
      } else {
        append(out, tok.encode("[INST] " + content + " [/INST]"));
      }
    } else if (m.role == "assistant") {
      append(out, tok.encode(m.content));
      out.push_back(tok.eos_id());
    }
  }
  return out;
}

}  // namespace

ChatTemplate parse_chat_template(const std::string& name) {
  if (name == "none") return ChatTemplate::None;
  if (name == "llama3") return ChatTemplate::Llama3;
  if (name == "mistral") return ChatTemplate::Mistral;
  fail("unknown chat template (got '", name, "', expected one of: none, llama3, mistral)");
}

std::string chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::None: return "none";
    case ChatTemplate::Llama3: return "llama3";
    case ChatTemplate::Mistral: return "mistral";
  }
  return "none";
}

ChatTemplate detect_chat_template(const Tokenizer& tok) {
  if (tok.token_id("<|start_header_id|>") && tok.token_id("<|eot_id|>")) return ChatTemplate::Llama3;
  auto inst = tok.token_id("[INST]");
  if (inst && tok.is_special(*inst)) return ChatTemplate::Mistral;
  return ChatTemplate::None;
}

std::vector<int64_t> apply_chat_template(const Tokenizer& tok, ChatTemplate tmpl,
                                         const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  check_roles(messages);
  switch (tmpl) {
    case ChatTemplate::Llama3: return llama3(tok, messages, add_generation_prompt);
    case ChatTemplate::Mistral: return mistral(tok, messages);  // [/INST] already opens the answer
    case ChatTemplate::None: break;
  }
  std::string text;
  for (const ChatMessage& m : messages) text += m.content;
  return tok.encode(text, /*add_bos=*/tok.bos_id() >= 0);
}

std::vector<int64_t> chat_stop_ids(const Tokenizer& tok, ChatTemplate tmpl) {
  std::vector<int64_t> ids;
  if (tmpl == ChatTemplate::Llama3) {
    for (const char* name : {"<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"})
      if (auto id = tok.token_id(name)) ids.push_back(*id);
    check(!ids.empty(), "chat template 'llama3' found no stop token in this ", tok.kind(),
          " tokenizer; pick the template that matches the model");
  } else if (tok.eos_id() >= 0) {
    ids.push_back(tok.eos_id());
  }
  return ids;
}

}  // namespace judgeq
