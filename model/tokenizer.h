// Tokenizers: sentencepiece (Mistral v0.1/v0.3, llama2.c tok512), Llama-3 byte-level BPE from the
// tiktoken-format tokenizer.model or from HF tokenizer.json. One interface; Tokenizer::load picks
// the implementation from the file's content. Implementations are immutable after load: encode and
// decode may be called from several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace judgeq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // path: a tokenizer file (tokenizer.json, or tokenizer.model in sentencepiece or tiktoken
  // format) or a checkpoint folder holding one (tokenizer.json preferred, unless it is a
  // sentencepiece-style json beside a tokenizer.model, as in Mistral folders). A tiktoken file
  // gets Llama-3.1's 256 special tokens (ids n_ranks..n_ranks+255). Throws judgeq::Error naming the
  // path and what to do when nothing usable is found.
  static std::unique_ptr<Tokenizer> load(const std::string& path);

  // Text -> ids. No BOS unless add_bos. Special-token strings inside text (e.g.
  // "<|eot_id|>", "[INST]") are matched as specials only when parse_special is true.
  // Sentencepiece adds its dummy-prefix space only at the start of text, not after a special
  // token: "[INST] Hi" -> [INST] "▁Hi".
  virtual std::vector<int64_t> encode(const std::string& text, bool add_bos = false,
                                      bool parse_special = false) const = 0;
  // ids -> text; special/control tokens are dropped when skip_special is true. Bytes come out as
  // they are (an incomplete UTF-8 sequence is not replaced by U+FFFD). Throws on an id outside
  // 0..vocab_size()-1.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const = 0;

  virtual int64_t vocab_size() const = 0;
  // Id of a piece (regular or special), e.g. token_id("<|eot_id|>"), token_id("[INST]"). Pieces
  // are spelled as the tokenizer files spell them: "▁Hello" (sentencepiece), "Ġhello" (byte-level
  // BPE, which also accepts the raw bytes " hello").
  virtual std::optional<int64_t> token_id(const std::string& piece) const = 0;
  virtual std::string id_to_piece(int64_t id) const = 0;
  virtual bool is_special(int64_t id) const = 0;
  // -1 when the tokenizer has none. Llama-3: 128000 / 128001 (<|end_of_text|>); chat models also
  // stop on <|eot_id|>: see chat_stop_ids in model/chat_template.h.
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
  // "sentencepiece" or "bpe-bytelevel".
  virtual std::string kind() const = 0;
};

// Text as Hugging Face's decoders return it: valid UTF-8, each maximal invalid subsequence (a
// character cut between tokens, a stray continuation byte) replaced by U+FFFD, as Python's
// bytes.decode("utf-8", "replace") does. What generated text goes through before it is scored
// or written as JSON.
std::string utf8_lossy(std::string_view bytes);

}  // namespace judgeq
