#!/usr/bin/env python3
"""HF transformers side of bench/real_shape.cpp: the same seeded random weights
(bench/seeded_weights.md), sdpa attention, bf16, same GPU.

  parity: compares HF's logits with judgeq's (judgeq_parity.safetensors) -> parity_<name>.json
  speed:  prefill time / peak memory at the given lengths, decode ms/token -> hf_speed.json
"""
import argparse, json, time
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM


def expected_names(cfg):
    names = [("model.embed_tokens.weight", None)]
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        for n in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
                  "post_attention_layernorm"]:
            names.append((p + n + ".weight", None))
    names.append(("model.norm.weight", None))
    if not cfg.tie_word_embeddings:
        names.append(("lm_head.weight", None))
    return [n for n, _ in names]


def seeded_model(path, seed):
    cfg = AutoConfig.from_pretrained(path)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.bfloat16)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for i, name in enumerate(expected_names(cfg)):
            p = params[name]
            torch.manual_seed(seed + i)
            r = torch.randn(tuple(p.shape), dtype=torch.float32, device="cuda")
            w = 1.0 + 0.1 * r if "norm" in name else r * 0.02
            p.copy_(w.to(torch.bfloat16))
    return cfg, model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config-dir", required=True)
    ap.add_argument("--mode", default="speed")
    ap.add_argument("--lengths", default="8192")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judgeq", default="")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--decode-context", type=int, default=32768)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    cfg, model = seeded_model(a.config_dir, a.seed)
    torch.set_grad_enabled(False)
    if a.mode == "parity":
        T = lengths[0]
        torch.manual_seed(a.seed + 100000)
        ids = torch.randint(0, cfg.vocab_size, (1, T), dtype=torch.int64)
        logits = model(ids.cuda()).logits[0].float()
        ours = load_file(a.judgeq)
        top1 = logits.argmax(-1).cpu()
        lse = torch.logsumexp(logits, -1).cpu()
        last = logits[-64:].cpu()
        res = {"length": T,
               "top1_agreement": float((top1 == ours["top1"]).float().mean()),
               "max_abs_logit_diff_last64": float((last - ours["last64"]).abs().max()),
               "mean_abs_logit_diff_last64": float((last - ours["last64"]).abs().mean()),
               "max_abs_logsumexp_diff": float((lse - ours["lse"]).abs().max()),
               "logit_abs_max": float(last.abs().max())}
        print(json.dumps(res))
        json.dump(res, open(a.out, "w"), indent=1)
        return
    res = {"impl": "hf-transformers", "attn": "sdpa", "prefill": {}}
    for T in lengths:
        torch.manual_seed(a.seed + T)
        ids = torch.randint(0, cfg.vocab_size, (1, T), dtype=torch.int64).cuda()
        times, peak = [], 0
        for r in range(3):
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize(); t0 = time.time()
            model(ids, logits_to_keep=1, use_cache=True)
            torch.cuda.synchronize()
            if r:
                times.append(time.time() - t0)
            peak = max(peak, torch.cuda.max_memory_allocated() / 2**30)
        times.sort()
        res["prefill"][str(T)] = {"seconds_median": times[len(times) // 2], "peak_gib": peak}
        print("hf prefill", T, res["prefill"][str(T)], flush=True)
    T = a.decode_context
    torch.manual_seed(a.seed + 7)
    ids = torch.randint(0, cfg.vocab_size, (1, T), dtype=torch.int64).cuda()
    out = model(ids, logits_to_keep=1, use_cache=True)
    past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
    for _ in range(4):
        o = model(tok, past_key_values=past, use_cache=True); past = o.past_key_values
    torch.cuda.synchronize(); t0 = time.time()
    for _ in range(a.decode_tokens):
        o = model(tok, past_key_values=past, use_cache=True)
        past, tok = o.past_key_values, o.logits[:, -1:].argmax(-1)
    torch.cuda.synchronize()
    res["decode"] = {"context": T, "ms_per_token": 1000 * (time.time() - t0) / a.decode_tokens}
    print("hf decode", res["decode"], flush=True)
    json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
