#!/usr/bin/env python3
"""Train the judgeq testbed model (HF transformers LlamaForCausalLM) from scratch on synthetic retrieval
tasks + plain text, then evaluate it with eval_quick.py.  Designed for ONE H200 and a hard wall-clock
budget: everything (smoke test, training, checkpointing, evaluation) happens in one process.

  PYTHONUNBUFFERED=1 python3 scripts/testbed/train.py --out OUT_DIR [--total-seconds 570]

Phases: (1) smoke test on a tiny model (data generator for every phase, loss decreases, HF save/reload
round trip, batched-vs-single greedy decoding agree); (2) training with a time-based curriculum
(gen_data.PHASES) and a time-based cosine LR; a bf16 checkpoint is written to OUT_DIR/model every
--ckpt-seconds; (3) final save + quick RULER/NIAH evaluation -> OUT_DIR/eval.json, OUT_DIR/samples.txt.
"""
import argparse, faulthandler, json, math, os, random, signal, sys, time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_data  # noqa: E402
import eval_quick  # noqa: E402

T0 = float(os.environ.get("TESTBED_T0", time.time()))  # the launcher passes its own start time


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


# ------------------------------------------------------------------------------------------------ model
ARCH = dict(vocab_size=4096, hidden_size=384, intermediate_size=576, num_hidden_layers=8, num_attention_heads=8,
            num_key_value_heads=2, head_dim=48, max_position_embeddings=8192, rms_norm_eps=1e-5)
TINY = dict(vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, max_position_embeddings=8192, rms_norm_eps=1e-5)


def build_config(arch, rope_theta, mock=False):
    if mock:
        from types import SimpleNamespace
        return SimpleNamespace(**arch, tie_word_embeddings=True)
    from transformers import LlamaConfig
    kw = dict(arch, hidden_act="silu", tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
              attention_bias=False, mlp_bias=False, initializer_range=0.02, use_cache=True)
    try:
        cfg = LlamaConfig(**kw, rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)})
    except TypeError:
        cfg = LlamaConfig(**kw, rope_theta=float(rope_theta))
    rp = getattr(cfg, "rope_parameters", None)
    eff = (rp or {}).get("rope_theta") if isinstance(rp, dict) else None
    eff = eff if eff is not None else getattr(cfg, "rope_theta", None)
    assert eff is not None and abs(float(eff) - rope_theta) < 1e-6, f"rope theta not applied: {eff}"
    if isinstance(getattr(cfg, "rope_theta", None), (int, float)) and abs(cfg.rope_theta - rope_theta) > 1e-6:
        cfg.rope_theta = float(rope_theta)  # transformers 4.x ignores rope_parameters
    return cfg


def build_model(cfg, mock=False, theta=50000.0):
    if mock:
        import mock_llama
        return mock_llama.MockLlama(cfg)
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM(cfg)
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "sdpa":
        try:
            model.set_attn_implementation("sdpa")
        except Exception:
            model.config._attn_implementation = "sdpa"
    log("attention implementation:", getattr(model.config, "_attn_implementation", None))
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "embeddings not tied"
    inv = getattr(getattr(model.model, "rotary_emb", None), "inv_freq", None)
    if inv is not None:
        expect = 1.0 / (theta ** (2.0 / cfg.head_dim))
        got = float(inv.float()[1])
        log(f"rope inv_freq[1] = {got:.6g} (expected {expect:.6g} for theta {theta})")
        assert abs(got - expect) / expect < 1e-3, "rope theta mismatch"
    else:
        log("WARNING: could not read rotary inv_freq")
    return model


def n_params(model):
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


COMPAT_KEYS = True  # also write legacy top-level "rope_theta"/"torch_dtype" (for C++/older loaders)


def save_hf(model, cfg, path, rope_theta, meta=None):
    """bf16 safetensors with HF names (tied lm_head dropped) + config.json + generation_config.json."""
    from safetensors.torch import save_file
    os.makedirs(path, exist_ok=True)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        sd[k] = v.detach().to(torch.bfloat16).cpu().contiguous()
    tmp = os.path.join(path, "model.safetensors.tmp")
    save_file(sd, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(path, "model.safetensors"))
    d = cfg.to_dict()
    d["architectures"] = ["LlamaForCausalLM"]
    d["model_type"] = "llama"
    d["dtype"] = "bfloat16"
    if COMPAT_KEYS:
        d["torch_dtype"] = "bfloat16"
        d["rope_theta"] = float(rope_theta)
    if "rope_parameters" in d or not COMPAT_KEYS:
        d["rope_parameters"] = {"rope_type": "default", "rope_theta": float(rope_theta)}
    d["tie_word_embeddings"] = True
    d["pad_token_id"] = None
    for k in list(d):
        if k.startswith("_") and k not in ("_name_or_path",):
            d.pop(k)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False, "max_new_tokens": 128}, f, indent=2)
    if meta:
        with open(os.path.join(path, "train_meta.json"), "w") as f:
            json.dump(meta, f, indent=2)


PART_BYTES = 15 * 1024 * 1024  # the device tool returns files of at most 16 MiB each


def export(ckpt_dir, out):
    """Copy a checkpoint to OUT as config.json, generation_config.json and model.safetensors.part0..N
    (byte chunks of at most 15 MiB; fetch_weights.sh concatenates them and checks the sha256 that the
    log and eval.json record)."""
    import hashlib, shutil
    for n in ("config.json", "generation_config.json"):
        shutil.copy(os.path.join(ckpt_dir, n), os.path.join(out, n))
    data = open(os.path.join(ckpt_dir, "model.safetensors"), "rb").read()
    sha = hashlib.sha256(data).hexdigest()
    for f in os.listdir(out):
        if f.startswith("model.safetensors.part"):
            os.remove(os.path.join(out, f))
    n = 0
    for i in range(0, len(data), PART_BYTES):
        with open(os.path.join(out, f"model.safetensors.part{n}"), "wb") as f:
            f.write(data[i:i + PART_BYTES])
        n += 1
    return sha, n


def write_pending_eval(out, meta, status):
    """eval.json before the evaluation: records the sha256 of the exported parts (fetch_weights.sh reads
    train.sha256), so the weights can be checked even if the run is cut before the evaluation ends."""
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump({"status": status, "train": meta}, f, indent=1)


def load_hf(path, device):
    from transformers import AutoModelForCausalLM
    try:
        m, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    except TypeError:
        m, info = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, output_loading_info=True)
    bad = {k: [x for x in v if x != "lm_head.weight"] for k, v in info.items()
           if k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"loading {path}: {bad}"
    return m.to(device).eval()


# ------------------------------------------------------------------------------------------------ data
class Stream(torch.utils.data.IterableDataset):
    def __init__(self, carry, tok_model, phase_val, seed, tpb=None):
        self.carry, self.tok_model, self.phase, self.seed, self.tpb = carry, tok_model, phase_val, seed, tpb

    def __iter__(self):
        wi = torch.utils.data.get_worker_info()
        wid = wi.id if wi is not None else 0
        gen = gen_data.load_gen(self.carry, self.tok_model)
        r = random.Random(self.seed * 100003 + wid)
        while True:
            ph = self.phase.value
            # a batch takes < 1 s; if one takes 30 s, print this worker's stack (diagnosis of a stall)
            faulthandler.dump_traceback_later(float(os.environ.get("TESTBED_WORKER_DUMP_S", 30)), exit=False)
            X, K = gen_data.make_batch(gen, r, ph, self.tpb)
            faulthandler.cancel_dump_traceback_later()
            yield torch.from_numpy(X), torch.from_numpy(K), ph


def step_loss(model, X, K, lam, device, vocab):
    X = X.to(device, non_blocking=True).long()
    K = K.to(device, non_blocking=True)
    x, y, k = X[:, :-1], X[:, 1:], K[:, 1:]
    with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                        enabled=device.startswith("cuda")):
        logits = model(input_ids=x, use_cache=False).logits
    ce = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1), reduction="none").view_as(y)
    ans = (k >= 1) & (k <= 4)
    lm = k == 0
    n_ans, n_lm = ans.sum(), lm.sum()
    l_ans = (ce * ans).sum() / n_ans.clamp(min=1)
    l_lm = (ce * lm).sum() / n_lm.clamp(min=1)
    loss = l_ans + lam * l_lm
    return loss, l_ans, l_lm, logits, y, k


@torch.no_grad()
def kind_acc(logits, y, k):
    pred = logits.argmax(-1)
    ok = pred == y
    out = {}
    for kk, name in ((1, "kv1"), (2, "kvM"), (3, "vt"), (4, "fact")):
        m = k == kk
        n = int(m.sum())
        if n:
            out[name] = round(float((ok & m).sum()) / n, 3)
    return out


def make_opt(model, lr, wd):
    decay, no_decay = [], []
    seen = set()
    for n, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (decay if (p.dim() >= 2 and "embed" not in n) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=torch.cuda.is_available())
    except (TypeError, RuntimeError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


# ------------------------------------------------------------------------------------------------ smoke
def smoke(args, device, sp):
    log("=== smoke test (tiny model) ===")
    gen = gen_data.load_gen(args.carry, args.tok)
    r = random.Random(1234)
    for ph in range(len(gen_data.PHASES)):
        X, K = gen_data.make_batch(gen, r, ph)
        assert X.min() >= 0 and X.max() < 4096, "token id out of range"
        assert (X[:, 0] == 1).all(), "BOS missing"
        assert ((K >= 1) & (K <= 4)).any(), "no answer tokens"
        log(f"phase {ph} batch {X.shape} answer-token frac {float(((K >= 1) & (K <= 4)).mean()):.4f}")
    for fam in ("kv", "vt", "fact", "lm"):
        ids, kinds = gen.sample(r, 1024, fam, False)
        assert len(ids) == 1025
    torch.manual_seed(0)
    cfg = build_config(TINY, args.rope_theta, args.mock)
    model = build_model(cfg, args.mock, args.rope_theta).to(device)
    opt = make_opt(model, 3e-3, 0.0)
    hist = []
    t = time.time()
    steps = 60 if not args.mock else 15
    for s in range(steps):
        X, K = gen_data.make_batch(gen, r, 0, 16384)
        X, K = torch.from_numpy(X), torch.from_numpy(K)
        loss, la, ll, *_ = step_loss(model, X, K, args.lm_weight, device, cfg.vocab_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append((float(la.detach()), float(ll.detach())))
    first = [sum(h[i] for h in hist[:3]) / 3 for i in (0, 1)]
    last = [sum(h[i] for h in hist[-5:]) / 5 for i in (0, 1)]
    log(f"smoke: {steps} steps in {time.time() - t:.1f}s, answer loss {first[0]:.3f} -> {last[0]:.3f}, "
        f"lm loss {first[1]:.3f} -> {last[1]:.3f}")
    assert all(math.isfinite(v) for h in hist for v in h), "smoke: non-finite loss"
    assert last[1] < first[1] - 0.5 and last[0] < first[0] - 0.2, "smoke: loss did not decrease"
    if args.mock:
        return True
    global COMPAT_KEYS
    p = "/tmp/testbed_smoke_ckpt"
    save_hf(model, cfg, p, args.rope_theta)
    model.eval()
    try:
        m2 = load_hf(p, device)
    except Exception as e:  # the legacy keys upset this transformers version: write the modern form only
        log(f"reload with legacy config keys failed ({e!r}); writing rope_parameters/dtype only")
        COMPAT_KEYS = False
        save_hf(model, cfg, p, args.rope_theta)
        m2 = load_hf(p, device)
    log("smoke: config.json = " + open(os.path.join(p, "config.json")).read().replace("\n", " "))
    x = torch.from_numpy(gen_data.make_batch(gen, r, 0, 1024)[0][:2, :128]).long().to(device)
    with torch.no_grad():
        a = m2(input_ids=x).logits.float()
        ref = {k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()}
        model.load_state_dict(ref)
        b = model(input_ids=x).logits.float()
    err = (a - b).abs().max().item()
    log(f"smoke: save/reload max logit diff {err:.2e}")
    assert err < 5e-2 * max(1.0, b.abs().max().item()), "reloaded model differs"
    # eval pipeline end-to-end on short prompts; batched (left padded) vs one-by-one decoding
    res, ex = eval_quick.evaluate(m2, sp, args.eval_data, device, n=3, lengths=(1024,), niah_lengths=(1024,),
                                  niah_depths=(50,), bs=8, padded=True, log=log, show=1)
    R = eval_quick.Ruler(args.eval_data, sp.encode)
    ss = R.niah_task("niah_multikey_1", 3, 1024) + R.vt_task(2, 900)
    prompts = [[1] + sp.encode(s) for s, _, _ in ss]
    a = eval_quick.greedy_generate(m2, prompts, 12, 2, device, bs=8, padded=True)
    b = eval_quick.greedy_generate(m2, prompts, 12, 2, device, padded=False)
    agree = sum(x == y for x, y in zip(a, b)) / len(a)
    log(f"smoke: padded vs single decoding agreement {agree:.2f}")
    padded_ok = agree >= 0.8
    del m2, model
    torch.cuda.empty_cache()
    log("=== smoke test passed ===")
    return padded_ok


# ------------------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "out/testbed"))
    ap.add_argument("--carry", default=".testbed_carry")
    ap.add_argument("--ckpt-dir", default="/tmp/testbed_model", help="full checkpoint (stays on the machine)")
    ap.add_argument("--tok", default="models/testbed/tokenizer.model")
    ap.add_argument("--eval-data", default=".testbed_carry/eval")
    ap.add_argument("--total-seconds", type=float, default=540, help="whole script budget (s)")
    ap.add_argument("--eval-seconds", type=float, default=45, help="reserved for the final evaluation")
    ap.add_argument("--ckpt-seconds", type=float, default=75)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.08)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--lm-weight", type=float, default=0.15)
    ap.add_argument("--rope-theta", type=float, default=50000.0)
    ap.add_argument("--phase-fracs", default="0.35,0.6")
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--data-timeout", type=float, default=60, help="s to wait for one batch before stopping")
    ap.add_argument("--seed", type=int, default=20250917)
    ap.add_argument("--eval-n", type=int, default=25)
    ap.add_argument("--recipe", default="v3", choices=["v1", "v2", "v3", "v4"], help="data recipe, see gen_data.RECIPE")
    ap.add_argument("--skip-smoke", action="store_true")
    ap.add_argument("--init", default="", help="continue from an HF checkpoint folder (weights only)")
    ap.add_argument("--tokens-per-batch", type=int, default=None, help="override gen_data.PHASES (tests only)")
    ap.add_argument("--mock", action="store_true", help="local CPU test with a stand-in model (no transformers)")
    args = ap.parse_args()
    faulthandler.enable()
    faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)  # stacks in the log if `timeout` kills us
    gen_data.set_recipe(args.recipe)  # before the data workers are forked
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=args.tok)
    assert sp.get_piece_size() == ARCH["vocab_size"]
    os.makedirs(args.out, exist_ok=True)
    log("torch", torch.__version__, "device", device,
        torch.cuda.get_device_name(0) if device == "cuda" else "")
    if not args.mock:
        import transformers
        log("transformers", transformers.__version__)

    padded_ok = True
    if not args.skip_smoke:
        padded_ok = smoke(args, device, sp)

    # ---------------------------------------------------------------- real model
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    cfg = build_config(ARCH, args.rope_theta, args.mock)
    model = build_model(cfg, args.mock, args.rope_theta).to(device)
    if args.init:
        from safetensors.torch import load_file
        sd = load_file(os.path.join(args.init, "model.safetensors"))
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]
        assert not missing and not unexpected, (missing, unexpected)
        log(f"initialised from {args.init}")
    npar = n_params(model)
    log(f"model: {npar / 1e6:.2f}M parameters, {ARCH}")
    opt = make_opt(model, args.lr, args.wd)

    import multiprocessing as mp
    ctx = mp.get_context("fork")
    phase_val = ctx.Value("i", 0)
    ds = Stream(args.carry, args.tok, phase_val, args.seed, args.tokens_per_batch)
    # timeout: a batch that does not come within --data-timeout s raises instead of stalling the run (run 3
    # stalled silently after 323 s of training); training then stops early and the final save + eval run
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers, prefetch_factor=4,
                                         pin_memory=(device == "cuda"), multiprocessing_context=ctx,
                                         timeout=args.data_timeout)
    it = iter(loader)

    fr = [float(x) for x in args.phase_fracs.split(",")]
    t_start = time.time()
    t_end = T0 + args.total_seconds - args.eval_seconds - 12
    T = t_end - t_start
    assert T > 30, f"not enough time left to train ({T:.0f}s)"
    log(f"training for {T:.0f}s (phase switches at {fr}), lr {args.lr}, lm weight {args.lm_weight}")
    model.train()
    step, tokens, data_wait = 0, 0, 0.0
    last_ckpt = time.time()
    last_log = time.time()
    hist = []
    meta = {"arch": ARCH, "rope_theta": args.rope_theta, "lr": args.lr, "seed": args.seed, "params": npar,
            "recipe": args.recipe, "train_budget_s": round(T, 1),
            "init": args.init or None, "phase_fracs": fr, "lm_weight": args.lm_weight, "warmup": args.warmup}
    while True:
        now = time.time()
        f = (now - t_start) / T
        if f >= 1.0:
            break
        ph = 0 if f < fr[0] else (1 if f < fr[1] else 2)
        if phase_val.value != ph:
            phase_val.value = ph
            log(f"--> phase {ph} ({gen_data.PHASES[ph][0]}) at step {step}")
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (
            args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, f))))
        for g in opt.param_groups:
            g["lr"] = lr
        tw = time.time()
        try:
            X, K, bph = next(it)
        except Exception as e:  # DataLoader timeout or a dead worker: keep what was trained
            log(f"DATA STALL at step {step}: {e!r}; stopping training early")
            meta["stopped_early"] = f"step {step}: {type(e).__name__}: {str(e)[:200]}"
            break
        data_wait += time.time() - tw
        # main-process watchdog: print the stack if one step (data + GPU) takes longer than 60 s
        faulthandler.dump_traceback_later(60, exit=False)
        loss, la, ll, logits, y, k = step_loss(model, X, K, args.lm_weight, device, cfg.vocab_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += X.shape[0] * (X.shape[1] - 1)
        if step % 50 == 0 or step <= 3:
            acc = kind_acc(logits, y, k)
            el = time.time() - t_start
            rec = {"step": step, "t": round(el, 1), "phase": int(bph), "L": X.shape[1] - 1, "lr": round(lr, 6),
                   "ans": round(float(la), 4), "lm": round(float(ll), 4), "gn": round(float(gn), 3), "acc": acc,
                   "tok_s": round(tokens / el), "wait": round(data_wait, 1)}
            hist.append(rec)
            log(json.dumps(rec))
        if time.time() - last_ckpt > args.ckpt_seconds and not args.mock:
            meta.update(step=step, train_seconds=round(time.time() - t_start, 1), tokens=tokens)
            save_hf(model, cfg, args.ckpt_dir, args.rope_theta, meta)
            sha, nparts = export(args.ckpt_dir, args.out)
            write_pending_eval(args.out, dict(meta, sha256=sha), "checkpoint; training still running")
            last_ckpt = time.time()
            log(f"checkpoint saved at step {step} (sha256 {sha[:16]}..., {nparts} parts)")
    faulthandler.cancel_dump_traceback_later()
    train_s = time.time() - t_start
    log(f"training done: {step} steps, {tokens / 1e6:.1f}M tokens, {train_s:.0f}s, data wait {data_wait:.1f}s")
    try:
        del it, loader
    except Exception as e:
        log(f"data loader shutdown: {e!r}")
    meta.update(step=step, train_seconds=round(train_s, 1), tokens=tokens, final=True)
    if args.mock:
        return
    save_hf(model, cfg, args.ckpt_dir, args.rope_theta, meta)
    sha, nparts = export(args.ckpt_dir, args.out)
    meta["sha256"] = sha
    write_pending_eval(args.out, meta, "final checkpoint; evaluation pending")
    log(f"final checkpoint saved: model.safetensors sha256 {sha} ({nparts} parts in {args.out})")
    del model, opt
    torch.cuda.empty_cache()
    m = load_hf(args.ckpt_dir, device)
    budget = T0 + args.total_seconds - time.time() - 5
    log(f"evaluating (budget {budget:.0f}s, padded decoding: {padded_ok})")
    res, ex = eval_quick.evaluate(m, sp, args.eval_data, device, n=args.eval_n, lengths=(4096,), bs=32,
                                  padded=padded_ok, log=log, show=3, time_budget=max(10, budget - 15))
    res["status"] = "done"
    res["train"] = meta
    res["history_tail"] = hist[-10:]
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(args.out, "samples.txt"), "w") as f:
        f.write("\n".join(ex) + "\n")
    log("RESULT " + json.dumps({k: v for k, v in res.items() if k.startswith("ruler")}))
    log("RESULT niah " + str(res.get("niah", {}).get("mean_rouge1_x10")))
    log("done")


if __name__ == "__main__":
    main()
