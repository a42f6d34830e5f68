"""Fitting the calibrated time model from measured samples (scikit-learn trees, scipy NNLS): the
per-family regressions, the context model on network-like chains anchored to the probe networks, and the
energy model. What the fit produces is read at prediction time by hwcost.timemodel (numpy only).
Long because each fit keeps beside it the measurements that chose its form.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Any, Callable, Iterable

import numpy as np

from ..features import COLD_SUFFIX, base_op, in_place, op_prior, prior_terms, serial_calls, vectorize, volumetric
from ..formulas import CONV_FAMILIES
from ..records import OpCost
from ..timemodel import ContextModel, Rates, TimeModel, TreeEnsemble
from .samples import Sample, steady

GBM_PARAMS = {"n_estimators": 250, "max_depth": 4, "learning_rate": 0.06, "subsample": 0.8, "random_state": 0}
MIN_SAMPLES_FOR_MODEL = 8
EXPECTED_FOLDS = 5
EXPECTED_MIN_SAMPLES = 40   # fewer: a family's mean ratio rests on too few new ops; its factor stays 1
EXPECTED_CLIP = math.log(3.0)
MIN_SAMPLES_FOR_PRIOR = 3   # an op with fewer takes its family's fit as its prior ...
MIN_SIZED_FOR_PRIOR = 2     # ... and one with fewer samples large enough to show its cost per element
# the second look: a lighter fit (~3 s for a 300 s calibration), each sample predicted by the others
SUSPECT_GBM_PARAMS = {"n_estimators": 80, "max_depth": 4, "learning_rate": 0.15, "subsample": 0.8, "random_state": 0}
SUSPECT_FOLDS = 4
SUSPECT_MADS = 3.0         # held-out residual, in robust standard deviations of the family's residuals
SUSPECT_MIN_LOG = 0.3      # ... and at least 35% slower than the others predict


def ensemble_from_sklearn(gbm: Any) -> TreeEnsemble:
    trees = []
    for est in gbm.estimators_[:, 0]:
        t = est.tree_
        trees.append({"feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                      "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "value": t.value[:, 0, 0].tolist()})
    init = float(np.asarray(gbm.init_.constant_).ravel()[0])
    return TreeEnsemble(init, float(gbm.learning_rate), trees)


def fastest_per_case(samples: list[Sample]) -> list[Sample]:
    """The isolated samples, one per case: a case timed twice (the second look) keeps its faster
    median, as a busy machine only ever slows an op down."""
    best: dict[str, Sample] = {}
    for s in steady(samples):
        if not s.family.startswith("_") and (s.case_id not in best or s.time_s < best[s.case_id].time_s):
            best[s.case_id] = s
    return list(best.values())


def _family_data(samples: list[Sample], rates: Rates, dtype: str,
                 recurrent_base: Callable[[dict[str, float]], float] | None = None
                 ) -> tuple[dict[str, list[str]], dict[str, dict[str, list[float]]],
                            dict[str, tuple[list[Sample], np.ndarray, np.ndarray]]]:
    """The vocabulary of ops per family, each op's own fitted time (op_fits), and per family its samples,
    feature rows and log(time / baseline); ``recurrent_base``, where given, a fused recurrent layer's
    baseline from its features (TimeModel.recurrent_base: fit_time_model passes it once products are fitted).

    A family's vocabulary is ordered by its ops' cost per element, then their fixed cost (each op's fit,
    _fixed_and_per_element; an op whose samples do not show it, the family's typical one), not by name:
    the trees split the op code as a number, so neighbouring codes share leaves, and by name suite 11's exp and cos sat beside gelu and the trees put
    the GELUs of real transformers at 2-3x their time. Ordered by the median log(time / baseline) of the
    larger half of each op's samples (suite 12-15), GELU still sat beside its tanh form and tanh: its
    erf form pays ~7 us per call here, so its small samples ran slow against the baseline, while per
    element it costs what SiLU does (0.5 against 1.9 ns for the tanh form).

    The same fit, as log(fitted time / baseline), is the op_prior feature: with one op code per op the
    trees could only share an op's few large samples with its neighbours' (GELU's 3 of 11 over 50K
    elements), and predicted real GELUs 2x slow; the prior carries each op's own per-element cost to
    every size. 5-fold CV on one 300 s calibration's samples: elementwise within 20% 77% -> 80%,
    pooling 62 -> 75%, grouped convolutions 45 -> 52%, attention 74 -> 67% (all families +1.4 points)."""
    isolated = [replace(s, op=volumetric(s.op, s.family, s.features.get("spatial_dims", 0.0)),
                        features=rates.features(s.features, s.family))
                for s in fastest_per_case(samples)]   # stored before features.volumetric: the same op names
    by_family: dict[str, list[Sample]] = {}
    for s in isolated:
        by_family.setdefault(s.family, []).append(s)
    vocab: dict[str, list[str]] = {}
    fits: dict[str, dict[str, list[float]]] = {}
    data = {}
    for fam, ss in sorted(by_family.items()):
        baselines = [rates.base(s.flops, rates.traffic(s.bytes_read + s.bytes_written, s.features), s.matrix,
                                dtype, serial_calls(s.features, s.family)) for s in ss]
        if fam == "rnn" and recurrent_base is not None:   # TimeModel.recurrent_base, as prediction takes it
            baselines = [recurrent_base(s.features) or b for s, b in zip(ss, baselines)]
        y = np.array([math.log(s.time_s / b) for s, b in zip(ss, baselines)])
        per_op = _by_op(ss, base_op)
        own = {op: _fixed_and_per_element(v) for op, v in per_op.items()}
        fits[fam] = {op: list(v) for op, v in own.items() if _sized(per_op[op], v)}
        fits[fam][""] = _typical(fits[fam]) if fits[fam] else list(_fixed_and_per_element(ss))
        fits[fam].update(_variant_fits(ss))
        per_element = {op: fits[fam].get(op, fits[fam][""])[1] for op in per_op}
        vocab[fam] = sorted(per_op, key=lambda op: (per_element[op], own[op][0], op))
        fits[fam].update(_condition_fits(ss))
        x = [vectorize(s.features, s.family, s.op, vocab, op_prior(fits, fam, s.op, s.features, b))
             for s, b in zip(ss, baselines)]
        data[fam] = (ss, np.array(x), y)
    return vocab, fits, data


def _by_op(samples: list[Sample], name: Callable[[str], str] = lambda op: op) -> dict[str, list[Sample]]:
    """Samples grouped by op (its ``name``: base_op puts relu_ under relu), in sample order."""
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(name(s.op), []).append(s)
    return out


def _condition_fits(samples: list[Sample]) -> dict[str, list[float]]:
    """Weights cached and cold apart, for ops whose samples pin down both (_sized): the op's own fit is
    its cost with its weights in cache (under its name), and with them streamed from DRAM under
    name + COLD_SUFFIX. Under one fit the cold samples set it: calibration Y had 13 of 69 matrix
    products without bias (mm) warm, their fit came out 19 us fixed, and the trees put a decode step's
    256 x 128 projection at 15.6 us against 5.8 measured alone (addmm, mostly warm: 6 us)."""
    by_op = _by_op(samples)
    out = {}
    for op, ss in by_op.items():
        cold = [s for s in ss if s.features.get("cold_weights", 0.0) > 0]
        warm = [s for s in ss if s.features.get("cold_weights", 0.0) <= 0]
        if not cold or not warm:
            continue
        fw, fc = _fixed_and_per_element(warm), _fixed_and_per_element(cold)
        if _sized(warm, fw) and _sized(cold, fc):
            out[op], out[op + COLD_SUFFIX] = list(fw), list(fc)
    return out


def _variant_fits(samples: list[Sample]) -> dict[str, list[float]]:
    """In place and out of place apart (relu_ and relu), for ops whose samples pin down both ways' costs
    (_sized): an in-place op writes into its input's cache lines instead of a fresh buffer, and under one
    fit the two blurred. On suite 16's samples here relu_ cost 0.07 ns per element, relu on a fresh
    output 0.35, and their one fit (0.08) with the trees on top put the in-place ReLUs of VGG-11 and C3D
    (3.2M elements) at 1.8-2.0x their time. Where either way lacks samples, both keep the joint fit and
    the in_place feature tells the trees the difference."""
    by_op = _by_op(samples)
    other = {op: base_op(op) if in_place(op) else op + "_" for op in by_op}
    both = [op for op in by_op if other[op] in by_op]   # only these: every op's joint fit is _family_data's
    own = {op: _fixed_and_per_element(by_op[op]) for op in both}
    sized = {op for op in both if _sized(by_op[op], own[op])}
    return {op: list(own[op]) for op in both if op in sized and other[op] in sized}   # in sample order


def _typical(fits: dict[str, list[float]]) -> list[float]:
    """The fit an op without its own takes: the median fixed cost and the median cost per element of
    its family's ops (one fit over all their samples, in relative error, is set by the many small,
    dispatch-bound ones: 0.13 ns per element where the ops' own ran 0.07-3.3)."""
    return [statistics.median(v[k] for v in fits.values()) for k in range(min(len(v) for v in fits.values()))]


def _sized(samples: list[Sample], coefficients: tuple[float, ...]) -> bool:
    """Do an op's samples pin down its cost per element: enough of them, and a few large enough that
    the per-element part is at least the fixed part? An op sampled only small (dispatch-bound) fits
    any slope, 0 included, and a prior extrapolating that to a large tensor sent a synthetic GELU's
    prediction to 0.1x its time."""
    fixed_s, per_element_s = coefficients[0], coefficients[1]
    sized = sum(sum(c * t for c, t in zip(coefficients[1:], terms[1:])) >= fixed_s * terms[0]
                for terms in (prior_terms(s.features, s.family) for s in samples))
    return len(samples) >= MIN_SAMPLES_FOR_PRIOR and per_element_s > 0 and sized >= MIN_SIZED_FOR_PRIOR


def _fixed_and_per_element(samples: list[Sample]) -> tuple[float, ...]:
    """An op's time as a fixed cost plus a cost per element it touches (per serial call, per FLOP and per
    byte read again for a recurrent layer: features.prior_terms), fitted to its samples (non-negative least
    squares on relative error)."""
    t = np.array([s.time_s for s in samples])
    terms = np.array([prior_terms(s.features, s.family) for s in samples])
    return tuple(float(c) for c in _relative_nnls(terms, t, t))


def suspect_samples(samples: list[Sample], rates: Rates, dtype: str = "float32") -> list[str]:
    """Case ids worth timing again: each sample predicted by a fit on the others of its family
    (k-fold), and flagged when it came out far slower than they predict (SUSPECT_MADS robust standard
    deviations and SUSPECT_MIN_LOG). On this project's 2-vCPU VM a 300 s calibration had 41 such cases
    of 3,336; timed again a minute later 18 of them ran 1.4-3.8x faster (a 2-thread GRU: 327 ms, then
    115), the rest as before (the model, not the machine, was off there)."""
    _, _, data = _family_data(samples, rates, dtype)
    out = []
    for fam, (ss, x, y) in data.items():
        if len(ss) < 3 * SUSPECT_FOLDS:
            continue
        resid = _out_of_fold_residuals(x, y, SUSPECT_FOLDS, SUSPECT_GBM_PARAMS)
        spread = float(np.median(np.abs(resid - np.median(resid)))) * 1.4826
        out += [s.case_id for s, r in zip(ss, resid) if r > max(SUSPECT_MIN_LOG, SUSPECT_MADS * spread)]
    return out


def fit_time_model(samples: list[Sample], rates: Rates, dtype: str = "float32") -> TimeModel:
    from sklearn.ensemble import GradientBoostingRegressor

    vocab, fits, data = _family_data(samples, rates, dtype)
    ensembles, constants, all_y, spans, expected = {}, {}, [], {}, {}
    if "rnn" in data:   # last: its baseline is the products it runs, timed by the fitted product model
        data["rnn"] = data.pop("rnn")
    for fam, (ss, x, y) in data.items():
        if fam == "rnn" and "matmul" in ensembles:
            products = TimeModel(vocab, dict(ensembles), {}, 0.0, rates, op_fits=fits)
            # its op fits do not depend on the baseline: only its rows and log ratios are taken again
            ss, x, y = _family_data([s for s in samples if s.family == "rnn"], rates, dtype,
                                    lambda f: products.recurrent_base(f, dtype))[2]["rnn"]
        all_y.extend(y.tolist())
        spans[fam] = [(s.features, float(v)) for s, v in zip(ss, y)]
        constants[fam] = float(np.median(y))
        if len(ss) >= MIN_SAMPLES_FOR_MODEL:
            ensembles[fam] = ensemble_from_sklearn(GradientBoostingRegressor(**GBM_PARAMS).fit(x, y))
            expected[fam] = expected_factor(x, y)
    glob = float(statistics.median(all_y)) if all_y else 0.0
    return TimeModel(vocab, ensembles, constants, glob, rates, ranges=sampled_ranges(spans), op_fits=fits,
                     expected=expected)


def expected_factor(x: np.ndarray, y: np.ndarray) -> float:
    """The mean over a family's samples of measured / predicted time, each predicted by trees fitted on the
    other folds (EXPECTED_FOLDS): Duan's smearing estimate. The trees regress log(time / baseline), so they
    give an op's typical (geometric-mean) time; a network's time is a sum, and the expectation of a sum is
    the sum of expectations, which a skewed error makes larger than the typical times. Out of fold, because
    every op a prediction meets is one the trees did not see (in-sample residuals are shrunk by the fit).
    On a 300 s calibration here (1 thread), convolutions: median log ratio -0.02 (the typical new conv 2%
    over), factor 1.054 (1.07 unclipped: a right tail of shapes that run slower than their neighbours);
    grouped 1.136, transposed 1.094, norms, pools, reductions and softmax within 2% of 1. Residuals are clipped at EXPECTED_CLIP so that one
    case timed in a VM's slow second cannot set a family's factor; fewer than EXPECTED_MIN_SAMPLES: 1."""
    if len(y) < EXPECTED_MIN_SAMPLES:
        return 1.0
    resid = _out_of_fold_residuals(x, y, EXPECTED_FOLDS, GBM_PARAMS)
    return float(np.mean(np.exp(np.clip(resid, -EXPECTED_CLIP, EXPECTED_CLIP))))


def _out_of_fold_residuals(x: np.ndarray, y: np.ndarray, folds: int, params: dict) -> np.ndarray:
    """y minus each sample's prediction by trees (``params``) fitted on the other folds: how far off the
    model is on ops it did not see (the second look and the expected factor)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import KFold

    resid = np.zeros(len(y))
    for train, test in KFold(folds, shuffle=True, random_state=0).split(x):
        resid[test] = y[test] - GradientBoostingRegressor(**params).fit(x[train], y[train]).predict(x[test])
    return resid


def _relative_nnls(a: np.ndarray, resid: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients of ``resid`` on the columns of ``a``, each row weighted by 1 / y (relative
    error, so that each chain counts alike); columns scaled for the solver. The context and energy fits."""
    from scipy.optimize import nnls

    norm = np.abs(a).max(axis=0)
    norm[norm == 0] = 1.0
    coef, _ = nnls(a / norm / y[:, None], resid / y)
    return coef / norm


def _relative_nnls_l1(a: np.ndarray, resid: np.ndarray, y: np.ndarray, rounds: int = 30,
                      row_weight: np.ndarray | None = None) -> np.ndarray:
    """_relative_nnls minimizing the sum of absolute relative errors (iteratively reweighted least squares):
    the context fit's. A chain timed in one of a shared VM's slow moments is an outlier, not a cost, and
    squared errors let a few of them pull every coefficient: fitted in least squares, the chains' median
    prediction sat 3-7% fast on this project's VM (conv, token and decode chains), and so did the held-out
    models' (signed median -1.3 to -5.2% over calibrations J-L). Refits of J, K and L's samples in absolute
    error: median chain error 10.0 -> 9.2%, 11.3 -> 10.0% (1 thread), held-out models within ±10% +1 to
    +5 points against the same measurements. ``row_weight``: how much each row's absolute error counts
    (default 1 each)."""
    base = np.ones(len(y)) if row_weight is None else np.asarray(row_weight, dtype=float)
    w = base.copy()
    for _ in range(rounds):
        scale = np.sqrt(w)
        coef = _relative_nnls(a * scale[:, None], resid * scale, y)
        r = np.abs((resid - a @ coef) / y)
        w = base / np.maximum(r, 1e-3)
    return coef


MAX_ISOLATED_SHRINK = 0.15   # past this an isolated time is wrong, not a network's discount


def fit_context_model(rows: list[dict[str, float]], times: list[float],
                      caches: ContextModel | None = None,
                      anchors: list[tuple[dict[str, float], float]] = ()) -> ContextModel:
    """Non-negative fit of (chain time - isolated sum) on the terms, in absolute relative error
    (_relative_nnls_l1: each chain counts alike, a chain timed in a slow moment little), on the chains
    whose weights stay cached: a chain that streams them (ContextModel.STREAMED, a share of its ops where
    the cache serves part of the pass) sets no term. Its products already run at their cold samples' time,
    and the rest of its time in calibration's chains (17-20 us per op at 1 thread) was not found in a real
    decode step (ContextModel). All chains count in the median error. ``caches``: the cache sizes and sweep
    the rows were built with (its coefficients unused), kept in the result. Fewer than 6 chains: the
    identity (isolated times).

    ``anchors``: (row, time) of the calibration's probe networks, real networks timed on the samples' scale
    (runner.fit_context); together they weigh as much as the chains together, and they count in no error
    figure. Fitted on the chains alone, the terms traded off so that in two calibrations here (2 threads,
    runs LL and MM) both CNN probes came out 5-9% slow against their own readings, and so did the held-out
    networks (signed median +4 to +6%), while in two others (JJ, KK) the same probes sat within 4%:
    synthetic chains pin the terms' sum over chains, not over networks. Ten calibrations' samples refitted
    with the anchors (docs/accuracy.md, rule H): the CNN probes within 1-3% (the decode probe, whose chains
    stream their weights, is no anchor), held-out pairs within ±10% 82.5 -> 85.6%, median 4.67 -> 4.42%,
    signed medians -4.8..+5.9% -> -1.7..+0.9%.

    Two more columns, minus the isolated seconds of convolutions and of the other ops, fit
    ContextModel.conv_isolated_shrink and isolated_shrink (each held at most MAX_ISOLATED_SHRINK): a calibration
    here (fifty-seventh session, 1 thread) put its CNN probe at batch 8 at 1.08x its reading and every held-out
    network at batch 8 10-14% slow with each term at its least; refitted with one share (7.7%), the probe 1.01x
    and 42 of 52 held-out pairs within ±10% against 35. One share for both took off the products what only the
    convolutions' trees overstated (sixty-first session, rule GG: docs/accuracy.md)."""
    caches = caches or ContextModel()
    if len(rows) < 6:
        return replace(caches, **dict.fromkeys(ContextModel.FIELDS, 0.0), chains=len(rows), median_abs_error_pct=None)
    chains = len(rows)
    rows = list(rows) + [row for row, _ in anchors]
    y = np.array(list(times) + [t for _, t in anchors])
    a = np.array([[r[k] for k in ContextModel.TERMS] for r in rows])
    iso = np.array([r["_isolated_s"] for r in rows])
    plain = np.array([r.get(ContextModel.STREAMED, 0.0) for r in rows]) == 0
    if plain[:chains].sum() < 6:   # too few chains without streaming to fit the terms on them alone
        plain = np.ones_like(plain)
    weight = np.ones(len(rows))
    weight[chains:] = plain[:chains].sum() / max(len(anchors), 1)
    # the last two columns take a share off the isolated times of convolutions and of the other ops
    # (ContextModel.conv_isolated_shrink, isolated_shrink), each bounded; rows without the split (a caller's
    # older rows) put every op with the others
    iso_conv = np.array([r.get("_isolated_conv_s", 0.0) for r in rows])
    shares = np.column_stack([iso_conv, iso - iso_conv])
    n = len(ContextModel.TERMS)
    coef = _relative_nnls_l1(np.column_stack([a, -shares])[plain], (y - iso)[plain], y[plain],
                             row_weight=weight[plain])
    terms, shrink = coef[:n], np.minimum(coef[n:], MAX_ISOLATED_SHRINK)
    if (coef[n:] > MAX_ISOLATED_SHRINK).any():   # a share held at the bound, the rest fitted again beside it
        free = coef[n:] <= MAX_ISOLATED_SHRINK
        kept = iso - shares[:, ~free] @ shrink[~free]
        refit = _relative_nnls_l1(np.column_stack([a, -shares[:, free]])[plain], (y - kept)[plain], y[plain],
                                  row_weight=weight[plain])
        terms, shrink[free] = refit[:n], refit[n:]
    pred = (iso - shares @ shrink + a @ terms)[:chains]
    err = float(np.median(np.abs(pred / y[:chains] - 1)) * 100)
    fitted = {name: float(c) for name, c in zip(ContextModel.FIELDS, terms)}
    return replace(caches, **fitted, conv_isolated_shrink=float(shrink[0]), isolated_shrink=float(shrink[1]),
                   chains=chains, median_abs_error_pct=round(err, 2))


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


def dominant(costs: Iterable[OpCost]) -> OpCost | None:
    working = [c for c in costs if c.launches]
    return max(working, key=lambda c: (c.flops, c.memory_traffic_bytes)) if working else None


# size features whose sampled span says whether an op was sampled (the rest are flags and small counts)
RANGE_FEATURES = ("log_flops", "log_bytes_read", "log_bytes_written", "log_out_numel", "log_c_in", "log_c_out",
                  "log_spatial_in", "log_spatial_out", "log_batch", "kernel")
# samples with cold weights a family needs before its ops are predicted cold in a streamed pass: the suite
# draws matrix products and recurrent layers cold on purpose (~90 and ~25 per 300 s run here), and a
# convolution only when one weight set alone exceeds the cache (2-6 per run: 2048-wide 7x7s at stride 4,
# slow for their shape). From 2 such samples the trees put every convolution of VGG-11, whose 133 MB of
# weights stream, 15% slower cold than warm (VGG-11 +13% to +35% over the drift-adjusted measurement in
# two runs); from 6 (the calibration before) 0.3%.
MIN_COLD_SAMPLES = 10


def sampled_ranges(by_family: dict[str, list[tuple[dict[str, float], float]]]) -> dict[str, dict[str, Any]]:
    """Per family, from (features, log(time / baseline)) of each sample: each size feature's [min, max],
    the span of log(time / baseline), and whether it was sampled cold: at least MIN_COLD_SAMPLES samples
    with cold weights (TimeModel.cold_flags predicts the family's ops cold in a pass that streams its
    weights only then). A convolution family also keeps the dimensionalities it sampled (``dims``):
    the suite draws 2-D and 3-D ones, and a 1-D one lies inside every size span while PyTorch runs it as
    a 1 x k 2-D kernel of another speed (a Conformer's depthwise 1 x 31 over 250 frames: predicted 0.14 ms,
    0.94 measured, unflagged; forty-sixth session)."""
    out = {}
    for fam, rows in by_family.items():
        feats = {k: [min(f.get(k, 0.0) for f, _ in rows), max(f.get(k, 0.0) for f, _ in rows)] for k in RANGE_FEATURES}
        ys = [y for _, y in rows]
        cold = sum(f.get("cold_weights", 0.0) > 0 for f, _ in rows)
        out[fam] = {"features": feats, "log_ratio": [min(ys), max(ys)], "cold": cold >= MIN_COLD_SAMPLES}
        if fam in CONV_FAMILIES:
            out[fam]["dims"] = sorted({f.get("spatial_dims", 0.0) for f, _ in rows})
    return out
