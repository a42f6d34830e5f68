"""How much slower an op runs inside a network than repeated alone (the context model), and what a copy
sweep over growing working sets says of the last-level cache: its knee, where its band ends, and the
share of a pass's weight reads it misses. Read at prediction time, fitted by hwcost.calibration.fit,
measured by hwcost.resources.measured_llc; plain arithmetic."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .formulas import CONV_FAMILIES, conv_kernel, runs_native_conv
from .records import OpCost


LLC_KNEE_RATIO = 1.25   # the cache band must copy at least this much faster than DRAM to count as a cache


def llc_from_sweep(working_set_bytes: list[float], gbps: list[float]) -> float:
    """The last-level cache's working size from a copy sweep (``gbps`` at each ``working_set_bytes``,
    increasing; the first past the private caches, the last far past any cache): where the bandwidth
    falls through the geometric mean of the cache band's (the best of the first two) and DRAM's (the
    last), interpolated in log-log between the two sizes around the crossing. 0.0 when the sweep shows
    no cache band (the first sizes no faster than DRAM by LLC_KNEE_RATIO): the caller keeps what the
    platform says."""
    if len(gbps) < 3 or len(gbps) != len(working_set_bytes):
        return 0.0
    band, dram = max(gbps[:2]), gbps[-1]
    if band < LLC_KNEE_RATIO * dram:
        return 0.0
    return _first_crossing(working_set_bytes, gbps, math.log(band * dram) / 2)   # the geometric mean


def _first_crossing(working_set_bytes: list[float], gbps: list[float], log_level: float) -> float:
    """The working set where the sweep's rate first falls below exp(``log_level``), interpolated in log-log
    between the two sizes around it; 0.0 where it never does."""
    for i in range(1, len(gbps)):
        if math.log(gbps[i]) < log_level:
            lo, hi = math.log(gbps[i - 1]), math.log(gbps[i])
            w = (lo - log_level) / (lo - hi) if lo > hi else 1.0
            a, b = math.log(working_set_bytes[i - 1]), math.log(working_set_bytes[i])
            return float(math.exp(a + min(max(w, 0.0), 1.0) * (b - a)))
    return 0.0


# a matrix product over at least this many rows (a prompt's tokens, an image's patches; a decode step has
# one to a few) with weights, in a pass that streams any of its weights, reads them all from DRAM
# (ContextModel.blocked_product)
PROMPT_ROWS = 16

LLC_FIT_RATIO = 0.9   # a working set "fits" while the sweep still copies it at this share of the cache band's rate


def llc_fit_from_sweep(working_set_bytes: list[float], gbps: list[float]) -> float:
    """The largest working set the last-level cache still serves at its own speed: where the copy sweep's
    rate first falls below LLC_FIT_RATIO of the cache band's (the best of the first two sizes),
    interpolated in log-log between the two sizes around it. The knee (llc_from_sweep) is where half the
    slowdown has happened; a pass that reads its weights cyclically, as a decoder's steps do, already
    misses there: a 45M-parameter Llama (136 MB of weights) decoded at DRAM speed, its 2.9 MB
    projections 2x and its LM head 1.6x their time alone, with the knee measured at 113-154 MB and the
    sweep 6% below the band at 64 MB, 34% at 128 MB (1 thread, this project's VM). 0.0 where the sweep
    shows no cache band (as llc_from_sweep) or never leaves it."""
    if llc_from_sweep(working_set_bytes, gbps) <= 0:
        return 0.0
    return _first_crossing(working_set_bytes, gbps, math.log(LLC_FIT_RATIO * max(gbps[:2])))


def llc_miss_from_sweep(working_set_bytes: list[float], gbps: list[float]) -> list[list[float]]:
    """[working set bytes, share of reads from DRAM] at each size of a copy sweep: the share h that makes
    1 / rate = (1 - h) / band + h / DRAM, the cache band's rate the best of the first two sizes and DRAM's
    the last; none while the rate stays within LLC_FIT_RATIO of the band (timing noise), never falling as
    the working set grows. A cyclic read of weights misses the cache as gradually as the copies do: a
    45M-parameter Llama's 136 MB decoded between its all-cached and all-DRAM predictions, 0.3-0.5 of the
    way, where the sweep at that size said 0.25-0.7 (1 and 2 threads, this project's VM). [] where the
    sweep shows no cache band (as llc_from_sweep)."""
    if llc_from_sweep(working_set_bytes, gbps) <= 0:
        return []
    band, dram = max(gbps[:2]), gbps[-1]
    points, share = [], 0.0
    for ws, rate in zip(working_set_bytes, gbps):
        if rate < LLC_FIT_RATIO * band:
            share = max(share, min((1 / rate - 1 / band) / (1 / dram - 1 / band), 1.0))
        points.append([float(ws), round(share, 4)])
    return points


class LlcSweep(NamedTuple):
    knee_bytes: float                 # llc_from_sweep
    fit_bytes: float                  # llc_fit_from_sweep
    miss: list[list[float]]           # llc_miss_from_sweep


def miss_share_at(points: list[list[float]], working_set_bytes: float) -> float:
    """The share of a cyclic read of ``working_set_bytes`` that comes from DRAM, from a copy sweep's
    [working set bytes, miss share] points (llc_miss_from_sweep; increasing sizes), linear in
    log(size) between them: the first point's share below the sweep, the last's beyond it."""
    if not points or working_set_bytes <= points[0][0]:
        return float(points[0][1]) if points else 0.0
    for (a, ma), (b, mb) in zip(points, points[1:]):
        if working_set_bytes <= b:
            w = math.log(working_set_bytes / a) / math.log(b / a)
            return float(ma + w * (mb - ma))
    return float(points[-1][1])


def product_rows(cost: OpCost) -> int:
    """The rows of an op's output (all its dimensions but the last): a matrix product's rows; 0 where it
    has no output shape."""
    if not cost.record.outputs:
        return 0
    shape = cost.record.outputs[0].shape
    return math.prod(shape) // shape[-1] if shape and shape[-1] > 0 else 0


def few_row_product(cost: OpCost) -> bool:
    """Is this a matrix product of fewer than PROMPT_ROWS rows (a decode step's, a classifier head's)? It
    pays its own context term (ContextModel.per_matvec_op_s) and, with its weights cold, takes the time of
    one stream over them, which its cold samples measured (TimeModel.cold_bounded)."""
    return cost.family == "matmul" and 0 < product_rows(cost) < PROMPT_ROWS


@dataclass
class ContextModel:
    """In-network time of an op from its isolated time. A microbenchmark repeats one op on the same
    tensors, so its weights and inputs sit in the core's private caches; in a network every parameter
    is read once per pass from further out (L3 or DRAM) and each input was just written, often by
    another core. So in context an op pays, on top of its isolated time, a cost per op (cold code and
    thread hand-off) and a cost per byte of parameters, inputs and outputs it would have found in its
    private cache when repeated alone: bytes up to ``cache_bytes`` (the private cache of the threads
    that run it); beyond that the isolated measurement already streamed them from outside.

    A network whose weights exceed what the last-level cache keeps from pass to pass reads its weights
    from DRAM: such an op's isolated time comes from samples with cold weights too (the cold_weights
    feature), and its weight bytes pay no context term on top. Where the cache keeps part of them
    (stream_share: the copy sweep's miss share at the pass's weight bytes), the pass is predicted both
    ways and the two blended by that share. The other ops of such a pass pay nothing more: in a 110M
    Llama's decode step (400 MB of weights from DRAM, torch.profiler, 1 and 2 threads) its small ops took
    what they take in a 15M model's cached step, and its products their cold samples' time (until the
    forty-first session a per-op term fitted on calibration's streaming chains, 17-20 us at 1 thread, put
    that step 16-19% slow: docs/accuracy.md). Those chains are not fitted: the terms come from
    the chains whose weights stay cached. No per-family scale on the isolated time beyond the share a network
    does not pay of it, fitted apart for convolutions and for the other ops; a fixed cost per op of
    its own for convolutions, for blocked products and for products of fewer than PROMPT_ROWS rows: a decode
    step's matrix-vector products were fitted to pay next to nothing per op, a token chain's ~10 us
    (docs/calibration.md)."""

    per_op_s: float = 0.0
    per_weight_byte_s: float = 0.0
    per_input_byte_s: float = 0.0
    per_output_byte_s: float = 0.0
    per_input_byte_llc_s: float = 0.0    # per input byte past the private cache, up to the last-level cache
    per_output_byte_llc_s: float = 0.0   # per output byte likewise
    per_conv_op_s: float = 0.0       # per convolution (CONV_FAMILIES) run by oneDNN, on top of per_op_s
    per_matmul_op_s: float = 0.0     # per matrix product (linear, matmul, bmm) of PROMPT_ROWS rows or more, likewise
    per_matvec_op_s: float = 0.0     # per matrix product of fewer rows (a decode step's, a classifier head's)
    cache_bytes: float = 0.0         # 0: unknown, bytes are not capped
    llc_bytes: float = 0.0           # last-level cache; 0: unknown, weights never taken as cold
    llc_fit_bytes: float = 0.0       # the most weights a pass keeps in it (calibration.bench.llc_fit_bytes); 0: llc_bytes
    # [working set bytes, share of reads from DRAM] from the copy sweep (calibration.bench.llc_miss_points);
    # none: a pass streams all its weights past llc_fit_bytes (or llc_bytes) and none below
    llc_miss: list[list[float]] = field(default_factory=list)
    # the weights calibration's streamed samples cycled through (calibration.bench.stream_pool_bytes), kept
    # as a record: their times stand for every weight read from DRAM (stream_share), whatever the sweep's
    # miss share at the pool's size
    cold_pool_bytes: float = 0.0
    # a pass whose weights total at most this finds them in the private caches again on its next pass, and
    # its ops pay no weight term: set (to cache_bytes) where calibration timed its chains with their weights
    # rotated past those caches (calibration.bench.chain_copies), so that the term was fitted on weights
    # from the last-level cache; 0: chains repeated as they were, the term fitted on a mix, paid by every pass
    resident_bytes: float = 0.0
    # a matrix product whose own weights exceed this reads them from DRAM however the pass fares (the
    # matrix-vector sweep's knee, calibration.bench.matvec_stream_bytes): predicted cold in every condition;
    # 0: unmeasured (samples before suite 33, a GPU), the pass's share alone decides
    matvec_stream_bytes: float = 0.0
    chains: int = 0
    median_abs_error_pct: float | None = None
    per_native_conv_op_s: float = 0.0   # per convolution run by PyTorch's own kernel (runs_native_conv)
    # the CPU threads the chains ran on, which decides a convolution's kernel (formulas.runs_native_conv);
    # 0: unknown or a GPU, every convolution pays per_conv_op_s
    threads: int = 0
    # the share of its isolated time an op does not pay in a network, fitted with the terms, 0 to
    # calibration.fit.MAX_ISOLATED_SHRINK: the terms only add, so where the fitted isolated times overstate the
    # chains and probe networks (a calibration whose trees came out slow: self-check CNN b8 1.08x, every held-out
    # network at batch 8 10-14% slow, their isolated sums alone over the measured times) nothing else takes it off
    isolated_shrink: float = 0.0
    # the same share for a convolution (CONV_FAMILIES), fitted apart: convolution trees and product trees
    # err apart, and one share for both took 4.6% off every product in a 1-thread calibration here (run FF1)
    # whose token and decode chains its fit left 6% and 11% fast, in sample, while its convolution chains sat
    # within 2-5% (docs/accuracy.md, sixty-first session)
    conv_isolated_shrink: float = 0.0

    TERMS = ("_ops", "_weight_bytes", "_input_bytes", "_output_bytes", "_input_bytes_llc", "_output_bytes_llc",
             "_conv_ops", "_matmul_ops", "_matvec_ops", "_native_conv_ops")
    FIELDS = ("per_op_s", "per_weight_byte_s", "per_input_byte_s", "per_output_byte_s", "per_input_byte_llc_s",
              "per_output_byte_llc_s", "per_conv_op_s", "per_matmul_op_s", "per_matvec_op_s",
              "per_native_conv_op_s")   # TERMS' coefficients
    STREAMED = "_streamed_ops"   # a design row's ops run in a pass that streams its weights (not fitted on)

    def terms(self, cost: OpCost, cold: bool = False, resident: bool = False) -> tuple[float, ...]:
        """What each coefficient multiplies for one op, in TERMS' order: the op; its parameter, input and
        output bytes capped at the private cache (parameters: none when cold); its input and output bytes
        between the private and the last-level cache (repeated alone, an op keeps those in the LLC, its
        output on the same lines each call; in a network not: MobileNetV2's batch-8 depthwise convolutions
        ran 1.3-1.8x their isolated time); the op again if a convolution or a product, a convolution under
        the kernel that runs it (in MobileNetV3-Small and ShuffleNetV2 at batch 1 PyTorch's own ran 13-34 us over
        their time alone, oneDNN's 42-52: docs/accuracy.md, rule U; probably oneDNN's JIT code, its own per
        shape, is cold again in a network, where PyTorch's one GEMM path stays warm). ``resident``: the pass's
        weights stay in the private caches (resident)."""
        def cap(nbytes: float) -> float:
            return min(nbytes, self.cache_bytes) if self.cache_bytes > 0 else nbytes

        def band(nbytes: float) -> float:   # none where either cache is unknown
            lo, hi = self.cache_bytes, self.llc_bytes
            return min(max(nbytes - lo, 0.0), hi - lo) if 0 < lo < hi else 0.0

        weights = 0.0 if cold or resident else cap(cost.weight_bytes)
        product = cost.family == "matmul"
        matvec = few_row_product(cost)
        inputs = cost.bytes_read - cost.weight_bytes
        conv = cost.family in CONV_FAMILIES
        native = conv and runs_native_conv(conv_kernel(cost), self.threads)
        return (1.0, weights, cap(inputs), cap(cost.bytes_written), band(inputs), band(cost.bytes_written),
                float(conv and not native), float(product and not matvec), float(matvec), float(native))

    def coefficients(self) -> tuple[float, ...]:   # the fitted seconds per unit of each term, in TERMS' order
        return tuple(getattr(self, f) for f in self.FIELDS)

    def shrink(self, cost: OpCost) -> float:
        """The share of its isolated time this op does not pay in a network."""
        return self.conv_isolated_shrink if cost.family in CONV_FAMILIES else self.isolated_shrink

    def apply(self, iso_s: float, cost: OpCost, cold: bool = False, resident: bool = False) -> float:
        return iso_s * (1.0 - self.shrink(cost)) + sum(
            k * v for k, v in zip(self.coefficients(), self.terms(cost, cold, resident)))

    def resident(self, costs: list[OpCost]) -> bool:
        """Do these ops, run as one pass after another, keep all their weights in the private caches
        (resident_bytes; never where it is 0)?"""
        return self.resident_bytes > 0 and sum(c.weight_bytes for c in costs) <= self.resident_bytes

    def stream_share(self, costs: list[OpCost]) -> float:
        """How far these ops, run as one pass after another, lie from their cached time towards their
        streamed one (1: the streamed samples' condition), by the share of their weight reads the last-level
        cache misses: the copy sweep's miss share at the pass's weight bytes, where calibration recorded it.
        The streamed samples stand for a pass that reads every weight from DRAM, though the sweep finds ~20%
        of a cyclic copy of their ~2x-the-cache pool still cached: products cycling 450 MB of weight copies
        took the time they took cycling the 223 MB pool (within 3% at 1 and 2 threads), and inside a 110M
        Llama's decode step (400 MB of weights) its products ran at 0.96-1.03x the pool's time. (Until the
        thirty-seventh session the share was divided by the sweep's at the pool, a 136 MB pass put 0.67 of
        the way instead of 0.55 and a 400 MB one 1.13, beyond the samples: re-predicted over six recorded
        calibrations, 5 fewer of 624 held-out pairs within ±10% and 5 more of 144 generation figures within
        ±15% drift-adjusted, 8 more raw.) A 45M-parameter Llama's 136 MB of weights decoded 0.3-0.5 of the
        way from its cached to its streamed prediction here (in-model hooks).
        Without a sweep, all or nothing: streamed past llc_fit_bytes (or llc_bytes). 0.0 with no cache
        size known."""
        weight_bytes = sum(c.weight_bytes for c in costs)
        if self.llc_miss:
            return min(max(miss_share_at(self.llc_miss, weight_bytes), 0.0), 1.0)
        limit = self.llc_fit_bytes or self.llc_bytes
        return 1.0 if limit > 0 and weight_bytes > limit else 0.0

    def own_weights_stream(self, cost: OpCost) -> bool:
        """Is this a matrix product whose own weights no cache keeps between two calls (past
        matvec_stream_bytes), so that it reads them from DRAM whatever the rest of the pass does?"""
        return cost.family == "matmul" and 0 < self.matvec_stream_bytes < cost.weight_bytes

    def never_warm(self, cost: OpCost) -> bool:
        """Are this op's own weights past the last-level cache's knee (llc_bytes), the size past which
        calibration labels a sample cold (calibration.bench.weights_cold)? Then every sample that large was
        timed cold, and a warm prediction of it is the trees' extrapolation (TimeModel.cold_bounded)."""
        return 0 < self.llc_bytes < cost.weight_bytes

    def blocked_product(self, cost: OpCost) -> bool:
        """Is this a matrix product with weights over PROMPT_ROWS rows or more? In a pass that streams any
        of its weights such a product reads them all from DRAM, whatever the sweep's share says: in a 45M
        Llama (136 MB of weights, share 0.38; torch.profiler, 1 thread, this project's VM) the 32-token
        prefill's products ran at or past their cold prediction (gate and up projections 7.3 ms per pass:
        7.0 cold, 5.2 cached), the decode step's matrix-vector products at or under their cached one (1.8
        ms: 1.9). Probably because a blocked product reads its weights in panels, which the hardware
        prefetcher follows less well than the one sequential read of a matrix-vector product or the sweep."""
        return cost.family == "matmul" and cost.weight_bytes > 0 and product_rows(cost) >= PROMPT_ROWS

    def always_streams(self, cost: OpCost, streaming_pass: bool) -> bool:
        """Does this op read all its weights from DRAM whatever share of the pass the cache serves: a
        product whose own weights stream (own_weights_stream) or, in a pass that streams at all
        (``streaming_pass``), a blocked product (blocked_product)?"""
        return self.own_weights_stream(cost) or (streaming_pass and self.blocked_product(cost))

    def dram_weight_bytes(self, costs: list[OpCost]) -> float:
        """The weight bytes a pass of ``costs`` reads from DRAM: all of those ops' that always stream
        (always_streams), the pass's stream_share of everyone else's."""
        share = self.stream_share(costs)
        return sum(c.weight_bytes * (1.0 if self.always_streams(c, share > 0) else share) for c in costs)

    def design(self, iso: list[float], costs: list[OpCost], colds: list[bool] | None = None,
               streamed: bool = False) -> dict[str, float]:
        """A chain's totals under one condition (its weights cached or ``streamed``): isolated seconds, the
        sum of each term over its ops, and its ops again under STREAMED when they stream."""
        row = dict.fromkeys(("_isolated_s", "_isolated_conv_s") + self.TERMS + (self.STREAMED,), 0.0)
        for t, c, cold in zip(iso, costs, colds or [False] * len(costs)):
            row["_isolated_s"] += t
            row["_isolated_conv_s"] += t if c.family in CONV_FAMILIES else 0.0
            row[self.STREAMED] += float(streamed)
            for name, v in zip(self.TERMS, self.terms(c, cold)):
                row[name] += v
        return row

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ContextModel":
        """Fields this version knows: a model file's retired per_op_streamed_s (fitted until the forty-first
        session) is left out, so profiles calibrated before predict as newer ones do; a file fitted before
        products of few rows had a term of their own (the forty-fifth session) charges them its one product
        term, as it did."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known.setdefault("per_matvec_op_s", known.get("per_matmul_op_s", 0.0))   # fitted as one term before
        known.setdefault("conv_isolated_shrink", known.get("isolated_shrink", 0.0))   # one share for all before
        return cls(**known)
