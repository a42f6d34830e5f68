"""One formula per aten op family: short pure functions of shapes, in a registry.

A formula takes an OpRecord (shapes and arguments, never data) and returns the op's Work:
MACs, FLOPs and, where the generic rule does not hold, the bytes it moves. The generic rule
(every distinct input read once, every output written once) lives in ``count``.
Conventions are documented in ``conventions.py``.

Long because it is the registry: one short formula per op family (about 70 of them), read as a
table, as torch.utils.flop_counter and fvcore's jit_handles are.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable

import torch

from . import conventions as cv
from .errors import InputError
from .records import OpCost, OpRecord, TensorSpec


@dataclass(frozen=True, slots=True)
class Work:
    macs: int = 0
    flops: int = 0
    family: str | None = None           # overrides the registered family (e.g. depthwise conv)
    bytes_read: int | None = None       # None: the generic rule
    bytes_written: int | None = None
    # the share of its parameter inputs' bytes the op reads (MoE experts: those rows are routed to);
    # a formula that sets it below 1 leaves the unread bytes out of bytes_read too
    weight_share: float = 1.0


@dataclass(frozen=True, slots=True)
class Formula:
    fn: Callable[[OpRecord], Work]
    family: str


REGISTRY: dict[str, Formula] = {}

FAMILIES = (
    "conv", "depthwise_conv", "grouped_conv", "conv_transpose", "matmul", "attention", "embedding",
    "elementwise", "norm", "pool", "reduction", "softmax", "interpolate", "data_movement", "rnn", "unknown",
)
# products run on matrix units (tensor cores); the rest on vector units
PRODUCT_FAMILIES = frozenset(
    {"conv", "depthwise_conv", "grouped_conv", "conv_transpose", "matmul", "attention", "rnn"}
)
CONV_FAMILIES = frozenset({"conv", "depthwise_conv", "grouped_conv", "conv_transpose"})


def register(*names: str, family: str):
    """The built-in formulas' decorator: ``names`` are aten op names without "aten::"."""
    def deco(fn: Callable[[OpRecord], Work]) -> Callable[[OpRecord], Work]:
        for n in names:
            if n in REGISTRY:
                raise ValueError(f"formula for {n!r} registered twice")
            REGISTRY[n] = Formula(fn, family)
        return fn

    return deco


def op_name(op: Any) -> str:
    """The name records carry for an op: "conv2d" style for aten ops, "namespace::name" otherwise.
    ``op``: that string, "aten::name", or a torch.ops overload or packet (torch.ops.mylib.scale)."""
    if not isinstance(op, str):
        schema_name = getattr(getattr(op, "_schema", None), "name", None)
        if schema_name is None:   # an OpOverloadPacket: its qualified name
            qualified = getattr(op, "_qualified_op_name", None)
            if qualified is None:
                raise InputError(f"register_formula needs an op name or a torch.ops op, got {op!r}")
            schema_name = qualified
        op = schema_name
    return op.removeprefix("aten::")


def register_formula(op: Any, fn: Callable[[OpRecord], Work] | None = None, family: str = "unknown",
                     override: bool = False):
    """Add a formula for an op (aten, quantized, or your own custom op): ``fn(record) -> Work`` with
    MACs and FLOPs (bytes default to every input read once, every output written once).

    ``family`` (one of FAMILIES) sets which roofline and calibrated time model the op gets. Registering
    a name that already has a formula is an error unless ``override=True``. Usable as a decorator:
    ``@hwcost.register_formula("mylib::scale", family="elementwise")``."""
    if family not in FAMILIES:
        raise InputError(f"unknown op family {family!r}; families: {', '.join(FAMILIES)}")
    name = op_name(op)

    def add(f: Callable[[OpRecord], Work]) -> Callable[[OpRecord], Work]:
        if not callable(f):
            raise InputError(f"the formula for {name!r} must be a function of an OpRecord returning a Work")
        if name in REGISTRY and not override:
            raise InputError(f"{name!r} already has a formula ({REGISTRY[name].fn.__name__}); pass override=True "
                             "to replace it")
        REGISTRY[name] = Formula(f, family)
        return f

    return add(fn) if fn is not None else add


def lookup(name: str) -> Formula | None:
    f = REGISTRY.get(name)
    if f is None and name.endswith("_") and not name.endswith("__"):
        f = REGISTRY.get(name[:-1])  # in-place variant: add_ counts as add
    if f is None and name.startswith("quantized::"):
        f = REGISTRY.get(name.removeprefix("quantized::"))  # quantized::max_pool2d counts as max_pool2d
    if f is None and _tagged_pointwise(name.removesuffix("_") if not name.endswith("__") else name):
        f = _POINTWISE_FALLBACK
    return f


@functools.lru_cache(maxsize=None)
def _tagged_pointwise(name: str) -> bool:
    """An aten op torch itself tags `pointwise` (acos, atan2, isfinite, the special functions): each
    output element from the inputs' elements at the same place, whatever it computes."""
    if "::" in name:
        return False
    packet = getattr(torch.ops.aten, name, None)
    try:
        return any(torch.Tag.pointwise in getattr(packet, o).tags for o in packet.overloads())
    except (AttributeError, RuntimeError, TypeError):
        return False


# ------------------------------------------------------------------ helpers


def _prod(xs: Iterable[int]) -> int:
    return math.prod(int(x) for x in xs)


def _tensors(rec: OpRecord) -> list[TensorSpec]:
    return rec.inputs


def _out(rec: OpRecord) -> TensorSpec:
    return rec.outputs[0]


def _ntuple(x, n: int) -> tuple[int, ...]:
    if isinstance(x, (list, tuple)):
        return tuple(x) if len(x) == n else tuple(x) * n if len(x) == 1 else tuple(x)
    return (x,) * n


# ------------------------------------------------------------------ conv


@register("convolution", "_convolution", "convolution_overrideable", "cudnn_convolution",
          "mkldnn_convolution", "_slow_conv2d_forward", "slow_conv3d_forward", "miopen_convolution",
          "cudnn_convolution_transpose", "slow_conv_transpose2d", "slow_conv_transpose3d",
          "_nnpack_spatial_convolution", "slow_conv_dilated2d", "slow_conv_dilated3d",
          family="conv")
def conv_cost(rec: OpRecord) -> Work:
    x, w, out = rec.args[0], rec.args[1], _out(rec)
    bias = rec.arg(2, "bias")
    transposed = "transpose" in rec.name or (
        rec.name in ("convolution", "_convolution", "convolution_overrideable") and bool(rec.arg(6, "transposed"))
    )
    kernel = _prod(w.shape[2:])
    if transposed:
        # every input element scatters into kernel x (C_out / groups) outputs; weight is (C_in, C_out/g, k...)
        macs = x.numel * w.shape[1] * kernel
        family = "conv_transpose"
    else:
        # every output element is a dot product of length (C_in / groups) x kernel; weight is (C_out, C_in/g, k...)
        macs = out.numel * w.shape[1] * kernel
        groups = conv_groups(rec, w, x)
        cin = x.shape[1] if x.ndim > 1 else 1
        family = "conv" if groups == 1 else "depthwise_conv" if groups == cin else "grouped_conv"
    bias_flops = out.numel if isinstance(bias, TensorSpec) else 0
    return Work(macs, 2 * macs + bias_flops, family)


def conv_groups(rec: OpRecord, w: TensorSpec, x: TensorSpec) -> int:
    """A convolution's groups: its argument where the schema has one (convolution, _convolution), else
    input channels over the weight's (cudnn_convolution and friends)."""
    if rec.name in ("convolution", "_convolution", "convolution_overrideable"):
        return int(rec.arg(8, "groups", 1))
    return max(1, x.shape[1] // w.shape[1])


# PyTorch runs a float32 convolution on a CPU through oneDNN or through its own kernels (slow_conv2d /
# slow_conv3d: im2col or vol2col and a GEMM), by ConvParams::use_mkldnn (aten/src/ATen/native/
# Convolution.cpp; checked with torch._C._select_conv_backend, torch 2.13): its own where no group, no
# kernel larger than 3 in both trailing dims, batch 1 and batch x channels x the first two spatial sizes at
# most NATIVE_CONV_MAX_ELEMENTS (a video stem, a late 256 x 7 x 7 stage, squeeze-excite's 1 x 1 on a pooled
# map); and for a plain 1 x 1 (unstrided, undilated) under a batch of 16 on one thread. The two run at very
# different rates: C3D's 3 -> 32 stem over 16 x 112 x 112 ran 36-39 GFLOP/s at batch 1 (slow_conv3d) and
# 150-160 at batch 2 (oneDNN), 1 thread; the trees, with no feature for the switch, put it 0.54x.
NATIVE_CONV_MAX_ELEMENTS = 20480


def native_conv(x_shape: tuple, w_shape: tuple, stride, dilation, groups: int, itemsize: int) -> float:
    """2.0: a float32 CPU convolution that runs PyTorch's own kernel at any thread count; 1.0: one that does
    on one thread only (the plain 1 x 1 under a batch of 16); 0.0: oneDNN. A 1-D convolution runs as a 2-D
    one of height 1, as PyTorch runs it."""
    if itemsize != 4 or len(x_shape) < 3:
        return 0.0
    if len(x_shape) == 3:
        x_shape, w_shape = (x_shape[0], x_shape[1], 1, x_shape[2]), (*w_shape[:2], 1, w_shape[2])
    kh, kw = int(w_shape[-2]), int(w_shape[-1])
    if groups == 1 and not (kh > 3 and kw > 3) and x_shape[0] == 1 and _prod(x_shape[:4]) <= NATIVE_CONV_MAX_ELEMENTS:
        return 2.0
    plain = all(int(v) == 1 for v in _ntuple(stride, 1)) and all(int(v) == 1 for v in _ntuple(dilation, 1))
    return 1.0 if plain and x_shape[0] < 16 and kh == 1 and kw == 1 else 0.0


def conv_kernel(cost: OpCost) -> float:
    """native_conv of a convolution op (its input, weight, stride, dilation and groups as recorded); 0.0 for
    any other op or a convolution recorded without its weight."""
    rec = cost.record
    ins = rec.inputs
    if cost.family not in CONV_FAMILIES or len(ins) < 2 or not rec.outputs:
        return 0.0
    x, w = ins[0], rec.args[1]
    return native_conv(x.shape, w.shape, rec.arg(3, "stride", 1), rec.arg(5, "dilation", 1), conv_groups(rec, w, x),
                       rec.outputs[0].itemsize)


def runs_native_conv(kernel: float, threads: int) -> bool:
    """Does a convolution of this native_conv value run PyTorch's own kernel at ``threads`` CPU threads
    (0: unknown, or not a CPU: no)?"""
    return threads > 0 and (kernel == 2.0 or (kernel == 1.0 and threads == 1))


_BIAS_FIRST = frozenset({"addmm", "_addmm_activation", "baddbmm", "addbmm", "addmv"})


def matmul_operands(rec: OpRecord) -> tuple[TensorSpec, TensorSpec]:
    """The two factors of a matrix product: addmm and its kin take the bias first."""
    return (rec.args[1], rec.args[2]) if rec.name in _BIAS_FIRST else (rec.args[0], rec.args[1])


# ------------------------------------------------------------------ matmul family


@register("mm", family="matmul")
def mm_cost(rec: OpRecord) -> Work:
    a, b = matmul_operands(rec)
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    return Work(macs, 2 * macs)


@register("addmm", "_addmm_activation", family="matmul")
def addmm_cost(rec: OpRecord) -> Work:
    (a, b), out = matmul_operands(rec), _out(rec)
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    return Work(macs, 2 * macs + out.numel)


@register("bmm", family="matmul")
def bmm_cost(rec: OpRecord) -> Work:
    a, b = matmul_operands(rec)
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return Work(macs, 2 * macs)


@register("baddbmm", family="matmul")
def baddbmm_cost(rec: OpRecord) -> Work:
    (a, b), out = matmul_operands(rec), _out(rec)
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return Work(macs, 2 * macs + out.numel)


@register("addbmm", family="matmul")
def addbmm_cost(rec: OpRecord) -> Work:
    (a, b), out = matmul_operands(rec), _out(rec)
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return Work(macs, 2 * macs + out.numel * a.shape[0])


@register("mv", "addmv", family="matmul")
def mv_cost(rec: OpRecord) -> Work:
    a, _ = matmul_operands(rec)
    macs = a.shape[0] * a.shape[1]
    return Work(macs, 2 * macs + (a.shape[0] if rec.name == "addmv" else 0))


def expected_groups(groups: int, rows: int, top_k: int | None = None) -> float:
    """How many of ``groups`` experts receive at least one of ``rows`` routed rows, expected under uniform
    routing: each token picks ``top_k`` distinct experts (rows = tokens x top_k), so a decode step of one
    token reads exactly top_k; without top_k each row picks independently (slightly fewer: 1.875 of 8
    experts for two rows against top-2's exact 2)."""
    if groups <= 0 or rows <= 0:
        return 0.0
    if top_k and 0 < top_k <= groups and rows % top_k == 0:
        return groups * (1.0 - (1.0 - top_k / groups) ** (rows // top_k))
    return groups * (1.0 - (1.0 - 1.0 / groups) ** rows)


@register("_grouped_mm", "grouped_mm", family="matmul")
def grouped_mm_cost(rec: OpRecord, top_k: int | None = None) -> Work:
    """MoE experts as one call: each row (2-D x 3-D: a token routed to an expert) multiplies its group's
    matrix, so MACs = rows x K x N whatever the routing; 3-D x 3-D is a batched matmul; 2-D x 2-D splits
    K into groups, so every output element sums its own group's K.
    The kernel reads only the matrices of groups that received rows (transformers passes every expert's
    weights and lets the offsets pick the active ones): a decode step of a 512-expert, top-10 model reads
    10 of them, not all 512 (counted whole, a small Qwen3-Next's decode step came out 6x its time on a
    Raspberry Pi 4 profile, its expert products 50x). Which experts is data the trace has not got, so the
    count is the expected number under uniform routing (expected_groups; ``top_k``: the router's, where
    count_records found it)."""
    a, b, out = rec.args[0], rec.args[1], _out(rec)
    if a.ndim == 2 and b.ndim == 2:
        macs = a.shape[0] * a.shape[1] * b.shape[1]
    else:
        macs = out.numel * a.shape[-1]
    bias = rec.arg(3, "bias")
    flops = 2 * macs + (out.numel if isinstance(bias, TensorSpec) else 0)
    if not (a.ndim == 2 and b.ndim == 3 and b.shape[0] > 0):
        return Work(macs, flops)
    share = min(1.0, expected_groups(b.shape[0], a.shape[0], top_k) / b.shape[0])
    per_group = b.read_bytes + (bias.read_bytes if isinstance(bias, TensorSpec) and bias.ndim == 2
                                   and bias.shape[0] == b.shape[0] else 0)
    read = generic_bytes(rec)[0] - round((1.0 - share) * per_group)
    return Work(macs, flops, bytes_read=read, weight_share=share)


@register("dot", "vdot", family="matmul")
def dot_cost(rec: OpRecord) -> Work:
    n = rec.args[0].numel
    return Work(n, 2 * n)


# ------------------------------------------------------------------ attention


_SDPA_BLHE = ("_flash_attention_forward", "_efficient_attention_forward")


@register("scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
          "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
          "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention_overrideable",
          *_SDPA_BLHE, family="attention")
def sdpa_cost(rec: OpRecord) -> Work:
    """softmax(q k^T * scale + mask) v, fused: q, k, v (and a mask) read once, output written once."""
    q, k, v = rec.args[0], rec.args[1], rec.args[2]
    if rec.name in _SDPA_BLHE:  # (batch, length, heads, dim)
        batch_heads, lq, lk = q.shape[0] * q.shape[2], q.shape[1], k.shape[1]
    else:  # (..., heads, length, dim)
        batch_heads, lq, lk = _prod(q.shape[:-2]), q.shape[-2], k.shape[-2]
    e, ev = q.shape[-1], v.shape[-1]
    macs = batch_heads * lq * lk * (e + ev)
    scores = batch_heads * lq * lk
    flops = 2 * macs + scores + cv.softmax_flops(batch_heads * lq, lk)  # scale, softmax
    mask = rec.arg(3, "attn_mask")
    if isinstance(mask, TensorSpec) and rec.name not in _SDPA_BLHE:
        flops += scores
    return Work(macs, flops, bytes_written=_out(rec).nbytes)  # logsumexp etc. are small by-products


def attention_batch_length(x: TensorSpec, batch_first: bool) -> tuple[int, int]:
    """(batch, length) of a multi-head attention layer's input: unbatched (L, E), else (N, L, E) batch
    first or (L, N, E)."""
    if x.ndim < 3:
        return 1, x.shape[0]
    return (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])


def _attention_layer_work(rec: OpRecord, q: TensorSpec, k: TensorSpec, embed: int, heads: int, batch_first: bool,
                          kdim: int, vdim: int, in_bias: bool, out_bias: bool, masked: bool,
                          need_weights: bool) -> Work:
    """Multi-head attention with its projections: q, k, v in, scaled scores, softmax, weighted sum, out.
    Bytes: inputs and weights once, each projected q/k/v and the attention output written and read
    once; the score matrix only when the weights are returned (need_weights)."""
    batch, lq = attention_batch_length(q, batch_first)
    _, lk = attention_batch_length(k, batch_first)
    tq, tk = batch * lq, batch * lk
    proj = tq * embed * embed + tk * (kdim + vdim) * embed + tq * embed * embed
    scores = batch * heads * lq * lk
    macs = proj + 2 * batch * lq * lk * embed
    flops = 2 * macs + tq * embed + cv.softmax_flops(batch * heads * lq, lk)   # q scaled, softmax
    flops += (tq + 2 * tk) * embed * in_bias + tq * embed * out_bias + scores * masked
    flops += scores * need_weights                                               # head average
    isz = q.itemsize
    read, written = generic_bytes(rec)
    inner = 2 * (2 * tq + 2 * tk) * embed * isz + (2 * scores * isz if need_weights else 0)
    return Work(macs, flops, "attention", read + inner, written)


@register("multi_head_attention_forward", family="attention")
def mha_functional_cost(rec: OpRecord) -> Work:
    """F.multi_head_attention_forward as hwcost records it: inputs sequence-first, as the function takes."""
    q, k, v, embed, heads, weights, in_bias, _, out_bias, mask, need_weights = rec.args
    return _attention_layer_work(rec, q, k, embed, heads, False, k.shape[-1], v.shape[-1],
                                 isinstance(in_bias, TensorSpec), isinstance(out_bias, TensorSpec),
                                 isinstance(mask, TensorSpec), bool(need_weights))


@register("_native_multi_head_attention", family="attention")
def native_mha_cost(rec: OpRecord) -> Work:
    """The fused CPU/GPU kernel of nn.MultiheadAttention (batch first, packed q/k/v weight)."""
    q, k, v, embed, heads = rec.args[:5]
    mask = rec.arg(9, "mask")
    return _attention_layer_work(rec, q, k, embed, heads, True, k.shape[-1], v.shape[-1],
                                 isinstance(rec.arg(6, "qkv_bias"), TensorSpec),
                                 isinstance(rec.arg(8, "proj_bias"), TensorSpec),
                                 isinstance(mask, TensorSpec), bool(rec.arg(10, "need_weights", True)))


@register("_transformer_encoder_layer_fwd", family="attention")
def encoder_layer_cost(rec: OpRecord) -> Work:
    """nn.TransformerEncoderLayer's fused kernel: self-attention, two residual adds, two layer norms
    and the feed-forward block (linear, ReLU or GELU, linear), counted as its parts are."""
    src, embed, heads = rec.args[:3]
    use_gelu = bool(rec.arg(7, "use_gelu", False))
    w1, w2 = rec.arg(14, "ffn_weight_1"), rec.arg(16, "ffn_weight_2")
    mask = rec.arg(18, "mask")
    attn = _attention_layer_work(rec, src, src, embed, heads, True, embed, embed, True, True,
                                 isinstance(mask, TensorSpec), False)
    tokens = src.numel // embed
    hidden = w1.shape[0]
    ffn_macs = tokens * embed * hidden + tokens * hidden * w2.shape[0]
    act = cv.POINTWISE_FLOPS["gelu"] if use_gelu else cv.POINTWISE_FLOPS["relu"]
    norm = cv.NORM_APPLY_FLOPS + cv.NORM_AFFINE_FLOPS + cv.NORM_STATS_FLOPS
    flops = attn.flops + 2 * ffn_macs + tokens * (hidden + embed)        # FFN and its biases
    flops += tokens * hidden * act + 2 * src.numel + 2 * norm * src.numel  # activation, residuals, norms
    inner = 2 * src.itemsize * tokens * (2 * hidden + 4 * embed)          # FFN hidden, residual/norm outputs
    return Work(attn.macs + ffn_macs, flops, "attention", attn.bytes_read + inner, attn.bytes_written)


# ------------------------------------------------------------------ recurrent (fused)

_RNN_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
# per hidden unit per step: LSTM 3 sigmoids (4) + 2 tanh (5) + 3 mul + 1 add; GRU 2 sigmoids + 1 tanh
# + 3 mul + 2 add; plain RNN one tanh (5) or relu (1); plus 3 adds per gate unit (2 biases, ih + hh)
_RNN_CELL_FLOPS = {"lstm": 26, "gru": 18, "rnn_tanh": 5, "rnn_relu": 1}


@register("lstm", "gru", "rnn_tanh", "rnn_relu", family="rnn")
def rnn_cost(rec: OpRecord) -> Work:
    """All layers and directions: every step multiplies the input and hidden state by their weights. A
    packed sequence (the tokens of every sequence, then the batch sizes per step) runs each real token
    once, padding none."""
    x = rec.args[0]
    steps_x_batch = x.shape[0] * x.shape[1] if x.ndim == 3 and not _packed_rnn(rec) else x.shape[0]
    weights = _rnn_weights(rec)
    macs = steps_x_batch * sum(w.numel for w in weights)
    # w_hh of each layer-direction is (gates x hidden, hidden)
    hidden_rows = [w.shape[0] for w in weights if w.shape[0] == _RNN_GATES[rec.name] * w.shape[1]]
    cells = sum(r // _RNN_GATES[rec.name] for r in hidden_rows)
    flops = 2 * macs + steps_x_batch * cells * (_RNN_CELL_FLOPS[rec.name] + 3 * _RNN_GATES[rec.name])
    return Work(macs, flops)   # batch_first or not, the count is steps x batch


def _packed_rnn(rec: OpRecord) -> bool:
    """The packed-sequence form (its second argument the batch sizes per step, not the hidden state)."""
    return len(rec.args) > 3 and isinstance(rec.args[1], TensorSpec) and rec.args[1].ndim == 1


def _rnn_weights(rec: OpRecord) -> list[TensorSpec]:
    params = rec.args[3 if _packed_rnn(rec) else 2]   # data, batch_sizes, hx, params / input, hx, params
    return [w for w in params if isinstance(w, TensorSpec) and w.ndim == 2]


@dataclass(frozen=True, slots=True)
class RnnGeometry:
    steps: int
    batch: int
    hidden: int
    layer_directions: int   # one recurrence per layer and direction
    gates: int


def rnn_geometry(rec: OpRecord) -> RnnGeometry | None:
    """Shape of a fused recurrent op (None for an unbatched 2-D input, which has no batch dim)."""
    x = rec.args[0]
    weights = _rnn_weights(rec)
    if _packed_rnn(rec):   # steps: the batch sizes' length; batch: the hidden state's, the longest sequence's
        hx = rec.args[2][0] if isinstance(rec.args[2], (list, tuple)) else rec.args[2]
        steps, batch = rec.args[1].shape[0], hx.shape[1]
    elif not isinstance(x, TensorSpec) or x.ndim != 3:
        return None
    else:
        batch_first = bool(rec.arg(8, "batch_first", False))
        steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    gates = _RNN_GATES.get(rec.name, 1)
    w_hh = [w for w in weights if w.shape[0] == gates * w.shape[1]]
    hidden = w_hh[-1].shape[1] if w_hh else rec.outputs[0].shape[-1]
    return RnnGeometry(steps, batch, hidden, max(1, len(weights) // 2), gates)


def serial_steps(cost: OpCost) -> int:
    """Kernel calls an op makes one after another: a fused RNN runs one small GEMM and cell update
    per step, layer and direction; every other op is one call."""
    if cost.family != "rnn":
        return 1
    g = rnn_geometry(cost.record)
    return g.steps * g.layer_directions if g else 1


# ------------------------------------------------------------------ quantized (int8) ops
# Weights arrive unpacked from their packed-parameter objects (trace.packed_tensors) as one tuple
# (weight, bias); int8 tensors count one byte per element. MACs are the float op's: quantization
# changes bytes and the rate a device reaches, not the work.


def _packed(rec: OpRecord) -> tuple[TensorSpec, TensorSpec | None]:
    packed = rec.args[1]
    w = packed[0]
    b = packed[1] if len(packed) > 1 and isinstance(packed[1], TensorSpec) else None
    return w, b


@register("quantized::linear", "quantized::linear_relu", "quantized::linear_dynamic",
          "quantized::linear_relu_dynamic", "quantized::linear_dynamic_fp16", "quantized::linear_with_input_q_dq_qweight_dq_output_fp32",
          family="matmul")
def quantized_linear_cost(rec: OpRecord) -> Work:
    x, out = rec.args[0], _out(rec)
    w, b = _packed(rec)
    macs = out.numel * w.shape[1]
    flops = 2 * macs + (out.numel if b is not None else 0) + (out.numel if "relu" in rec.name else 0)
    if "dynamic" in rec.name:
        flops += cv.QUANTIZE_FLOPS * x.numel  # the input is quantized on the fly
    return Work(macs, flops)


@register("quantized::conv1d", "quantized::conv2d", "quantized::conv3d", "quantized::conv1d_relu",
          "quantized::conv2d_relu", "quantized::conv3d_relu", family="conv")
def quantized_conv_cost(rec: OpRecord) -> Work:
    x, out = rec.args[0], _out(rec)
    w, b = _packed(rec)
    macs = out.numel * w.shape[1] * _prod(w.shape[2:])
    groups = max(1, x.shape[1] // w.shape[1])
    family = "conv" if groups == 1 else "depthwise_conv" if groups == x.shape[1] else "grouped_conv"
    flops = 2 * macs + (out.numel if b is not None else 0) + (out.numel if "relu" in rec.name else 0)
    return Work(macs, flops, family)


@register("quantized::add", "quantized::add_relu", "quantized::mul", "quantized::mul_relu",
          "quantized::add_scalar", "quantized::mul_scalar", family="elementwise")
def quantized_binary_cost(rec: OpRecord) -> Work:
    # the op, a requantization (scale, round) and the fused ReLU where there is one
    per = 1 + cv.QUANTIZE_FLOPS + (1 if "relu" in rec.name else 0)
    return Work(0, per * _out(rec).numel)


@register("quantize_per_tensor", "quantize_per_channel", "quantize_per_tensor_dynamic", "dequantize",
          family="elementwise")
def quantize_cost(rec: OpRecord) -> Work:
    per = cv.DEQUANTIZE_FLOPS if rec.name == "dequantize" else cv.QUANTIZE_FLOPS
    return Work(0, per * _out(rec).numel)


@register("quantized::cat", family="data_movement")
def quantized_cat_cost(rec: OpRecord) -> Work:
    return Work(0, 0)


# ------------------------------------------------------------------ embedding and gathers


@register("embedding", family="embedding")
def embedding_cost(rec: OpRecord) -> Work:
    weight, idx, out = rec.args[0], rec.args[1], _out(rec)
    # only the looked-up rows are read, not the whole table
    return Work(0, 0, bytes_read=idx.nbytes + out.numel * weight.itemsize)


@register("_pack_padded_sequence", "_pad_packed_sequence", "max_unpool2d", "max_unpool3d", family="data_movement")
def packed_sequence_cost(rec: OpRecord) -> Work:
    return Work(0, 0)   # a gather of the real tokens (or its inverse), a scatter by indices: bytes moved only


@register("_embedding_bag", "_embedding_bag_forward_only", family="embedding")
def embedding_bag_cost(rec: OpRecord) -> Work:
    """Looked-up rows only, reduced into their bags: an add (sum, mean) or compare (max) per element
    looked up, a multiply more with per-sample weights, a divide per output element for the mean."""
    weight, idx, out = rec.args[0], rec.args[1], _out(rec)
    looked_up = idx.numel * weight.shape[-1]
    mode = int(rec.arg(4, "mode", 0))                                  # 0 sum, 1 mean, 2 max
    weighted = isinstance(rec.arg(6, "per_sample_weights"), TensorSpec)
    flops = looked_up * (2 if weighted else 1) + (out.numel if mode == 1 else 0)
    index_bytes = sum(t.nbytes for t in rec.inputs if t is not weight)
    return Work(0, flops, bytes_read=index_bytes + looked_up * weight.itemsize, bytes_written=out.nbytes)


@register("index_select", "gather", "index", "_unsafe_index", "take", family="data_movement")
def gather_cost(rec: OpRecord) -> Work:
    src, out = rec.args[0], _out(rec)
    idx_bytes = sum(t.nbytes for t in rec.inputs if t is not src)
    return Work(0, 0, bytes_read=idx_bytes + out.numel * src.itemsize)


# ------------------------------------------------------------------ normalization


def _norm_work(x: TensorSpec, affine: bool, stats: bool) -> Work:
    per = cv.NORM_APPLY_FLOPS + (cv.NORM_AFFINE_FLOPS if affine else 0) + (cv.NORM_STATS_FLOPS if stats else 0)
    return Work(0, per * x.numel)


@register("_native_batch_norm_legit_no_training", family="norm")
def bn_inference_cost(rec: OpRecord) -> Work:
    w = _norm_work(rec.args[0], isinstance(rec.arg(1, "weight"), TensorSpec), stats=False)
    # the saved mean / inverse std outputs exist for autograd; inference kernels leave them empty
    return Work(0, w.flops, bytes_written=_out(rec).nbytes)


@register("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
          "cudnn_batch_norm", "miopen_batch_norm", family="norm")
def bn_cost(rec: OpRecord) -> Work:
    # training=True means statistics come from the input (instance norm, BN in train mode)
    no_stats = rec.overload == "no_stats"
    training = bool(rec.arg(3 if no_stats else 5, "training", False))
    return _norm_work(rec.args[0], isinstance(rec.arg(1, "weight"), TensorSpec), stats=training)


@register("native_layer_norm", family="norm")
def layer_norm_cost(rec: OpRecord) -> Work:
    return _norm_work(rec.args[0], isinstance(rec.arg(2, "weight"), TensorSpec), stats=True)


@register("native_group_norm", family="norm")
def group_norm_cost(rec: OpRecord) -> Work:
    return _norm_work(rec.args[0], isinstance(rec.arg(1, "weight"), TensorSpec), stats=True)


@register("_fused_rms_norm", family="norm")
def rms_norm_cost(rec: OpRecord) -> Work:
    x = rec.args[0]
    per = cv.RMS_NORM_FLOPS + (1 if isinstance(rec.arg(2, "weight"), TensorSpec) else 0)
    return Work(0, per * x.numel)


@register("_weight_norm_interface", family="norm")
def weight_norm_cost(rec: OpRecord) -> Work:
    """w = g * v / ||v||, the norm over every dim but ``dim`` (wav2vec2's positional convolution recomputes
    it each forward): square and add per element of v, a root and a divide per norm, a multiply per element."""
    v, dim = rec.args[0], rec.arg(2, "dim", 0)
    norms = 1 if dim == -1 or v.ndim == 0 else v.shape[dim]   # dim -1: one norm of the whole tensor
    return Work(0, 3 * v.numel + 2 * norms)


# ------------------------------------------------------------------ pointwise


def is_tanh_gelu(rec: OpRecord) -> bool:
    """GELU (in place or not) in its tanh approximation (approximate="tanh"), not the erf form."""
    return rec.name in ("gelu", "gelu_") and rec.kwargs.get("approximate", rec.arg(1, "approximate", "none")) == "tanh"


def _pointwise_flops_per_element(rec: OpRecord) -> int | None:
    base = rec.name[:-1] if rec.name.endswith("_") and rec.name not in cv.POINTWISE_FLOPS else rec.name
    if is_tanh_gelu(rec):
        return cv.GELU_TANH_FLOPS
    if base in ("add", "sub", "rsub"):
        alpha = rec.kwargs.get("alpha", 1)
        return 1 if alpha == 1 else 2
    if base in ("clamp", "clip"):
        return sum(rec.arg(i, n) is not None for i, n in ((1, "min"), (2, "max")))
    return cv.POINTWISE_FLOPS.get(base, cv.POINTWISE_DEFAULT_FLOPS)


def pointwise_cost(rec: OpRecord) -> Work:
    per = _pointwise_flops_per_element(rec)
    fam = "data_movement" if per == 0 else "elementwise"
    return Work(0, per * _out(rec).numel, fam)


for _name in dict.fromkeys([*cv.POINTWISE_FLOPS, "clamp", "gelu"]):
    register(_name, family="elementwise")(pointwise_cost)
_POINTWISE_FALLBACK = Formula(pointwise_cost, "elementwise")


# ------------------------------------------------------------------ softmax


@register("_softmax", "_safe_softmax", "softmax", "_log_softmax", "log_softmax", family="softmax")
def softmax_cost(rec: OpRecord) -> Work:
    x = rec.args[0]
    dim = int(rec.arg(1, "dim", -1)) % max(1, x.ndim)
    n = x.shape[dim] if x.ndim else 1
    rows = x.numel // max(1, n)
    fn = cv.log_softmax_flops if "log" in rec.name else cv.softmax_flops
    return Work(0, fn(rows, n))


# ------------------------------------------------------------------ pooling


def _spatial_dims(rec: OpRecord) -> int:
    for d in (3, 2, 1):
        if f"{d}d" in rec.name:
            return d
    return 2


def pool_window_taps(in_size: int, out_size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Sum over the outputs along one dim of the window taps that fall inside the padded input: a window
    larger than its input (AvgPool2d(1280) on a 7x7 map) or running off the end (ceil_mode) is clipped."""
    total = 0
    for i in range(out_size):
        start = i * stride - padding
        taps = sum(1 for j in range(kernel) if -padding <= start + j * dilation < in_size + padding)
        total += max(1, taps)
    return total


def _pool_taps(rec: OpRecord, dilation_arg: int | None) -> tuple[int, int]:
    """(taps summed over every output, outputs) of a pooling op."""
    x, out = rec.args[0], _out(rec)
    d = _spatial_dims(rec)
    kernel = _ntuple(rec.arg(1, "kernel_size"), d)
    stride = _ntuple(rec.arg(2, "stride") or kernel, d)
    padding = _ntuple(rec.arg(3, "padding", 0), d)
    dilation = _ntuple(rec.arg(dilation_arg, "dilation", 1), d) if dilation_arg else (1,) * d
    per_plane = _prod(
        pool_window_taps(i, o, k, s, p, dl)
        for i, o, k, s, p, dl in zip(x.shape[-d:], out.shape[-d:], kernel, stride, padding, dilation)
    )
    planes = out.numel // max(1, _prod(out.shape[-d:]))
    return planes * per_plane, out.numel


@register("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
          "max_pool2d_with_indices", "max_pool3d_with_indices", "mkldnn_max_pool2d",
          "mkldnn_max_pool3d", "quantized_max_pool1d", "quantized_max_pool2d", "quantized_max_pool3d",
          family="pool")
def max_pool_cost(rec: OpRecord) -> Work:
    taps, outs = _pool_taps(rec, dilation_arg=4)
    return Work(0, taps - outs, bytes_written=_out(rec).nbytes)  # k - 1 comparisons; indices are a by-product


@register("avg_pool1d", "avg_pool2d", "avg_pool3d", family="pool")
def avg_pool_cost(rec: OpRecord) -> Work:
    taps, outs = _pool_taps(rec, dilation_arg=None)
    return Work(0, taps + outs)  # k + 1 per output, k the taps inside the input


def adaptive_window_total(in_size: int, out_size: int) -> int:
    """Sum of adaptive-pooling window lengths along one dim (PyTorch's start/end rule)."""
    return sum(
        math.ceil((i + 1) * in_size / out_size) - (i * in_size) // out_size for i in range(out_size)
    )


def _adaptive_windows(rec: OpRecord) -> tuple[int, int]:
    x, out = rec.args[0], _out(rec)
    d = _spatial_dims(rec)
    per_plane = _prod(
        adaptive_window_total(i, o) for i, o in zip(x.shape[-d:], out.shape[-d:])
    )
    planes = out.numel // max(1, _prod(out.shape[-d:]))
    return planes * per_plane, out.numel


@register("_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
          "adaptive_avg_pool3d", "mkldnn_adaptive_avg_pool2d", family="pool")
def adaptive_avg_pool_cost(rec: OpRecord) -> Work:
    window_elems, outs = _adaptive_windows(rec)
    return Work(0, window_elems + outs)  # k adds... + 1 divide per output, as avg_pool's k + 1


@register("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", family="pool")
def adaptive_max_pool_cost(rec: OpRecord) -> Work:
    window_elems, outs = _adaptive_windows(rec)
    return Work(0, window_elems - outs, bytes_written=_out(rec).nbytes)


# ------------------------------------------------------------------ reductions


@register("sum", "amax", "amin", "max", "min", "argmax", "argmin", "prod", "any", "all",
          "nansum", family="reduction")
def reduce_cost(rec: OpRecord) -> Work:
    x, out = rec.args[0], _out(rec)
    return Work(0, max(0, x.numel - out.numel), bytes_written=_out(rec).nbytes)


@register("mean", "nanmean", family="reduction")
def mean_cost(rec: OpRecord) -> Work:
    return Work(0, rec.args[0].numel)  # n - 1 adds and one divide per output


@register("var", "std", "var_mean", "std_mean", family="reduction")
def var_cost(rec: OpRecord) -> Work:
    x, out = rec.args[0], _out(rec)
    return Work(0, 3 * x.numel + (out.numel if rec.name.startswith("std") else 0))


@register("linalg_vector_norm", "norm", family="reduction")
def norm_cost(rec: OpRecord) -> Work:
    x, out = rec.args[0], _out(rec)
    return Work(0, 2 * x.numel + out.numel)  # square, add; one root per output


@register("logsumexp", family="reduction")
def logsumexp_cost(rec: OpRecord) -> Work:
    x, out = rec.args[0], _out(rec)
    return Work(0, 2 * x.numel + out.numel)


@register("sort", "argsort", "topk", "kthvalue", "msort", family="reduction")
def sort_cost(rec: OpRecord) -> Work:
    """Comparisons: n log2 n per sorted row; top-k keeps a heap of k, n log2 k (at least one per element)."""
    x = rec.args[0]
    if x.ndim == 0:
        return Work(0, 0)
    dim = int(rec.arg(1 if rec.name != "topk" else 2, "dim", -1)) % x.ndim
    n = x.shape[dim]
    rows = x.numel // max(1, n)
    k = int(rec.arg(1, "k", n)) if rec.name in ("topk", "kthvalue") else n
    return Work(0, rows * cv.sort_comparisons(n, k))


@register("histc", "bincount", "one_hot", family="reduction")
def histogram_cost(rec: OpRecord) -> Work:
    return Work(0, cv.HISTOGRAM_FLOPS * rec.args[0].numel)  # bin index, count


@register("cumsum", "cumprod", family="reduction")
def cumsum_cost(rec: OpRecord) -> Work:
    return Work(0, rec.args[0].numel)


# ------------------------------------------------------------------ interpolation


@register("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
          "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d",
          "upsample_bilinear2d", "upsample_trilinear3d", "upsample_bicubic2d",
          "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa", family="interpolate")
def upsample_cost(rec: OpRecord) -> Work:
    mode = next(m for m in ("nearest", "bilinear", "trilinear", "bicubic", "linear") if m in rec.name)
    return Work(0, cv.INTERPOLATION_FLOPS[mode] * _out(rec).numel,
                "data_movement" if mode == "nearest" else None)


@register("grid_sampler_2d", "grid_sampler_3d", "cudnn_grid_sampler", family="interpolate")
def grid_sample_cost(rec: OpRecord) -> Work:
    """Per output element the mode's interpolation; per output location the grid's coordinates
    unnormalized (a multiply and an add per axis), shared by every channel."""
    x, grid, out = rec.args[0], rec.args[1], _out(rec)
    code = 0 if rec.name == "cudnn_grid_sampler" else int(rec.arg(2, "interpolation_mode", 0))   # cuDNN: bilinear
    mode = cv.GRID_SAMPLE_MODES.get(code, "bilinear")
    if x.ndim == 5 and mode == "bilinear":
        mode = "trilinear"
    return Work(0, cv.INTERPOLATION_FLOPS[mode] * out.numel + 2 * grid.numel)


@register("torchvision::roi_align", family="interpolate")
def roi_align_cost(rec: OpRecord) -> Work:
    """Per output element sampling_ratio^2 bilinear samples, each added to the bin's sum, and one divide."""
    ratio = int(rec.arg(5, "sampling_ratio", -1))
    per_axis = ratio if ratio > 0 else cv.ROI_ALIGN_SAMPLES_PER_AXIS
    samples = per_axis * per_axis
    return Work(0, (samples * (cv.INTERPOLATION_FLOPS["bilinear"] + 1) + 1) * _out(rec).numel)


@register("torchvision::roi_pool", family="pool")
def roi_pool_cost(rec: OpRecord) -> Work:
    """A max over each bin: its size depends on the box, so counted as one comparison per input element
    the boxes cover at most once (the feature map per box), an upper bound."""
    x, rois = rec.args[0], rec.args[1]
    per_map = x.numel // max(1, x.shape[0]) if x.ndim else 0
    return Work(0, (rois.shape[0] if rois.ndim else 0) * per_map)


@register("torchvision::nms", family="reduction")
def nms_cost(rec: OpRecord) -> Work:
    """Sort by score, then each kept box's IoU with every box after it: the worst case, n(n - 1)/2
    IoUs, when few boxes are suppressed (how many are depends on the boxes' values)."""
    n = rec.args[0].shape[0] if rec.args[0].ndim else 0
    return Work(0, cv.sort_comparisons(n, n) + cv.IOU_FLOPS * n * (n - 1) // 2)


@register("_unique2", "_unique", "unique_dim", "unique_consecutive", family="reduction")
def unique_cost(rec: OpRecord) -> Work:
    """Sorted, then neighbours compared: n log2 n + n (a consecutive unique: the n compares alone)."""
    n = rec.args[0].numel
    return Work(0, n + (0 if rec.name == "unique_consecutive" else cv.sort_comparisons(n, n)))


@register("nonzero", "nonzero_static", "argwhere", family="reduction")
def nonzero_cost(rec: OpRecord) -> Work:
    return Work(0, rec.args[0].numel)  # one test per element; the indices written are the output


@register("masked_select", family="data_movement")
def masked_select_cost(rec: OpRecord) -> Work:
    return Work(0, 0)


# ------------------------------------------------------------------ FFT


def _fft_points(x: TensorSpec, dims: Any, last_dim_size: int | None = None) -> int:
    """Points of one transform: the product of the transformed sizes (a c2r's last from its output)."""
    dims = [dims] if isinstance(dims, int) else list(dims or range(x.ndim))
    sizes = [x.shape[d] for d in dims]
    if last_dim_size is not None and sizes:
        sizes[-1] = last_dim_size
    return math.prod(sizes)


@register("_fft_c2c", "_fft_r2c", "_fft_c2r", family="reduction")
def fft_cost(rec: OpRecord) -> Work:
    """FFT_COMPLEX_FLOPS N log2 N per complex transform of N points, half that for a real one, times the
    transforms the other dims batch; plus a multiply per element when normalized. Timed as a reduction:
    like one, a few passes over the data, bound by memory on most devices."""
    x, out = rec.args[0], _out(rec)
    real = rec.name != "_fft_c2c"
    n = _fft_points(x, rec.arg(1, "dim"), int(rec.arg(3, "last_dim_size")) if rec.name == "_fft_c2r" else None)
    signal = out if rec.name == "_fft_c2r" else x                     # the side whose elements are the points
    transforms = signal.numel // n if n else 0
    per = cv.FFT_COMPLEX_FLOPS * (0.5 if real else 1.0)
    norm = out.numel if int(rec.arg(2, "normalization", 0)) else 0
    return Work(0, round(per * transforms * n * math.log2(max(n, 2))) + norm)


# ------------------------------------------------------------------ dense linear algebra


def _matrices(a: TensorSpec) -> tuple[int, int, int]:
    """(batch, rows, columns) of a stack of matrices."""
    m, n = (a.shape[-2], a.shape[-1]) if a.ndim >= 2 else (1, 1)
    return a.numel // max(1, m * n), m, n


def _rhs_columns(b: TensorSpec, n: int) -> int:
    """Right-hand sides a solve carries, over every batch: a vector or matrix of them per system."""
    return b.numel // max(1, n)


def _linalg(kind: str, **flags: bool):
    def cost(rec: OpRecord) -> Work:
        batch, m, n = _matrices(rec.args[0])
        return Work(0, round(batch * cv.lapack_flops(kind, m, n, **flags)))
    return cost


for _names, _kind in ((("linalg_cholesky_ex", "cholesky"), "cholesky"), (("linalg_inv_ex", "inverse"), "inv"),
                      (("_linalg_det", "_linalg_slogdet", "linalg_det", "det", "logdet", "slogdet"), "det"),
                      (("linalg_lu_factor_ex", "linalg_lu"), "lu"),
                      (("cholesky_inverse",), "cholesky_inverse")):
    register(*_names, family="reduction")(_linalg(_kind))
register("_linalg_eigvals", "linalg_eigvals", family="reduction")(_linalg("eig", vectors=False))
register("linalg_eig", family="reduction")(_linalg("eig"))


@register("linalg_qr", family="reduction")
def qr_cost(rec: OpRecord) -> Work:
    mode = rec.arg(1, "mode", "reduced")
    batch, m, n = _matrices(rec.args[0])
    return Work(0, round(batch * cv.lapack_flops("qr", m, n, vectors=mode != "r", full=mode == "complete")))


@register("_linalg_eigh", family="reduction")
def eigh_cost(rec: OpRecord) -> Work:
    # eigvalsh asks for no vectors, but a traced (subclass) tensor makes it compute them: count what ran
    vectors = bool(rec.arg(2, "compute_v", True)) and len(rec.outputs) > 1 and rec.outputs[1].numel > 0
    batch, _, n = _matrices(rec.args[0])
    return Work(0, round(batch * cv.lapack_flops("eigh", n, n, vectors=vectors)))


@register("_linalg_svd", family="reduction")
def svd_cost(rec: OpRecord) -> Work:
    vectors = bool(rec.arg(2, "compute_uv", True)) and rec.outputs[0].numel > 0
    batch, m, n = _matrices(rec.args[0])
    full = bool(rec.arg(1, "full_matrices", False))
    return Work(0, round(batch * cv.lapack_flops("svd", m, n, vectors=vectors, full=full)))


@register("_linalg_solve_ex", family="reduction")
def solve_cost(rec: OpRecord) -> Work:
    a, b = rec.args[0], rec.args[1]
    batch, _, n = _matrices(a)
    factor = batch * cv.lapack_flops("solve", n, n, k=0)
    return Work(0, round(factor + _rhs_columns(b, n) * cv.lapack_flops("lu_solve", n, n)))


@register("linalg_solve_triangular", "triangular_solve", "linalg_lu_solve", "cholesky_solve",
          "_cholesky_solve_helper", family="reduction")
def triangular_solve_cost(rec: OpRecord) -> Work:
    """Solves against a factor already made: the factor is the first input for linalg's, the second
    for the older functions (their first is B)."""
    if rec.name == "linalg_lu_solve":
        factor, b = rec.args[0], rec.args[2]
    elif rec.name == "linalg_solve_triangular":
        factor, b = rec.args[0], rec.args[1]
    else:
        b, factor = rec.args[0], rec.args[1]
    n = factor.shape[-1] if factor.ndim else 1
    kind = "triangular_solve" if "triangular" in rec.name else "lu_solve"
    return Work(0, round(_rhs_columns(b, n) * cv.lapack_flops(kind, n, n)))


# ------------------------------------------------------------------ accumulating scatters


@register("index_add", "scatter_add", "scatter_reduce", "index_reduce", "index_put", "_index_put_impl",
          family="data_movement")
def accumulate_cost(rec: OpRecord) -> Work:
    """A scatter that combines (adds, multiplies, takes the max...) each source element into its
    target: one operation per source element (the last tensor input: source or values). An
    index_put that overwrites moves bytes only."""
    if "index_put" in rec.name and not bool(rec.arg(3, "accumulate", False)):
        return Work(0, 0)
    return Work(0, rec.inputs[-1].numel if rec.inputs else 0)


# ------------------------------------------------------------------ data movement and factories


@register("cat", "stack", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
          "replication_pad1d", "replication_pad2d", "replication_pad3d", "pixel_shuffle",
          "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "repeat", "roll", "flip",
          "tril", "triu", "scatter", "slice_scatter", "select_scatter",
          "diagonal_scatter", "as_strided_scatter", "im2col", "col2im", "repeat_interleave",
          "expand_copy", "permute_copy", "view_copy", "unfold_copy", "transpose_copy", "t_copy",
          "split_with_sizes_copy", "unbind_copy", "split_copy", "masked_scatter", "index_copy",
          "index_fill", "contiguous", "resize", family="data_movement")
def move_cost(rec: OpRecord) -> Work:
    return Work(0, 0)


@register("zeros", "ones", "full", "arange", "scalar_tensor", "zeros_like", "ones_like", "full_like",
          "new_zeros", "new_ones", "new_full", "linspace", "eye", "randn", "rand", "randint",
          "randn_like", "rand_like", "randint_like", "bernoulli", "normal", "uniform", "_to_dense",
          "tensor", "lift_fresh", family="data_movement")
def fill_cost(rec: OpRecord) -> Work:
    return Work(0, 0, bytes_read=0)


@register("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted",
          family="data_movement")
def empty_cost(rec: OpRecord) -> Work:
    return Work(0, 0, bytes_read=0, bytes_written=0)  # allocation only, nothing is touched


# ------------------------------------------------------------------ the counter


def generic_bytes(rec: OpRecord) -> tuple[int, int]:
    read = sum(t.read_bytes for t in rec.inputs)
    written = sum(t.nbytes for t in rec.outputs)
    return read, written


def count(rec: OpRecord, weight_storage_ids: Collection[int] = (), top_k: int | None = None) -> OpCost:
    """Count one recorded op. An op with no formula keeps its bytes and is flagged unsupported.
    ``weight_storage_ids``: storages of the model's parameters and buffers, for ``weight_bytes``;
    ``top_k``: the experts per token of the router before a grouped MoE product (count_records)."""
    formula = lookup(rec.name)
    read, written = generic_bytes(rec)
    share = 1.0
    if formula is None:
        cost = OpCost(rec, "unknown", 0, 0, read, written, supported=False)
    else:
        # the built-in grouped product takes the router's top-k; a formula a user registered over it, the record
        work = formula.fn(rec, top_k) if top_k and formula.fn is grouped_mm_cost else formula.fn(rec)
        share = work.weight_share
        cost = OpCost(
            rec,
            work.family or formula.family,
            int(work.macs),
            int(work.flops),
            read if work.bytes_read is None else int(work.bytes_read),
            written if work.bytes_written is None else int(work.bytes_written),
        )
    weights = share * sum(t.read_bytes for t in rec.inputs if t.storage_id in weight_storage_ids)
    cost.weight_bytes = min(cost.bytes_read, round(weights))
    return cost


def router_top_k(rec: OpRecord) -> int | None:
    """k of a topk op (a MoE router's choice of experts per token), else None."""
    if rec.name != "topk" or not rec.outputs:
        return None
    k = rec.outputs[0].shape[-1] if rec.outputs[0].ndim else 0
    return int(k) if k > 0 else None


def count_records(records: Iterable[OpRecord], weight_storage_ids: Collection[int] = ()) -> list[OpCost]:
    """count() over a trace in order, each grouped MoE product told the top-k of the last router before it."""
    costs, top_k = [], None
    for rec in records:
        top_k = router_top_k(rec) or top_k
        costs.append(count(rec, weight_storage_ids, top_k))
    return costs
