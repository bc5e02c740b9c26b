#!/usr/bin/env python3
"""CPU fallback for eval_quick.py: the same prompts, decoding rule and scores (eval_quick's Ruler,
niah_prompts, string_match_all, rouge1_f), with a plain numpy fp32 forward pass of the HF Llama checkpoint
instead of torch.  Needs only numpy + sentencepiece (Debian python3-numpy python3-sentencepiece).
Decoding is unpadded (one prompt at a time), greedy, stop at EOS -- eval_quick's reference path.

  python3 scripts/testbed/eval_cpu.py --shard 0/2 --out /tmp/ev0.json &   # one process per core
  python3 scripts/testbed/eval_cpu.py --shard 1/2 --out /tmp/ev1.json
  python3 scripts/testbed/eval_cpu.py --merge /tmp/ev0.json /tmp/ev1.json   # -> scores as in eval.json

A 4K prompt takes ~5-10 s on one core (the whole set, 6x25 RULER + 20 NIAH prompts, ~15 min on 2 cores).
"""
import argparse, json, os, struct, sys, time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import eval_quick  # noqa: E402  (pure Python parts only)


def load_safetensors_bf16(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "BF16", (k, v["dtype"])
        u = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
        out[k] = u.view(np.float32).reshape(v["shape"])
    return out


class NumpyLlama:
    def __init__(self, model_dir):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.cfg = cfg
        self.L = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.KV = cfg["num_key_value_heads"]
        self.D = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.eps = cfg["rms_norm_eps"]
        theta = (cfg.get("rope_parameters") or {}).get("rope_theta") or cfg["rope_theta"]
        self.inv_freq = (1.0 / (float(theta) ** (np.arange(0, self.D, 2, dtype=np.float64) / self.D))).astype(np.float32)
        w = load_safetensors_bf16(os.path.join(model_dir, "model.safetensors"))
        self.emb = w["model.embed_tokens.weight"]
        self.lm_head = w.get("lm_head.weight", self.emb)
        self.norm = w["model.norm.weight"]
        self.layers = []
        for i in range(self.L):
            p = f"model.layers.{i}."
            self.layers.append(dict(
                ln1=w[p + "input_layernorm.weight"], ln2=w[p + "post_attention_layernorm.weight"],
                qkv=np.ascontiguousarray(np.concatenate([w[p + "self_attn.q_proj.weight"], w[p + "self_attn.k_proj.weight"],
                                                         w[p + "self_attn.v_proj.weight"]], 0).T),
                o=np.ascontiguousarray(w[p + "self_attn.o_proj.weight"].T),
                gu=np.ascontiguousarray(np.concatenate([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]], 0).T),
                down=np.ascontiguousarray(w[p + "mlp.down_proj.weight"].T)))
        self.I = self.layers[0]["down"].shape[0]

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):  # x (T, h, D)
        f = pos[:, None].astype(np.float32) * self.inv_freq[None]  # (T, D/2)
        cos, sin = np.cos(f)[:, None], np.sin(f)[:, None]
        h = self.D // 2
        x1, x2 = x[..., :h], x[..., h:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def forward(self, ids, cache, start, block=512):
        """ids: new tokens at positions start..; cache: list of [K, V] arrays (KV, T, D) per layer (grown in
        place).  Returns the logits of the last position."""
        T = len(ids)
        x = self.emb[np.asarray(ids)]
        pos = np.arange(start, start + T)
        H, KV, D = self.H, self.KV, self.D
        rep = H // KV
        scale = np.float32(1.0 / np.sqrt(D))
        for li, lw in enumerate(self.layers):
            h = self.rms(x, lw["ln1"]) @ lw["qkv"]
            q = self.rope(h[:, :H * D].reshape(T, H, D), pos)
            k = self.rope(h[:, H * D:(H + KV) * D].reshape(T, KV, D), pos)
            v = h[:, (H + KV) * D:].reshape(T, KV, D)
            K = np.concatenate([cache[li][0], k.transpose(1, 0, 2)], 1) if cache[li] else k.transpose(1, 0, 2)
            V = np.concatenate([cache[li][1], v.transpose(1, 0, 2)], 1) if cache[li] else v.transpose(1, 0, 2)
            cache[li] = [K, V]
            S = K.shape[1]
            qh = q.transpose(1, 0, 2).reshape(KV, rep, T, D)  # query head j uses kv head j // rep
            att = np.empty((KV, rep, T, D), dtype=np.float32)
            for b0 in range(0, T, block):  # causal attention in query blocks (BLAS matmuls)
                b1 = min(T, b0 + block)
                t = b1 - b0
                end = start + b1  # keys 0..end-1 visible to the last query of the block
                qb = np.ascontiguousarray(qh[:, :, b0:b1]).reshape(KV, rep * t, D)
                s = np.matmul(qb, K[:, :end].transpose(0, 2, 1)).reshape(KV, rep, t, end)
                s *= scale
                if t > 1:
                    qp = np.arange(start + b0, start + b1)[:, None]
                    s[:, :, np.arange(end)[None, :] > qp] = -np.inf
                s -= s.max(-1, keepdims=True)
                np.exp(s, out=s)
                s /= s.sum(-1, keepdims=True)
                att[:, :, b0:b1] = np.matmul(s.reshape(KV, rep * t, end), V[:, :end]).reshape(KV, rep, t, D)
            a = att.reshape(H, T, D).transpose(1, 0, 2).reshape(T, H * D)
            x = x + a @ lw["o"]
            gu = self.rms(x, lw["ln2"]) @ lw["gu"]
            g, u = gu[:, :self.I], gu[:, self.I:]
            x = x + ((g / (1.0 + np.exp(-g))) * u) @ lw["down"]
        return self.rms(x[-1:], self.norm)[0] @ self.lm_head.T

    def generate(self, prompt, max_new, eos):
        cache = [None] * self.L
        logits = self.forward(prompt, cache, 0)
        out = []
        pos = len(prompt)
        for step in range(max_new):
            t = int(np.argmax(logits))
            if t == eos:
                break
            out.append(t)
            if step == max_new - 1:
                break
            logits = self.forward([t], cache, pos)
            pos += 1
        return out


def build_items(sp, data_dir, n, L):
    enc = lambda s: sp.encode(s)
    R = eval_quick.Ruler(data_dir, enc)
    items = []
    for task in eval_quick.RULER_TASKS:
        ss = R.vt_task(n, L) if task == "vt" else R.niah_task(task, n, L)
        for i, (s, refs, gen) in enumerate(ss):
            items.append(dict(task=task, i=i, refs=refs, gen=gen, prompt=[sp.bos_id()] + enc(s), tail=s[-160:]))
    for Ln, d, p in eval_quick.niah_prompts(os.path.join(data_dir, "niah_essays"), sp, (1024, 2048, 3072, 4096),
                                            (0, 25, 50, 75, 100)):
        items.append(dict(task="niah", i=f"{Ln}/{d}", refs=[eval_quick.NIAH_NEEDLE.strip()], gen=50,
                          prompt=[sp.bos_id()] + enc(p), tail=p[-160:]))
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/testbed")
    ap.add_argument("--data", default=".testbed_carry/eval")
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--out", default="")
    ap.add_argument("--merge", nargs="*")
    a = ap.parse_args()
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model, "tokenizer.model"))
    if a.merge:
        gens = {}
        for f in a.merge:
            gens.update(json.load(open(f)))
        items = build_items(sp, a.data, a.n, a.L)
        res, ex, cells = {}, [], {}
        for task in eval_quick.RULER_TASKS + ["niah"]:
            sc = []
            for it in items:
                if it["task"] != task:
                    continue
                key = f"{task}:{it['i']}"
                if key not in gens:
                    continue
                pred = sp.decode(gens[key])
                if task == "niah":
                    cells[it["i"]] = round(10 * eval_quick.rouge1_f(it["refs"][0], pred), 2)
                else:
                    sc.append(eval_quick.string_match_all(pred, it["refs"]))
                if (task != "niah" and it["i"] < 3) or (task == "niah" and it["i"].endswith("/50")):
                    ex.append(f"--- {task} {it['i']} refs={it['refs']} | tail of prompt: {it['tail']!r}\n    pred: {pred!r}")
            if task != "niah" and sc:
                res.setdefault(f"ruler_{a.L}", {})[task] = round(100 * sum(sc) / len(sc), 2)
                res[f"ruler_{a.L}"].setdefault("_n", {})[task] = len(sc)
        r = res.get(f"ruler_{a.L}", {})
        nn = r.pop("_n", {})
        if r:
            r["avg"] = round(sum(r.values()) / len(r), 2)
        if cells:
            res["niah"] = {"mean_rouge1_x10": round(sum(cells.values()) / len(cells), 3), "cells": cells}
        res["n_per_task"] = nn
        res["evaluator"] = "eval_cpu.py (eval_quick.py prompts and scores, numpy fp32 forward, unpadded greedy)"
        print(json.dumps(res, indent=1))
        print("\n".join(ex))
        return
    si, sk = (int(x) for x in a.shard.split("/"))
    model = NumpyLlama(a.model)
    items = build_items(sp, a.data, a.n, a.L)
    # interleave tasks so that a partial run still covers every task
    order = sorted(range(len(items)), key=lambda j: (str(items[j]["i"]), items[j]["task"]))
    mine = [items[j] for j in order][si::sk]
    gens = {}
    t0 = time.time()
    for c, it in enumerate(mine):
        key = f"{it['task']}:{it['i']}"
        gens[key] = model.generate(it["prompt"], it["gen"], sp.eos_id())
        if a.out:
            with open(a.out + ".tmp", "w") as f:
                json.dump(gens, f)
            os.replace(a.out + ".tmp", a.out)
        print(f"[{time.time() - t0:6.0f}s] {c + 1}/{len(mine)} {it['task']} {it['i']} len {len(it['prompt'])}: "
              f"{sp.decode(gens[key])[:80]!r}", flush=True)


if __name__ == "__main__":
    main()
