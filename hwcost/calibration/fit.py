"""The calibrated time model: per op family, a regression of log(measured / baseline) on op features.

baseline = dispatch floor + max(FLOPs / peak, bytes / bandwidth), with the profile's measured
peak rates. Regressing the log ratio keeps the model physical where samples run out: a
convolution larger than any measured one keeps the efficiency of the largest ones instead of a
flat time. Fitting is deterministic (fixed seed); the fitted trees are stored as plain arrays
(JSON) and evaluated with numpy at load, so nothing but numbers is ever read from disk.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..counters import PRODUCT_FAMILIES
from ..records import OpCost
from .features import FEATURES, feature_vector, vectorize

GBM_PARAMS = {"n_estimators": 250, "max_depth": 4, "learning_rate": 0.06, "subsample": 0.8, "random_state": 0}
MODEL_VERSION = 2  # 2: context model without per-family scales, bytes capped at the private cache
MIN_SAMPLES_FOR_MODEL = 8
SAMPLE_COLUMNS = ("case_id", "family", "op", "time_s", "p10_s", "p90_s", "repeats", "flops", "bytes_read",
                  "bytes_written", "matrix", "energy_j", "energy_s") + tuple(f for f in FEATURES if f != "op_code")
_META = 13  # columns before the features


@dataclass
class Sample:
    case_id: str
    family: str
    op: str
    time_s: float
    p10_s: float
    p90_s: float
    repeats: int
    flops: float
    bytes_read: float
    bytes_written: float
    matrix: bool
    features: dict[str, float] = field(default_factory=dict)
    energy_j: float = 0.0            # per run, where a power sensor was readable (chains)
    energy_s: float = 0.0            # wall time per run of the loop the energy was read around

    def row(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in SAMPLE_COLUMNS[:_META]}
        d["matrix"] = int(self.matrix)
        d.update({k: self.features.get(k, 0.0) for k in SAMPLE_COLUMNS[_META:]})
        return d


def write_samples_header(f) -> csv.DictWriter:
    w = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS, lineterminator="\n")
    w.writeheader()
    return w


def read_samples(text: str) -> list[Sample]:
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        feats = {k: float(r[k]) for k in SAMPLE_COLUMNS[_META:]}
        out.append(Sample(r["case_id"], r["family"], r["op"], float(r["time_s"]), float(r["p10_s"]),
                          float(r["p90_s"]), int(r["repeats"]), float(r["flops"]), float(r["bytes_read"]),
                          float(r["bytes_written"]), r["matrix"] == "1", feats, float(r["energy_j"]),
                          float(r["energy_s"])))
    return out


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Rates:
    """Measured attainable rates that define the baseline."""

    floor_s: float                       # dispatch floor: the fastest op call measured
    matrix_flops: dict[str, float]       # FLOP/s per dtype for products
    vector_flops: dict[str, float]       # FLOP/s per dtype for elementwise work
    bandwidth: float                     # bytes/s (read + write)

    def base(self, flops: float, traffic: float, matrix: bool, dtype: str) -> float:
        table = self.matrix_flops if matrix else self.vector_flops
        peak = table.get(dtype) or table["float32"]
        return self.floor_s + max(flops / peak, traffic / self.bandwidth)


class TreeEnsemble:
    """A fitted gradient-boosting regressor as plain arrays: init + lr x sum of tree leaves."""

    def __init__(self, init: float, lr: float, trees: list[dict[str, list]]):
        self.init, self.lr = init, lr
        self.trees = [{k: np.asarray(v) for k, v in t.items()} for t in trees]

    @classmethod
    def from_sklearn(cls, gbm: Any) -> "TreeEnsemble":
        trees = []
        for est in gbm.estimators_[:, 0]:
            t = est.tree_
            trees.append({"feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                          "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                          "value": t.value[:, 0, 0].tolist()})
        init = float(np.asarray(gbm.init_.constant_).ravel()[0])
        return cls(init, float(gbm.learning_rate), trees)

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


@dataclass
class ContextModel:
    """In-network time of an op from its isolated time. A microbenchmark repeats one op on the same
    tensors, so its weights and inputs sit in the core's private caches; in a network every parameter
    is read once per pass from further out (L3 or DRAM) and each input was just written, often by
    another core. So in context an op pays, on top of its isolated time, a cost per op (cold code and
    thread hand-off) and a cost per byte of parameters, inputs and outputs it would have found in its
    private cache when repeated alone: bytes up to ``cache_bytes`` (the private cache of the threads
    that run it); beyond that the isolated measurement already streamed them from outside.

    No per-family scale on the isolated time: fitted on the synthetic chains such scales came out at
    1.1-1.2 for convolutions and products, and charged big compute-bound layers of real networks
    10-20% they do not pay (measured on 34 model/batch pairs: 24% within 10% with scales, 44% without)."""

    per_op_s: float = 0.0
    per_weight_byte_s: float = 0.0
    per_input_byte_s: float = 0.0
    per_output_byte_s: float = 0.0
    cache_bytes: float = 0.0         # 0: unknown, bytes are not capped
    chains: int = 0
    median_abs_error_pct: float | None = None

    TERMS = ("_ops", "_weight_bytes", "_input_bytes", "_output_bytes")

    def terms(self, cost: OpCost) -> tuple[float, float, float, float]:
        """What each coefficient multiplies for one op, in TERMS' order: the op, and its parameter,
        input and output bytes, each capped at the private cache."""
        def cap(nbytes: float) -> float:
            return min(nbytes, self.cache_bytes) if self.cache_bytes > 0 else nbytes

        return 1.0, cap(cost.weight_bytes), cap(cost.bytes_read - cost.weight_bytes), cap(cost.bytes_written)

    def apply(self, iso_s: float, cost: OpCost) -> float:
        coefs = (self.per_op_s, self.per_weight_byte_s, self.per_input_byte_s, self.per_output_byte_s)
        return iso_s + sum(k * v for k, v in zip(coefs, self.terms(cost)))

    def design(self, iso: list[float], costs: list[OpCost]) -> dict[str, float]:
        """A chain's totals: isolated seconds and the sum of each term over its ops."""
        row = dict.fromkeys(("_isolated_s",) + self.TERMS, 0.0)
        for t, c in zip(iso, costs):
            row["_isolated_s"] += t
            for name, v in zip(self.TERMS, self.terms(c)):
                row[name] += v
        return row

    @classmethod
    def fit(cls, rows: list[dict[str, float]], times: list[float], cache_bytes: float = 0.0) -> "ContextModel":
        """Non-negative least squares of (chain time - isolated sum) on the terms, in relative error
        so that each chain counts alike. Fewer than 6 chains: the identity (isolated times)."""
        from scipy.optimize import nnls

        if len(rows) < 6:
            return cls(cache_bytes=cache_bytes, chains=len(rows))
        y = np.array(times)
        a = np.array([[r[k] for k in cls.TERMS] for r in rows])
        iso = np.array([r["_isolated_s"] for r in rows])
        norm = a.max(axis=0)
        norm[norm == 0] = 1.0
        coef, _ = nnls(a / norm / y[:, None], (y - iso) / y)
        coef = coef / norm
        pred = iso + a @ coef
        err = float(np.median(np.abs(pred / y - 1)) * 100)
        per_op, per_weight, per_input, per_output = (float(c) for c in coef)  # TERMS' order
        return cls(per_op_s=per_op, per_weight_byte_s=per_weight, per_input_byte_s=per_input,
                   per_output_byte_s=per_output, cache_bytes=cache_bytes, chains=len(rows),
                   median_abs_error_pct=round(err, 2))


def fit_energy(rows: list[tuple[float, ...]], form: str = "linear") -> dict[str, float] | None:
    """Energy model from per-chain (seconds, FLOPs, bytes, joules, busy seconds) by non-negative least
    squares on relative error. None with fewer than 6 measured chains.

    form "linear" (CPUs): energy = static power x seconds + pJ/FLOP x FLOPs + pJ/byte x bytes.
    form "busy" (GPUs): energy = static power x seconds + busy power x the device's busy seconds (the
    chain's kernel time): a GPU draws near its maximum whenever a kernel runs, however little of the
    peak the kernel reaches, so per-FLOP figures fitted on small chains would not carry to big ones."""
    from scipy.optimize import nnls

    rows = [r for r in rows if r[3] > 0]
    if len(rows) < 6:
        return None
    if form == "busy":
        a = np.array([[r[0], min(r[4], r[0])] for r in rows])
    else:
        a = np.array([[t, f, b] for t, f, b, *_ in rows])
    e = np.array([r[3] for r in rows])
    norm = a.max(axis=0)
    norm[norm == 0] = 1.0
    coef, _ = nnls(a / norm / e[:, None], np.ones(len(e)))
    coef = coef / norm
    out = {"form": form, "static_w": float(coef[0])}
    if form == "busy":
        out["busy_w"] = float(coef[1])
    else:
        out.update(pj_per_flop=float(coef[1] * 1e12), pj_per_byte=float(coef[2] * 1e12))
    out.update(max_observed_w=float(max(r[3] / r[0] for r in rows)), chains=len(rows),
               median_abs_error_pct=round(float(np.median(np.abs(a @ coef / e - 1)) * 100), 2))
    return out


class TimeModel:
    """Per-family regressions of log(isolated time / baseline), plus the context model."""

    def __init__(self, vocab: dict[str, list[str]], ensembles: dict[str, TreeEnsemble], constants: dict[str, float],
                 global_constant: float, rates: Rates, context: ContextModel | None = None):
        self.vocab, self.ensembles, self.constants = vocab, ensembles, constants
        self.global_constant, self.rates = global_constant, rates
        self.context = context or ContextModel()

    @classmethod
    def fit(cls, samples: list[Sample], rates: Rates, dtype: str = "float32") -> "TimeModel":
        from sklearn.ensemble import GradientBoostingRegressor

        isolated = [s for s in samples if not s.family.startswith("_")]
        vocab: dict[str, list[str]] = {}
        for s in isolated:
            if s.op not in vocab.setdefault(s.family, []):
                vocab[s.family].append(s.op)
        for names in vocab.values():
            names.sort()
        by_family: dict[str, list[Sample]] = {}
        for s in isolated:
            by_family.setdefault(s.family, []).append(s)
        ensembles, constants, all_y = {}, {}, []
        for fam, ss in sorted(by_family.items()):
            x = np.array([_vector(s, vocab) for s in ss])
            y = np.array([math.log(s.time_s / rates.base(s.flops, s.bytes_read + s.bytes_written, s.matrix, dtype))
                          for s in ss])
            all_y.extend(y.tolist())
            constants[fam] = float(np.median(y))
            if len(ss) >= MIN_SAMPLES_FOR_MODEL:
                ensembles[fam] = TreeEnsemble.from_sklearn(GradientBoostingRegressor(**GBM_PARAMS).fit(x, y))
        glob = float(statistics.median(all_y)) if all_y else 0.0
        return cls(vocab, ensembles, constants, glob, rates)

    def isolated(self, costs: list[OpCost], dtype: str, matrix_flags: list[bool]) -> list[float]:
        """Seconds per op measured alone (dispatch included), batched per family."""
        out = [0.0] * len(costs)
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(costs):
            groups.setdefault(c.family, []).append(i)
        for fam, idx in groups.items():
            bases = [self.rates.base(costs[i].flops, costs[i].memory_traffic_bytes, matrix_flags[i], dtype) for i in idx]
            ens = self.ensembles.get(fam)
            if ens is not None:
                corr = ens.predict(np.array([feature_vector(costs[i], self.vocab) for i in idx]))
            else:
                corr = [self.constants.get(fam, self.global_constant)] * len(idx)
            for i, b, c in zip(idx, bases, corr):
                out[i] = b * math.exp(float(c))
        return out

    def predict(self, costs: list[OpCost], dtype: str, matrix_flags: list[bool]) -> list[float]:
        """Seconds per op inside a network: isolated time through the context model."""
        iso = self.isolated(costs, dtype, matrix_flags)
        return [self.context.apply(t, c) for t, c in zip(iso, costs)]

    def chain_row(self, costs: list[OpCost], cache_bytes: float, dtype: str = "float32") -> dict[str, float]:
        working = [c for c in costs if c.launches]
        iso = self.isolated(working, dtype, [c.family in PRODUCT_FAMILIES for c in working])
        return ContextModel(cache_bytes=cache_bytes).design(iso, working)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "hwcost-time-model", "version": MODEL_VERSION, "features": list(FEATURES), "vocab": self.vocab,
                "constants": self.constants, "global_constant": self.global_constant,
                "context": vars(self.context),
                "families": {f: e.to_dict() for f, e in self.ensembles.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], rates: Rates) -> "TimeModel":
        if d.get("format") != "hwcost-time-model" or list(d.get("features", [])) != list(FEATURES):
            raise ValueError("not a time model of this hwcost version (format or feature list differs)")
        if d.get("version") != MODEL_VERSION:
            raise ValueError(f"time model version {d.get('version')}, this hwcost reads version {MODEL_VERSION} "
                             "(refit it from its samples: hwcost calibrate --refit --out PROFILE.yaml)")
        ens = {f: TreeEnsemble.from_dict(e) for f, e in d["families"].items()}
        return cls(d["vocab"], ens, d["constants"], d["global_constant"], rates, ContextModel(**d["context"]))


def _vector(s: Sample, vocab: dict[str, list[str]]) -> list[float]:
    return vectorize(s.features, s.family, s.op, vocab)


_CACHE: dict[str, TimeModel] = {}


def time_model_for(model_text: str, rates: Rates) -> TimeModel:
    import json

    key = sha256(model_text) + repr(sorted(rates.matrix_flops.items())) + repr(rates.bandwidth)
    if key not in _CACHE:
        _CACHE[key] = TimeModel.from_dict(json.loads(model_text), rates)
    return _CACHE[key]


def rates_of(profile: Any) -> Rates:
    """The baseline rates a calibrated profile's time model was fitted against."""
    r = (profile.calibration or {}).get("rates", {})
    return Rates(
        floor_s=float(r.get("floor_us", profile.host_per_op_us)) * 1e-6,
        matrix_flops={k: v * 1e12 for k, v in profile.matrix_tflops.items()},
        vector_flops={k: v * 1e12 for k, v in profile.vector_tflops.items()},
        bandwidth=profile.bandwidth_gbps * 1e9,
    )


def dominant(costs: Iterable[OpCost]) -> OpCost | None:
    working = [c for c in costs if c.launches]
    return max(working, key=lambda c: (c.flops, c.memory_traffic_bytes)) if working else None
