"""Timing primitives shared by measurement and calibration: warm-up then repeats, outlier rejection
(beyond median + 4 scaled MADs: a preempted run, a page-fault storm), CUDA synchronization, a fixed
thread count, and a model timed call by call against a fixed reference network."""
from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

OUTLIER_MADS = 4.0
UNSTEADY_SPREAD = 1.25   # p90 / p10 of the kept runs above which a measurement says the machine was not steady


@dataclass
class TimingStats:
    median_s: float
    p10_s: float
    p90_s: float
    samples_s: list[float]
    rejected: int = 0
    calls: int = 0               # every call made, untimed warm-up included (0: not counted)

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def reject_outliers(samples: list[float], mads: float = OUTLIER_MADS) -> tuple[list[float], int]:
    """Drop samples slower than median + mads x 1.4826 x MAD (one-sided: a run is never too fast)."""
    if len(samples) < 4:
        return list(samples), 0
    med = statistics.median(samples)
    mad = statistics.median(abs(s - med) for s in samples) * 1.4826
    if mad == 0:
        return list(samples), 0
    kept = [s for s in samples if s <= med + mads * mad]
    return kept, len(samples) - len(kept)


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples: list[float]) -> TimingStats:
    kept, rejected = reject_outliers(samples)
    return TimingStats(statistics.median(kept), _quantile(kept, 0.1), _quantile(kept, 0.9), kept, rejected)


def synchronizer(backend: str) -> Callable[[], None]:
    if backend == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def timed_call(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one call of ``fn``, the device synchronized before the clock stops."""
    t0 = clock()
    fn()
    sync()
    return clock() - t0


def time_callable(
    fn: Callable[[], Any],
    warmup: int = 3,
    repeats: int = 10,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    max_seconds: float | None = None,
) -> TimingStats:
    """Warm up, then time ``repeats`` calls (fewer if ``max_seconds`` runs out, at least 3)."""
    for _ in range(warmup):
        fn()
    sync()
    samples: list[float] = []
    start = clock()
    for i in range(repeats):
        samples.append(timed_call(fn, sync, clock))
        if max_seconds is not None and i >= 2 and clock() - start > max_seconds:
            break
    return replace(summarize(samples), calls=warmup + len(samples))


@dataclass
class PairedStats:
    """A model timed call by call against a fixed reference network, in the same seconds."""

    model: TimingStats
    reference: TimingStats
    ratio_median: float          # median over calls of model time / reference time
    ratio_spread: float          # p90 / p10 of those ratios (near 1: the ratio held while the machine moved)
    model_warmup: int = 0        # untimed calls of the model before each timed one


def time_interleaved(
    fn: Callable[[], Any],
    reference: Callable[[], Any],
    warmup: int = 3,
    repeats: int = 10,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    max_seconds: float | None = None,
    reference_warmup: int = 1,
    model_warmup: int = 0,
    model_warmup_s: float = 0.0,
    model_warmup_max: int | None = None,
) -> PairedStats:
    """Time ``fn`` and ``reference`` alternately, call by call: a shared machine's speed swings over
    seconds, and both calls of a pair see the same speed, so their ratio stays while each time moves.

    ``reference_warmup`` untimed calls of the reference precede each timed one: right after a model
    it finds the caches, TLB and worker threads as the model left them (here the probe network ran 11%
    slower after a ResNet-50 than after itself), while the time it is compared with (its time at
    calibration) was taken warm. ``model_warmup`` likewise for ``fn``: a small model right after the
    reference runs cold (a 1.4 ms keyword spotter took 1.8-1.9 ms after the probe network, as after
    filling 64 MB), where what it is compared with, a prediction from samples timed back to back, is
    warm. ``model_warmup_s``: more untimed calls of ``fn`` (up to ``model_warmup_max``) until they last
    that long, counted once from a call timed after the warm-up: the shorter a model, the more of its
    calls it takes to recover from the reference's (the count used is in the result)."""
    for _ in range(warmup):
        fn()
        reference()
    sync()
    sizing = int(model_warmup_s > 0)
    if sizing:
        one_s = timed_call(fn, sync, clock)
        wanted = math.ceil(model_warmup_s / one_s) if one_s > 0 else model_warmup
        model_warmup = max(model_warmup, min(wanted, model_warmup_max or model_warmup))
    model_s: list[float] = []
    ref_s: list[float] = []
    start = clock()
    for i in range(repeats):
        for _ in range(model_warmup):
            fn()
        sync()
        model_s.append(timed_call(fn, sync, clock))
        for _ in range(reference_warmup):
            reference()
        sync()
        ref_s.append(timed_call(reference, sync, clock))
        if max_seconds is not None and i >= 2 and clock() - start > max_seconds:
            break
    paired = _paired(model_s, ref_s, [m / r for m, r in zip(model_s, ref_s) if r > 0])
    pairs = len(model_s)
    return replace(paired, model_warmup=model_warmup,
                   model=replace(paired.model, calls=warmup + sizing + pairs * (1 + model_warmup)),
                   reference=replace(paired.reference, calls=warmup + pairs * (1 + reference_warmup)))


def _paired(model_s: list[float], ref_s: list[float], ratios: list[float]) -> PairedStats:
    lo, hi = _quantile(ratios, 0.1), _quantile(ratios, 0.9)
    return PairedStats(summarize(model_s), summarize(ref_s), statistics.median(ratios), hi / lo if lo > 0 else 1.0)


# untimed reference calls before each timed reference block (time_in_blocks): after a case that streamed
# its weights from a 128 MB pool, calibration's 0.2 ms workload (calibration.bench.ReferenceWorkload) ran
# 2.4x, 1.5x, 1.3x, 1.2x its time for its first four calls and needed ~10 (2.3 ms) to return to it (1
# thread, AMD EPYC guest, interleaved with three other cases); after a 12 MB matmul 1.2x for its second
# call. Timed after one untimed call it read 3-6% slow beside cases within the last-level cache and 11-18%
# beside larger ones, 33% beside an LM head, and every ratio put those cases that much fast
# (docs/accuracy.md, twenty-sixth session).
REFERENCE_WARM_S = 3e-3


def time_in_blocks(
    fn: Callable[[], Any],
    reference: Callable[[], Any],
    repeats: int = 12,
    rounds: int = 4,
    reference_calls: int = 3,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    max_seconds: float | None = None,
    reference_warm_s: float = REFERENCE_WARM_S,
) -> PairedStats:
    """``repeats`` calls of ``fn`` in ``rounds`` blocks, each block followed by a block of the reference;
    the ratio is the median over rounds of block medians. Each block starts with an untimed call, so
    both are timed warm, as alone: per-call alternation (time_interleaved) lets each evict the other's
    data, and then a large op slows the reference after it (a 1.3 MB workload ran 160 us after itself,
    400 after a convolution) and a small one runs colder than it would alone. A short reference is
    called untimed for at least ``reference_warm_s`` too: one call does not bring it back after a case
    that streamed memory (REFERENCE_WARM_S)."""
    per_round = max(1, -(-repeats // rounds))
    model_s: list[float] = []
    ref_s: list[float] = []
    ratios: list[float] = []
    start = clock()
    for i in range(rounds):
        fn()
        sync()
        block = [timed_call(fn, sync, clock) for _ in range(per_round)]
        warm_from = clock()
        reference()
        sync()
        while clock() - warm_from < reference_warm_s:
            reference()
            sync()
        ref_block = [timed_call(reference, sync, clock) for _ in range(reference_calls)]
        model_s += block
        ref_s += ref_block
        ratios.append(statistics.median(block) / statistics.median(ref_block))
        if max_seconds is not None and i >= 1 and clock() - start > max_seconds:
            break
    return _paired(model_s, ref_s, ratios)


_process_flushes = False   # set by flush_subnormals_now: torch has no getter for the setting


@contextmanager
def subnormals_flushed(on: bool = True):
    """Time arithmetic on subnormal floats as on zeros (x86 FTZ/DAZ via torch.set_flush_denormal), and
    afterwards return to what the process set (off, unless ``flush_subnormals_now`` ran). An untrained
    network's activations can decay into subnormals, which x86 cores handle in microcode: MobileViT-S
    built from its config ends with activations near 1e-40, and its SiLUs ran 1.7-2x slower on them
    than on normal values. Trained weights keep activations normal, and that is the arithmetic hwcost
    predicts. The setting is per thread; intra-op worker threads take it from the thread that creates
    them, so a process that sets it before its first parallel op (the CLI, the benchmarks:
    ``flush_subnormals_now``) covers them too, and keeps it on this thread after each measurement."""
    if not on:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(_process_flushes)


def subnormals_flushed_in_process() -> bool:
    """Whether the process's entry point set the flush (flush_subnormals_now): what a child process that
    times for it must set too."""
    return _process_flushes


def flush_subnormals_now(on: bool = True) -> None:
    """For a process's entry point, before its first parallel op (see subnormals_flushed); ``False``
    undoes it (the CLI's main, called in-process, leaves the caller's setting as it was)."""
    global _process_flushes
    _process_flushes = on
    torch.set_flush_denormal(on)


@contextmanager
def fixed_threads(threads: int | None):
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)
