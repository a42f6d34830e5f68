"""hwcost.analyze: trace, count every op, and aggregate per layer.

Long because choosing the trace (meta, or real values with its memory check) and attributing
parameters, storage and live-tensor peaks to layers belong to the one step from a model to its rows.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import torch
import torch.nn as nn

from . import config_inputs, formulas
from .conventions import MB, dtype_name, itemsize, parse_dtype
from .records import COST_FIELDS, LayerCost, OpCost, OpRecord, TensorSpec, Totals
from . import report
from .errors import InputError, ModelForwardError
from .inputs import Example, meta_inputs, real_inputs, tensors_in
from .trace import (ModuleCall, NeedsValues, Trace, cached_state, is_scripted, packed_tensors, materialized_state,
                    meta_state, model_float_dtype, trace, unwrap, weights_to_materialize)


@dataclass
class Analysis:
    """Per-layer cost of one forward pass of a model at a batch size and dtype."""

    model_name: str
    batch_size: int
    dtype: str
    input_shapes: list[tuple[int, ...]]
    layers: list[LayerCost]
    total: Totals
    unsupported: dict[str, int]
    ops: list[OpCost] = field(repr=False)
    module_types: dict[str, str] = field(repr=False, default_factory=dict)
    unused_params: int = 0
    module_calls: int = 0        # every nn.Module call in the forward (containers included)
    transformers_calls: int = 0  # of those, calls of transformers' own modules (their Python is heavier)
    transformers_forwards: int = 0   # ... the outermost of them: a transformers model's forward (mask, rotary)
    transformers_reuse_bytes: list[int] = field(repr=False, default_factory=list)   # per such call: bytes
    # the ops moved since the previous call of its class (its code's last run), a pass around for the first
    view_ops: int = 0            # aliasing ops: free in bytes, not in dispatch time
    trace_mode: str = "meta"     # "meta" (stand-ins, input values carried) or "values" (real tensors)
    trace_note: str = ""         # why that mode ran

    # -------------------------------------------------------------- views
    def aggregate(self, depth: int | None) -> list[LayerCost]:
        """Rows merged to module depth ``depth`` (1 = children of the model); None keeps every row."""
        if depth is None:
            return self.layers
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        merged: dict[str, LayerCost] = {}
        for row in self.layers:
            path = _row_module(row)
            parts = path.split(".") if path else []
            key = ".".join(parts[:depth])
            if key not in merged:
                merged[key] = LayerCost(key or self.model_name, self.module_types.get(key, row.type))
            m = merged[key]
            for f in COST_FIELDS:
                setattr(m, f, getattr(m, f) + getattr(row, f))
            m.calls += row.calls
            m.ops.extend(row.ops)
        return list(merged.values())

    def table(self, depth: int | None = None) -> str:
        return report.analysis_table(self, depth)

    def summary(self) -> str:
        return report.analysis_summary(self)

    @property
    def dtype_label(self) -> str:
        """The dtype, and how many ops of a torch.ao quantized model run on int8 tensors beside it."""
        quantized = sum(1 for c in self.ops if any(t.dtype in _QTYPES for t in c.record.inputs))
        return f"{self.dtype} ({quantized} ops on quantized int8 tensors)" if quantized else self.dtype

    def uncounted_heavy_ops(self) -> dict[str, int]:
        """Ops without a formula that could carry real work: a product by its name, or an output of at
        least HEAVY_OUTPUT_SHARE of everything the model writes. Their arithmetic is missing from the
        FLOPs, so a latency built on them is not to be trusted as is."""
        written = max(1, self.total.bytes_written)
        heavy: Counter[str] = Counter()
        for c in self.ops:
            if c.supported:
                continue
            short = c.record.name.rsplit("::", 1)[-1]
            if any(tok in short for tok in _PRODUCT_TOKENS) or c.bytes_written >= HEAVY_OUTPUT_SHARE * written:
                heavy[c.record.name] += 1
        return dict(heavy)

    def value_dependence(self) -> str | None:
        """A values trace through ops whose output size comes from values (NMS, nonzero, a boolean
        mask): what runs after them is counted for the values this trace had. None otherwise."""
        if self.trace_mode != "values":
            return None
        shaped = Counter(c.record.name for c in self.ops if c.record.value_shaped)
        if not shaped:
            return None
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(shaped.items()))
        weights = "random weights" if "at random" in self.trace_note else "the model's weights"
        return (f"how much work follows {ops} depends on values (how many boxes, indices or tokens pass), "
                f"and this trace ran on {weights} and the input given (a shape: seeded random values): the "
                "count is for those values; pass a model with trained weights and a real input to count what "
                "they keep")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "input_shapes": [list(s) for s in self.input_shapes],
            "layers": [r.as_dict() for r in self.layers],
            "total": self.total.as_dict(),
            "unsupported": dict(self.unsupported),
            "unused_params": self.unused_params,
            "trace_mode": self.trace_mode,
            "value_dependence": self.value_dependence(),
            "trace_note": self.trace_note,
        }

    def to_json(self, path: str | None = None) -> str:
        return report.save_text(report.to_json_text(self.to_dict()), path)

    def to_csv(self, path: str | None = None, depth: int | None = None) -> str:
        return report.save_text(report.to_csv_text([r.as_dict() for r in self.aggregate(depth)]), path)


# the dtypes of torch.ao's quantized tensors (a quantized layer's input, its packed weight)
_QTYPES = (torch.qint8, torch.quint8, torch.qint32)
# names that say an op multiplies matrices or convolves; an uncounted one is never small
_PRODUCT_TOKENS = ("mm", "matmul", "conv", "linear", "attention", "einsum", "gemm", "bmm", "lstm", "gru", "rnn")
HEAVY_OUTPUT_SHARE = 0.01


def _row_module(row: LayerCost) -> str:
    return row.ops[0].record.module if row.ops else row.name


# ------------------------------------------------------------------ aggregation


def _short_op(name: str) -> str:
    return name.strip("_").removesuffix("_for_cpu").removesuffix("_legit_no_training")


@dataclass
class _Owned:
    params: int
    param_tensors: list[torch.Tensor]
    buffers: list[torch.Tensor]


def _owner_name(name: str) -> str:
    """The module a parametrized weight belongs to: weight_norm keeps a conv's weight as two parameters of
    ``conv.parametrizations.weight``, a module no forward calls (the conv's weight is computed from them), so
    wav2vec 2.0's positional convolution (4.7M parameters) was counted as never used."""
    parts = name.split(".")
    return ".".join(parts[:parts.index("parametrizations")]) if "parametrizations" in parts else name


def _param_owners(model: nn.Module, called: frozenset[str] = frozenset(),
                  readers: dict[int, str] | None = None) -> dict[str, _Owned]:
    """Each module's own parameters and buffers; a parametrization's under the module it parametrizes; a
    tensor several modules hold (tied embeddings) counted once, in the first of them the forward called
    (``called``); where none of its holders ran, in the module that ran the first op reading it
    (``readers``: tensor id -> module name), else in its first holder. BART and T5 keep their vocabulary in
    ``model.shared``, which no forward calls, tied to the embeddings and the LM head that run: counted in the
    first holder, BART-large's 51M were listed as never used. WavLM's attention hands its q, k and v
    projections' weights to F.multi_head_attention_forward itself and never calls them: counted in their
    holders, its 28M were listed as never used."""
    readers = readers or {}
    seen: set[int] = set()
    held: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    holders_of: dict[int, list[str]] = {}
    for name, mod in model.named_modules():
        # quantized layers keep weight and bias in packed-parameter objects, not as parameters (a
        # quantized Linear in a child module named _packed_params, whose forward never runs)
        holders = [mod, *[c for n, c in mod.named_children() if n == "_packed_params"]]
        objs = [v for h in holders for v in vars(h).values() if isinstance(v, torch._C.ScriptObject)]
        packed = [t for o in objs if id(o) not in seen for t in packed_tensors(o)]
        seen.update(id(o) for o in objs)
        owner = _owner_name(name)
        params = [*mod.parameters(recurse=False), *packed]
        buffers = [b for b in mod.buffers(recurse=False) if b is not None]
        for t in params + buffers:
            holders_of.setdefault(id(t), []).append(owner)
        held.append((params, buffers))
    chosen = {i: next((o for o in names if o in called), readers.get(i, names[0]))
              for i, names in holders_of.items()}
    owners: dict[str, _Owned] = {name: _Owned(0, [], []) for name, _ in model.named_modules()}
    counted: set[int] = set()

    def claim(t: torch.Tensor) -> _Owned | None:   # on t's first sighting, the owner chosen for it
        if id(t) in counted:
            return None
        counted.add(id(t))
        return owners.setdefault(chosen[id(t)], _Owned(0, [], []))

    for params, buffers in held:
        for p in params:
            if (o := claim(p)) is not None:
                o.params += p.numel()
                o.param_tensors.append(p)
        for b in buffers:
            if (o := claim(b)) is not None:
                o.buffers.append(b)
    return owners


def _first_readers(records: list[OpRecord], state_storage: dict[int, int]) -> dict[int, str]:
    """Tensor id -> the module that ran the first op reading it, for each tensor of ``state_storage`` (tensor
    id -> storage id in the trace) that an op read."""
    reader: dict[int, str] = {}
    for r in records:
        for spec in r.inputs:
            reader.setdefault(spec.storage_id, r.module)
    return {t: reader[sid] for t, sid in state_storage.items() if sid in reader}


def _storage_bytes(tensors: list[torch.Tensor], count_isz: int) -> int:
    return sum(t.numel() * (count_isz if t.is_floating_point() else t.element_size()) for t in tensors)


def build_layers(
    costs: list[OpCost],
    module_calls: list[ModuleCall],
    first_call: dict[str, tuple[int, int]],
    owners: dict[str, _Owned],
    model_name: str,
    count_isz: int,
) -> list[LayerCost]:
    rows: dict[tuple[str, bool], LayerCost] = {}
    order: dict[tuple[str, bool], tuple[int, int, int]] = {}
    own_ops: dict[str, list[str]] = {}

    def row_for(module: str, mtype: str, leaf: bool, pos: tuple[int, int, int]) -> LayerCost:
        key = (module, leaf)
        if key not in rows:
            rows[key] = LayerCost(module, mtype)
            order[key] = pos
            owned = owners.get(module, _Owned(0, [], []))
            rows[key].params = owned.params
            rows[key].storage_bytes = _storage_bytes(owned.param_tensors, count_isz)
            rows[key].buffer_bytes = _storage_bytes(owned.buffers, count_isz)
        return rows[key]

    for call in module_calls:
        if call.leaf:
            idx, seq = first_call.get(call.name, (0, 0))
            r = row_for(call.name, call.type, True, (idx, 0, seq))
            r.activation_bytes += call.output_bytes
            r.calls += 1
    for c in costs:
        rec = c.record
        r = row_for(rec.module, rec.module_type or model_name, rec.leaf, (rec.index, 1, 0))
        if not rec.leaf:
            r.activation_bytes += c.bytes_written
            names = own_ops.setdefault(rec.module, [])
            if _short_op(rec.name) not in names:
                names.append(_short_op(rec.name))
        r.macs += c.macs
        r.flops += c.flops
        r.bytes_read += c.bytes_read
        r.bytes_written += c.bytes_written
        r.ops.append(c)
    for (module, leaf), r in rows.items():
        if leaf and not module:
            r.name = model_name  # the model itself is a single leaf module
        if not leaf:
            ops = own_ops.get(module, [])
            shown = ", ".join(ops[:3]) + (", ..." if len(ops) > 3 else "")
            r.name = f"{module or model_name} ({shown})"
            r.calls = max(r.calls, 1)
    return [rows[k] for k in sorted(rows, key=lambda k: order[k])]


def peak_live_bytes(
    records: list[OpRecord],
    inputs: list[TensorSpec],
    output_ids: set[int],
    weight_ids: set[int],
) -> int:
    """Largest total size of activation storages alive at once, freeing each after its last use.

    This is what an ideal eager allocator holds (each tensor freed right after its last reader);
    weights are excluded, the model's inputs are live from the start and its outputs to the end.
    """
    born: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}
    for s in inputs:
        born.setdefault(s.storage_id, -1)
        last[s.storage_id] = -1
        size[s.storage_id] = s.storage_nbytes
    for rec in records:
        for s in rec.inputs:
            if s.storage_id in weight_ids:
                continue
            born.setdefault(s.storage_id, -1)
            size.setdefault(s.storage_id, s.storage_nbytes)
            last[s.storage_id] = rec.index
        for s in rec.outputs:
            if s.storage_id in weight_ids:
                continue
            born.setdefault(s.storage_id, rec.index)
            size[s.storage_id] = max(size.get(s.storage_id, 0), s.storage_nbytes)
            last[s.storage_id] = max(last.get(s.storage_id, -1), rec.index)
    end = len(records)
    for sid in output_ids:
        if sid in last:
            last[sid] = end
    delta = [0] * (end + 3)
    for sid, b in born.items():
        delta[b + 1] += size[sid]
        delta[max(last[sid], b) + 2] -= size[sid]
    peak = live = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return peak


# ------------------------------------------------------------------ entry point


TRACE_MODES = ("auto", "meta", "values")


def analyze(
    model: nn.Module,
    inputs: Example,
    batch_size: int | None = None,
    dtype: str | torch.dtype | None = None,
    model_name: str | None = None,
    trace: str = "auto",
) -> Analysis:
    """Trace ``model`` once and count per-layer MACs, FLOPs, bytes and memory.

    ``inputs``: a shape without the batch dimension such as ``(3, 224, 224)``, an example tensor,
    a tuple of those, or a dict of keyword arguments (tensors may be nested in dicts, lists,
    dataclasses or cache objects). ``batch_size`` defaults to 1 for shapes and to the example
    tensors' own first dimension. ``dtype`` (default float32) is the precision the weights and
    activations are counted at: float32, float16, bfloat16 or int8. ``trace``: "meta" runs on
    stand-ins (no weights, no arithmetic; values derived from the inputs are carried beside),
    "values" on real CPU tensors, "auto" (default) meta unless the model needs what only values
    give (routing on weights, ops without a meta kernel, TorchScript). Counts do not depend on it.
    """
    model = unwrap(model)
    tr, note, costs, count_dtype = _counted_trace(model, inputs, batch_size, dtype, trace)
    name = model_name or type(model).__name__
    count_isz = itemsize(count_dtype)
    called = frozenset(c.name for c in tr.module_calls)
    owners = _param_owners(model, called, _first_readers(tr.records, tr.state_storage))
    layers = build_layers(costs, tr.module_calls, tr.first_call, owners, name, count_isz)

    total = Totals()
    for f in ("macs", "flops", "bytes_read", "bytes_written", "activation_bytes"):
        setattr(total, f, sum(getattr(r, f) for r in layers))
    total.params = sum(o.params for o in owners.values())
    total.storage_bytes = sum(_storage_bytes(o.param_tensors, count_isz) for o in owners.values())
    total.buffer_bytes = sum(_storage_bytes(o.buffers, count_isz) for o in owners.values())
    total.inference_memory_bytes = sum(c.output_bytes for c in tr.module_calls if c.leaf)
    total.peak_activation_bytes = peak_live_bytes(tr.records, tr.input_specs, tr.output_storage_ids,
                                                  tr.weight_storage_ids)
    total.input_bytes = sum(s.nbytes for s in tr.input_specs)
    unsupported = Counter(c.record.name for c in costs if not c.supported)
    first = tr.input_specs[0].shape[0] if tr.input_specs and tr.input_specs[0].shape else 1
    return Analysis(
        model_name=name,
        batch_size=batch_size or first,
        dtype=dtype_name(count_dtype),
        input_shapes=[s.shape for s in tr.input_specs],
        layers=layers,
        total=total,
        unsupported=dict(unsupported),
        ops=costs,
        module_types={n: type(m).__name__ for n, m in model.named_modules()},
        unused_params=total.params - sum(r.params for r in layers),
        module_calls=len(tr.module_calls),
        **transformers_counts(tr.module_calls, costs),
        view_ops=tr.view_ops,
        trace_mode=tr.mode,
        trace_note=note,
    )


@dataclass
class OpCounts:
    """The counted ops of a forward without the per-layer roll-up: what a latency table needs."""

    ops: list[OpCost]
    dtype: str
    module_calls: int
    view_ops: int
    transformers_calls: int = 0
    transformers_forwards: int = 0
    transformers_reuse_bytes: list[int] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.ops)


def count_ops(model: nn.Module, inputs: Example, batch_size: int | None = None,
              dtype: str | torch.dtype | None = None, trace: str = "auto") -> OpCounts:
    """Trace and count every op as ``analyze`` does, without building layers, parameter owners or the
    activation peak (the search's latency table times thousands of small blocks this way)."""
    tr, _, costs, count_dtype = _counted_trace(unwrap(model), inputs, batch_size, dtype, trace)
    return OpCounts(costs, dtype_name(count_dtype), len(tr.module_calls), tr.view_ops,
                    **transformers_counts(tr.module_calls, costs))


def transformers_counts(calls: list[ModuleCall], costs: list[OpCost]) -> dict[str, Any]:
    """Analysis's and OpCounts' transformers fields: calls of its modules, forwards of its models, and
    each call's reuse bytes (execution.transformers_python_us prices them)."""
    lib = "transformers"
    return {"transformers_calls": sum(c.library == lib for c in calls),
            "transformers_forwards": outermost_calls(calls, lib),
            "transformers_reuse_bytes": reuse_bytes(calls, costs, lib)}


def reuse_bytes(calls: list[ModuleCall], costs: list[OpCost], library: str) -> list[int]:
    """Per call of ``library``'s modules, in the order they began: the bytes the ops moved since the
    previous call of the same class began, what ran through the caches between two runs of its code
    (one layer apart in a stack of layers). The first call of a class counts from that class's last
    call in the pass before (passes run back to back); a class called once, the whole pass."""
    if not any(c.library == library for c in calls):
        return []   # most models: no prefix sums over every op (the search counts thousands of blocks)
    prefix = list(accumulate((c.memory_traffic_bytes for c in costs), initial=0))
    total = prefix[-1]
    ordered = sorted((c for c in calls if c.library == library and c.first_op >= 0), key=lambda c: c.first_op)
    last_of = {c.type: c.first_op for c in ordered}
    seen: dict[str, int] = {}
    out = []
    for c in ordered:
        prev = seen.get(c.type)
        out.append(prefix[c.first_op] - prefix[prev] if prev is not None
                   else total - (prefix[last_of[c.type]] - prefix[c.first_op]))
        seen[c.type] = c.first_op
    unknown = sum(c.library == library and c.first_op < 0 for c in calls)
    return out + [total] * unknown


def outermost_calls(calls: list[ModuleCall], library: str) -> int:
    """Calls of ``library``'s modules made from outside any of its modules: one per forward of a
    transformers model, however deep a user's model holds it and however many modules it has."""
    names = {c.name for c in calls if c.library == library}
    def inside(name: str) -> bool:
        parts = name.split(".") if name else []
        return any(".".join(parts[:i]) in names for i in range(len(parts)))
    return sum(c.library == library and not inside(c.name) for c in calls)


def _counted_trace(model: nn.Module, inputs: Example, batch_size: int | None, dtype: str | torch.dtype | None,
                   trace: str) -> tuple[Trace, str, list[OpCost], torch.dtype]:
    if trace not in TRACE_MODES:
        raise InputError(f"trace must be one of {', '.join(TRACE_MODES)}, got {trace!r}")
    count_dtype = parse_dtype(dtype)
    # meta kernels cover floating dtypes; int8 is traced in float32 and counted at one byte
    trace_dtype = count_dtype if count_dtype.is_floating_point else torch.float32
    # under a caller's torch.inference_mode() composite ops (nn.Linear's aten.linear) would reach the
    # trace undecomposed: trace as PyTorch runs a model outside it, the same ops whatever the caller's mode
    with torch.inference_mode(False):
        tr, note = run_trace(model, inputs, batch_size, trace_dtype, count_dtype, trace)
    return tr, note, formulas.count_records(tr.records, tr.weight_storage_ids), count_dtype


def meta_trial(model: nn.Module, inputs: dict[str, torch.Tensor]) -> str:
    """How the model's forward fares on ``inputs`` traced on meta: "runs", "undecided" (it stopped only for want
    of values) or "fails" (its inputs are wrong for it). Lets config_inputs try an input's layouts."""
    try:
        analyze(model, inputs, trace="meta")
    except (InputError, ModelForwardError) as e:
        return "undecided" if isinstance(e.__cause__, NeedsValues) else "fails"
    return "runs"


config_inputs.trial = meta_trial


# A values trace holds the weights, and PyTorch holds activations as the forward needs them; leave
# the rest of the free memory to the user's process and the OS.
FREE_MEMORY_SHARE = 0.8


def run_trace(model: nn.Module, inputs: Example, batch_size: int | None, trace_dtype: torch.dtype,
              count_dtype: torch.dtype, mode: str) -> tuple[Trace, str]:
    """The trace ``mode`` asks for; in "auto", meta first and values when meta cannot go on."""
    activation_bytes = 0
    if is_scripted(model):
        if mode == "meta":
            raise InputError("a TorchScript module cannot run on meta stand-ins; analyze it with trace='values' "
                             "(or 'auto'), or pass the original nn.Module")
        reason = "a TorchScript module cannot run on meta stand-ins"
    elif mode == "values":
        reason = "asked for"
    elif any(t.is_quantized for t in tensors_in(inputs)):
        if mode == "meta":
            raise InputError("a quantized input tensor cannot run on meta stand-ins; analyze with trace='values' "
                             "(or 'auto')")
        reason = "a quantized input tensor cannot run on meta stand-ins"
    else:
        args, kwargs, values = meta_inputs(inputs, batch_size, trace_dtype)
        state, state_values = meta_state(model, trace_dtype)
        values.update(state_values)
        try:
            tr = trace(model, args, kwargs, count_dtype, "meta", state, values)
            carried = f"; values derived from the inputs carried for {tr.valued_ops} ops" if tr.valued_ops else ""
            return tr, "shapes only, no weights" + carried
        except NeedsValues as e:
            if mode == "meta":
                raise ModelForwardError(
                    f"the meta trace cannot go on: {e}. Analyze with trace='values' (or 'auto') to run it on "
                    "real CPU tensors") from e
            reason = str(e)
            part = getattr(e, "partial", None)
            if part is not None:
                activation_bytes = peak_live_bytes(part.records, part.input_specs, set(), part.weight_storage_ids)
    float_dtype = model_float_dtype(model, trace_dtype)
    weight_bytes = weights_to_materialize(model, trace_dtype)
    # weights already made for an earlier trace of this model (trace.materialized_once) take no more memory
    _check_memory(model, 0 if cached_state(model, trace_dtype) else weight_bytes, activation_bytes, reason)
    args, kwargs = real_inputs(inputs, batch_size, trace_dtype if weight_bytes else float_dtype)
    state = materialized_state(model, trace_dtype) if weight_bytes else None
    tr = trace(model, args, kwargs, count_dtype, "values", state)
    made = f"; weights materialized at random ({weight_bytes / MB:,.1f} MB)" if weight_bytes else ""
    return tr, f"real CPU tensors: {reason}{made}"


def _check_memory(model: nn.Module, weight_bytes: int, activation_bytes: int, reason: str) -> None:
    import psutil

    free = psutil.virtual_memory().available
    need = weight_bytes + activation_bytes
    if need > FREE_MEMORY_SHARE * free:
        raise ModelForwardError(
            f"{type(model).__name__} needs a trace on real tensors ({reason}), which would take "
            f"{need / 1024**3:,.1f} GiB (weights materialized {weight_bytes / 1024**3:,.1f} GiB, activations at "
            f"least {activation_bytes / 1024**3:,.1f} GiB) but only {free / 1024**3:,.1f} GiB is free. Analyze a "
            "smaller configuration of the model (fewer layers count per layer the same), or on a machine "
            "with more memory"
        )
