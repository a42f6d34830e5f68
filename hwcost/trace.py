"""Trace a model once on meta tensors and record every aten op with the module that ran it.

Why meta: no arithmetic runs and no weight is copied, so tracing a 70B-parameter model costs the
same as tracing a small one with the same number of ops. The user's model is never moved or
modified: its parameters are swapped for meta stand-ins only for the duration of one
``torch.func.functional_call``, and its ``training`` flags are restored afterwards.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from .conventions import itemsize
from .errors import InputError, ModelForwardError
from .records import OpRecord, TensorSpec

Example = Any  # a shape tuple, a tensor, a tuple of either, or a dict of keyword arguments


@dataclass
class ModuleCall:
    name: str
    type: str
    leaf: bool
    output_bytes: int


@dataclass
class Trace:
    records: list[OpRecord]
    module_calls: list[ModuleCall]
    input_specs: list[TensorSpec]
    output_storage_ids: set[int]
    weight_storage_ids: set[int]
    first_call: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (op index, order)
    view_ops: int = 0            # aliasing ops (view, transpose, ...): no bytes, but a dispatch each


# ---------------------------------------------------------------- inputs


def _is_shape(x: Any) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and len(x) > 0 and all(
        isinstance(d, int) and not isinstance(d, bool) for d in x
    )


def prepare_inputs(
    example: Example, batch_size: int | None, trace_dtype: torch.dtype
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn a shape, tensor(s) or kwargs dict into meta positional and keyword arguments.

    A shape is given without the batch dimension (seed 001 style); ``batch_size`` (default 1)
    is prepended. Example tensors keep their shape unless ``batch_size`` is given, which then
    replaces the first dimension of those whose first dimension is the example's batch. Floating
    tensors take the traced dtype; integer ones (token ids) keep theirs.
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")

    leaves = tree_flatten(example)[0] if not _is_shape(example) else []
    firsts = [t.shape[0] for t in leaves if isinstance(t, torch.Tensor) and t.ndim]
    example_batch = firsts[0] if firsts else None

    def convert(x: Any) -> Any:
        if _is_shape(x):
            if any(d <= 0 for d in x):
                raise InputError(f"input shape {tuple(x)} has a non-positive dimension")
            return torch.empty((batch_size or 1, *x), dtype=trace_dtype, device="meta")
        if isinstance(x, torch.Tensor):
            shape = tuple(x.shape)
            if batch_size is not None and shape and shape[0] == example_batch:
                shape = (batch_size, *shape[1:])  # only tensors that carry the example's batch
            dt = trace_dtype if x.is_floating_point() else x.dtype
            return torch.empty(shape, dtype=dt, device="meta")
        return x

    if isinstance(example, dict):
        return (), {k: convert(v) for k, v in example.items()}
    if _is_shape(example) or isinstance(example, torch.Tensor):
        return (convert(example),), {}
    if isinstance(example, (tuple, list)) and example:
        return tuple(convert(x) for x in example), {}
    raise InputError(
        f"cannot use {type(example).__name__} {example!r} as model input: give a shape without the "
        "batch dimension such as (3, 224, 224), an example tensor, a tuple of those, or a dict of "
        "keyword arguments"
    )


# ---------------------------------------------------------------- tracing


def _tensors_in(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors_in(v)]
    return []


def meta_like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A meta tensor with t's shape and strides (torch.empty_like on meta costs ~100x more)."""
    return torch.empty_strided(t.shape, t.stride(), dtype=dtype or t.dtype, device="meta")


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s._cdata, s.nbytes()


class _Tracer(TorchDispatchMode):
    def __init__(self, names: dict[int, str], leaves: set[int], count_dtype: torch.dtype):
        super().__init__()
        self.names = names
        self.leaves = leaves
        self.count_itemsize = itemsize(count_dtype)
        self.records: list[OpRecord] = []
        self.stack: list[tuple[nn.Module, tuple]] = []
        self.module_calls: list[ModuleCall] = []
        self.first_call: dict[str, tuple[int, int]] = {}
        self.keepalive: list[Any] = []  # holds meta outputs so storage ids are never reused
        self.suppress = 0
        self.view_ops = 0
        self.meta_cache: dict[Any, Any] = {}
        self.current_op: Any = None

    # -- specs
    def spec(self, t: torch.Tensor) -> TensorSpec:
        sid, snbytes = _storage_key(t)
        isz = self.count_itemsize if t.is_floating_point() else t.element_size()
        footprint = 1
        for size, stride in zip(t.shape, t.stride()):
            if stride != 0:
                footprint *= size
        return TensorSpec(
            shape=tuple(t.shape),
            dtype=t.dtype,
            itemsize=isz,
            footprint=footprint,
            storage_id=sid,
            storage_nbytes=snbytes // t.element_size() * isz,
        )

    def _to_specs(self, x: Any, memo: dict[int, TensorSpec]) -> Any:
        if isinstance(x, torch.Tensor):
            if id(x) not in memo:
                memo[id(x)] = self.spec(x)
            return memo[id(x)]
        if isinstance(x, (list, tuple)):
            return type(x)(self._to_specs(v, memo) for v in x) if any(
                isinstance(v, (torch.Tensor, list, tuple)) for v in x) else x
        if isinstance(x, dict):
            return {k: self._to_specs(v, memo) for k, v in x.items()}
        return x

    # -- module attribution
    def current_module(self) -> tuple[str, str, bool]:
        if not self.stack:
            return "", "", True
        mod = self.stack[-1][0]
        return self.names.get(id(mod), "?"), type(mod).__name__, id(mod) in self.leaves

    def pre_hook(self, module: nn.Module, args: tuple) -> None:
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append((module, args))
            self.first_call.setdefault(name, (len(self.records), len(self.first_call)))

    def post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if id(module) not in self.names or not self.stack or self.stack[-1][0] is not module:
            return
        self.stack.pop()
        out_bytes = 0
        for t in tree_flatten(output)[0]:
            if isinstance(t, torch.Tensor):
                isz = self.count_itemsize if t.is_floating_point() else t.element_size()
                out_bytes += t.numel() * isz
        self.module_calls.append(
            ModuleCall(self.names[id(module)], type(module).__name__, id(module) in self.leaves, out_bytes)
        )

    # -- ops
    def record(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        memo: dict[int, TensorSpec] = {}
        in_args = self._to_specs(args, memo)
        in_kwargs = self._to_specs(kwargs, memo)
        in_storages = {s.storage_id for s in memo.values()}
        out_tensors = _tensors_in(out)
        schema = func._schema
        mutates = schema.is_mutable
        if not out_tensors:
            return  # metadata queries (sizes, strides): no data touched
        out_specs = tuple(self.spec(t) for t in out_tensors)
        if not mutates and all(s.storage_id in in_storages for s in out_specs):
            self.view_ops += 1
            return  # a view: shares its input's storage, moves no bytes
        self.keepalive.append(out)
        module, module_type, leaf = self.current_module()
        name = schema.name
        self.records.append(
            OpRecord(
                index=len(self.records),
                name=name[6:] if name.startswith("aten::") else name,
                overload=schema.overload_name or "default",
                module=module,
                module_type=module_type,
                leaf=leaf,
                args=in_args,
                kwargs=in_kwargs,
                outputs=out_specs,
                mutates=mutates,
            )
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.current_op = func
        key = _cache_key(func, args, kwargs)
        cached = self.meta_cache.get(key) if key is not None else None
        if cached is not None and cached is not _UNCACHEABLE:
            out = _materialize(cached)
        elif (fast := fast_meta(func, args, kwargs)) is not None:
            out = fast
        else:
            out = func(*args, **kwargs)
            if key is not None and cached is None:
                self.meta_cache[key] = _describe_output(out, args, kwargs)
        if not self.suppress:
            if torch.Tag.inplace_view in func.tags:
                self.view_ops += 1
                return out  # transpose_, unsqueeze_ ...: metadata only
            self.record(func, args, kwargs, out)
        return out


# Shape propagation on meta runs PyTorch's Python meta kernels (a batch norm takes ~2 ms); networks
# repeat the same op on the same shapes, so outputs of pure ops are cached by input metadata, as
# FakeTensor's dispatch cache does. Ops that mutate, alias an input or return non-tensors are not.
_UNCACHEABLE = object()


def _key_of(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return ("T", tuple(x.shape), x.stride(), x.dtype, x.storage_offset())
    if isinstance(x, (list, tuple)):
        return tuple(_key_of(v) for v in x)
    if x is None or isinstance(x, (bool, int, float, str, torch.dtype, torch.device, torch.memory_format,
                                   torch.layout)):
        return x
    raise TypeError


def _cache_key(func: Any, args: tuple, kwargs: dict) -> Any:
    if func._schema.is_mutable or torch.Tag.nondeterministic_seeded in func.tags:
        return None
    try:
        return (func, _key_of(args), tuple((k, _key_of(v)) for k, v in sorted(kwargs.items())))
    except TypeError:
        return None


def _describe_output(out: Any, args: tuple, kwargs: dict) -> Any:
    leaves = tree_flatten(out)[0]
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        return _UNCACHEABLE
    inputs = {_storage_key(t)[0] for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
    if any(_storage_key(t)[0] in inputs for t in leaves):
        return _UNCACHEABLE
    return tree_map(lambda t: (tuple(t.shape), t.stride(), t.dtype), out)


_aten = torch.ops.aten
# Ops whose output has exactly the input's shape, stride and dtype. Their meta kernels are Python
# decompositions costing ~0.5 ms each, and in a network their shapes rarely repeat.
_SAME_AS_INPUT = {
    _aten.relu.default, _aten.hardtanh.default, _aten.sigmoid.default, _aten.tanh.default,
    _aten.silu.default, _aten.gelu.default, _aten.hardswish.default, _aten.hardsigmoid.default,
    _aten.leaky_relu.default, _aten.elu.default, _aten.mish.default, _aten.clamp.default,
    _aten.clamp_min.default, _aten.clamp_max.default, _aten.neg.default, _aten.exp.default,
    _aten.sqrt.default, _aten.rsqrt.default,
}
_SAME_SHAPE_BINARY = {_aten.add.Tensor, _aten.sub.Tensor, _aten.mul.Tensor, _aten.div.Tensor}
_BATCH_NORM = {_aten.native_batch_norm.default, _aten._native_batch_norm_legit_no_training.default}


def _dense(x: torch.Tensor) -> bool:
    return x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last))


def fast_meta(func: Any, args: tuple, kwargs: dict) -> Any:
    """Output of a few hot ops built from shape rules (tested equal to the meta kernels), or None."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or not _dense(x):
        return None
    if func in _SAME_AS_INPUT:
        return meta_like(x)
    if func in _SAME_SHAPE_BINARY:
        y = args[1] if len(args) > 1 else None
        same = isinstance(y, torch.Tensor) and y.shape == x.shape and y.stride() == x.stride() and y.dtype == x.dtype
        return meta_like(x) if same and not kwargs else None
    if func in _BATCH_NORM and x.ndim >= 2:
        stats = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        c = x.shape[1]
        return (meta_like(x), torch.empty((c,), dtype=stats, device="meta"), torch.empty((c,), dtype=stats, device="meta"))
    return None


def _materialize(desc: Any) -> Any:
    if isinstance(desc, tuple) and len(desc) == 3 and isinstance(desc[2], torch.dtype):
        return torch.empty_strided(desc[0], desc[1], dtype=desc[2], device="meta")
    return type(desc)(_materialize(d) for d in desc)


class _FusedKernels(TorchFunctionMode):
    """Count attention and recurrent layers as the one fused kernel that runs on real devices.

    On meta tensors PyTorch decomposes F.scaled_dot_product_attention into bmm, softmax, bmm (which
    would charge the L x L score matrix to memory) and nn.LSTM/GRU/RNN into per-timestep matmuls;
    CPU (oneDNN, flash attention) and GPU (cuDNN, flash) backends run one fused kernel instead.
    """

    def __init__(self, tracer: _Tracer):
        super().__init__()
        self.tracer = tracer
        self.fused = {
            F.scaled_dot_product_attention: torch.ops.aten.scaled_dot_product_attention.default,
            torch._VF.lstm: torch.ops.aten.lstm.input,
            torch._VF.gru: torch.ops.aten.gru.input,
            torch._VF.rnn_tanh: torch.ops.aten.rnn_tanh.input,
            torch._VF.rnn_relu: torch.ops.aten.rnn_relu.input,
        }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = self.fused.get(func) if not self.tracer.suppress else None
        if op is None or (op is not torch.ops.aten.scaled_dot_product_attention.default and not _is_input_overload(args)):
            return func(*args, **kwargs)
        self.tracer.suppress += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self.tracer.suppress -= 1
        self.tracer.record(op, args, kwargs, out)
        return out


def _is_input_overload(args: tuple) -> bool:
    # _VF.lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first);
    # the packed-sequence overload (data, batch_sizes, hx, ...) is left to decompose
    return len(args) >= 9 and isinstance(args[2], (list, tuple))


def _meta_state(model: nn.Module, trace_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    def meta(t: torch.Tensor) -> torch.Tensor:
        return meta_like(t, trace_dtype if t.is_floating_point() else t.dtype)

    state = {n: meta(p) for n, p in model.named_parameters()}
    state.update({n: meta(b) for n, b in model.named_buffers()})
    return state


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _describe(x: Any) -> str:
    shapes = [
        f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
        for t in tree_flatten(x)[0]
        if isinstance(t, torch.Tensor)
    ]
    return ", ".join(shapes) if shapes else "no tensors"


def trace(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    trace_dtype: torch.dtype,
    count_dtype: torch.dtype,
) -> Trace:
    """Run ``model(*args, **kwargs)`` once on meta tensors and record every aten op."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    names: dict[int, str] = {}
    leaves: set[int] = set()
    for name, mod in model.named_modules():
        names.setdefault(id(mod), name)
        if next(iter(mod.children()), None) is None:
            leaves.add(id(mod))
    tracer = _Tracer(names, leaves, count_dtype)
    state = _meta_state(model, trace_dtype)
    weight_ids = {tracer.spec(t).storage_id for t in state.values()}
    in_specs = [tracer.spec(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    hooks = [
        nn.modules.module.register_module_forward_pre_hook(tracer.pre_hook),
        nn.modules.module.register_module_forward_hook(tracer.post_hook),
    ]
    try:
        with _eval_mode(model), torch.no_grad(), torch.device("meta"), tracer, _FusedKernels(tracer):
            out = torch.func.functional_call(model, state, args, kwargs, strict=False)
    except Exception as e:  # re-raised with the layer, its input shapes and the op that failed
        raise _forward_error(model, tracer, args, kwargs, e) from e
    finally:
        for h in hooks:
            h.remove()
    out_ids = {tracer.spec(t).storage_id for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
    return Trace(tracer.records, tracer.module_calls, in_specs, out_ids, weight_ids, tracer.first_call,
                 tracer.view_ops)


def _forward_error(model: nn.Module, tracer: _Tracer, args: tuple, kwargs: dict, e: Exception) -> Exception:
    given = _describe((args, kwargs))
    if tracer.stack:
        mod, mod_args = tracer.stack[-1]
        where = (
            f"in layer '{tracer.names.get(id(mod), '?') or '(model)'}' ({type(mod).__name__}), "
            f"which received {_describe(mod_args)}"
        )
    else:
        where = f"in {type(model).__name__}.forward"
    op = f" while running {tracer.current_op}" if tracer.current_op else ""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    hint = "check the input shape (given without the batch dimension) and dtype the model expects"
    if "data-dependent" in str(e) or "meta" in str(e).lower() and "item" in str(e).lower():
        hint = (
            "the model reads tensor values to decide what to run (data-dependent control flow), "
            "which a shape-only trace cannot follow; make that branch depend on shapes only"
        )
    return ModelForwardError(
        f"the forward pass of {type(model).__name__} failed {where}{op}: {msg}. "
        f"Model input was {given}; {hint}."
    )

