"""What a transformers model's own Python costs per forward and per module call, beyond the ops and plain
module calls the time model predicts: measured on tiny transformers Llamas of 1 and 3 layers, with the
host's private caches evicted before every layer and the head (as a real model's weights evict them), and
without (a model small enough to stay cached).

Why both: right after a read larger than its private cache, the 1-layer probe's decode forward took
0.48-0.58 ms against 0.33 ms back to back (this VM, 1 thread), and each further layer, its caches evicted
as well, 0.24-0.27 ms against 0.14. Calibrated on the cached forward alone, the per-call figure left a
fixed ~0.3 ms per forward out of every real model (a 4-layer, 256-wide Llama's prefill: 3.33 ms measured,
2.62 predicted), and charged per call what each forward pays once (mask building, rotary tables, output
records). Two layer counts split the residual into a cost per forward and one per module call.

Measured less what? The time model's prediction of the probe's ops is not what they took: at 16 wide they
are pure dispatch, and on the AMD guest of the twenty-seventh session the profile put the 3-layer probe's
ops 0.3 ms over the whole measured forward (1 thread), so the residual, and both figures, came out 0,
while a 256-wide 4-layer transformers Llama's decode forward ran 1.17x a plain-PyTorch network of the same
ops (the decode probe; predicted 0.99x). Since then each probe has a plain counterpart timed in the same
rounds (``plain_counterpart``: the same sizes and ops from primitives, no transformers code), and the
residual is the measured difference less the predicted one (transformers traces a few ops the plain
network lacks, which the time model prices like any other).

A GPU model's weights live in device memory and leave the host's caches alone: there the cached figures
are the in-network ones, and no eviction is timed."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from ..timing import synchronizer

PROBE_LAYERS = (1, 3)
MIN_SWEEP_BYTES = 4 << 20      # evict at least this much where the private cache is unknown or small
SWEEP_CACHE_MULTIPLE = 2       # ... and twice the private cache otherwise


def fundamental_key(layers: int, evicted: bool, plain: bool = False) -> str:
    return f"{'plain' if plain else 'hf'}_forward_{layers}l_{'evicted' if evicted else 'cached'}_s"


def plain_counterpart(layers: int) -> tuple[nn.Module, torch.Tensor, list[nn.Module]]:
    """The transformers probe's decode step from primitives, at its sizes (GENERATE_PROBE_CONFIG, a cache of
    15 tokens): token embedding, ``layers`` Llama-style blocks (the decode probe's), the final norm and the
    head; with the modules before which the evicted variant sweeps the caches, as for the transformers one."""
    from .generate_overhead import GENERATE_PROBE_CONFIG
    from .suite import _DecoderBlock

    c = GENERATE_PROBE_CONFIG
    d, vocab = c["hidden_size"], c["vocab_size"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        blocks = [_DecoderBlock(d, c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"], 15)
                  for _ in range(layers)]
        head = nn.Linear(d, vocab, bias=False)
        net = nn.Sequential(nn.Embedding(vocab, d), *blocks, nn.RMSNorm(d), head).eval()
    return net, torch.zeros(1, 1, dtype=torch.long), [net, *blocks, head]


def measured(fundamentals: dict[str, float]) -> bool:
    """Did calibration time a transformers probe forward (suite 26's, or before it the 1-layer one)?"""
    return bool(fundamentals.get(fundamental_key(PROBE_LAYERS[0], False)) or fundamentals.get("hf_decode_forward_s"))


def measure_transformers_forwards(backend: str, private_cache_bytes: float, rounds: int = 120,
                                  max_seconds: float = 4.0) -> dict[str, float]:
    """Median seconds of one decode forward (context 15) of the generate() probe Llama at each of
    PROBE_LAYERS layers, cached (back to back) and, on a CPU, evicted (a read of twice the private cache
    at the start of the forward and before each decoder layer and the head, as the previous layer's
    weights would; the reads' own time is taken out call by call), and the same of its plain counterpart
    (``plain_counterpart``). Each round times every variant once (a cached one right after an untimed
    call), so a slow phase of the machine falls on all of them."""
    import transformers as tf

    from .generate_overhead import GENERATE_PROBE_CONFIG

    sync = synchronizer(backend)
    sweep_bytes = max(MIN_SWEEP_BYTES, SWEEP_CACHE_MULTIPLE * private_cache_bytes)
    buf = torch.ones(int(sweep_bytes) // 4) if backend == "cpu" else None
    swept: list[float] = []

    def evict(_module, _args) -> None:
        t0 = time.perf_counter()
        buf.sum()
        swept.append(time.perf_counter() - t0)

    variants = {}
    for layers in PROBE_LAYERS:
        cfg = tf.LlamaConfig(**{**GENERATE_PROBE_CONFIG, "num_hidden_layers": layers})
        model = tf.LlamaForCausalLM(cfg).eval().to(backend)
        cache = tf.DynamicCache(config=cfg)
        with torch.inference_mode():
            model(torch.zeros(1, 15, dtype=torch.long, device=backend), use_cache=True, cache=cache)
        token = torch.zeros(1, 1, dtype=torch.long, device=backend)
        mask = torch.ones(1, 16, dtype=torch.long, device=backend)
        hooked = [model, *model.model.layers, model.lm_head]   # the forward starts cold as well
        plain, ids, plain_hooked = plain_counterpart(layers)
        plain, ids = plain.to(backend), ids.to(backend)
        # (forward, what to do after it, modules to sweep the caches before); the transformers forward's
        # cache is cropped back to context 15, the plain blocks append to fixed caches of their own
        forwards = {False: (lambda m=model, c=cache: m(token, attention_mask=mask, use_cache=True, cache=c),
                            lambda c=cache: c.crop(-1), hooked),
                    True: (lambda m=plain, i=ids: m(i), lambda: None, plain_hooked)}
        for evicted in ((False, True) if buf is not None else (False,)):
            for is_plain, (forward, after, modules) in forwards.items():
                variants[fundamental_key(layers, evicted, plain=is_plain)] = (forward, after,
                                                                              modules if evicted else [])
    times: dict[str, list[float]] = {k: [] for k in variants}

    def one(key: str) -> float:
        forward, after, hooked = variants[key]
        handles = [m.register_forward_pre_hook(evict) for m in hooked]
        swept.clear()
        t0 = time.perf_counter()
        forward()
        sync()
        elapsed = time.perf_counter() - t0 - sum(swept)
        for h in handles:
            h.remove()
        after()
        return elapsed

    with torch.inference_mode():
        for key in variants:   # warm-up
            for _ in range(3):
                one(key)
        start = time.perf_counter()
        for r in range(rounds):
            if r >= 10 and time.perf_counter() - start > max_seconds:
                break
            for key in variants:
                if not variants[key][-1]:
                    one(key)   # cached: back to back, after the other variants' evictions
                times[key].append(one(key))
    return {k: statistics.median(v) for k, v in times.items()}


def probe_analyses(layers_list=PROBE_LAYERS):
    """The probe's decode forward at context 15, traced as generate() calls it, per layer count."""
    import transformers as tf

    from ..analysis import analyze
    from ..generation import decode_inputs, load_language_model
    from .generate_overhead import GENERATE_PROBE_CONFIG

    out = {}
    for layers in layers_list:
        lm = load_language_model(tf.LlamaConfig(**{**GENERATE_PROBE_CONFIG, "num_hidden_layers": layers}))
        out[layers] = analyze(lm.module, decode_inputs(lm, 1, 15, torch.float32))
    return out


def plain_analyses(layers_list=PROBE_LAYERS):
    """Each plain counterpart's decode step traced, per layer count (probe_analyses' twin)."""
    from ..analysis import analyze

    return {layers: analyze(*plain_counterpart(layers)[:2]) for layers in layers_list}


def split_residuals(residual_s: dict[int, float], calls: dict[int, int]) -> tuple[float, float]:
    """(per forward, per call) seconds from the residuals of two probes that differ in their number of
    module calls: residual = per_forward + calls x per_call, both at least zero (a negative slope, noise on
    a small difference, leaves it all per forward; a negative intercept all per call)."""
    (la, ra), (lb, rb) = sorted(residual_s.items())
    per_call = (rb - ra) / (calls[lb] - calls[la])
    if per_call < 0:
        return max(0.0, statistics.mean((ra, rb))), 0.0
    per_forward = ra - per_call * calls[la]
    if per_forward < 0:
        return 0.0, max(0.0, statistics.mean((ra / calls[la], rb / calls[lb])))
    return per_forward, per_call


def transformers_overheads(fundamentals: dict[str, float], predict_s) -> dict[str, float]:
    """The profile's overhead_us entries for transformers' Python, from the measured probe forwards
    (``fundamentals``) less ``predict_s(analysis)``, the profile's prediction of each without them:
    per_transformers_forward / per_transformers_call in a network (evicted caches where measured), and
    ..._cached where the cached forward was timed apart from it. Samples from before suite 26 timed only the
    1-layer cached forward (hf_decode_forward_s): all of its residual goes per call, as it then did."""
    if not measured(fundamentals):
        return {}
    if fundamental_key(PROBE_LAYERS[0], False) not in fundamentals:
        a = probe_analyses(PROBE_LAYERS[:1])[PROBE_LAYERS[0]]
        if not a.transformers_calls:
            return {}
        per_call = max(0.0, (fundamentals["hf_decode_forward_s"] - predict_s(a)) / a.transformers_calls)
        return {"per_transformers_call": round(per_call * 1e6, 3)}
    analyses = probe_analyses()
    calls = {n: a.transformers_calls for n, a in analyses.items()}
    predicted = {n: predict_s(a) for n, a in analyses.items()}
    # the plain counterparts' error over their prediction, shared by the probes' residuals (where timed)
    plain_timed = all(fundamental_key(n, False, plain=True) in fundamentals for n in analyses)
    plain_predicted = {n: predict_s(a) for n, a in plain_analyses().items()} if plain_timed else {}
    out = {}
    states = ((True, ""), (False, "_cached")) if fundamental_key(PROBE_LAYERS[0], True) in fundamentals else ((False, ""),)
    for evicted, suffix in states:
        resid = {n: fundamentals[fundamental_key(n, evicted)] - predicted[n]
                 - (fundamentals[fundamental_key(n, evicted, plain=True)] - plain_predicted[n] if plain_timed else 0.0)
                 for n in analyses}
        per_forward, per_call = split_residuals(resid, calls)
        out[f"per_transformers_forward{suffix}"] = round(per_forward * 1e6, 3)
        out[f"per_transformers_call{suffix}"] = round(per_call * 1e6, 3)
    return out
