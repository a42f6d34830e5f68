"""The calibrated time model: per op family, a regression of log(measured / baseline) on op features.

baseline = dispatch floor + max(FLOPs / peak, bytes / bandwidth), with the profile's measured
peak rates. Regressing the log ratio keeps the model physical where samples run out: a
convolution larger than any measured one keeps the efficiency of the largest ones instead of a
flat time. Models are refit from the plain samples (CSV) when a profile loads: deterministic
(fixed seed), well under a second, and nothing but numbers on disk.
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

from ..records import OpCost
from .features import FEATURES, feature_vector, op_key

GBM_PARAMS = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.08, "subsample": 0.8, "random_state": 0}
MIN_SAMPLES_FOR_MODEL = 8
SAMPLE_COLUMNS = ("case_id", "family", "op", "time_s", "p10_s", "p90_s", "repeats", "flops", "bytes_read",
                  "bytes_written", "matrix") + tuple(f for f in FEATURES if f != "op_code")


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

    def row(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in SAMPLE_COLUMNS[:11]}
        d["matrix"] = int(self.matrix)
        d.update({k: self.features.get(k, 0.0) for k in SAMPLE_COLUMNS[11:]})
        return d


def write_samples_header(f) -> csv.DictWriter:
    w = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS, lineterminator="\n")
    w.writeheader()
    return w


def read_samples(text: str) -> list[Sample]:
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        feats = {k: float(r[k]) for k in SAMPLE_COLUMNS[11:]}
        out.append(Sample(r["case_id"], r["family"], r["op"], float(r["time_s"]), float(r["p10_s"]),
                          float(r["p90_s"]), int(r["repeats"]), float(r["flops"]), float(r["bytes_read"]),
                          float(r["bytes_written"]), r["matrix"] == "1", feats))
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


class TimeModel:
    """Per-family regressions, fitted once from samples."""

    def __init__(self, samples: list[Sample], rates: Rates, dtype: str = "float32"):
        from sklearn.ensemble import GradientBoostingRegressor

        self.rates = rates
        fundamentals = [s for s in samples if not s.family.startswith("_")]
        self.vocab: dict[str, list[str]] = {}
        for s in fundamentals:
            names = self.vocab.setdefault(s.family, [])
            if s.op not in names:
                names.append(s.op)
        for names in self.vocab.values():
            names.sort()
        self.models: dict[str, Any] = {}
        self.constant: dict[str, float] = {}
        by_family: dict[str, list[Sample]] = {}
        for s in fundamentals:
            by_family.setdefault(s.family, []).append(s)
        all_y = []
        for fam, ss in sorted(by_family.items()):
            x = np.array([self._vector(s) for s in ss])
            y = np.array([self._target(s, dtype) for s in ss])
            all_y.extend(y.tolist())
            self.constant[fam] = float(np.median(y))
            if len(ss) >= MIN_SAMPLES_FOR_MODEL:
                self.models[fam] = GradientBoostingRegressor(**GBM_PARAMS).fit(x, y)
        self.global_constant = float(statistics.median(all_y)) if all_y else 0.0

    def _vector(self, s: Sample) -> list[float]:
        f = dict(s.features)
        names = self.vocab.get(s.family, [])
        f["op_code"] = float(names.index(s.op)) if s.op in names else -1.0
        return [f[k] for k in FEATURES]

    def _target(self, s: Sample, dtype: str) -> float:
        base = self.rates.base(s.flops, s.bytes_read + s.bytes_written, s.matrix, dtype)
        return math.log(s.time_s / base)

    def predict(self, costs: list[OpCost], dtype: str, matrix_flags: list[bool]) -> list[float]:
        """Seconds per op (dispatch included), batched per family."""
        out = [0.0] * len(costs)
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(costs):
            groups.setdefault(c.family, []).append(i)
        for fam, idx in groups.items():
            bases = [self.rates.base(costs[i].flops, costs[i].memory_traffic_bytes, matrix_flags[i], dtype) for i in idx]
            model = self.models.get(fam)
            if model is not None:
                x = np.array([feature_vector(costs[i], self.vocab) for i in idx])
                corr = model.predict(x)
            else:
                corr = [self.constant.get(fam, self.global_constant)] * len(idx)
            for i, b, c in zip(idx, bases, corr):
                out[i] = b * math.exp(float(c))
        return out


_CACHE: dict[str, TimeModel] = {}


def time_model_for(calibration: dict[str, Any], samples_text: str, rates: Rates) -> TimeModel:
    key = sha256(samples_text) + repr(sorted(rates.matrix_flops.items())) + repr(rates.bandwidth)
    if key not in _CACHE:
        _CACHE[key] = TimeModel(read_samples(samples_text), rates)
    return _CACHE[key]


def op_name(cost: OpCost) -> str:
    return op_key(cost)


def dominant(costs: Iterable[OpCost]) -> OpCost | None:
    working = [c for c in costs if c.flops or c.memory_traffic_bytes]
    return max(working, key=lambda c: (c.flops, c.memory_traffic_bytes)) if working else None
