// Chat templates, built as token ids: special tokens are inserted by id and only message text is
// tokenised, so a message that contains "<|eot_id|>" or "[INST]" cannot inject control tokens.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace judgeq {

enum class ChatTemplate { None, Llama3, Mistral };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// "none", "llama3", "mistral"; anything else throws with the list of valid names.
ChatTemplate parse_chat_template(const std::string& name);
std::string chat_template_name(ChatTemplate t);
// The template a tokenizer's special tokens imply: Llama3 if it has <|start_header_id|>, Mistral if
// [INST] is a control token (v0.3), else None; Mistral v0.1/v0.2 have no marker, name them.
ChatTemplate detect_chat_template(const Tokenizer& tok);

// Prompt ids, BOS included.
//  Llama3  : <|begin_of_text|> then per message <|start_header_id|>{role}<|end_header_id|>\n\n
//            {content, trimmed}<|eot_id|>, then <|start_header_id|>assistant<|end_header_id|>\n\n
//            when add_generation_prompt.
//  Mistral : <s>[INST] {user} [/INST]{assistant}</s>[INST] ... as mistral-common builds it; system
//            messages are prepended to the last user message ("{system}\n\n{user}").
//  None    : BOS (when the tokenizer has one) + the contents concatenated.
std::vector<int64_t> apply_chat_template(const Tokenizer& tok, ChatTemplate tmpl,
                                         const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt = true);

// Ids that end the assistant's turn. Llama3: <|end_of_text|>, <|eom_id|> (when the tokenizer
// names it), <|eot_id|>. Mistral and None: EOS.
std::vector<int64_t> chat_stop_ids(const Tokenizer& tok, ChatTemplate tmpl);

}  // namespace judgeq
