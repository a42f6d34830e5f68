"""Counting conventions, in one place (README "Counting conventions" mirrors this module).

* MAC  = one multiply-accumulate of a conv / linear / matmul / attention product.
* FLOPs = 2 * MACs for those products, plus one FLOP per bias element added, plus the
  elementwise work of every other op, per output element, from the table below.
  Transcendentals (exp, log, erf, tanh's exponentials) count one FLOP each, as common per-layer FLOP tables do
  (sigmoid = negate, exp, add, div = 4; tanh = exp, exp^-1, sub, add, div = 5).
* Memory traffic (ShuffleNet v2's "MAC", renamed to avoid the clash) = bytes read + bytes written.
  Bytes read = every distinct input tensor (activations and weights) once; gathers (embedding,
  index_select) read only the rows they gather. Bytes written = every output once. Views move nothing.
* MB = 1024**2 bytes; M/G for MACs and FLOPs are 10**6 / 10**9.
"""
from __future__ import annotations

import torch

MB = 1024**2
MEGA = 1e6
GIGA = 1e9

# FLOPs per output element of pointwise ops, keyed by the aten name without a trailing "_".
# Where a function has a cheaper exact form that kernels use, the table still follows the
# textbook expression, so numbers stay comparable across tools and seeds.
POINTWISE_FLOPS: dict[str, int] = {
    # arithmetic and comparisons: one operation each
    **dict.fromkeys(
        [
            "add", "sub", "rsub", "mul", "div", "neg", "abs", "reciprocal", "sqrt", "rsqrt", "exp",
            "exp2", "expm1", "log", "log2", "log10", "log1p", "erf", "erfc", "pow", "sin", "cos",
            "maximum", "minimum", "fmax", "fmin", "eq", "ne", "lt", "le", "gt", "ge", "where",
            "masked_fill", "sign", "floor", "ceil", "round", "trunc", "fmod", "remainder",
            "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "logical_and", "logical_or",
            "logical_not", "logical_xor", "square", "clamp_min", "clamp_max", "relu", "threshold",
            "floor_divide", "isnan", "isinf", "atan", "sinh", "cosh", "sgn", "heaviside",
        ],
        1,
    ),
    "addcmul": 2, "addcdiv": 2, "lerp": 2, "hypot": 3,
    "hardtanh": 2,      # ReLU6 = min(max(x, 0), 6)
    "leaky_relu": 2,    # compare, multiply
    "_prelu_kernel": 2, "prelu": 2,
    "elu": 4,           # compare, exp, subtract, multiply
    "celu": 5, "selu": 5,
    "sigmoid": 4,       # negate, exp, add, divide
    "tanh": 5,          # exp, exp^-1, subtract, add, divide
    "silu": 5,          # x * sigmoid(x)
    "hardswish": 5,     # x * min(max(x + 3, 0), 6) / 6
    "hardsigmoid": 4,   # min(max(x + 3, 0), 6) / 6
    "softplus": 3,      # log(1 + exp(x))
    "mish": 9,          # x * tanh(softplus(x)) = 3 + 5 + 1
    "log_sigmoid_forward": 5,
    "gelu": 5,          # x/2 * (1 + erf(x / sqrt 2)): div, erf, add, mul, mul
    "softshrink": 2, "hardshrink": 2,
    # pure data movement: no arithmetic
    **dict.fromkeys(["_to_copy", "copy", "clone", "fill", "zero", "lift_fresh_copy", "alias_copy"], 0),
}
GELU_TANH_FLOPS = 13  # 0.5x(1 + tanh(c(x + 0.044715x^3))): x^3 (2), *k, +x, *c, tanh (5), +1, *x, *0.5

# Normalization, per element. Inference batch norm uses stored statistics: (x - mean) / std * g + b.
NORM_APPLY_FLOPS = 2        # subtract mean, divide by std
NORM_AFFINE_FLOPS = 2       # scale, shift
NORM_STATS_FLOPS = 4        # mean (1 add), variance (subtract, square, add)
RMS_NORM_FLOPS = 3          # square, add, scale by 1/rms (+1 with weight)

# Softmax over n elements: exp n, add n - 1, divide n (3n - 1 per row).
def softmax_flops(rows: int, n: int) -> int:
    return rows * (3 * n - 1)


def log_softmax_flops(rows: int, n: int) -> int:
    # exp n, add n - 1, log 1, subtract n
    return rows * 3 * n


# int8 quantization, per element: quantize = divide by the scale, round and add the zero point
# (the clamp is free in the conversion); dequantize = subtract the zero point, multiply by the scale.
QUANTIZE_FLOPS = 2
DEQUANTIZE_FLOPS = 2
QUANTIZED_DTYPES = ("qint8", "quint8", "qint32", "quint4x2", "int8", "uint8")


# Sorting and selection (MoE routing): comparisons. A sort of n is n log2 n; top-k keeps a heap of k.
def sort_comparisons(n: int, k: int) -> int:
    import math

    return max(n, math.ceil(n * math.log2(max(2, k)))) if n > 1 else 0


HISTOGRAM_FLOPS = 2         # per element: bin index (scale, floor), increment


# Interpolation: weighted sum of 2^d neighbours per output element (2^d multiplies, 2^d - 1 adds).
INTERPOLATION_FLOPS = {"nearest": 0, "linear": 3, "bilinear": 7, "trilinear": 15, "bicubic": 31}
# RoIAlign: each output bin averages sampling_ratio^2 bilinear samples (torchvision's default detection
# heads use 2; an adaptive ratio, <= 0, depends on each box's size, and is counted at 2)
ROI_ALIGN_SAMPLES_PER_AXIS = 2
# IoU of two boxes: 4 max/min for the intersection's corners, 2 widths, 1 area, 1 union (two areas of 3
# each and a subtract), 1 divide, 1 compare with the threshold
IOU_FLOPS = 16
# grid_sample's modes by their integer code (bilinear 0, nearest 1, bicubic 2), as interpolation
GRID_SAMPLE_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
# FFT: 5 N log2 N per complex N-point transform, the count FFTW's benchmarks and most papers quote; a real
# transform (r2c, c2r) half of it, 2.5 N log2 N on its N real points
FFT_COMPLEX_FLOPS = 5.0

# Pointwise ops that the table above does not name (torch tags them `pointwise`: acos, atan2, isfinite,
# the special functions...): one operation per output element, the convention exp, erf and sin follow.
POINTWISE_DEFAULT_FLOPS = 1


def lapack_flops(kind: str, m: int, n: int, k: int = 1, vectors: bool = True, full: bool = False) -> float:
    """Real floating-point operations of one dense factorization or solve, the textbook counts: LAPACK
    Working Note 41 (Blackford and Dongarra, "Installation Guide for LAPACK", table of operation counts)
    and Golub and Van Loan, "Matrix Computations" (4th ed.: Fig. 8.6.1 for the SVD, Section 8.3 for the
    symmetric and 7.5 for the unsymmetric QR algorithm). ``m`` x ``n`` is the matrix, ``k`` the right-hand
    sides of a solve; ``vectors``: eigen- or singular vectors (Q for a QR) are formed; ``full``: complete
    rather than thin factors."""
    if m < n and kind in ("qr", "svd", "lu"):
        m, n = n, m                                   # the wide case costs what its transpose does
    if kind == "cholesky":
        return n**3 / 3
    if kind == "lu":
        return m * n * n - n**3 / 3
    if kind == "det":                                 # an LU factorization, then the diagonal's product
        return 2 * n**3 / 3 + n
    if kind == "inv":                                 # getrf + getri
        return 2 * n**3
    if kind == "solve":                               # getrf + two triangular solves per right-hand side
        return 2 * n**3 / 3 + 2 * n * n * k
    if kind in ("lu_solve", "cholesky_solve"):
        return 2 * n * n * k
    if kind == "triangular_solve":
        return n * n * k
    if kind == "cholesky_inverse":                    # potri: trtri + lauum
        return 2 * n**3 / 3
    if kind == "qr":                                  # geqrf, then orgqr for Q (thin: m x n, complete: m x m)
        r = 2 * m * n * n - 2 * n**3 / 3
        if not vectors:
            return r
        q = 4 * m * m * n - 4 * m * n * n + 4 * n**3 / 3 if full else 2 * m * n * n - 2 * n**3 / 3
        return r + q
    if kind == "eigh":
        return 9 * n**3 if vectors else 4 * n**3 / 3
    if kind == "eig":
        return 25 * n**3 if vectors else 10 * n**3
    if kind == "svd":                                 # Golub-Reinsch
        if not vectors:
            return 4 * m * n * n - 4 * n**3 / 3
        return 4 * m * m * n + 8 * m * n * n + 9 * n**3 if full else 14 * m * n * n + 8 * n**3
    raise ValueError(f"no operation count for {kind!r}")


_DTYPE_ALIASES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "int8": torch.int8, "qint8": torch.int8,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Accept a torch dtype or a common name ("float16", "fp16", "bf16", "int8")."""
    from .errors import InputError

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPE_ALIASES:
        raise InputError(
            f"unknown dtype {dtype!r}: use one of float32, float16, bfloat16, int8 (or fp32, fp16, bf16)"
        )
    return _DTYPE_ALIASES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype, device="meta").element_size()
