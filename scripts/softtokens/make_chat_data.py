#!/usr/bin/env python3
"""Chat-style training prompts for the testbed's Judge Q soft tokens: instructions and questions
over passages of the filler text (Gutenberg books, State of the Union addresses), the way
ShareGPT differs from the benchmarks: no needles, no RULER/NIAH templates, no PG essays.
Responses are left empty: `judgeq-train prepare` regenerates them with the model itself.

    python3 scripts/softtokens/make_chat_data.py --filler ../shared/data/filler --n 64 --out chats.jsonl
"""
import argparse, glob, json, os, random, re

INSTRUCTIONS = [
    "Summarize the passage above in one sentence.",
    "What is the main topic of this text?",
    "Which people or places are named in the passage? List them.",
    "Quote the sentence that best states the author's point.",
    "What happens at the end of the passage?",
    "Give a short title for this text.",
    "Which number appears in the passage, and what does it refer to?",
    "Answer briefly: who is speaking in this passage, and to whom?",
]
FRAMES = [
    "{text}\n\n{instr}",
    "Read the following text.\n\n{text}\n\nQuestion: {instr}",
    "Here is an excerpt:\n{text}\nPlease help: {instr}",
    "{instr}\n\nText:\n{text}",
]


def passages(files, rng, n, words_lo, words_hi):
    texts = [open(f, encoding="utf-8", errors="replace").read() for f in files]
    out = []
    while len(out) < n:
        t = rng.choice(texts)
        words = t.split()
        k = rng.randint(words_lo, words_hi)
        if len(words) <= k:
            continue
        s = rng.randrange(0, len(words) - k)
        out.append(re.sub(r"\s+", " ", " ".join(words[s:s + k])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--filler", default="../shared/data/filler")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--words", default="150,700")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    files = sorted(glob.glob(os.path.join(a.filler, "gutenberg", "*.txt")) +
                   glob.glob(os.path.join(a.filler, "nltk", "state_union", "*.txt")))
    lo, hi = (int(x) for x in a.words.split(","))
    with open(a.out, "w") as f:
        for text in passages(files, rng, a.n, lo, hi):
            prompt = rng.choice(FRAMES).format(text=text, instr=rng.choice(INSTRUCTIONS))
            f.write(json.dumps({"prompt": prompt, "response": ""}) + "\n")


if __name__ == "__main__":
    main()
