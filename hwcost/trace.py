"""Trace a model once and record every aten op with the module that ran it.

Two modes, one count. **meta** (the default): every weight and activation is a meta stand-in, so no
arithmetic runs and tracing a 70B-parameter model costs the same as tracing a small one with as many
ops. Tensors that derive only from the user's inputs and constants (a padding mask, position ids,
lengths) also carry their real values, computed beside the stand-ins: they are small, need no weights,
and answer ``.item()``, ``nonzero``, ``tolist``, boolean masks and value-dependent shapes. **values**:
real CPU tensors, for what meta cannot follow — a branch on values computed from the weights (MoE
routing), an op with no meta kernel (``quantized::`` and custom ops), a TorchScript module. The user's
model is never moved or modified: parameters are swapped for stand-ins only for one
``torch.func.functional_call``, ``training`` flags are restored, and inputs are copied.

Long because the dispatch mode, the value carrying, the fused-kernel interception and the stand-in
state are one mechanism: split, each part would reach into the others' private state.
"""
from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary

from .conventions import MB, itemsize
from .errors import ModelForwardError
from .inputs import tensors_in
from .loaders import known_values
from .records import OpRecord, TensorSpec

# A value carried beside a meta stand-in costs real memory and time; masks and ids are far below this.
VALUE_CAP_BYTES = 64 * MB


@dataclass
class ModuleCall:
    name: str
    type: str
    leaf: bool
    output_bytes: int
    library: str = ""            # the package its class comes from: torch, transformers, timm, ...
    first_op: int = -1           # index of the first op record after the call began (-1: unknown)


@dataclass
class Trace:
    records: list[OpRecord]
    module_calls: list[ModuleCall]
    input_specs: list[TensorSpec]
    output_storage_ids: set[int]
    weight_storage_ids: set[int]
    first_call: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (op index, order)
    view_ops: int = 0            # aliasing ops (view, transpose, ...): no bytes, but a dispatch each
    mode: str = "meta"           # "meta" or "values"
    valued_ops: int = 0          # meta mode: ops computed on the input-derived values carried beside
    output: Any = field(default=None, repr=False)   # what the forward returned (meta tensors in meta mode)
    # id of each of the model's own parameters and buffers -> the storage id its stand-in (or itself) had in
    # the trace: which ops read it, whoever holds it
    state_storage: dict[int, int] = field(default_factory=dict)


class NeedsValues(Exception):
    """The meta trace cannot go on: an op needs values it does not have, or has no meta kernel."""

    def __init__(self, reason: str, op: str, layer: str):
        super().__init__(f"{op} in {layer} {reason}")
        self.reason, self.op, self.layer = reason, op, layer


def _meta_unsupported(e: Exception) -> bool:
    """An error of the meta kernel itself (none registered, or its output depends on values), as
    opposed to the model's own complaint about its inputs (a shape mismatch)."""
    msg = str(e).lower()
    # code that wants a tensor on the CPU ("got 1D meta Long tensor", "batch_sizes should always be on CPU":
    # pack_padded_sequence's lengths) complains of the stand-ins; on real tensors it runs, or says what is wrong
    return isinstance(e, NotImplementedError) or "meta tensor" in msg or "fake impl" in msg or (
        "data-dependent" in msg or "data dependent" in msg) or re.search(r"\bmeta \w+ tensor|\bcpu\b", msg) is not None


# ---------------------------------------------------------------- packed (quantized) weights


def packed_tensors(obj: Any) -> list[torch.Tensor]:
    """The weight and bias inside a quantized packed-parameter object (LinearPackedParamsBase,
    Conv*PackedParamsBase), or [] for anything else."""
    if not isinstance(obj, torch._C.ScriptObject):
        return []
    kind = str(getattr(obj, "_type", lambda: "")())
    try:
        if "Linear" in kind:
            w, b = torch.ops.quantized.linear_unpack(obj)
        elif hasattr(obj, "unpack"):
            w, b = obj.unpack()
        else:
            return []
    except Exception:  # an unknown packed format: its bytes stay uncounted rather than guessed
        return []
    return [t for t in (w, b) if isinstance(t, torch.Tensor)]


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


def _storage_cdata(t: torch.Tensor) -> tuple[int, int, Any]:
    try:
        s = t.untyped_storage()
    except Exception:  # tensors without a plain storage (nested, some quantized layouts)
        return id(t), t.numel() * t.element_size(), None
    return s._cdata, s.nbytes(), s


class _StorageIds:
    """Identity of a tensor's storage for the whole trace. Meta outputs are kept alive, so their
    addresses are never reused; real tensors are freed as the forward goes, and a freed storage's
    address can come back, so a weak reference tells a new storage from the old one."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[int, Any]] = {}
        self.next_id = 1 << 62

    def __call__(self, t: torch.Tensor) -> tuple[int, int]:
        cdata, nbytes, storage = _storage_cdata(t)
        if t.device.type == "meta" or storage is None:
            return cdata, nbytes
        entry = self.live.get(cdata)
        if entry is None or entry[1].expired():
            from torch.multiprocessing.reductions import StorageWeakRef

            self.next_id += 1
            entry = (self.next_id, StorageWeakRef(storage))
            self.live[cdata] = entry
        return entry[0], nbytes


class _Tracer(TorchDispatchMode):
    def __init__(self, names: dict[int, str], leaves: set[int], count_dtype: torch.dtype, mode: str):
        super().__init__()
        self.names = names
        self.leaves = leaves
        self.count_itemsize = itemsize(count_dtype)
        self.mode = mode
        self.records: list[OpRecord] = []
        self.stack: list[tuple[nn.Module, tuple, int]] = []   # module, its args, the op count when it began
        self.module_calls: list[ModuleCall] = []
        self.first_call: dict[str, tuple[int, int]] = {}
        # holds the storages of meta outputs so storage ids are never reused; storages, not tensors, so
        # the values carried beside a tensor are freed with it
        self.keepalive: list[Any] = []
        self.suppress = 0
        self.view_ops = 0
        self.valued_ops = 0
        self.meta_cache: dict[Any, Any] = {}
        self.current_op: Any = None
        self.storage_ids = _StorageIds()
        self.values: WeakIdKeyDictionary = WeakIdKeyDictionary()  # meta stand-in -> its real value
        self.weight_ids: set[int] = set()
        self.packed: dict[int, tuple[TensorSpec, ...]] = {}
        self.spec_cache: dict[int, tuple[torch.Tensor, TensorSpec]] = {}

    # -- specs
    def spec(self, t: torch.Tensor) -> TensorSpec:
        # a meta tensor's spec is computed once (it is read by every op that takes it); tensors carrying a
        # value are not held here, so their values are still freed with them
        cacheable = t.device.type == "meta"
        if cacheable:
            hit = self.spec_cache.get(id(t))
            if hit is not None and hit[0] is t:
                return hit[1]
        s = self._spec(t)
        if cacheable and t not in self.values:
            self.spec_cache[id(t)] = (t, s)
        return s

    def _spec(self, t: torch.Tensor) -> TensorSpec:
        sid, snbytes = self.storage_ids(t)
        isz = self.count_itemsize if t.is_floating_point() else t.element_size()
        footprint = 1
        broadcast = False
        for size, stride in zip(t.shape, t.stride()):
            if stride != 0:
                footprint *= size
            elif size > 1:
                broadcast = True
        return TensorSpec(
            shape=tuple(t.shape),
            dtype=t.dtype,
            itemsize=isz,
            footprint=footprint,
            storage_id=sid,
            storage_nbytes=snbytes // t.element_size() * isz,
            strided=0 if broadcast or _dense(t) else permuted_dims(t.shape, t.stride()),
        )

    def _packed_specs(self, obj: Any) -> tuple[TensorSpec, ...] | None:
        if id(obj) not in self.packed:
            tensors = packed_tensors(obj)
            if not tensors:
                return None
            self.keepalive.append((obj, tensors))
            specs = tuple(self.spec(t) for t in tensors)
            self.weight_ids.update(s.storage_id for s in specs)
            self.packed[id(obj)] = specs
        return self.packed[id(obj)]

    def _to_specs(self, x: Any, memo: dict[int, TensorSpec]) -> Any:
        if isinstance(x, torch.Tensor):
            if id(x) not in memo:
                memo[id(x)] = self.spec(x)
            return memo[id(x)]
        if isinstance(x, (list, tuple)):
            return type(x)(self._to_specs(v, memo) for v in x) if any(
                isinstance(v, (torch.Tensor, list, tuple, torch._C.ScriptObject)) for v in x) else x
        if isinstance(x, dict):
            return {k: self._to_specs(v, memo) for k, v in x.items()}
        if isinstance(x, torch._C.ScriptObject):
            specs = self._packed_specs(x)
            if specs is not None:
                for s in specs:
                    memo.setdefault(id(s), s)
                return specs
        return x

    # -- module attribution
    def current_module(self) -> tuple[str, str, bool]:
        if not self.stack:
            return "", "", True
        mod = self.stack[-1][0]
        return self.names.get(id(mod), "?"), type(mod).__name__, id(mod) in self.leaves

    def where(self) -> str:
        name, mtype, _ = self.current_module()
        return f"layer '{name or '(model)'}' ({mtype})" if mtype else "the model's own forward"

    def pre_hook(self, module: nn.Module, args: tuple) -> None:
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append((module, args, len(self.records)))
            self.first_call.setdefault(name, (len(self.records), len(self.first_call)))

    def post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if id(module) not in self.names or not self.stack or self.stack[-1][0] is not module:
            return
        first_op = self.stack.pop()[2]
        out_bytes = 0
        for t in ((output,) if isinstance(output, torch.Tensor) else tree_flatten(output)[0]):
            if isinstance(t, torch.Tensor):
                isz = self.count_itemsize if t.is_floating_point() else t.element_size()
                out_bytes += t.numel() * isz
        self.module_calls.append(
            ModuleCall(self.names[id(module)], type(module).__name__, id(module) in self.leaves, out_bytes,
                       type(module).__module__.split(".")[0], first_op)
        )

    # -- ops
    def record(self, func: Any, args: tuple, kwargs: dict, out: Any, name: str | None = None) -> None:
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
        if self.mode == "meta":
            self.keepalive.extend(t.untyped_storage() for t in out_tensors)
        module, module_type, leaf = self.current_module()
        name = name or schema.name
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
                value_shaped=_value_shaped(func, in_args, in_kwargs),
            )
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.current_op = func
        try:
            if self.mode == "meta":
                args, kwargs = self._adopt_real(args, kwargs)
                out = self._run_meta(func, args, kwargs)
            else:
                out = func(*args, **kwargs)
        except NeedsValues:
            raise
        except Exception as e:
            e._hwcost_op = func  # an op refused its arguments (not the model's own Python)
            raise
        if func._schema.is_mutable:   # resize_, unsqueeze_ ...: a cached spec may be stale now
            for t in arg_tensors(args, kwargs):
                self.spec_cache.pop(id(t), None)
        if not self.suppress:
            if torch.Tag.inplace_view in func.tags:
                self.view_ops += 1
                return out  # transpose_, unsqueeze_ ...: metadata only
            self.record(func, args, kwargs, out)
        return out

    # -- meta mode: stand-ins, and the values carried beside them
    def _adopt_real(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """A real tensor met in the forward (a constant the model keeps outside its buffers) becomes a
        stand-in whose value is known."""
        if not any(t.device.type != "meta" for t in arg_tensors(args, kwargs)):
            return args, kwargs

        def adopt(t: Any) -> Any:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                m = meta_like(t)
                self.values[m] = t
                return m
            return t

        return tree_map(adopt, (args, kwargs))

    def _meta_kernel(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if (fast := fast_meta(func, args, kwargs)) is not None:
            return fast
        if func in _SHAPE_RULES:
            return _SHAPE_RULES[func](func, args, kwargs)
        key = _cache_key(func, args, kwargs)
        cached = self.meta_cache.get(key) if key is not None else None
        if cached is not None and cached is not _UNCACHEABLE:
            return _materialize(cached)
        out = func(*args, **kwargs)
        if key is not None and cached is None:
            self.meta_cache[key] = _describe_output(out, args, kwargs)
        return out

    def _run_meta(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if self.suppress:  # inside a fused kernel (attention's causal mask): shapes are all it needs
            return self._meta_kernel(func, args, kwargs)
        tensors = arg_tensors(args, kwargs)
        if tensors and all(t in self.values for t in tensors):
            return self._run_valued(func, args, kwargs)
        if not tensors and _is_factory(func):
            if kwargs.get("device") is not None:   # torch.arange(n, device="cpu"): a stand-in too, as every
                kwargs = {**kwargs, "device": torch.device("meta")}   # call of it must be (the cache's are)
            out = self._meta_kernel(func, args, kwargs)
            if isinstance(out, torch.Tensor) and out.numel() == 0:   # batch norm's reserve: no value to compute
                self.values[out] = torch.empty(out.shape, dtype=out.dtype)
                return out
            if sum(t.numel() * t.element_size() for t in _tensors_in(out)) <= VALUE_CAP_BYTES:
                return self._run_valued(func, args, kwargs, meta_out=out)
            return out
        if func._schema.is_mutable:  # a value written over by something without one is stale
            for t in tensors:
                self.values.pop(t, None)
        try:
            return self._meta_kernel(func, args, kwargs)
        except Exception as e:
            if _meta_unsupported(e):
                raise NeedsValues(_why_values(func, e), str(func), self.where()) from e
            raise

    def _run_valued(self, func: Any, args: tuple, kwargs: dict, meta_out: Any = None) -> Any:
        real_args, real_kwargs = tree_map(
            lambda t: self.values[t] if isinstance(t, torch.Tensor) else t, (args, kwargs))
        if "device" in real_kwargs:
            real_kwargs["device"] = torch.device("cpu")
        try:
            real_out = func(*real_args, **real_kwargs)
        except Exception:  # the values cannot take this op (a dtype CPU lacks): carry none on
            return self._meta_kernel(func, args, kwargs) if meta_out is None else meta_out
        self.valued_ops += 1
        if meta_out is None:
            try:
                meta_out = self._meta_kernel(func, args, kwargs)
            except Exception as e:
                if not _meta_unsupported(e):
                    raise
                meta_out = None
        metas, reals = _tensors_in(meta_out), _tensors_in(real_out)
        if meta_out is None or len(metas) != len(reals) or any(
                m.shape != r.shape for m, r in zip(metas, reals)):
            # the output's shape (or value) depends on the values: build it from them
            meta_out = tree_map(lambda r: meta_like(r) if isinstance(r, torch.Tensor) else r, real_out)
            metas = _tensors_in(meta_out)
        for m, r in zip(metas, reals):
            if r.numel() * r.element_size() <= VALUE_CAP_BYTES:
                self.values[m] = r
        return meta_out


# ops without torch's dynamic_output_shape tag whose output's size depends on their inputs' values
VALUE_SHAPED_OPS = ("torchvision::nms", "torchvision::batched_nms")


def _value_shaped(func: Any, args: Any, kwargs: Any) -> bool:
    """Whether the op's output size depends on values: torch tags nonzero, masked_select, unique...; an
    index is among them only when a boolean mask does the indexing."""
    name = func._schema.name
    if name in VALUE_SHAPED_OPS:
        return True
    if torch.Tag.dynamic_output_shape not in func.tags:
        return False
    if name.startswith("aten::index"):
        return any(isinstance(t, TensorSpec) and t.dtype == torch.bool for t in tree_flatten((args, kwargs))[0])
    return True


def _is_factory(func: Any) -> bool:
    return any(a.name == "device" for a in func._schema.arguments) and not func._schema.is_mutable


# ops whose output (its shape, or a Python value) depends on the values of their inputs
_DATA_DEPENDENT = {
    "aten::_local_scalar_dense", "aten::nonzero", "aten::equal", "aten::masked_select", "aten::_unique2",
    "aten::unique_dim", "aten::unique_consecutive", "aten::bincount", "aten::repeat_interleave",
    "aten::argwhere", "aten::is_nonzero", "aten::allclose", "aten::unique",
}


def _why_values(func: Any, e: Exception) -> str:
    if func._schema.name in _DATA_DEPENDENT or "item()" in str(e) or "data-dependent" in str(e):
        return ("reads values of tensors computed from the weights (data-dependent control flow, "
                "such as mixture-of-experts routing)")
    return "has no meta kernel (quantized and custom ops have none)"


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


def arg_tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors among an aten op's arguments: aten schemas nest at most one list deep (Tensor[],
    Tensor?[]), so two plain loops do what a pytree flatten does, several times faster per op."""
    out = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(t for t in a if isinstance(t, torch.Tensor))
    return out


def _describe_output(out: Any, args: tuple, kwargs: dict) -> Any:
    leaves = tree_flatten(out)[0]
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        return _UNCACHEABLE
    inputs = {_storage_cdata(t)[0] for t in arg_tensors(args, kwargs)}
    if any(_storage_cdata(t)[0] in inputs for t in leaves):
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


def permuted_dims(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """A non-dense view's dimensions past the first once size-1 ones are dropped and neighbours that lie
    back to back in memory (stride[i] == stride[i + 1] * size[i + 1]) are merged; at least 1. A copy
    kernel walks a 2-D transpose as one strided loop and a 3-D permutation as nested ones."""
    dims = [(n, st) for n, st in zip(shape, stride) if n != 1]
    merged: list[tuple[int, int]] = []
    for n, st in dims:
        if merged and merged[-1][1] == st * n:
            merged[-1] = (merged[-1][0] * n, st)
        else:
            merged.append((n, st))
    return max(1, len(merged) - 1)


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
        if kwargs or not isinstance(y, torch.Tensor) or y.dtype != x.dtype:
            return None
        if y.shape == x.shape and y.stride() == x.stride():
            return meta_like(x)
        if x.is_contiguous() and y.is_contiguous() and y.ndim > 0:
            # broadcasting contiguous operands: TensorIterator lays the output out contiguous
            shape = _broadcast(tuple(x.shape), tuple(y.shape))
            return None if shape is None else torch.empty(shape, dtype=x.dtype, device="meta")
        return None
    if func is _CONVOLUTION:
        return _conv_meta(x, *args[1:9]) if len(args) >= 9 and not kwargs else None
    if func in _MATMULS:
        return _matmul_meta(func, args) if not kwargs else None
    if func in _REDUCE_DIMS:
        return _reduce_meta(x, *args[1:]) if not kwargs and len(args) <= 3 else None
    if func in _BATCH_NORM and x.ndim >= 2:
        stats = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        c = x.shape[1]
        return (meta_like(x), torch.empty((c,), dtype=stats, device="meta"), torch.empty((c,), dtype=stats, device="meta"))
    return None


_CONVOLUTION = _aten.convolution.default
_REDUCE_DIMS = {_aten.mean.dim, _aten.sum.dim_IntList, _aten.amax.default, _aten.amin.default}


_MATMULS = {_aten.mm.default, _aten.addmm.default, _aten.bmm.default}


def _matmul_meta(func: Any, args: tuple) -> Any:
    """mm, addmm (bias broadcast to the output), bmm of same-dtype floats: a contiguous (.., n, m) output."""
    a, b = (args[1], args[2]) if func is _aten.addmm.default else (args[0], args[1])
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.dtype != b.dtype:
        return None
    if func is _aten.bmm.default:
        if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
            return None
        return torch.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype, device="meta")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        return None
    if func is _aten.addmm.default:
        bias = args[0]
        if not isinstance(bias, torch.Tensor) or bias.dtype != a.dtype or \
                _broadcast(tuple(bias.shape), (a.shape[0], b.shape[1])) != (a.shape[0], b.shape[1]):
            return None
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy broadcasting of two shapes (torch.broadcast_shapes imports sympy on its first call), or None
    when they do not broadcast (the meta kernel then says so)."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for p, q in zip(a, b):
        if p != q and 1 not in (p, q):
            return None
        out.append(q if p == 1 else p)
    return tuple(out)


def _reduce_meta(x, dims=None, keepdim: bool = False) -> Any:
    """A float reduction over ``dims``: the input's shape with those dims dropped (or kept as 1), contiguous."""
    if dims is None or not isinstance(dims, (list, tuple)) or not dims or x.ndim == 0:
        return None
    if any(not isinstance(d, int) or not -x.ndim <= d < x.ndim for d in dims):
        return None
    axes = {d % x.ndim for d in dims}
    shape = [1 if i in axes else n for i, n in enumerate(x.shape)] if keepdim else \
        [n for i, n in enumerate(x.shape) if i not in axes]
    return torch.empty(shape, dtype=x.dtype, device="meta")


def _conv_meta(x, w, bias, stride, padding, dilation, transposed, output_padding, groups) -> Any:
    """aten.convolution's output for a contiguous (NCHW...) input: the size rule of every framework,
    without the meta kernel's checks (their first call imports sympy, half a second of a first analysis)."""
    if not x.is_contiguous() or not isinstance(w, torch.Tensor) or w.ndim != x.ndim or x.ndim < 3:
        return None
    n = x.ndim - 2
    if not all(len(v) == n for v in (stride, padding, dilation)) or (transposed and len(output_padding) != n):
        return None
    c_in = w.shape[0] if transposed else w.shape[1] * groups
    if groups <= 0 or x.shape[1] != c_in or (not transposed and w.shape[0] % groups) or \
            (bias is not None and tuple(bias.shape) != ((w.shape[1] * groups,) if transposed else (w.shape[0],))):
        return None   # the meta kernel says what does not fit
    spatial = []
    for i in range(n):
        k = dilation[i] * (w.shape[2 + i] - 1) + 1
        if transposed:
            size = (x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + k + output_padding[i]
        else:
            size = (x.shape[2 + i] + 2 * padding[i] - k) // stride[i] + 1
        if size <= 0:
            return None   # the meta kernel says what is wrong
        spatial.append(size)
    c_out = w.shape[1] * groups if transposed else w.shape[0]
    return torch.empty((x.shape[0], c_out, *spatial), dtype=x.dtype, device="meta")


def _grouped_mm_meta(func: Any, args: tuple, kwargs: dict) -> Any:
    """aten._grouped_mm's output: PyTorch's meta kernel accepts bfloat16 only, while the CPU kernel
    (which transformers' MoE layers call in float32) takes any float; the shape rule is the same."""
    a, b = args[0], args[1]
    groups = b.shape[0] if b.ndim == 3 else a.shape[0] if a.ndim == 3 else None
    if a.ndim == 2 and b.ndim == 3:
        shape = (a.shape[0], b.shape[2])
    elif a.ndim == 3 and b.ndim == 3:
        shape = (a.shape[0], a.shape[1], b.shape[2])
    elif a.ndim == 3 and b.ndim == 2:
        shape = (a.shape[1], b.shape[1])
    else:
        offs = args[2] if len(args) > 2 else kwargs.get("offs")
        groups = offs.shape[0] if isinstance(offs, torch.Tensor) else 1
        shape = (groups, a.shape[0], b.shape[1])
    dtype = kwargs.get("out_dtype") or (args[4] if len(args) > 4 and args[4] is not None else a.dtype)
    return torch.empty(shape, dtype=dtype, device="meta")


# Ops whose meta kernel is stricter than their CPU kernel: the shape rule stands in for it.
_SHAPE_RULES = {op.default: _grouped_mm_meta for op in [getattr(_aten, "_grouped_mm", None)] if op is not None}


def _materialize(desc: Any) -> Any:
    if isinstance(desc, tuple) and len(desc) == 3 and isinstance(desc[2], torch.dtype):
        return torch.empty_strided(desc[0], desc[1], dtype=desc[2], device="meta")
    return type(desc)(_materialize(d) for d in desc)




def _schema_positional(op: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A Python call's arguments as the aten op's schema orders them: the positional ones a caller
    named (diffusers calls F.scaled_dot_product_attention(query=..., key=..., value=...)) moved into
    place, as the dispatcher would pass them."""
    args, kwargs = list(args), dict(kwargs)
    for a in op._schema.arguments[len(args):]:
        if a.kwarg_only or a.name not in kwargs:
            break
        args.append(kwargs.pop(a.name))
    return tuple(args), kwargs


class _FusedKernels(TorchFunctionMode):
    """Count attention and recurrent layers as the one fused kernel that runs on real devices.

    On meta tensors PyTorch decomposes F.scaled_dot_product_attention into bmm, softmax, bmm (which
    would charge the L x L score matrix to memory) and nn.LSTM/GRU/RNN into per-timestep matmuls;
    CPU (oneDNN, flash attention) and GPU (cuDNN, flash) backends run one fused kernel instead.
    Also answers ``Tensor.tolist`` / ``numpy`` from a carried value: they read data without an aten op.
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
        if func in _READS_DATA and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta":
            value = self.tracer.values.get(args[0])
            if value is None:
                raise NeedsValues(_why_values(torch.ops.aten._local_scalar_dense.default, RuntimeError("item()")),
                                  f"Tensor.{func.__name__}", self.tracer.where())
            return func(value, *args[1:], **kwargs)
        if func in _FROM_DATA:
            return self._from_data(func, args, kwargs)
        if func is F.multi_head_attention_forward and not self.tracer.suppress:
            return self._attention_layer(args, kwargs)
        op = self.fused.get(func) if not self.tracer.suppress else None
        if op is None or (op is not torch.ops.aten.scaled_dot_product_attention.default and not _is_input_overload(args)):
            return func(*args, **kwargs)
        self.tracer.suppress += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self.tracer.suppress -= 1
        self.tracer.record(op, *_schema_positional(op, args, kwargs), out)
        return out


    def _from_data(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """torch.tensor(0.95, device=x.device) makes a meta tensor without an aten op that carries its data:
        keep the value it was made from (a constant the model's code built, such as a distribution's
        parameter, whose checks read it back)."""
        out = func(*args, **kwargs)
        if (isinstance(out, torch.Tensor) and out.device.type == "meta" and not _tensors_in(args[:1])
                and out.numel() * out.element_size() <= VALUE_CAP_BYTES):
            try:
                value = func(*args, **{**kwargs, "device": "cpu"})
            except (TypeError, RuntimeError, ValueError):   # a dtype the CPU lacks: carry no value
                return out
            if value.device.type == "meta":   # the tracer made the CPU tensor a stand-in: its value is carried
                value = self.tracer.values.get(value)
            if value is not None:
                self.tracer.values[out] = value
        return out

    def _attention_layer(self, args: tuple, kwargs: dict) -> Any:
        """nn.MultiheadAttention as one record, in the layout of aten._native_multi_head_attention (the
        fused kernel eager CPUs run outside a trace): the same work whether its inner ops are seen or
        not (a torch function mode hides the ops inside an overridable function)."""
        import inspect

        a = inspect.signature(F.multi_head_attention_forward).bind(*args, **kwargs)
        a.apply_defaults()
        a = a.arguments
        weights = ((a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"]) if a["use_separate_proj_weight"]
                   else (a["in_proj_weight"],))
        mask = a["attn_mask"] if a["attn_mask"] is not None else a["key_padding_mask"]
        self.tracer.suppress += 1
        try:
            out = F.multi_head_attention_forward(*args, **kwargs)
        finally:
            self.tracer.suppress -= 1
        rec_args = (a["query"], a["key"], a["value"], a["embed_dim_to_check"], a["num_heads"], weights,
                    a["in_proj_bias"], a["out_proj_weight"], a["out_proj_bias"], mask, bool(a["need_weights"]))
        self.tracer.record(torch.ops.aten._native_multi_head_attention.default, rec_args, {},
                           out, name="multi_head_attention_forward")
        return out


_READS_DATA = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__array__}
_FROM_DATA = {torch.tensor, torch.as_tensor, torch.asarray}


def _is_input_overload(args: tuple) -> bool:
    # _VF.lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first);
    # the packed-sequence overload (data, batch_sizes, hx, ...) is left to decompose
    return len(args) >= 9 and isinstance(args[2], (list, tuple))


_MISSING = object()


@contextlib.contextmanager
def _in_eval_mode_left_as_it_was(model: nn.Module):
    """Every module in eval mode for the trace, and every module's attributes as they were before it put
    back after it (its training flag among them): a forward that rebinds its state would leave meta
    stand-ins in the user's model (torchvision's AnchorGenerator moves its anchors to the input's device),
    or half of a cache (YOLO's Detect head keeps its anchors and the input shape they were made for: the
    anchors put back without the shape broke the next call)."""
    kept = [(m, dict(vars(m))) for m in model.modules()]
    for m, _ in kept:  # the flag itself: an exported program's module refuses .eval()
        m.training = False
    try:
        yield
    finally:
        for m, attrs in kept:
            now = vars(m)
            for k in [k for k in now if k not in attrs]:
                del now[k]
            for k, v in attrs.items():
                if now.get(k, _MISSING) is not v:
                    now[k] = v


def _lru_caches(obj: Any, depth: int = 3) -> list[Any]:
    """functools.lru_cache wrappers reachable from a function: itself, what it wraps, its closure's cells
    (transformers' compile_compatible_method_lru_cache hides its cache in a closure)."""
    if hasattr(obj, "cache_clear") and hasattr(obj, "cache_info"):
        return [obj]
    if depth == 0:
        return []
    obj = getattr(obj, "__func__", obj)   # staticmethod, classmethod
    found = _lru_caches(obj.__wrapped__, depth - 1) if hasattr(obj, "__wrapped__") else []
    for cell in getattr(obj, "__closure__", None) or ():
        try:
            found += _lru_caches(cell.cell_contents, depth - 1)
        except ValueError:   # an empty cell
            pass
    return found


def memoized_in(model: nn.Module) -> list[Any]:
    """The lru caches the model's code can reach: on its module classes (methods, static methods) and at the
    top level of the files that define them (a module-level helper)."""
    caches: dict[int, Any] = {}
    classes = {c for m in model.modules() for c in type(m).__mro__
               if c not in (nn.Module, object) and not c.__module__.startswith("torch.")}
    namespaces = [(vars(c), None) for c in classes]
    namespaces += [(vars(mod), mod.__name__) for mod in {sys.modules.get(c.__module__) for c in classes} if mod]
    for names, defined_in in namespaces:
        for value in list(names.values()):
            if defined_in and getattr(value, "__module__", None) != defined_in:
                continue   # imported there (transformers' is_torch_available): not the model's to reset
            if callable(value) or isinstance(value, (staticmethod, classmethod)):
                for cache in _lru_caches(value):
                    caches[id(cache)] = cache
    return list(caches.values())


@contextlib.contextmanager
def _memoized_cleared(model: nn.Module):
    """The model's lru caches emptied before the trace and after it: a position embedding that transformers
    memoizes per input shape (DETR, SAM 3) ran in the first trace of a process and not in the next (SAM 3's
    vision encoder: 1,218 ops, then 1,126), and the trace's meta tensors are not left in them."""
    caches = memoized_in(model)
    for cache in caches:
        cache.cache_clear()
    try:
        yield
    finally:
        for cache in caches:
            cache.cache_clear()


def _describe(x: Any) -> str:
    shapes = [f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in tensors_in(x)]
    return ", ".join(shapes) if shapes else "no tensors"


# ---------------------------------------------------------------- the model's weights


def unwrap(model: Any) -> nn.Module:
    """The module to run: an ``ExportedProgram``'s ``.module()``; anything else as given."""
    export = getattr(torch, "export", None)
    if export is not None and isinstance(model, getattr(export, "ExportedProgram", ())):
        return model.module()
    if not isinstance(model, nn.Module):
        from .errors import InputError

        raise InputError(f"expected a torch.nn.Module (or a torch.export ExportedProgram), got {type(model).__name__}")
    return model


def is_scripted(model: nn.Module) -> bool:
    return isinstance(model, torch.jit.ScriptModule)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    return state


def meta_state(model: nn.Module, trace_dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """Meta stand-ins for every parameter and buffer, and the values of real buffers (constants such
    as position ids: small, and never the product of a weight)."""
    values: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    named = dict(model.named_parameters())
    params = {id(p) for p in named.values()}
    for n, t in {**named, **dict(model.named_buffers())}.items():
        dt = trace_dtype if t.is_floating_point() else t.dtype
        # a model built on meta already holds stand-ins: use its own (no copy, no functional_call)
        own = t.device.type == "meta" and t.dtype == dt and not t.is_inference()
        m = t if own else meta_like(t, dt)
        if m is not t and t.requires_grad and m.is_floating_point():
            # kernels choose by it: aten.matmul folds (B, T, K) @ W into one mm when W requires grad
            # (a parameter's default) and otherwise, on a strided slice such as an LM head's last
            # position, runs bmm; eager PyTorch ran mm there under no_grad and inference_mode alike
            m.requires_grad_(True)
        state[n] = m
        real = known_values(t) if t.device.type == "meta" else t.detach()   # a constant build_on_meta computed
        if id(t) not in params and real is not None and real.numel() * real.element_size() <= VALUE_CAP_BYTES:
            values[id(m)] = real.to(dt)
    return state, values


def weights_to_materialize(model: nn.Module, dtype: torch.dtype) -> int:
    """Bytes of the parameters and buffers that exist only on meta (a model built without weights)."""
    return sum(t.numel() * (itemsize(dtype) if t.is_floating_point() else t.element_size())
               for t in _state(model).values() if t.device.type == "meta")


# the weights materialized for a values trace, while a caller that traces one model several times (a
# generation's prefill and decode steps) holds them: (id(model), dtype) -> state
_MATERIALIZED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("hwcost_materialized", default=None)


@contextlib.contextmanager
def materialized_once():
    """Within this block, a model's random weights are made once and reused by every values trace of it
    (a 2B-parameter model takes ~10 s to fill; a generation traces it five or more times)."""
    token = _MATERIALIZED.set({})
    try:
        yield
    finally:
        _MATERIALIZED.reset(token)


def cached_state(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
    memo = _MATERIALIZED.get()
    return None if memo is None else memo.get((id(model), dtype))


def materialized_state(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random weights (in ``dtype``) for the meta ones, seeded: weights 0.02-scaled normals, float
    buffers ones (running variances), integer buffers zeros (a valid index), masks true; the constants
    build_on_meta computed keep their values (EnCodec's strides, which size its padding)."""
    if (cached := cached_state(model, dtype)) is not None:
        return cached
    g = torch.Generator().manual_seed(0)
    params = {id(p) for p in model.parameters()}
    out: dict[str, torch.Tensor] = {}
    for n, t in _state(model).items():
        if t.device.type != "meta":
            continue
        if (real := known_values(t)) is not None:   # a constant build_on_meta computed: its own values
            out[n] = real.to(dtype if t.is_floating_point() else t.dtype)
        elif t.is_floating_point():
            out[n] = _random_weight(t.shape, dtype, g) if id(t) in params else torch.ones(t.shape, dtype=dtype)
        elif t.dtype == torch.bool:
            out[n] = torch.ones(t.shape, dtype=torch.bool)
        else:
            out[n] = torch.zeros(t.shape, dtype=t.dtype)
    if (memo := _MATERIALIZED.get()) is not None:
        memo[(id(model), dtype)] = out
    return out


# a large weight repeats one seeded block of normals: drawing each of a 4B-parameter model's weights took 50 s
# here, copying a block 4 s; a values trace reads weights only to route (which expert, how many tokens), and
# a block whose length is no power of two does not line up with a matrix's rows
_RANDOM_BLOCK = (1 << 20) + 7


def _random_weight(shape: torch.Size, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    n = shape.numel()
    block = _normals(min(n, _RANDOM_BLOCK), dtype, g)
    if n <= _RANDOM_BLOCK:
        return block.view(shape)
    out = torch.empty(n, dtype=dtype)
    whole = n // _RANDOM_BLOCK * _RANDOM_BLOCK
    out[:whole].view(-1, _RANDOM_BLOCK).copy_(block.expand(n // _RANDOM_BLOCK, -1))
    out[whole:].copy_(block[: n - whole])
    return out.view(shape)


def _normals(n: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    try:
        return torch.empty(n, dtype=dtype).normal_(0.0, 0.02, generator=g)
    except (RuntimeError, NotImplementedError):   # a dtype without a CPU normal_ kernel
        return (torch.randn(n, generator=g) * 0.02).to(dtype)


def model_float_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    for t in _state(model).values():
        if t.is_floating_point() and t.device.type != "meta":
            return t.dtype
    return default


# ---------------------------------------------------------------- entry point


_DYNAMO_DISABLE = "__dynamo_disable"   # where torch._compile._disable_dynamo caches its wrapper


@contextlib.contextmanager
def _dynamo_left_unimported():
    """TorchDispatchMode wraps every __torch_dispatch__ so that dynamo never compiles it, and builds that
    wrapper by importing torch._dynamo on the first op of a process: 1-2 s, most of a first analysis.
    While torch._dynamo is not imported no compiled code can run, so the plain function is the same
    thing; the cache is cleared afterwards, and the first trace after an import of dynamo wraps again."""
    raw = getattr(_Tracer.__torch_dispatch__, "__wrapped__", None)
    if raw is None or "torch._dynamo" in sys.modules or getattr(raw, _DYNAMO_DISABLE, None) is not None:
        yield
        return
    setattr(raw, _DYNAMO_DISABLE, raw)
    try:
        yield
    finally:
        if getattr(raw, _DYNAMO_DISABLE, None) is raw:
            delattr(raw, _DYNAMO_DISABLE)


TRACE_SEED = 0   # the CPU generator's seed while a traced forward runs (a meta trace computes factories' values too)


@contextlib.contextmanager
def _seeded_rng():
    """The CPU generator seeded for the forward and put back after: a model that draws noise in its forward (VITS's
    stochastic duration predictor sets the output's length by it) was predicted 4.5-5.2 s on the Raspberry Pi 4
    profile from one call to the next. The caller's own random stream goes on as if no trace had run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TRACE_SEED)
        yield


def trace(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    count_dtype: torch.dtype,
    mode: str = "meta",
    state: dict[str, torch.Tensor] | None = None,
    values: dict[int, torch.Tensor] | None = None,
) -> Trace:
    """Run ``model(*args, **kwargs)`` once and record every aten op.

    ``mode="meta"``: ``args``/``kwargs`` hold meta stand-ins, ``state`` the meta parameters and
    buffers, ``values`` the real values known for some stand-ins (by id). Raises ``NeedsValues`` when
    an op needs what meta cannot give. ``mode="values"``: real tensors; ``state`` replaces the
    parameters it names (materialized weights), or is None to run the model as it is.
    """
    names: dict[int, str] = {}
    leaves: set[int] = set()
    for name, mod in model.named_modules():
        names.setdefault(id(mod), name)
        if next(iter(mod.children()), None) is None:
            leaves.add(id(mod))
    tracer = _Tracer(names, leaves, count_dtype, mode)
    inputs = tensors_in((args, kwargs))  # tensors inside cache objects too
    by_id = {id(t): t for t in [*inputs, *(state or {}).values()]}
    for key, v in (values or {}).items():
        if key in by_id:
            tracer.values[by_id[key]] = v
    in_specs = [tracer.spec(t) for t in inputs]
    own_state = _state(model)
    if state is not None:
        tracer.weight_ids.update(tracer.spec(t).storage_id for t in state.values())
    if state is None or len(state) < len(own_state):
        tracer.weight_ids.update(tracer.spec(t).storage_id for t in own_state.values() if t.device.type != "meta")
    state_storage = {id(t): tracer.spec((state or {}).get(n, t)).storage_id for n, t in own_state.items()}
    hooks = [
        nn.modules.module.register_module_forward_pre_hook(tracer.pre_hook),
        nn.modules.module.register_module_forward_hook(tracer.post_hook),
    ]
    device = torch.device("meta") if mode == "meta" else contextlib.nullcontext()
    try:
        with _in_eval_mode_left_as_it_was(model), _memoized_cleared(model), _dynamo_left_unimported(), \
                _seeded_rng(), torch.no_grad(), device, tracer, _FusedKernels(tracer):
            if state is None or all(state.get(n) is t for n, t in own_state.items()):
                out = model(*args, **kwargs)
            else:
                out = torch.func.functional_call(model, state, args, kwargs, strict=False)
    except Exception as e:  # re-raised with the layer, its input shapes and the op that failed
        if mode == "meta" and not isinstance(e, NeedsValues) and _meta_unsupported(e):
            e = NeedsValues(_why_values(tracer.current_op, e) if tracer.current_op else "reads tensor values",
                            str(tracer.current_op), tracer.where())
        if isinstance(e, NeedsValues):  # what ran so far, for the memory a values trace will need
            e.partial = Trace(tracer.records, [], in_specs, set(), tracer.weight_ids)
            raise e
        raise _forward_error(model, tracer, args, kwargs, e) from e
    finally:
        for h in hooks:
            h.remove()
    out_ids = {tracer.spec(t).storage_id for t in tensors_in(out)}
    return Trace(tracer.records, tracer.module_calls, in_specs, out_ids, tracer.weight_ids, tracer.first_call,
                 tracer.view_ops, mode, tracer.valued_ops, out, state_storage)


def _forward_error(model: nn.Module, tracer: _Tracer, args: tuple, kwargs: dict, e: Exception) -> Exception:
    given = _describe((args, kwargs))
    if tracer.stack:
        mod, mod_args, _ = tracer.stack[-1]
        where = (
            f"in layer '{tracer.names.get(id(mod), '?') or '(model)'}' ({type(mod).__name__}), "
            f"which received {_describe(mod_args)}"
        )
    else:
        where = f"in {type(model).__name__}.forward"
    failed_op = getattr(e, "_hwcost_op", None)
    op = f" while running {failed_op}" if failed_op else ""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    hint = _hint(str(e), failed_op is not None)
    return ModelForwardError(
        f"the forward pass of {type(model).__name__} failed {where}{op}: {msg}. "
        f"Model input was {given}; {hint}."
    )


def _hint(msg: str, from_op: bool) -> str:
    low = msg.lower()
    if "device" in low and ("expected" in low or "same device" in low):
        return ("a tensor the model keeps outside its parameters and buffers is on another device; register "
                "it as a buffer, or pass it as an input")
    if from_op:
        return "check the input shape (given without the batch dimension) and dtype the model expects"
    return ("the model's own code raised this, not an op; run it once in PyTorch with the same inputs "
            "(keyword names and types included) to see why")
