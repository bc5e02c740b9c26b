#!/usr/bin/env python3
"""Writes tiny random-weight Llama-3.1-style and Mistral-style HF checkpoints together with what
Hugging Face `transformers` computes on them: logits (fp32 and bf16), per-layer post-RoPE K/V from
the cache, and greedy continuations. The C++ tests (tests/model/test_hf_parity.cpp) load the
checkpoints through the ordinary HF path and must match these outputs.

Run on a machine with torch + transformers (the H200 machine):
    python3 scripts/parity/make_hf_fixtures.py --out tests/fixtures/hf
"""
import argparse, json, os
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

CONFIGS = {
    # Llama-3.1 style: llama3 RoPE scaling (original window small so that scaling bites at tiny
    # head_dim), GQA 4:1, untied embeddings, eos list.
    "tiny-llama31": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=320, hidden_size=64, intermediate_size=176, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=32),
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=[2, 3], attention_bias=False,
        mlp_bias=False)),
    # Mistral-v0.3 style: explicit head_dim != hidden/heads, rope_theta 1e6, no sliding window.
    "tiny-mistral": (MistralConfig, MistralForCausalLM, dict(
        vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=24, max_position_embeddings=512,
        rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2)),
    # Tied embeddings + linear RoPE scaling.
    "tiny-llama-tied-linear": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=256, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=dict(rope_type="linear", factor=2.0),
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)),
}


def cache_kv(cache, l):
    """Post-RoPE K/V of layer l across transformers versions."""
    if hasattr(cache, "layers"):
        return cache.layers[l].keys, cache.layers[l].values
    if hasattr(cache, "key_cache"):
        return cache.key_cache[l], cache.value_cache[l]
    return cache[l][0], cache[l][1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for name, (cfg_cls, model_cls, kw) in CONFIGS.items():
        torch.manual_seed(args.seed)
        cfg = cfg_cls(**kw)
        model = model_cls._from_config(cfg, attn_implementation="eager").eval()
        # HF's init (std 0.02) makes logits nearly flat; widen the weights so that greedy choices
        # and attention patterns are decisive and a wrong implementation cannot match by luck.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.15 if "embed" in n or "lm_head" in n else 0.12)
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        gen = dict(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, do_sample=False)
        json.dump(gen, open(os.path.join(d, "generation_config.json"), "w"), indent=1)

        g = torch.Generator().manual_seed(args.seed + 1)
        T = 48
        ids = torch.randint(4, cfg.vocab_size, (2, T), generator=g)
        tensors = {"input_ids": ids.to(torch.int64)}
        model = model.to(dev)
        for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            m = model.to(dtype)
            with torch.no_grad():
                out = m(ids.to(dev), use_cache=True)
            tensors[f"logits_{tag}"] = out.logits.float().cpu().contiguous()
            if tag == "fp32":
                cache = out.past_key_values
                for l in range(cfg.num_hidden_layers):
                    k, v = cache_kv(cache, l)
                    tensors[f"k_{l}"] = k.float().cpu().contiguous()
                    tensors[f"v_{l}"] = v.float().cpu().contiguous()
                # Attention probabilities of the last 4 query rows (eager attention).
                with torch.no_grad():
                    att = m(ids.to(dev), output_attentions=True).attentions
                for l in range(cfg.num_hidden_layers):
                    tensors[f"attn_last4_{l}"] = att[l][:, :, -4:, :].float().cpu().contiguous()
        model = model.to(torch.float32)
        # Greedy continuation of a short prompt (first row, first 12 tokens), no early stop, by
        # full recompute at every step (independent of any cache implementation).
        seq = ids[:1, :12].to(dev)
        tensors["greedy_prompt"] = seq.cpu().clone()
        with torch.no_grad():
            for _ in range(24):
                nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], dim=1)
        tensors["greedy_fp32"] = seq[:, 12:].cpu().contiguous()
        save_file(tensors, os.path.join(d, "reference.safetensors"),
                  metadata={"format": "judgeq-hf-parity", "version": "1",
                            "transformers": __import__("transformers").__version__,
                            "torch": torch.__version__})
        print(name, "written", {k: tuple(v.shape) for k, v in tensors.items() if k.startswith("logits")})


if __name__ == "__main__":
    main()
