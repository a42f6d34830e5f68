"""Features of an op for the calibrated time model: the same function at calibration and prediction.

Every feature comes from the OpCost the analyzer produced (shapes and counts, never data), so a
microbenchmark case and the same op inside a network get identical features.
"""
from __future__ import annotations

import math

from .formulas import (CONV_FAMILIES, conv_groups, conv_kernel, is_tanh_gelu, matmul_operands, rnn_geometry,
                       serial_steps)
from .records import OpCost, RecurrentShape, TensorSpec

FEATURES = (
    "log_flops", "log_bytes_read", "log_bytes_written", "log_out_numel", "log_in_numel", "itemsize",
    "n_inputs", "flops_per_out", "log_batch", "log_c_in", "log_c_out", "log_spatial_in",
    "log_spatial_out", "kernel", "stride", "log_groups", "spatial_dims", "broadcast", "log_intensity", "misaligned",
    "cold_weights", "strided", "op_code", "in_place", "op_prior", "native_conv", "log_reread_bytes",
)
# features that come from the op's key (vectorize), not its shapes: samples files do not store them
KEY_FEATURES = ("op_code", "in_place", "op_prior")
# features set from the caches the calibration measured (with_reread), at fitting as at prediction: samples
# files do not store them either, so a refit recomputes them from the run's fundamentals
CACHE_FEATURES = ("log_reread_bytes",)
# cold_weights is context, not shape: 1 when the op's weights stream from beyond the last-level cache
# (a case whose weights rotate through a pool larger than the cache, or a network whose weights do not
# fit in it: each is read once per pass and evicted before the next). shape_features leaves it 0.
# strided: the op's first input is a permuted view (a token mixer's transposes): kernels take a slow
# path there. 1 for a transposed matrix, 2 for a 3-D permutation (records.TensorSpec.strided): at one
# thread here LayerNorm over 1024 rows of 144 took 90 us contiguous, 175 us over (144, 1024).t(), 510 us
# over MobileViT's (4, 256, 144) unfold, the same rows.

# how an op's elements are arranged. A contiguous elementwise op without broadcasting runs one loop over its
# elements (TensorIterator coalesces its dims), so for it these say nothing of its cost; given to the trees
# they set the ops of squeeze-excite blocks, (1, C, 1, 1), apart from every sample of their size (the
# suite's are 2-D or larger maps): relu / silu / hardsigmoid there 1.2-1.7x slow in the op audit. Zeroed
# for those ops (vectorize): 5-fold CV on six calibrations' elementwise samples (runs HH, JJ, KK, 1 and 2
# threads) within 20% 87.4% -> 88.2% on average; their op audits re-predicted by the refitted models:
# 82.0 -> 84.8%, 82.9 -> 87.2%, 77.9 -> 80.8% of ops within 20%.
LAYOUT_FEATURES = ("log_batch", "log_c_in", "log_c_out", "log_spatial_in", "log_spatial_out", "spatial_dims")
VECTOR_BLOCK = 16  # channels per SIMD block in oneDNN/MKL kernels (AVX-512 fp32); a partial block runs a slow tail


def _l(x: float) -> float:
    return math.log2(x + 1.0)


def _prod(xs) -> int:
    return math.prod(int(x) for x in xs) if xs else 1


def _first(xs, default=1):
    if isinstance(xs, (list, tuple)):
        return int(xs[0]) if xs else default
    return int(xs) if isinstance(xs, (int, float)) else default


def _misaligned(c_in: int, c_out: int) -> float:
    return float(c_in % VECTOR_BLOCK != 0) + float(c_out % VECTOR_BLOCK != 0)


def shape_features(cost: OpCost) -> dict[str, float]:
    rec = cost.record
    ins = rec.inputs
    x: TensorSpec | None = ins[0] if ins else None
    out = rec.outputs[0]
    f = dict.fromkeys(FEATURES, 0.0)
    f["log_flops"] = _l(cost.flops)
    f["log_bytes_read"] = _l(cost.bytes_read)
    f["log_bytes_written"] = _l(cost.bytes_written)
    f["log_out_numel"] = _l(out.numel)
    f["log_in_numel"] = _l(x.numel if x else 0)
    f["itemsize"] = float(out.itemsize)
    f["n_inputs"] = float(len(ins))
    f["flops_per_out"] = cost.flops / max(1, out.numel)
    f["log_batch"] = _l(x.shape[0] if x and x.ndim else 1)
    f["broadcast"] = float(any(t.footprint < out.numel for t in ins if t.itemsize == out.itemsize))
    f["log_intensity"] = _l(cost.flops / max(1, cost.memory_traffic_bytes))
    f["strided"] = float(x.strided if x is not None else 0)
    fam = cost.family
    if fam in ("conv", "depthwise_conv", "grouped_conv", "conv_transpose") and x is not None and len(ins) > 1:
        w = rec.args[1]
        f["log_c_in"], f["log_c_out"] = _l(x.shape[1]), _l(out.shape[1])
        f["log_spatial_in"], f["log_spatial_out"] = _l(_prod(x.shape[2:])), _l(_prod(out.shape[2:]))
        f["kernel"] = float(_prod(w.shape[2:]))
        f["stride"] = float(_first(rec.arg(3, "stride", 1)))
        f["log_groups"] = _l(conv_groups(rec, w, x))
        f["spatial_dims"] = float(x.ndim - 2)
        f["misaligned"] = _misaligned(x.shape[1], out.shape[1])
        f["native_conv"] = conv_kernel(cost)
    elif fam == "matmul" and len(ins) >= 2:
        a, b = matmul_operands(rec)
        if isinstance(a, TensorSpec) and isinstance(b, TensorSpec):
            f["log_batch"] = _l(a.shape[0] if a.ndim == 3 else 1)
            f["log_spatial_in"] = _l(a.shape[-2] if a.ndim >= 2 else 1)   # M
            f["log_c_in"] = _l(a.shape[-1])                                # K
            f["log_c_out"] = _l(b.shape[-1] if b.ndim >= 2 else 1)         # N
            f["misaligned"] = _misaligned(a.shape[-1], b.shape[-1] if b.ndim >= 2 else 1)
    elif fam == "rnn" and (g := rnn_geometry(rec)) is not None:
        f["log_batch"], f["log_spatial_in"] = _l(g.batch), _l(g.steps)
        f["log_c_in"], f["log_c_out"] = _l(x.shape[2]), _l(g.hidden)
        f["kernel"] = float(g.layer_directions)
        f["stride"] = float(g.gates)
        # the recurrence runs one small GEMM per step and layer: its size sets the efficiency
        f["log_spatial_out"] = _l(cost.flops / serial_steps(cost))
    elif fam == "attention" and x is not None:
        k = rec.args[1]
        f["log_batch"] = _l(_prod(x.shape[:-2]))
        f["log_spatial_in"], f["log_spatial_out"] = _l(x.shape[-2]), _l(k.shape[-2])
        f["log_c_in"] = _l(x.shape[-1])
        if rec.name == "scaled_dot_product_attention":   # the other attention ops' sixth argument is not is_causal
            f["kernel"] = float(bool(rec.kwargs.get("is_causal", rec.arg(5, "is_causal", False))))
    elif rec.name == "native_layer_norm" and x is not None and x.ndim >= 2:
        # rows of the normalized (trailing) size, whatever the leading dims: featured as the suite's 2-D
        # cases are, (rows, d). Featured as NCHW, ViT's (1, 197, 768) read as 197 channels of 768 pixels and
        # MobileViT's permuted (4, 256, 144) as 256 channels, matching no sample (calibration O: 0.30-0.42x)
        d = _prod(rec.arg(1, "normalized_shape", x.shape[-1:]))
        rows = x.numel // max(1, d)
        f["log_batch"], f["log_c_in"], f["log_spatial_in"] = _l(rows), _l(d), _l(rows)
    elif x is not None and x.ndim >= 3:
        f["log_c_in"], f["log_c_out"] = _l(x.shape[1]), _l(out.shape[1] if out.ndim > 1 else 1)
        f["log_spatial_in"], f["log_spatial_out"] = _l(_prod(x.shape[2:])), _l(_prod(out.shape[2:]))
        f["spatial_dims"] = float(x.ndim - 2)
        if fam == "pool":
            ks = rec.arg(1, "kernel_size", 0)
            f["kernel"] = float(_prod(ks) if isinstance(ks, (list, tuple)) else ks or 0)
    elif x is not None and x.ndim >= 1:
        f["log_c_in"] = _l(x.shape[-1])
        f["log_spatial_in"] = _l(x.numel // max(1, x.shape[-1]))
    return f


def recurrent_shape(features: dict[str, float]) -> RecurrentShape:
    """A fused recurrent layer's geometry from its shape features (a stored sample has features, not the op):
    shape_features stores its batch, steps and hidden size as log_batch, log_spatial_in and log_c_out, its
    gates as stride, its layers x directions as kernel and its FLOPs per serial call as log_spatial_out."""
    def size(name: str) -> int:
        return round(2.0 ** features.get(name, 0.0) - 1.0)

    return RecurrentShape(size("log_batch"), size("log_spatial_in"), size("log_c_out"),
                          int(features.get("stride", 0.0)), int(features.get("kernel", 0.0)),
                          2.0 ** features.get("log_spatial_out", 0.0) - 1.0, int(features.get("itemsize", 4.0)))


def serial_calls(features: dict[str, float], family: str) -> int:
    """formulas.serial_steps from an op's features: a fused RNN's steps x layer-directions
    (recurrent_shape)."""
    if family != "rnn":
        return 1
    return max(1, recurrent_shape(features).calls)


def op_key(cost: OpCost) -> str:
    """The op within its family (relu vs gelu vs add ...), in-place variants under their own name
    (relu_): vectorize splits that into the op and the in_place feature. GELU's tanh approximation is
    an op of its own (gelu_tanh): about 4x the erf form's time on a CPU, and under one code with it
    (suite 14 told them apart by FLOPs per element only) the trees blurred the two, both 1.3-2x off."""
    rec = cost.record
    if rec.name == "gelu" and is_tanh_gelu(rec):
        return "gelu_tanh"
    x = rec.inputs[0] if rec.inputs else None
    return volumetric(rec.name, cost.family, float(x.ndim - 2) if x is not None else 0.0)


def volumetric(op: str, family: str, spatial_dims: float) -> str:
    """A 3-D convolution as an op of its own (convolution3d): PyTorch runs it through other kernels than a
    2-D one, at a third to half their rate here (16-35 GFLOP/s against 45-115 for 3x3 2-D convolutions at
    batch 1). Under one op code the trees blurred the two: a U-Net's 64 -> 64 3x3 convolution over 32 x 32
    predicted at 40 GFLOP/s, below every 2-D sample of its kind and beside C3D's; split, 5-fold CV on two
    calibrations' convolutions: within 20% 48 -> 52% and 52 -> 52% (2-D ones 51 -> 55%, 55 -> 56%), median
    |log error| 0.190 -> 0.177 and 0.177 -> 0.166. Samples stored before the split are read the same way
    (fit._family_data)."""
    return op + "3d" if family in CONV_FAMILIES and op == "convolution" and spatial_dims == 3 else op


# an op a profile never sampled takes the code of the op it refines, where the profile has that one
# (a calibration older than suite 15 timed both GELU forms, or only the erf one, as gelu; one without
# 3-D convolutions has them under convolution)
REFINES = {"gelu_tanh": "gelu", "convolution3d": "convolution"}
COLD_SUFFIX = "@cold"   # op_fits key of an op's fit with its weights streamed from DRAM


def in_place(op: str) -> bool:
    return op.endswith("_") and not op.endswith("__")


def base_op(op: str) -> str:
    """relu_ -> relu: an in-place op shares its out-of-place op's code and sets in_place instead."""
    return op[:-1] if in_place(op) else op


def _known(op: str, names) -> str | None:
    """The name under which a model knows ``op``: its out-of-place name, or the op that name refines."""
    op0 = base_op(op)
    if op0 not in names and REFINES.get(op0) in names:
        op0 = REFINES[op0]
    return op0 if op0 in names else None


def elements(features: dict[str, float]) -> float:
    """The elements an op touches: its first input's or its output's, the larger (a pool or a reduction
    reads more than it writes, an upsampling writes more)."""
    return 2.0 ** max(features.get("log_out_numel", 0.0), features.get("log_in_numel", 0.0)) - 1.0


def prior_terms(features: dict[str, float], family: str) -> tuple[float, ...]:
    """What an op's own fit (op_prior) multiplies its coefficients by: 1 and the elements it touches
    (elements()); for a fused recurrent layer, its serial calls (steps x layers x directions: each a small
    GEMM and the gate updates), its FLOPs and the weight bytes it reads again from beyond the private
    caches (reread_bytes; log_reread_bytes, set by with_reread). A GRU measured here cost 11-12 us per step
    and layer at batch 1 and hidden 128 from 16 to 90 steps, one or two layers; by elements (batch x steps x
    hidden, blind to the layers) its prior put two layers at one layer's cost, and the trees predicted a
    2-layer, 45-step GRU 22% fast."""
    if family == "rnn":
        calls = float(serial_calls(features, family))
        return calls, calls * recurrent_shape(features).flops_per_call, reread_set(features)
    return 1.0, elements(features)


def recurrent_weight_bytes(features: dict[str, float]) -> float:
    """A recurrent layer's hidden-to-hidden weights for one layer and direction (gates x hidden x hidden):
    what each step's small GEMM reads whole."""
    shape = recurrent_shape(features)
    return float(shape.gates * shape.hidden * shape.hidden * shape.itemsize)


def reread_bytes(features: dict[str, float], family: str, cache_bytes: float) -> float:
    """Bytes a recurrent layer reads again over its serial calls from beyond a cache of ``cache_bytes``: its
    hidden-to-hidden weights once per call where they exceed it; none where they fit, or the size is
    unknown (0). A calibrated model passes the private caches of the threads sharing each step's GEMM (every
    thread's together: past them the weights come from the last-level cache, at a cost its fit learns); the
    datasheet roofline the last-level cache (past it they come from DRAM, at the profile's bandwidth).
    Measured here (2 MiB of L2 per core), a one-layer GRU at batch 8 over 32 steps ran 80 GFLOP/s with
    hidden 256 (0.75 MB of such weights) and 74 with 384 (1.7 MB), then 52 from 512 (3 MB) to 1024 (12 MB)
    at one thread, each step 160 us per MB of them; at two threads 138 GFLOP/s at 512, 96 from 640 (4.7 MB)
    on. Blind to the knee, calibrations put a 2-layer bidirectional GRU with hidden 512 at batch 8 13% fast
    at one thread and 21% slow at two (median of six)."""
    if family != "rnn" or cache_bytes <= 0:
        return 0.0
    weights = recurrent_weight_bytes(features)
    return float(serial_calls(features, family)) * weights if weights > cache_bytes else 0.0


def with_reread(features: dict[str, float], family: str, private_cache_bytes: float) -> dict[str, float]:
    """``features`` with log_reread_bytes set for these caches (a copy)."""
    return {**features, "log_reread_bytes": _l(reread_bytes(features, family, private_cache_bytes))}


def reread_set(features: dict[str, float]) -> float:
    """The bytes read again that with_reread set in ``features`` (0 where it did not)."""
    return 2.0 ** features.get("log_reread_bytes", 0.0) - 1.0


def op_prior(fits: dict[str, dict[str, list[float]]], family: str, op: str, features: dict[str, float],
             base_s: float) -> float:
    """log(the op's own fitted time / the baseline): its fixed cost plus its cost per element (prior_terms), as
    fitted to its samples (``fits[family][op]`` = [fixed seconds, seconds per element], and for a recurrent
    layer per serial call, per FLOP and per byte read again: one coefficient per prior term; ops with too few
    samples take their family's fit, under ""; an op sampled in place and not, each way's own fit where it
    has one: relu_ apart from relu). 0.0 without fits (prior = baseline)."""
    fam = fits.get(family)
    if not fam or base_s <= 0:
        return 0.0
    key = op if op in fam else _known(op, fam) or ""
    if features.get("cold_weights", 0.0) > 0 and key + COLD_SUFFIX in fam:
        key += COLD_SUFFIX   # its weights streamed: the fit of its cold samples (fit._condition_fits)
    coefficients = fam.get(key, fam.get("", [0.0, 0.0]))
    prior_s = sum(c * term for c, term in zip(coefficients, prior_terms(features, family)))
    return math.log(prior_s / base_s) if prior_s > 0 else 0.0


def vectorize(features: dict[str, float], family: str, op: str, vocab: dict[str, list[str]],
              prior: float = 0.0) -> list[float]:
    """Features in FEATURES order, with op_code = the index of the op (in place or not) in its family's
    vocabulary of out-of-place names (-1: unseen), in_place = 1 for relu_, hardswish_, add_ ..., and
    op_prior = ``prior`` (op_prior()); a contiguous elementwise op's layout features zeroed (LAYOUT_FEATURES).
    An in-place op writes into its input's cache lines instead of a fresh buffer (here ReLU on 1x96x28x28
    took 4.7 us in place, 9.0 us out of place). Under codes of their own (suite 5-11) the few in-place
    samples sat between unrelated ops in the code order, and with suite 11's new ops beside relu_ the
    trees predicted in-place ReLUs of real CNNs 2.6-3.7x slow; as a flag on relu's code they share
    relu's samples and every in-place op's difference."""
    names = vocab.get(family, [])
    op0 = _known(op, names)
    f = dict(features)
    if family == "elementwise" and not f.get("broadcast") and not f.get("strided"):
        f.update(dict.fromkeys(LAYOUT_FEATURES, 0.0))
    f["op_code"] = float(names.index(op0)) if op0 is not None else -1.0
    f["in_place"] = float(in_place(op))
    f["op_prior"] = prior
    return [f[k] for k in FEATURES]


def feature_vector(cost: OpCost, vocab: dict[str, list[str]]) -> list[float]:
    return vectorize(shape_features(cost), cost.family, op_key(cost), vocab)
