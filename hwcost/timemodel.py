"""The calibrated time model read at prediction time: per op family, fitted trees of log(measured /
baseline) on op features, and the in-network context model; numpy only (fitting lives in
hwcost.calibration.fit, which needs scikit-learn and scipy).

baseline = dispatch floor + max(FLOPs / peak, bytes / bandwidth), with the profile's measured
peak rates (a fused recurrent layer's: the matrix products it runs, as the product trees time them).
Regressing the log ratio keeps the model physical where samples run out: a
convolution larger than any measured one keeps the efficiency of the largest ones instead of a
flat time. The fitted trees are stored as plain arrays (JSON) beside the profile, checked against the
sha256 the profile records, and evaluated with numpy, so nothing but numbers is ever read from disk.

Long because one object carries the whole prediction path (isolated times, cached and streamed weights,
the context) with its own reading and checking from disk.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .context import ContextModel, few_row_product
from .devices import DeviceProfile, calibration_rates
from .errors import ProfileError
from .features import FEATURES, op_key, op_prior, recurrent_shape, reread_set, shape_features, vectorize, with_reread
from .formulas import PRODUCT_FAMILIES, serial_steps
from .parts import recurrent_products, timed_parts
from .records import OpCost
from .reuse import dram_extra_s_per_byte, with_evicted

MODEL_VERSION = 16  # 16: the context cost per convolution by its kernel (oneDNN or PyTorch's own)
# 15: a recurrent layer's baseline is its matrix products as the product model times them;
# 14: a recurrent layer's step weights read again past the private caches (features.reread_bytes)
# 13: a contiguous elementwise op's layout features zeroed (features.LAYOUT_FEATURES); 12: native_conv (formulas.native_conv: PyTorch's own convolution kernels or oneDNN); 11: a recurrent layer's own fit per serial call and per FLOP (features.prior_terms); 10: context terms per convolution and per product; 9: context terms for bytes between the
# private cache and the LLC; 8: op codes ordered by cost per element, each op's own fit as op_prior; 7: op codes
# by cost; 6: in-place flag; 5: strided; 4: a recurrent layer pays the floor per serial step; 3: cold_weights,
# the LLC in the context model; 2: context model without per-family scales, bytes capped at the private cache
RANGE_SLACK = 0.05   # in the features' log units: 5% past the largest sampled size is still sampled


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def calibration_text(device: DeviceProfile, kind: str) -> str:
    """A file behind a calibrated profile ("samples" or "model"), checked against its recorded hash."""
    cal = device.calibration or {}
    text = device.calibration_file_text(kind)
    if cal.get(f"{kind}_sha256") and sha256(text) != cal[f"{kind}_sha256"]:
        raise ProfileError(f"{device.path}: {cal.get(kind + '_file')} changed since calibration (sha256 differs); "
                           "recalibrate")
    return text


@dataclass
class Rates:
    """Measured attainable rates that define the baseline."""

    floor_s: float                       # dispatch floor: the fastest op call measured
    matrix_flops: dict[str, float]       # FLOP/s per dtype for products
    vector_flops: dict[str, float]       # FLOP/s per dtype for elementwise work
    bandwidth: float                     # bytes/s (read + write)
    dram_extra_s_per_byte: float = 0.0   # a byte from DRAM over one from the last-level cache (reuse)
    private_cache_bytes: float = 0.0     # the threads' private caches together (0: unknown): features.reread_bytes

    def base(self, flops: float, traffic: float, matrix: bool, dtype: str, calls: int = 1) -> float:
        """Dispatch floor per kernel call made one after another (a recurrent layer: one per step,
        layer and direction), plus the roofline. Without the per-step floor a GRU at batch 1 sat
        40x above its baseline, where trees fitted on ~20 such samples mispredicted it by 35%.
        ``traffic`` counts bytes read again (features.reread_bytes) where there are such."""
        table = self.vector_flops if not matrix and dtype in self.vector_flops else self.matrix_flops
        peak = table[dtype]   # hwcost.devices.require_rate refused a dtype without a rate before this
        return self.floor_s * calls + max(flops / peak, traffic / self.bandwidth)

    def features(self, features: dict[str, float], family: str) -> dict[str, float]:
        """An op's shape features with those these caches set (features.with_reread)."""
        return with_reread(features, family, self.private_cache_bytes)

    def traffic(self, bytes_moved: float, features: dict[str, float]) -> float:
        """The bytes the roofline charges an op: those it moves once, and those it reads again."""
        return bytes_moved + reread_set(features)


class TreeEnsemble:
    """A fitted gradient-boosting regressor as plain arrays: init + lr x sum of tree leaves."""

    def __init__(self, init: float, lr: float, trees: list[dict[str, list]]):
        self.init, self.lr = init, lr
        self.trees = [{k: np.asarray(v) for k, v in t.items()} for t in trees]

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.full(len(x), self.init, dtype=float)
        rows = np.arange(len(x))
        for t in self.trees:
            node = np.zeros(len(x), dtype=int)
            while True:
                leaf = t["left"][node] == -1
                if leaf.all():
                    break
                go_left = x[rows, np.maximum(t["feature"][node], 0)] <= t["threshold"][node]
                nxt = np.where(go_left, t["left"][node], t["right"][node])
                node = np.where(leaf, node, nxt)
            out += self.lr * t["value"][node]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"init": self.init, "lr": self.lr, "trees": [{k: v.tolist() for k, v in t.items()} for t in self.trees]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TreeEnsemble":
        return cls(d["init"], d["lr"], d["trees"])


class TimeModel:
    """Per-family regressions of log(isolated time / baseline), plus the context model (fitted by
    hwcost.calibration.fit; read here with numpy only)."""

    def __init__(self, vocab: dict[str, list[str]], ensembles: dict[str, TreeEnsemble], constants: dict[str, float],
                 global_constant: float, rates: Rates, context: ContextModel | None = None,
                 ranges: dict[str, dict[str, Any]] | None = None,
                 op_fits: dict[str, dict[str, list[float]]] | None = None, expected: dict[str, float] | None = None):
        self.vocab, self.ensembles, self.constants = vocab, ensembles, constants
        # per family: the mean of measured / predicted isolated time over ops the trees did not see
        # (hwcost.calibration.fit.expected_factor): what turns a typical op's time into its expected time
        self.expected = expected or {}
        # per family and op: [fixed seconds, seconds per element touched] fitted to its samples (op_prior)
        self.op_fits = op_fits or {}
        self.global_constant, self.rates = global_constant, rates
        self.context = context or ContextModel()
        # per family: the sampled span of each size feature and of log(time / baseline) (fit.sampled_ranges)
        self.ranges = ranges or {}

    def extrapolated(self, family: str, feats: dict[str, float]) -> bool:
        """Does an op of ``family`` with these shape features lie outside what calibration sampled (a size
        feature beyond the sampled span, a convolution of a dimensionality never sampled, or a family never
        sampled)? False for a model fitted without ranges (ranges fitted before ``dims`` check sizes only)."""
        if not self.ranges:
            return False
        r = self.ranges.get(family)
        if r is None:
            return True
        if "dims" in r and feats.get("spatial_dims", 0.0) not in r["dims"]:
            return True
        return any(not lo - RANGE_SLACK <= feats[k] <= hi + RANGE_SLACK for k, (lo, hi) in r["features"].items())

    def bounded(self, cost: OpCost, base_s: float, iso_s: float) -> float:
        """An extrapolated op's isolated time held between the most and the least efficient the family
        ever measured (relative to the baseline): calibration saw no op of that family run faster or
        slower than that against its roofline, so trees reaching past it are extrapolating, not knowing."""
        r = self.ranges.get(cost.family)
        if r is None:   # a family never sampled: the spread of every family measured
            lo = min(v["log_ratio"][0] for v in self.ranges.values())
            hi = max(v["log_ratio"][1] for v in self.ranges.values())
        else:
            lo, hi = r["log_ratio"]
        return min(max(iso_s, base_s * math.exp(lo)), base_s * math.exp(hi))

    def conditions(self, costs: list[OpCost]) -> list[tuple[float, bool]]:
        """(weight, streamed) per condition the pass of ``costs`` runs under: its weights cached, streamed
        from DRAM, or both, weighted by how far it lies between them (ContextModel.stream_share)."""
        share = self.context.stream_share(costs)
        if share <= 0 or share >= 1:
            return [(1.0, share >= 1)]
        return [(1.0 - share, False), (share, True)]

    def cold_flags(self, costs: list[OpCost], streamed: bool, streaming_pass: bool = False) -> list[bool]:
        """Per op: are its weights cold — its family was sampled with cold weights (others keep their warm
        samples and context term) and the pass streams them (``streamed``), or it is a matrix product whose
        own weights no cache keeps between two calls (ContextModel.matvec_stream_bytes: a 33 MB LM head
        ran at its cold samples' speed run alone as in the pass), or a blocked product in a pass that
        streams at all (``streaming_pass``): ContextModel.always_streams."""
        families = {f for f, r in self.ranges.items() if r.get("cold")}
        if not families:
            return [False] * len(costs)
        def cold(c: OpCost) -> bool:
            return c.family in families and c.weight_bytes > 0 and (
                streamed or self.context.always_streams(c, streaming_pass))

        return [cold(c) for c in costs]

    def by_condition(self, costs: list[OpCost], dtype: str, matrix_flags: list[bool],
                     flags: list[bool] | None = None) -> Iterator[tuple[float, bool, list[bool], list[float]]]:
        """Per condition the pass of ``costs`` runs under (conditions): its weight, whether it streams, each
        op's cold flag and isolated seconds (isolated, ``flags`` marked as there)."""
        warm = None
        conditions = self.conditions(costs)
        streaming_pass = any(streamed for _, streamed in conditions)   # its stream share above 0
        for weight, streamed in conditions:
            colds = self.cold_flags(costs, streamed, streaming_pass)
            iso = self.isolated(costs, dtype, matrix_flags, flags, colds)
            if any(colds):
                warm = warm or self.isolated(costs, dtype, matrix_flags, None, [False] * len(costs))
                iso = self.cold_bounded(costs, iso, warm, colds)
            yield weight, streamed, colds, iso

    def cold_bounded(self, costs: list[OpCost], iso: list[float], warm: list[float], colds: list[bool]) -> list[float]:
        """Each op with cold weights held between its warm time and its warm time plus one read of its
        weights at the measured DRAM bandwidth: fetching them from DRAM instead of a cache can add no more
        than that, with no overlap at all. The cold samples are mostly a few rows (decode steps), where
        the read is the time; the trees carried their slowness to a 128-token LM head (65 MB of weights,
        4.2 GFLOP), which four calibrations here put at 33-50 ms cold against 26-28 ms warm, where it
        ran 29-32 ms with its weights cold or cached alike.

        A product of a few rows (context.few_row_product) keeps its cold samples' time above the ceiling: one
        thread's matrix-vector product over short rows streams far below the copy bandwidth, and the ceiling
        put the decode probe's 256 x 32000 LM head (33 MB) at 2.3 ms (14 GB/s) where its cold samples and
        the trees said 3.7 and it ran 3.6 in the step (1 thread, this project's AMD guest, fifty-ninth
        session: docs/accuracy.md).

        An op whose own weights lie past the cache's knee (ContextModel.never_warm) is not held above its warm
        time: no sample that large was timed warm, so that time is the trees' extrapolation. A 38 MB LSTM
        (2 layers, bidirectional, batch 8) took 120 ms warm and 103 cold from the trees, its nearest sample
        110 cold, and ran 98; re-predicted over ten calibrations on the AMD guest, 14 more of 520 held-out pairs
        fell within ±10% (LM heads at batch 8 among them) and none fewer on any one (sixtieth session)."""
        out = list(iso)
        for i, (c, cold) in enumerate(zip(costs, colds)):
            if cold:
                ceiling = (warm[i] + c.weight_bytes / self.rates.bandwidth
                           if self.rates.bandwidth > 0 and not few_row_product(c) else math.inf)
                floor = 0.0 if self.context.never_warm(c) else warm[i]
                out[i] = min(max(out[i], floor), ceiling)
        return out

    def recurrent_base(self, features: dict[str, float], dtype: str) -> float:
        """A fused recurrent layer's baseline: the matrix products it runs (parts.recurrent_products), each
        timed as the fitted product model times it alone; 0.0 where there are none or no product model.
        The roofline of its total FLOPs put a step's matrix-vector product at batch 1 and the input
        product's large GEMM at one rate (docs/accuracy.md, rule Q)."""
        products = recurrent_products(recurrent_shape(features), dtype)
        if not products or "matmul" not in self.ensembles:
            return 0.0
        times = self.isolated([c for c, _ in products], dtype, [True] * len(products))
        return sum(t * n for t, (_, n) in zip(times, products))

    def isolated(self, costs: list[OpCost], dtype: str, matrix_flags: list[bool],
                 flags: list[bool] | None = None, colds: list[bool] | None = None) -> list[float]:
        """Seconds per op measured alone (dispatch included), batched per family. With ``flags`` (one per
        op), ops outside the sampled ranges are marked there and held within physical bounds; ``colds``
        (one per op) marks ops whose weights come from DRAM."""
        out = [0.0] * len(costs)
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(costs):
            groups.setdefault(c.family, []).append(i)
        for fam, idx in groups.items():
            ens = self.ensembles.get(fam)
            checked = flags is not None and bool(self.ranges)
            feats = ({i: self.rates.features(shape_features(costs[i]), fam) for i in idx}
                     if ens is not None or checked or fam == "rnn" else {})
            traffic = [self.rates.traffic(costs[i].memory_traffic_bytes, feats.get(i, {})) for i in idx]
            bases = [self.rates.base(costs[i].flops, t, matrix_flags[i], dtype, serial_steps(costs[i]))
                     for i, t in zip(idx, traffic)]
            if fam == "rnn":
                bases = [self.recurrent_base(feats[i], dtype) or b for i, b in zip(idx, bases)]
            for i in feats:
                feats[i]["cold_weights"] = float(bool(colds and colds[i]))
            if ens is not None:
                corr = ens.predict(np.array([
                    vectorize(feats[i], fam, op_key(costs[i]), self.vocab,
                              op_prior(self.op_fits, fam, op_key(costs[i]), feats[i], b))
                    for i, b in zip(idx, bases)]))
            else:
                corr = [self.constants.get(fam, self.global_constant)] * len(idx)
            for i, b, c in zip(idx, bases, corr):
                out[i] = b * math.exp(float(c))
                if checked and self.extrapolated(fam, feats[i]):
                    flags[i] = True
                    out[i] = self.bounded(costs[i], b, out[i])
        return out

    def predict(self, costs: list[OpCost], dtype: str, flags: list[bool] | None = None) -> list[float]:
        """Seconds per op inside a network: isolated time through the context model. A layer recorded as
        one op (multi-head attention) is timed as the kernels it runs (hwcost.parts); products run at
        the matrix rate. ``flags`` (one per op) marks ops outside the sampled ranges."""
        parts = [timed_parts(c) for c in costs]
        flat = [p for ps in parts for p in ps]
        sub_flags = [False] * len(flat)
        times = self._predict(flat, dtype, [c.family in PRODUCT_FAMILIES for c in flat], sub_flags)
        out, i = [], 0
        for n, ps in enumerate(parts):
            out.append(sum(times[i:i + len(ps)]))
            if flags is not None:
                flags[n] = any(sub_flags[i:i + len(ps)])
            i += len(ps)
        return self.with_evicted_activations(out, costs)

    def with_evicted_activations(self, times: list[float], costs: list[OpCost]) -> list[float]:
        """``times`` plus each op's activation bytes the pass finds evicted at DRAM's extra cost per byte."""
        return with_evicted(times, costs, self.context.llc_miss, self.rates.dram_extra_s_per_byte)

    def expected_times(self, iso: list[float], costs: list[OpCost]) -> list[float]:
        """Isolated seconds (isolated(): an op's typical time) as expected times, by the family's factor
        (hwcost.calibration.fit.expected_factor): a pass lasts the sum of its ops, and a sum's expectation is
        the sum of the ops' expected times, which a skewed error puts above their typical ones."""
        return [t * self.expected.get(c.family, 1.0) for t, c in zip(iso, costs)]

    def _predict(self, costs: list[OpCost], dtype: str, matrix_flags: list[bool],
                 flags: list[bool] | None = None) -> list[float]:
        out = [0.0] * len(costs)
        resident = self.context.resident(costs)
        for weight, _, colds, iso in self.by_condition(costs, dtype, matrix_flags, flags):
            for i, (t, c, cold) in enumerate(zip(self.expected_times(iso, costs), costs, colds)):
                out[i] += weight * self.context.apply(t, c, cold, resident)
        return out

    def chain_row(self, costs: list[OpCost], context: ContextModel, dtype: str = "float32") -> dict[str, float]:
        """A measured chain's design row for the context fit, under ``context``'s caches (its coefficients
        unused): each condition's totals, blended as _predict blends the times. Never resident: calibration
        times a chain with its weights rotated past the private caches (ContextModel.resident_bytes)."""
        working = [c for c in costs if c.launches]
        fitting = copy.copy(self)   # the same fitted trees, under the chain's caches
        fitting.context = context
        row: dict[str, float] = {}
        for weight, streamed, colds, iso in fitting.by_condition(working, dtype,
                                                                 [c.family in PRODUCT_FAMILIES for c in working]):
            for k, v in context.design(fitting.expected_times(iso, working), working, colds, streamed).items():
                row[k] = row.get(k, 0.0) + weight * v
        return row

    def to_dict(self) -> dict[str, Any]:
        return {"format": "hwcost-time-model", "version": MODEL_VERSION, "features": list(FEATURES), "vocab": self.vocab,
                "constants": self.constants, "global_constant": self.global_constant, "op_fits": self.op_fits,
                "context": vars(self.context), "ranges": self.ranges, "expected": self.expected,
                "families": {f: e.to_dict() for f, e in self.ensembles.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], rates: Rates) -> "TimeModel":
        if d.get("format") != "hwcost-time-model":
            raise ValueError("not a time model of this hwcost version (format differs)")
        if d.get("version") != MODEL_VERSION:   # before the features: a new version mostly brings new features
            raise ValueError(f"time model version {d.get('version')}, this hwcost reads version {MODEL_VERSION}: "
                             "refit it from its samples")
        if list(d.get("features", [])) != list(FEATURES):
            raise ValueError("not a time model of this hwcost version (feature list differs): refit it from its "
                             "samples")
        ens = {f: TreeEnsemble.from_dict(e) for f, e in d["families"].items()}
        return cls(d["vocab"], ens, d["constants"], d["global_constant"], rates, ContextModel.from_dict(d["context"]),
                   d.get("ranges"), d.get("op_fits"), d.get("expected"))


_CACHE: dict[str, TimeModel] = {}


def time_model_for(model_text: str, rates: Rates) -> TimeModel:
    key = sha256(model_text) + repr((sorted(rates.matrix_flops.items()), rates.bandwidth, rates.dram_extra_s_per_byte,
                                     rates.private_cache_bytes))
    if key not in _CACHE:
        _CACHE[key] = TimeModel.from_dict(json.loads(model_text), rates)
    return _CACHE[key]


def rates_of(profile: DeviceProfile) -> Rates:
    """The baseline rates a calibrated profile's time model was fitted against."""
    r = (profile.calibration or {}).get("rates", {})
    return Rates(
        floor_s=float(r.get("floor_us", profile.host_per_op_us)) * 1e-6,
        matrix_flops={k: v * 1e12 for k, v in profile.matrix_tflops.items()},
        vector_flops={k: v * 1e12 for k, v in profile.vector_tflops.items()},
        bandwidth=profile.bandwidth_gbps * 1e9,
        dram_extra_s_per_byte=dram_extra_s_per_byte(calibration_rates(profile.calibration)),
        private_cache_bytes=float(((profile.calibration or {}).get("context") or {}).get("cache_bytes", 0.0)),
    )


def calibrated_times(costs: list[OpCost], device: DeviceProfile, dtype: str) -> tuple[list[float], list[bool]]:
    """Per-op seconds inside a network from the profile's fitted time model, and which ops lie outside
    what calibration sampled (their times held within the family's measured efficiency span)."""
    try:
        model = time_model_for(calibration_text(device, "model"), rates_of(device))
    except ValueError as e:
        raise ProfileError(f"{device.path}: {e} (hwcost calibrate --refit --out {device.path}), or calibrate "
                           "again") from e
    flags = [False] * len(costs)
    return model.predict(costs, dtype, flags=flags), flags
