"""What transformers' generate() costs around a model's forwards on this machine (per new token, per
vocabulary entry, per call), timed on tiny transformers Llamas for calibration's fundamentals."""
from __future__ import annotations

import importlib.util
import inspect
import statistics
import time
from typing import NamedTuple

import torch

from ..timing import synchronizer, timed_call

GENERATE_PROBE_CONFIG = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
# the second vocabulary generate() is timed at: Llama-2's, just under PyTorch's intra-op grain (32,768
# elements), so the per-entry cost is one thread's; generation.generate_step_us splits it above the grain
GENERATE_PROBE_LARGE_VOCAB = 32000


class GenerateOverhead(NamedTuple):
    step_s: float      # generate()'s own time per new token around the forward (logits, stopping, cache) ...
    call_s: float      # its time per call before the first forward (config, processors, cache) beyond a step
    forward_s: float   # one decode forward of the probe model (per-call figure of samples before suite 26)
    step_per_vocab_s: float = 0.0   # ... plus this per vocabulary entry (logits processors, argmax, stopping)


def measure_generate_step(backend: str, tokens: int = 32, rounds: int = 40,
                          max_seconds: float = 5.0) -> GenerateOverhead | None:
    """What transformers' generate() costs around the model's forwards, on 1-layer transformers Llamas so
    small that their time is Python and dispatch, at two vocabulary sizes (GENERATE_PROBE_CONFIG's 64 and
    GENERATE_PROBE_LARGE_VOCAB): its logits processors, argmax and stopping checks each pass over the whole
    vocabulary every step (~0.45 ms more per step at 32,000 entries than at 64 here), so one figure taken
    at a tiny vocabulary left a third of a 45M Llama's per-token overhead out. ``step_s`` is the cost at
    no vocabulary, ``step_per_vocab_s`` the cost per entry. Called as users call it: an all-ones attention
    mask beside the prompt (without one, generate() infers a mask from the padding token, another path),
    min_new_tokens = max_new_tokens so that exactly that many tokens come (the processor that enforces it
    is one of the passes over the vocabulary).

    Per step: generate()'s time per token less a plain loop of the same forwards over the same cache; per
    call: generate(max_new_tokens=1) less one plain forward of the prompt and one step. Each round times
    the four single calls back to back, so a slow phase of the machine falls on all four; the median over
    rounds is kept (a difference of differences: with medians of 3 calls over 2 rounds, two calibrations
    here measured 319 and 758 us per step). At least 5 rounds per vocabulary, fewer than ``rounds`` where
    they would take more than ``max_seconds`` (a slow or busy machine). None without transformers."""
    if importlib.util.find_spec("transformers") is None:
        return None
    small = _generate_overhead(backend, GENERATE_PROBE_CONFIG, tokens, rounds, max_seconds)
    large = _generate_overhead(backend, {**GENERATE_PROBE_CONFIG, "vocab_size": GENERATE_PROBE_LARGE_VOCAB},
                               tokens, rounds, max_seconds)
    per_vocab = max(0.0, (large[0] - small[0]) / (GENERATE_PROBE_LARGE_VOCAB - GENERATE_PROBE_CONFIG["vocab_size"]))
    return GenerateOverhead(max(0.0, small[0] - per_vocab * GENERATE_PROBE_CONFIG["vocab_size"]), small[1], small[2],
                            per_vocab)


def _generate_overhead(backend: str, config: dict, tokens: int, rounds: int,
                       max_seconds: float) -> tuple[float, float, float]:
    """(per step, per call, plain decode forward) seconds of generate() on a Llama of ``config``."""
    import transformers as tf

    cfg = tf.LlamaConfig(**config)
    model = tf.LlamaForCausalLM(cfg).eval().to(backend)
    ids = torch.zeros(1, 8, dtype=torch.long, device=backend)
    mask = torch.ones_like(ids)
    sync = synchronizer(backend)
    kwargs = dict(attention_mask=mask, do_sample=False, pad_token_id=0)
    arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def generate(n: int) -> None:
        model.generate(ids, min_new_tokens=n, max_new_tokens=n, **kwargs)

    def plain_loop() -> None:
        cache = tf.DynamicCache(config=cfg)
        m = mask
        out = model(ids, attention_mask=m, use_cache=True, **{arg: cache})
        nxt = out.logits[:, -1:].argmax(-1)
        for _ in range(tokens - 1):
            m = torch.cat([m, m.new_ones(1, 1)], 1)
            out = model(nxt, attention_mask=m, use_cache=True, **{arg: cache})
            nxt = out.logits[:, -1:].argmax(-1)

    calls = (lambda: generate(tokens), lambda: generate(1), plain_loop,
             lambda: model(ids, attention_mask=mask, use_cache=True))
    per_step, per_call, forward = [], [], []
    with torch.inference_mode():
        for call in calls:   # warm-up
            call()
        start = time.perf_counter()
        for r in range(rounds):
            if r >= 5 and time.perf_counter() - start > max_seconds:
                break
            full, one, loop, first = (timed_call(c, sync) for c in calls)
            per_step.append(max(0.0, ((full - one) - (loop - first)) / (tokens - 1)))
            per_call.append(max(0.0, one - first - per_step[-1]))
            forward.append((loop - first) / (tokens - 1))
    return statistics.median(per_step), statistics.median(per_call), statistics.median(forward)
