#!/usr/bin/env bash
# Train the testbed tokenizer with Debian's spm_train (sentencepiece CLI) on the public-domain filler
# text (Gutenberg, tiny-shakespeare, NLTK State of the Union + Inaugural). Paul Graham essays are kept
# out on purpose: they are the evaluation haystack (RULER, NIAH), so eval text is out-of-domain for
# the tokenizer as well as for the model.  Deterministic: same input + same flags -> same model.
# Needs: spm_train (apt: sentencepiece), python3 with sentencepiece + numpy (apt: python3-sentencepiece
# python3-numpy) for the token cache.  Run from the repository root.
set -euo pipefail
CARRY=${CARRY:-.testbed_carry}
PY=${PY:-/usr/bin/python3}
$PY scripts/testbed/prep_corpus.py text --carry "$CARRY"
# every printable ASCII character gets its own piece (some, e.g. '#', '|', '~', '<', never occur in
# the filler): append a few lines that contain each of them.
$PY -c 'import string; s=" ".join(c for c in string.printable if c.isprintable() and c != " "); print("\n".join([s]*20))' >> "$CARRY/spm_input.txt"
REQ=$($PY -c 'import string; print("".join(c for c in string.printable if c.isprintable() and c != " "))')
spm_train --input="$CARRY/spm_input.txt" --model_prefix="$CARRY/testbed_spm" \
  --model_type=bpe --vocab_size=4096 --character_coverage=0.9999 \
  --byte_fallback=true --split_digits=true --split_by_number=true \
  --normalization_rule_name=identity --remove_extra_whitespaces=true --add_dummy_prefix=true \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --required_chars="$REQ" \
  --input_sentence_size=3000000 --shuffle_input_sentence=true --seed_sentencepiece_size=1000000 \
  --max_sentence_length=16384 --num_threads=2 --minloglevel=1
mkdir -p models/testbed
cp "$CARRY/testbed_spm.model" models/testbed/tokenizer.model
$PY scripts/testbed/prep_corpus.py tokens --carry "$CARRY" --model models/testbed/tokenizer.model
$PY scripts/testbed/prep_corpus.py evaldata --carry "$CARRY"
sha256sum models/testbed/tokenizer.model
