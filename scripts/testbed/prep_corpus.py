#!/usr/bin/env python3
"""Prepare the testbed's text data (pure Python + sentencepiece + numpy).

Stages
  text    : clean the public-domain filler corpora (Gutenberg, tiny-shakespeare, NLTK State of the
            Union / Inaugural) into one paragraph per line  -> <carry>/filler_paragraphs.txt
            (input of spm_train, see make_tokenizer.sh).  Paul Graham essays are NOT used anywhere
            in training or tokenizer training (they are the evaluation haystack).
  tokens  : split paragraphs into sentences and encode each sentence with the trained tokenizer
            -> <carry>/filler_tok.npz  (used by gen_data.py to build haystacks at token level)
  evaldata: copy the evaluation-only files (RULER templates, PG essays, wonderwords lists) into
            <carry>/eval/ so that they travel to the GPU machine with the carry folder.
"""
import argparse, glob, json, os, re, shutil, sys

DATA = os.environ.get("JUDGEQ_SHARED_DATA", "/work/shared/data")


def _read(path):
    with open(path, "rb") as f:
        b = f.read()
    t = b.decode("utf-8", errors="replace")
    return t.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")


def _strip_gutenberg(t):
    lines = t.split("\n")
    start, end = 0, len(lines)
    for i, l in enumerate(lines):
        if re.match(r"^\*+ ?START OF (THIS|THE) PROJECT GUTENBERG", l) or re.match(r"^\*END\*? ?THE SMALL PRINT", l):
            start = i + 1
    for i, l in enumerate(lines):
        if i > start and (re.match(r"^\*+ ?END OF (THIS|THE) PROJECT GUTENBERG", l) or
                          re.match(r"^End of (the )?Project Gutenberg", l, re.I)):
            end = i
            break
    return "\n".join(lines[start:end])


def paragraphs():
    """Yield (source, paragraph) with internal whitespace collapsed to single spaces."""
    for p in sorted(glob.glob(os.path.join(DATA, "filler/gutenberg/*.txt"))):
        t = _strip_gutenberg(_read(p))
        for para in re.split(r"\n\s*\n", t):
            para = " ".join(para.split())
            if len(para) >= 2:
                yield "gutenberg/" + os.path.basename(p), para
    t = _read(os.path.join(DATA, "filler/tinyshakespeare/input.txt"))
    for para in re.split(r"\n\s*\n", t):
        lines = [l.strip() for l in para.split("\n") if l.strip()]
        if not lines:
            continue
        # "Speaker:\nverse verse" -> "Speaker: verse verse"
        yield "tinyshakespeare", " ".join(lines)
    for sub in ("state_union", "inaugural"):
        for p in sorted(glob.glob(os.path.join(DATA, "filler/nltk", sub, "*.txt"))):
            for para in _read(p).split("\n"):
                para = " ".join(para.split())
                if len(para) >= 2:
                    yield "nltk/" + sub, para


_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])|(?<=[.!?][\"'\u201d\u2019)])\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")


def split_sentences(para):
    out = [s.strip() for s in _SENT_RE.split(para) if s and s.strip()]
    # very long pieces (verse, lists) are cut at ';' / ':' boundaries to keep units < ~80 words
    res = []
    for s in out:
        w = s.split(" ")
        while len(w) > 80:
            res.append(" ".join(w[:60]))
            w = w[60:]
        res.append(" ".join(w))
    return res


def stage_text(carry):
    os.makedirs(carry, exist_ok=True)
    n = 0
    with open(os.path.join(carry, "filler_paragraphs.txt"), "w", encoding="utf-8") as f:
        for src, para in paragraphs():
            f.write(src + "\t" + para + "\n")
            n += 1
    # spm input: paragraph text only
    with open(os.path.join(carry, "filler_paragraphs.txt"), encoding="utf-8") as fi, \
         open(os.path.join(carry, "spm_input.txt"), "w", encoding="utf-8") as fo:
        for line in fi:
            fo.write(line.split("\t", 1)[1])
    print("paragraphs:", n)


def stage_tokens(carry, model):
    import numpy as np
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model)
    a_ids = sp.encode("a")
    assert len(a_ids) == 1, a_ids
    toks, offs, para_start, doc = [], [0], [], []
    nl_toks, nl_offs, nl_index = [], [0], []
    docs = {}
    with open(os.path.join(carry, "filler_paragraphs.txt"), encoding="utf-8") as fi:
        for line in fi:
            src, para = line.rstrip("\n").split("\t", 1)
            d = docs.setdefault(src, len(docs))
            for j, s in enumerate(split_sentences(para)):
                ids = sp.encode(s)
                if not ids:
                    continue
                toks.extend(ids)
                offs.append(len(toks))
                para_start.append(1 if j == 0 else 0)
                doc.append(d)
                if j == 0:
                    g = sp.encode("a\n\n" + s)
                    assert g[0] == a_ids[0]
                    nl_toks.extend(g[1:])
                    nl_offs.append(len(nl_toks))
                    nl_index.append(len(para_start) - 1)
    np.savez_compressed(os.path.join(carry, "filler_tok.npz"),
                        toks=np.array(toks, dtype=np.uint16), offs=np.array(offs, dtype=np.int64),
                        para_start=np.array(para_start, dtype=np.uint8), doc=np.array(doc, dtype=np.int16),
                        nl_toks=np.array(nl_toks, dtype=np.uint16), nl_offs=np.array(nl_offs, dtype=np.int64),
                        nl_index=np.array(nl_index, dtype=np.int64))
    with open(os.path.join(carry, "filler_docs.json"), "w") as f:
        json.dump(docs, f, indent=0)
    print("sentences:", len(para_start), "tokens:", len(toks), "docs:", len(docs))

    # word pools for keys / values / fillers, drawn from the filler text (NOT from RULER's wonderwords)
    from collections import Counter
    c = Counter()
    with open(os.path.join(carry, "spm_input.txt"), encoding="utf-8") as fi:
        for line in fi:
            for w in re.findall(r"\b[a-z]{3,11}\b", line):
                c[w] += 1
    words = sorted(w for w, k in c.items() if k >= 8)
    with open(os.path.join(carry, "words.json"), "w") as f:
        json.dump(words, f)
    print("word pool:", len(words))


def stage_evaldata(carry):
    ev = os.path.join(carry, "eval")
    os.makedirs(ev, exist_ok=True)
    shutil.copy(os.path.join(DATA, "ruler/templates.json"), ev)
    shutil.copy(os.path.join(DATA, "ruler/PaulGrahamEssays.json"), ev)
    for n in ("nounlist.txt", "adjectivelist.txt"):
        shutil.copy(os.path.join(DATA, "ruler/wonderwords-2.2.0", n), ev)
    d = os.path.join(ev, "niah_essays")
    os.makedirs(d, exist_ok=True)
    for p in sorted(glob.glob(os.path.join(DATA, "niah/PaulGrahamEssays/*.txt"))):
        shutil.copy(p, d)
    print("eval data copied to", ev)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["text", "tokens", "evaldata"])
    ap.add_argument("--carry", default=".testbed_carry")
    ap.add_argument("--model", default="models/testbed/tokenizer.model")
    a = ap.parse_args()
    if a.stage == "text":
        stage_text(a.carry)
    elif a.stage == "tokens":
        stage_tokens(a.carry, a.model)
    else:
        stage_evaldata(a.carry)
