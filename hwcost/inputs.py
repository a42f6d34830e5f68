"""Every way a user gives a model its inputs, turned into the tensors a trace or a measurement runs on.

A shape (without the batch dimension), an example tensor, a tuple of those, or keyword arguments whose
values may be nested anywhere: dicts, lists, tuples, dataclasses, ``transformers`` ``ModelOutput`` and
cache objects (``DynamicCache`` is no pytree node and records the device of its tensors). Every tensor
inside is converted; everything else is passed through as it is (a keyword ``sizes=[224, 224]`` stays a
list of ints: only the top-level ``inputs`` may be a shape). Structures are deep-copied around their
converted tensors, so a forward that mutates its inputs (a KV cache appends to itself) never touches
the user's objects.
"""
from __future__ import annotations

import copy
import dataclasses
import types
from typing import Any, Callable

import torch

from .errors import InputError

Example = Any  # a shape tuple, a tensor, a tuple of either, or a dict of keyword arguments

_LEAF_TYPES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, torch.Size)


# never searched for tensors: a module's weights are not inputs, and code holds none
_OPAQUE = (torch.nn.Module, type, types.FunctionType, types.MethodType, types.BuiltinFunctionType,
           types.ModuleType, torch._C.ScriptObject)


def is_shape(x: Any) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and len(x) > 0 and all(
        isinstance(d, int) and not isinstance(d, bool) for d in x
    )


def _children(x: Any) -> list[Any]:
    """The objects a structure holds, for finding its tensors (modules and callables are opaque)."""
    if isinstance(x, dict):
        return list(x.values())
    if isinstance(x, (list, tuple, set, frozenset)):
        return list(x)
    if isinstance(x, _OPAQUE):
        return []
    if dataclasses.is_dataclass(x):
        return [getattr(x, f.name, None) for f in dataclasses.fields(x)]
    kids = list(getattr(x, "__dict__", {}).values())
    for slot in getattr(type(x), "__slots__", ()):
        if isinstance(slot, str) and hasattr(x, slot):
            kids.append(getattr(x, slot))
    return kids


def tensors_in(x: Any) -> list[torch.Tensor]:
    """Every distinct tensor inside ``x``, depth first, each once."""
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    stack = [x]
    while stack:
        obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            found.setdefault(id(obj), obj)
            continue
        if isinstance(obj, _LEAF_TYPES) or id(obj) in seen:
            continue
        seen.add(id(obj))
        stack.extend(reversed(_children(obj)))
    return list(found.values())


def map_tensors(x: Any, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device | None = None) -> Any:
    """A copy of ``x`` with every tensor ``t`` replaced by ``fn(t)``; ``x`` is left untouched.

    Objects that record a device beside their tensors (transformers' cache layers) get ``device``."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    tensors = tensors_in(x)
    if not tensors:
        return x
    memo: dict[int, Any] = {id(t): fn(t) for t in tensors}
    try:
        out = copy.deepcopy(x, memo)
    except Exception as e:
        raise InputError(
            f"cannot copy the input {type(x).__name__} to trace it ({type(e).__name__}: {e}); pass its "
            "tensors as plain arguments, or in a dict, list, tuple or dataclass"
        ) from e
    if device is not None:
        _set_devices(out, device)
    return out


def _set_devices(x: Any, device: torch.device) -> None:
    seen: set[int] = set()
    stack = [x]
    while stack:
        obj = stack.pop()
        if isinstance(obj, (torch.Tensor, *_LEAF_TYPES)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict) and not isinstance(obj, (dict, list, tuple, torch.nn.Module, type)):
            for k, v in attrs.items():
                if isinstance(v, torch.device) and v != device:
                    attrs[k] = device
        stack.extend(_children(obj))


# ------------------------------------------------------------------ the example's batch


def _example_batch(example: Example) -> int | None:
    if is_shape(example):
        return None
    firsts = [t.shape[0] for t in tensors_in(example) if t.ndim]
    return firsts[0] if firsts else None


def _check_batch(batch_size: int | None) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")


def _rebatched_shape(t: torch.Tensor, batch_size: int | None, example_batch: int | None) -> tuple[int, ...]:
    shape = tuple(t.shape)
    if batch_size is not None and shape and shape[0] == example_batch:
        return (batch_size, *shape[1:])  # only tensors that carry the example's batch
    return shape


def _shape_tensor(shape: Any, batch_size: int | None, dtype: torch.dtype, device: str) -> torch.Tensor:
    if any(d <= 0 for d in shape):
        raise InputError(f"input shape {tuple(shape)} has a non-positive dimension")
    full = (batch_size or 1, *shape)
    if device == "meta":
        return torch.empty(full, dtype=dtype, device="meta")
    return _seeded_normal(full, dtype, device)


def _seeded_normal(shape: tuple[int, ...], dtype: torch.dtype, device: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g, dtype=dtype).to(device)


def _structure(example: Example, convert_shape: Callable[[Any], Any], convert: Callable[[Any], Any]
               ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(example, dict):
        if not all(isinstance(k, str) for k in example):
            raise InputError("a dict of inputs must map keyword-argument names (strings) to values")
        return (), {k: convert(v) for k, v in example.items()}
    if is_shape(example):
        return (convert_shape(example),), {}
    if isinstance(example, torch.Tensor):
        return (convert(example),), {}
    if isinstance(example, (tuple, list)) and example:
        return tuple(convert_shape(x) if is_shape(x) else convert(x) for x in example), {}
    raise InputError(
        f"cannot use {type(example).__name__} {example!r} as model input: give a shape without the "
        "batch dimension such as (3, 224, 224), an example tensor, a tuple of those, or a dict of "
        "keyword arguments (values may be tensors nested in dicts, lists, dataclasses or cache objects)"
    )


def meta_inputs(
    example: Example, batch_size: int | None, trace_dtype: torch.dtype
) -> tuple[tuple[Any, ...], dict[str, Any], dict[int, torch.Tensor]]:
    """Meta stand-ins for the inputs, and the real values behind them (keyed by id of the stand-in).

    A shape is given without the batch dimension; ``batch_size`` (default 1) is prepended. Example
    tensors keep their shape unless ``batch_size`` is given, which then replaces the first dimension
    of those whose first dimension is the example's batch (their values repeat along it). Floating
    tensors take the traced dtype; integer ones (token ids, masks) keep theirs. A shape has no values.
    """
    _check_batch(batch_size)
    example_batch = _example_batch(example)
    values: dict[int, torch.Tensor] = {}

    def convert(t: torch.Tensor) -> torch.Tensor:
        shape = _rebatched_shape(t, batch_size, example_batch)
        dt = trace_dtype if t.is_floating_point() else t.dtype
        # an example's own layout (a permuted view) is kept: kernels run it differently
        meta = (torch.empty_strided(shape, t.stride(), dtype=dt, device="meta") if tuple(t.shape) == shape
                else torch.empty(shape, dtype=dt, device="meta"))
        if t.device.type != "meta":
            values[id(meta)] = _rebatched_values(t, shape).to(dt)
        return meta

    args, kwargs = _structure(
        example,
        lambda s: _shape_tensor(s, batch_size, trace_dtype, "meta"),
        lambda x: map_tensors(x, convert, torch.device("meta")),
    )
    return args, kwargs, values


def real_inputs(
    example: Example, batch_size: int | None, float_dtype: torch.dtype, device: str = "cpu"
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Concrete tensors for the inputs: the example's own values (copied, rebatched, floats cast to
    ``float_dtype``); a shape becomes seeded normal values; an example given on meta becomes zeros for
    integers (a valid index everywhere) and seeded normals for floats."""
    _check_batch(batch_size)
    example_batch = _example_batch(example)
    dev = torch.device(device)

    def convert(t: torch.Tensor) -> torch.Tensor:
        shape = _rebatched_shape(t, batch_size, example_batch)
        dt = float_dtype if t.is_floating_point() else t.dtype
        if t.device.type == "meta":
            if t.is_floating_point():
                return _seeded_normal(shape, dt, dev)
            return torch.zeros(shape, dtype=dt, device=dev)
        return _rebatched_values(t, shape).to(device=dev, dtype=dt, copy=True)

    return _structure(
        example,
        lambda s: _shape_tensor(s, batch_size, float_dtype, device),
        lambda x: map_tensors(x, convert, dev),
    )


def _rebatched_values(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    t = t.detach()
    if tuple(t.shape) == shape:
        return t
    rows = torch.arange(shape[0]) % t.shape[0]  # repeat the example's rows up to the new batch
    return t[rows]
