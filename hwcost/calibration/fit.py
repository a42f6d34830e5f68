"""Fitting the calibrated time model from measured samples (scikit-learn trees, scipy NNLS): the
per-family regressions, the context model on network-like chains, and the energy model. What the fit
produces is read at prediction time by hwcost.timemodel (numpy only).
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

import numpy as np

from ..features import serial_calls, vectorize
from ..records import OpCost
from ..timemodel import ContextModel, Rates, TimeModel, TreeEnsemble, sampled_ranges
from .samples import Sample

GBM_PARAMS = {"n_estimators": 250, "max_depth": 4, "learning_rate": 0.06, "subsample": 0.8, "random_state": 0}
MIN_SAMPLES_FOR_MODEL = 8


def ensemble_from_sklearn(gbm: Any) -> TreeEnsemble:
    trees = []
    for est in gbm.estimators_[:, 0]:
        t = est.tree_
        trees.append({"feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                      "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "value": t.value[:, 0, 0].tolist()})
    init = float(np.asarray(gbm.init_.constant_).ravel()[0])
    return TreeEnsemble(init, float(gbm.learning_rate), trees)


def fit_time_model(samples: list[Sample], rates: Rates, dtype: str = "float32") -> TimeModel:
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
    ensembles, constants, all_y, spans = {}, {}, [], {}
    for fam, ss in sorted(by_family.items()):
        x = np.array([_vector(s, vocab) for s in ss])
        y = np.array([math.log(s.time_s / rates.base(s.flops, s.bytes_read + s.bytes_written, s.matrix, dtype,
                                                     serial_calls(s.features, s.family))) for s in ss])
        all_y.extend(y.tolist())
        spans[fam] = [(s.features, float(v)) for s, v in zip(ss, y)]
        constants[fam] = float(np.median(y))
        if len(ss) >= MIN_SAMPLES_FOR_MODEL:
            ensembles[fam] = ensemble_from_sklearn(GradientBoostingRegressor(**GBM_PARAMS).fit(x, y))
    glob = float(statistics.median(all_y)) if all_y else 0.0
    return TimeModel(vocab, ensembles, constants, glob, rates, ranges=sampled_ranges(spans))


def _relative_nnls(a: np.ndarray, resid: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients of ``resid`` on the columns of ``a``, each row weighted by 1 / y (relative
    error, so that each chain counts alike); columns scaled for the solver. The context and energy fits."""
    from scipy.optimize import nnls

    norm = a.max(axis=0)
    norm[norm == 0] = 1.0
    coef, _ = nnls(a / norm / y[:, None], resid / y)
    return coef / norm


def fit_context_model(rows: list[dict[str, float]], times: list[float], cache_bytes: float = 0.0,
                      llc_bytes: float = 0.0) -> ContextModel:
    """Non-negative least squares of (chain time - isolated sum) on the terms, in relative error
    so that each chain counts alike, in two stages: the terms every op pays from the chains that do not
    stream their weights, then the streamed per-op term from the residuals of those that do, so that
    the decoder-step chains (a third of them) set the streamed term alone and cannot trade it against
    the others (on this host's suite-10 calibrations both ways gave the same coefficients within 5%).
    Fewer than 6 chains: the identity (isolated times)."""
    if len(rows) < 6:
        return ContextModel(cache_bytes=cache_bytes, llc_bytes=llc_bytes, chains=len(rows))
    y = np.array(times)
    a = np.array([[r[k] for k in ContextModel.TERMS] for r in rows])
    iso = np.array([r["_isolated_s"] for r in rows])
    base, streamed = a[:, :-1], a[:, -1]
    plain = streamed == 0
    if plain.sum() < 6:   # too few chains without streaming to fit the base terms alone
        plain = np.ones_like(plain)
    coef_base = _relative_nnls(base[plain], (y - iso)[plain], y[plain])
    coef_streamed = np.zeros(1)
    if (~plain).any():
        resid = y - iso - base @ coef_base
        coef_streamed = _relative_nnls(streamed[~plain, None], resid[~plain], y[~plain])
    coef = np.concatenate([coef_base, coef_streamed])
    pred = iso + a @ coef
    err = float(np.median(np.abs(pred / y - 1)) * 100)
    per_op, per_weight, per_input, per_output, per_op_streamed = (float(c) for c in coef)  # TERMS' order
    return ContextModel(per_op_s=per_op, per_weight_byte_s=per_weight, per_input_byte_s=per_input,
               per_output_byte_s=per_output, per_op_streamed_s=per_op_streamed, cache_bytes=cache_bytes,
               llc_bytes=llc_bytes, chains=len(rows),
               median_abs_error_pct=round(err, 2))


def fit_energy(rows: list[tuple[float, ...]], form: str = "linear") -> dict[str, float] | None:
    """Energy model from per-chain (seconds, FLOPs, bytes, joules, busy seconds) by non-negative least
    squares on relative error. None with fewer than 6 measured chains.

    form "linear" (CPUs): energy = static power x seconds + pJ/FLOP x FLOPs + pJ/byte x bytes.
    form "busy" (GPUs): energy = static power x seconds + busy power x the device's busy seconds (the
    chain's kernel time): a GPU draws near its maximum whenever a kernel runs, however little of the
    peak the kernel reaches, so per-FLOP figures fitted on small chains would not carry to big ones."""
    rows = [r for r in rows if r[3] > 0]
    if len(rows) < 6:
        return None
    if form == "busy":
        a = np.array([[r[0], min(r[4], r[0])] for r in rows])
    else:
        a = np.array([[t, f, b] for t, f, b, *_ in rows])
    e = np.array([r[3] for r in rows])
    coef = _relative_nnls(a, e, e)
    out = {"form": form, "static_w": float(coef[0])}
    if form == "busy":
        out["busy_w"] = float(coef[1])
    else:
        out.update(pj_per_flop=float(coef[1] * 1e12), pj_per_byte=float(coef[2] * 1e12))
    out.update(max_observed_w=float(max(r[3] / r[0] for r in rows)), chains=len(rows),
               median_abs_error_pct=round(float(np.median(np.abs(a @ coef / e - 1)) * 100), 2))
    return out


def _vector(s: Sample, vocab: dict[str, list[str]]) -> list[float]:
    return vectorize(s.features, s.family, s.op, vocab)


def dominant(costs: Iterable[OpCost]) -> OpCost | None:
    working = [c for c in costs if c.launches]
    return max(working, key=lambda c: (c.flops, c.memory_traffic_bytes)) if working else None
