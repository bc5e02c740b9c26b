#!/usr/bin/env python3
"""Quick Python re-implementation of the evaluation the testbed faces (first check only; the project's
C++ evaluator is the reference).

RULER (NVIDIA/RULER scripts/data/synthetic/{niah,variable_tracking}.py, base template = no chat wrapper):
  niah_single_1 (noise), niah_single_2 (essay), niah_multikey_1, niah_multivalue, niah_multiquery, vt
  - haystack size by binary search with the model's own token counts (input + tokens_to_generate <= L)
  - keys: wonderwords adjective-noun (sampled as adj + "-" + noun, same distribution as RULER's sorted
    cross product); values: 7-digit numbers; depths from RULER's 40 depth percentages
  - sentence splitting approximates NLTK Punkt with a regex (Punkt data is incomplete here)
  - score: string_match_all (fraction of references found, case-insensitive) x 100
Needle in a Haystack (FranxYao / PyramidKV format): PG essays (sorted), context cut to L-200 tokens, needle
  "\\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\\n"
  inserted at int(len*depth/100) backed off to the previous "." token (depth 100 = append), prompt
  "<|im_start|> This is a very long story book: <book> {context} </book>.\\n Based on the content of the book,
  Question: What is the best thing to do in San Francisco?\\nAnswer:", 50 new tokens, greedy, stop at EOS.
  Score: ROUGE-1 F (lowercase alnum unigrams, Porter-stemmer-free approximation) x 10.
Decoding is greedy; generation stops at EOS (id 2).
"""
import glob, json, os, random, re, string, time
from collections import Counter

# ------------------------------------------------------------------------------------------------ RULER
_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|(?<=[.!?][\"')])\s+(?=[\"'(\[]?[A-Z0-9])")


def sent_tokenize(text):
    return [s for s in _SENT_RE.split(text) if s]


class Ruler:
    def __init__(self, data_dir, encode):
        self.encode = encode  # str -> list[int] (no BOS)
        T = json.load(open(os.path.join(data_dir, "templates.json")))
        self.T = T
        essay = json.load(open(os.path.join(data_dir, "PaulGrahamEssays.json")))["text"]
        self.essay_words = re.sub(r"\s+", " ", essay).split(" ")
        self.noise = T["niah_noise_haystack"]
        self.adjs = [w.strip() for w in open(os.path.join(data_dir, "adjectivelist.txt")) if w.strip()]
        self.nouns = [w.strip() for w in open(os.path.join(data_dir, "nounlist.txt")) if w.strip()]
        self.depths = T["niah_depths_percent"]

    def ntok(self, s):
        return len(self.encode(s))

    # ---------------- NIAH
    def niah_input(self, rnd, args, num_haystack, seed):
        tv = args["type_needle_v"]
        needle_fmt = "One of the special magic {type_needle_v} for {key} is: {value}."
        keys, values, needles = [], [], []
        nk = max(args["num_needle_k"], args["num_needle_q"])
        for _ in range(nk):
            keys.append(rnd.choice(self.adjs) + "-" + rnd.choice(self.nouns))
            vs = []
            for _ in range(args["num_needle_v"]):
                vs.append(str(rnd.randint(10 ** 6, 10 ** 7 - 1)))
                needles.append(needle_fmt.format(type_needle_v=tv, key=keys[-1], value=vs[-1]))
            values.append(vs)
        random.Random(seed).shuffle(needles)
        if args["type_haystack"] == "essay":
            hw = self.essay_words
            if num_haystack <= len(hw):
                text = " ".join(hw[:num_haystack])
            else:
                rep = (num_haystack + len(hw) - 1) // len(hw)
                text = " ".join((hw * rep)[:num_haystack])
            sents = sent_tokenize(text.strip())
            ins = [0] + sorted(int(len(sents) * (d / 100)) for d in rnd.sample(self.depths, len(needles))) + [len(sents)]
            parts = []
            for i in range(1, len(ins)):
                parts.append(" ".join(sents[ins[i - 1]:ins[i]]))
                if i - 1 < len(needles):
                    parts.append(needles[i - 1])
            context = " ".join(parts)
        else:
            sentences = [self.noise] * num_haystack
            idx = sorted(rnd.sample(range(num_haystack), len(needles)), reverse=True)
            for i, e in zip(idx, needles):
                sentences.insert(i, e)
            context = "\n".join(sentences)
        qi = rnd.sample(range(nk), args["num_needle_q"])
        queries = [keys[i] for i in qi]
        answers = [a for i in qi for a in values[i]]
        query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
        base = self.T["base_tasks"]["niah"]
        template = base["template"] + base["answer_prefix"]
        if args["num_needle_q"] * args["num_needle_v"] == 1:
            template = template.replace("Some", "A").replace("are all", "is").replace("are", "is").replace("answers", "answer")
            tv = tv[:-1]
        return template.format(type_needle_v=tv, context=context, query=query), answers

    def niah_task(self, task, n, max_len, seed=42):
        args = self.T["tasks"][task]["args"]
        gen = self.T["base_tasks"]["niah"]["tokens_to_generate"]
        rnd = random.Random(seed)
        inc = 500 if args["type_haystack"] == "essay" else 25
        if args["type_haystack"] != "essay" and max_len < 4096:
            inc = 5
        s_in, _ = self.niah_input(rnd, args, inc, seed)
        tph = self.ntok(s_in) / inc
        lo, hi = inc, max(int(max_len / tph * 3), inc * 2)
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            s, _ = self.niah_input(rnd, args, mid, seed)
            if self.ntok(s) + gen <= max_len:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        num = best or inc
        out = []
        for _ in range(n):
            used = num
            while True:
                s, ans = self.niah_input(rnd, args, used, seed)
                if self.ntok(s) + gen <= max_len or used <= inc:
                    break
                used -= inc
            out.append((s, ans, gen))
        return out

    # ---------------- VT
    def vt_input(self, rnd, num_noises, num_hops, is_icl, template):
        k = 3 if is_icl else 5
        names = []
        while len(set(names)) < num_hops + 1:
            names = [''.join(rnd.choices(string.ascii_uppercase, k=k)) for _ in range(num_hops + 1)]
        value = "12345" if is_icl else str(rnd.randint(10000, 99998))
        chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(num_hops)]
        sentences = [self.noise] * num_noises
        pos = sorted(rnd.sample(range(len(sentences)), len(chain)))
        for ip, j in zip(pos, range(len(chain))):
            sentences.insert(ip + j, chain[j])
        context = "\n".join(sentences).replace(". \n", ".\n")
        return template.format(context=context, query=value, num_v=num_hops + 1), names

    def vt_task(self, n, max_len, seed=42, num_hops=4):
        base = self.T["base_tasks"]["variable_tracking"]
        template = base["template"] + base["answer_prefix"]
        gen = base["tokens_to_generate"]
        rnd = random.Random(seed)
        # in-context example: max noise lines with tokens <= 500 (tokens_to_generate 0)
        lo, hi, best = 5, 200, 5
        while lo <= hi:
            mid = (lo + hi) // 2
            s, _ = self.vt_input(rnd, mid, num_hops, True, template)
            if self.ntok(s) <= 500:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        s, names = self.vt_input(rnd, best, num_hops, True, template)
        icl = s + " " + " ".join(names) + "\n"
        icl_tokens = self.ntok(icl)

        def randomize(icl_text):
            tgt = icl_text.strip().split()[-num_hops - 1:]
            for item in tgt:
                icl_text = icl_text.replace(item, ''.join(rnd.choices(string.ascii_uppercase, k=len(item))))
            return icl_text.replace("12345", str(rnd.randint(10000, 99998)))

        inc = 10
        lo, hi, best = inc, 2000, inc
        while lo <= hi:
            mid = (lo + hi) // 2
            s, _ = self.vt_input(rnd, mid, num_hops, False, template)
            if self.ntok(s) + icl_tokens + gen <= max_len:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        out = []
        for _ in range(n):
            used = best
            while True:
                s, names = self.vt_input(rnd, used, num_hops, False, template)
                s = randomize(icl) + "\n" + s
                if self.ntok(s) + gen <= max_len or used <= num_hops + 1:
                    break
                used = max(num_hops + 1, used - inc)
            out.append((s, names, gen))
        return out


def string_match_all(pred, refs):
    pred = re.sub(r"[\x00-\x1f]", "\n", pred.strip())
    return sum(1.0 if r.lower() in pred.lower() else 0.0 for r in refs) / len(refs)


# ------------------------------------------------------------------------------------------------ NIAH
NIAH_NEEDLE = "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n"
NIAH_Q = "What is the best thing to do in San Francisco?"


def niah_prompts(essay_dir, sp, lengths, depths):
    text = ""
    files = sorted(glob.glob(os.path.join(essay_dir, "*.txt")))
    base = "".join(open(f, encoding="utf-8").read() for f in files)
    max_len = max(lengths)
    while len(sp.encode(text)) < max_len:
        text += base
    ctx_all = sp.encode(text)
    needle = sp.encode(NIAH_NEEDLE)
    period = {sp.piece_to_id(".")}
    out = []
    for L in lengths:
        for d in depths:
            ctx = ctx_all[:L - 200]
            if len(ctx) + len(needle) > L - 200:
                ctx = ctx[:L - 200 - len(needle)]
            if d == 100:
                new = ctx + needle
            else:
                ip = int(len(ctx) * d / 100)
                new = ctx[:ip]
                while new and new[-1] not in period:
                    ip -= 1
                    new = ctx[:ip]
                new = new + needle + ctx[ip:]
            context = sp.decode(new)
            prompt = (f"<|im_start|> This is a very long story book: <book> {context} </book>.\n"
                      f" Based on the content of the book, Question: {NIAH_Q}\nAnswer:")
            out.append((L, d, prompt))
    return out


def rouge1_f(ref, hyp):
    tok = lambda s: re.sub(r"[^a-z0-9]+", " ", s.lower()).split()
    r, h = Counter(tok(ref)), Counter(tok(hyp))
    if not r or not h:
        return 0.0
    ov = sum((r & h).values())
    if ov == 0:
        return 0.0
    p, rc = ov / sum(h.values()), ov / sum(r.values())
    return 2 * p * rc / (p + rc)


# ------------------------------------------------------------------------------------------------ decoding
def greedy_generate(model, prompts, max_new, eos_id, device, bs=16, padded=True):
    """prompts: list of token-id lists (BOS included). Returns list of generated id lists (EOS excluded)."""
    import torch
    res = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if not padded:
        bs = 1
    with torch.no_grad():
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            T = max(len(prompts[i]) for i in idx)
            B = len(idx)
            ids = torch.zeros((B, T), dtype=torch.long)
            mask = torch.zeros((B, T), dtype=torch.long)
            for j, i in enumerate(idx):
                p = prompts[i]
                ids[j, T - len(p):] = torch.tensor(p)
                mask[j, T - len(p):] = 1
            ids, mask = ids.to(device), mask.to(device)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            kw = dict(input_ids=ids, position_ids=pos, use_cache=True)
            if B > 1 or not bool(mask.all()):
                kw["attention_mask"] = mask
            try:
                out = model(**kw, logits_to_keep=1)
            except TypeError:
                out = model(**kw)
            past = out.past_key_values
            nxt = out.logits[:, -1].float().argmax(-1)
            gen = [[] for _ in idx]
            done = [False] * B
            cur = pos[:, -1]
            for step in range(max_new):
                nl = nxt.tolist()
                for j in range(B):
                    if not done[j]:
                        if nl[j] == eos_id:
                            done[j] = True
                        else:
                            gen[j].append(nl[j])
                if all(done) or step == max_new - 1:
                    break
                mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], 1)
                cur = cur + 1
                kw = dict(input_ids=nxt[:, None], position_ids=cur[:, None], past_key_values=past, use_cache=True)
                if "attention_mask" in kw or B > 1 or not bool(mask.all()):
                    kw["attention_mask"] = mask
                out = model(**kw)
                past = out.past_key_values
                nxt = out.logits[:, -1].float().argmax(-1)
            for j, i in enumerate(idx):
                res[i] = gen[j]
    return res


RULER_TASKS = ["niah_single_1", "niah_single_2", "niah_multikey_1", "niah_multivalue", "niah_multiquery", "vt"]
GOALS = {"niah_single_1": 90, "niah_single_2": 90, "niah_multikey_1": 60, "niah_multivalue": 60,
         "niah_multiquery": 60, "vt": 60}


def evaluate(model, sp, data_dir, device, n=25, lengths=(4096,), niah_lengths=(1024, 2048, 3072, 4096),
             niah_depths=(0, 25, 50, 75, 100), bs=16, padded=True, log=print, show=2, time_budget=None):
    t0 = time.time()
    enc = lambda s: sp.encode(s)
    bos, eos = sp.bos_id(), sp.eos_id()
    R = Ruler(data_dir, enc)
    results = {}
    examples = []
    for L in lengths:
        scores = {}
        for task in RULER_TASKS:
            if time_budget and time.time() - t0 > time_budget:
                log(f"[eval] time budget reached, skipping {task}@{L}")
                continue
            samples = R.vt_task(n, L) if task == "vt" else R.niah_task(task, n, L)
            prompts = [[bos] + enc(s) for s, _, _ in samples]
            outs = greedy_generate(model, prompts, samples[0][2], eos, device, bs=bs, padded=padded)
            sc = []
            for (s, refs, _), o in zip(samples, outs):
                pred = sp.decode(o)
                sc.append(string_match_all(pred, refs))
            for (s, refs, _), o in list(zip(samples, outs))[:show]:
                examples.append(f"--- {task}@{L} refs={refs} | tail of prompt: {s[-160:]!r}\n    pred: {sp.decode(o)!r}")
            scores[task] = round(100 * sum(sc) / len(sc), 2)
            mean_len = sum(len(p) for p in prompts) / len(prompts)
            log(f"[eval] RULER {task:16s} L={L}: {scores[task]:6.2f}  (n={len(sc)}, prompt tokens ~{mean_len:.0f}, "
                f"{time.time() - t0:.0f}s)")
        if scores:
            scores["avg"] = round(sum(scores[t] for t in scores) / len(scores), 2)
        results[f"ruler_{L}"] = scores
    if not (time_budget and time.time() - t0 > time_budget):
        items = niah_prompts(os.path.join(data_dir, "niah_essays"), sp, niah_lengths, niah_depths)
        prompts = [[bos] + enc(p) for _, _, p in items]
        outs = greedy_generate(model, prompts, 50, eos, device, bs=bs, padded=padded)
        cells = {}
        for (L, d, p), o in zip(items, outs):
            pred = sp.decode(o)
            cells[f"{L}/{d}"] = round(10 * rouge1_f(NIAH_NEEDLE.strip(), pred), 2)
        for (L, d, p), o in list(zip(items, outs))[:: max(1, len(items) // 4)]:
            examples.append(f"--- NIAH L={L} depth={d}: pred: {sp.decode(o)!r}")
        results["niah"] = {"mean_rouge1_x10": round(sum(cells.values()) / len(cells), 3), "cells": cells}
        log(f"[eval] NIAH mean ROUGE-1 F x10 = {results['niah']['mean_rouge1_x10']:.3f}  cells={cells}")
    results["eval_seconds"] = round(time.time() - t0, 1)
    return results, examples


if __name__ == "__main__":
    import argparse
    import sentencepiece as spm
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/testbed")
    ap.add_argument("--data", default=".testbed_carry/eval")
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--lengths", default="4096")
    ap.add_argument("--dump", default="", help="only write the prompts (jsonl) for inspection; no model needed")
    a = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model, "tokenizer.model"))
    if a.dump:
        R = Ruler(a.data, sp.encode)
        with open(a.dump, "w") as f:
            for L in [int(x) for x in a.lengths.split(",")]:
                for task in RULER_TASKS:
                    ss = R.vt_task(a.n, L) if task == "vt" else R.niah_task(task, a.n, L)
                    for s, refs, g in ss:
                        f.write(json.dumps({"task": task, "L": L, "input": s, "outputs": refs, "ntok": len(sp.encode(s)) + 1, "gen": g}) + "\n")
            for L, d, p in niah_prompts(os.path.join(a.data, "niah_essays"), sp, (1024, 2048, 3072, 4096), (0, 25, 50, 75, 100)):
                f.write(json.dumps({"task": "niah", "L": L, "depth": d, "input": p, "ntok": len(sp.encode(p)) + 1}) + "\n")
        raise SystemExit(0)
    import torch
    from transformers import AutoModelForCausalLM
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).to(dev).eval()
    res, ex = evaluate(model, sp, a.data, dev, n=a.n, lengths=[int(x) for x in a.lengths.split(",")])
    print(json.dumps(res, indent=1))
    print("\n".join(ex))
