"""How a layer-level record is timed: as the kernels its layer runs.

The analyzer records nn.MultiheadAttention as one op (its work is the same whether its inner ops are
seen or not), but no kernel does all of it: eager PyTorch runs the input projection as one GEMM
(packed q/k/v for self-attention), the attention core, and the output projection. Calibration samples
those kernels, not the layer, so the time model prices such a record as the sum of its parts.
Counting is untouched: the parts exist only to be timed.

Priced as one "attention" op, the layer took the efficiency of the attention cores the suite samples
(a third of a GEMM's FLOP/s here): a 6-layer nn.TransformerEncoder (d 256, 128 tokens) came out
27 ms at one thread against 17 ms measured, fast path or not.
"""
from __future__ import annotations

import itertools
import math

from .formulas import attention_batch_length, count
from .records import OpCost, OpRecord, RecurrentShape, TensorSpec

_ids = itertools.count(-1, -1)   # storage ids of the parts' tensors: never a traced storage's


def _spec(shape: tuple[int, ...], like: TensorSpec) -> TensorSpec:
    numel = math.prod(shape)
    return TensorSpec(tuple(shape), like.dtype, like.itemsize, numel, next(_ids), numel * like.itemsize)


def _part(parent: OpRecord, name: str, args: tuple, out: TensorSpec, weights: tuple[TensorSpec, ...] = (),
          **kwargs) -> OpCost:
    rec = OpRecord(parent.index, name, "default", parent.module, parent.module_type, parent.leaf, args, kwargs,
                   (out,), False)
    return count(rec, {w.storage_id for w in weights})


def _linear(parent: OpRecord, x: TensorSpec, rows: int, k: int, n: int, bias: bool) -> OpCost:
    """(rows, k) @ (k, n) [+ bias]: addmm or mm, as F.linear runs on 2-D input."""
    a, w = _spec((rows, k), x), _spec((k, n), x)
    out = _spec((rows, n), x)
    if bias:
        b = _spec((n,), x)
        return _part(parent, "addmm", (b, a, w), out, (w, b))
    return _part(parent, "mm", (a, w), out, (w,))


def _attention_parts(rec: OpRecord, q: TensorSpec, k: TensorSpec, v: TensorSpec, embed: int, heads: int,
                     batch_first: bool, in_bias: bool, out_bias: bool, mask: object,
                     need_weights: bool) -> list[OpCost]:
    batch, lq = attention_batch_length(q, batch_first)
    _, lk = attention_batch_length(k, batch_first)
    e = embed // heads
    parts = []
    if q is k and k is v:   # self-attention: one GEMM onto the packed q/k/v weight
        parts.append(_linear(rec, q, batch * lq, embed, 3 * embed, in_bias))
    else:
        parts.append(_linear(rec, q, batch * lq, embed, embed, in_bias))
        parts.append(_linear(rec, k, batch * lk, k.shape[-1], embed, in_bias))
        parts.append(_linear(rec, v, batch * lk, v.shape[-1], embed, in_bias))
    qh, kh = _spec((batch, heads, lq, e), q), _spec((batch, heads, lk, e), q)
    vh, out = _spec((batch, heads, lk, e), q), _spec((batch, heads, lq, e), q)
    if need_weights:   # the scores are returned: explicit products and softmax, not a fused kernel
        scores = _spec((batch * heads, lq, lk), q)
        parts.append(_part(rec, "bmm", (_spec((batch * heads, lq, e), q), _spec((batch * heads, e, lk), q)), scores))
        parts.append(_part(rec, "_softmax", (scores, -1, False), _spec(scores.shape, q)))
        parts.append(_part(rec, "bmm", (_spec(scores.shape, q), _spec((batch * heads, lk, e), q)),
                           _spec((batch * heads, lq, e), q)))
    else:
        m = _spec((lq, lk), q) if isinstance(mask, TensorSpec) else None
        parts.append(_part(rec, "scaled_dot_product_attention", (qh, kh, vh, m), out, is_causal=False))
    parts.append(_linear(rec, q, batch * lq, embed, embed, out_bias))
    return parts


def timed_parts(cost: OpCost) -> list[OpCost]:
    """The kernels that time ``cost``: its parts for a multi-head attention layer recorded as one op,
    else the op itself."""
    rec = cost.record
    if rec.name == "multi_head_attention_forward":   # inputs sequence-first, as the function takes
        q, k, v, embed, heads, _, in_bias, _, out_bias, mask, need_weights = rec.args
        return _attention_parts(rec, q, k, v, embed, heads, False, isinstance(in_bias, TensorSpec),
                                isinstance(out_bias, TensorSpec), mask, bool(need_weights))
    if rec.name == "_native_multi_head_attention":
        q, k, v, embed, heads = rec.args[:5]
        return _attention_parts(rec, q, k, v, embed, heads, True, isinstance(rec.arg(6, "qkv_bias"), TensorSpec),
                                isinstance(rec.arg(8, "proj_bias"), TensorSpec), rec.arg(9, "mask"),
                                bool(rec.arg(10, "need_weights", True)))
    return [cost]


def recurrent_products(shape: RecurrentShape, dtype: str) -> list[tuple[OpCost, int]]:
    """The matrix products a fused recurrent layer of this shape (features.recurrent_shape: a stored sample has
    features, not the op) runs, each with how many times it runs: per layer and direction one input product
    over every step (steps x batch rows onto gates x hidden; PyTorch's CPU path takes it for all steps at
    once), and per serial call one step product (batch rows, hidden in). The input size of the later layers
    (hidden, or twice it when bidirectional) is not a feature: their mean comes from the FLOPs left after the
    step products. Empty where the shape lacks a batch, steps, hidden size, gates or layers (not a recurrent
    layer's)."""
    batch, steps, hidden, gates, layer_directions = (shape.batch, shape.steps, shape.hidden, shape.gates,
                                                     shape.layer_directions)
    if min(batch, steps, hidden, gates, layer_directions) < 1:
        return []
    flops = shape.calls * shape.flops_per_call
    step_flops = shape.calls * 2.0 * batch * hidden * gates * hidden
    k_in = max(1, round((flops - step_flops) / (2.0 * steps * batch * gates * hidden * layer_directions)))
    like = TensorSpec((1,), dtype, shape.itemsize, 1, next(_ids), shape.itemsize)
    parent = OpRecord(-1, "addmm", "default", "", "", True, (), {}, (), False)
    return [(_linear(parent, like, steps * batch, k_in, gates * hidden, True), layer_directions),
            (_linear(parent, like, batch, hidden, gates * hidden, True), shape.calls)]
