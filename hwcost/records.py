"""Plain records that travel between the stages: trace -> count -> aggregate -> predict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What the counters need to know about one tensor seen in the trace (never its data)."""

    shape: tuple[int, ...]
    dtype: torch.dtype          # dtype the trace ran in
    itemsize: int               # bytes per element at the dtype being counted
    footprint: int              # elements actually addressed (broadcast dims with stride 0 once)
    storage_id: int             # identity of the underlying storage (views share it)
    storage_nbytes: int         # size of that storage at the counted dtype
    # a permuted view (neither contiguous nor channels-last, broadcasts aside): how many dimensions it
    # still has past the first once adjacent ones that lie back to back are merged; 1 for a transposed
    # matrix, 2 for MobileViT's (4, 256, 144) unfold, whose LayerNorm runs 3x the 2-D transpose's time
    strided: int = 0

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def read_bytes(self) -> int:
        """Bytes a kernel reads of this tensor: broadcast (stride-0) dimensions once."""
        return self.footprint * self.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(slots=True)
class OpRecord:
    """One aten op seen while tracing, with the module that was running it."""

    index: int
    name: str                   # schema name without the "aten::" prefix, e.g. "convolution"
    overload: str               # e.g. "default", "Tensor"
    module: str                 # path of the innermost running module ("" = the model itself)
    module_type: str
    leaf: bool                  # False: a parent module ran this op itself (e.g. a residual add)
    args: tuple[Any, ...]       # TensorSpec in place of every tensor
    kwargs: dict[str, Any]
    outputs: tuple[TensorSpec, ...]
    mutates: bool               # in-place or out= op
    value_shaped: bool = False  # the output's size came from the values (nonzero, a boolean mask, NMS)

    @property
    def inputs(self) -> list[TensorSpec]:
        """Distinct tensor inputs, in argument order."""
        seen: dict[int, TensorSpec] = {}
        for a in _flat(self.args) + _flat(list(self.kwargs.values())):
            if isinstance(a, TensorSpec):
                seen.setdefault(id(a), a)
        return list(seen.values())

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        if i < len(self.args):
            return self.args[i]
        return self.kwargs.get(name, default)


def _flat(xs: Any) -> list[Any]:
    out: list[Any] = []
    for x in xs:
        if isinstance(x, (list, tuple)):
            out.extend(_flat(x))
        else:
            out.append(x)
    return out


@dataclass(slots=True)
class OpCost:
    """The counted work and traffic of one op."""

    record: OpRecord
    family: str                 # conv, depthwise_conv, grouped_conv, matmul, attention, elementwise, ...
    macs: int
    flops: int
    bytes_read: int
    bytes_written: int
    supported: bool = True      # False: no formula; bytes counted, FLOPs unknown (reported)
    weight_bytes: int = 0       # of bytes_read, those of parameters (cold in a network: read once per pass)

    @property
    def memory_traffic_bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def launches(self) -> bool:
        """Does this op do work (FLOPs or bytes)? Allocations such as aten.empty launch nothing."""
        return bool(self.flops or self.memory_traffic_bytes)


@dataclass(frozen=True, slots=True)
class RecurrentShape:
    """A fused recurrent layer's geometry as its shape features store it (features.recurrent_shape): all 0 where
    the features are not a recurrent layer's."""

    batch: int
    steps: int
    hidden: int
    gates: int                  # 4 LSTM, 3 GRU, 1 plain RNN
    layer_directions: int       # layers x directions
    flops_per_call: float       # per serial call (one step of one layer and direction)
    itemsize: int

    @property
    def calls(self) -> int:     # serial calls: steps x layer-directions
        return self.steps * self.layer_directions


COST_FIELDS = (
    "params", "macs", "flops", "bytes_read", "bytes_written", "activation_bytes", "storage_bytes",
    "buffer_bytes",
)


@dataclass(slots=True)
class LayerCost:
    """One row of the analysis: a leaf module, or the ops a parent module runs itself."""

    name: str
    type: str
    params: int = 0
    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    activation_bytes: int = 0   # bytes of this layer's outputs (every call)
    storage_bytes: int = 0      # its parameters at the counted dtype (a DNN-analyzer table's "storage")
    buffer_bytes: int = 0       # its buffers (batch-norm running statistics ...) at the counted dtype
    calls: int = 0
    ops: list[OpCost] = field(default_factory=list, repr=False)

    @property
    def memory_traffic_bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def as_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "type": self.type}
        d.update({f: getattr(self, f) for f in COST_FIELDS})
        d["memory_traffic_bytes"] = self.memory_traffic_bytes
        d["calls"] = self.calls
        return d


@dataclass(slots=True)
class Totals:
    params: int = 0
    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    activation_bytes: int = 0           # sum over every row's outputs
    storage_bytes: int = 0              # every parameter of the model at the counted dtype
    buffer_bytes: int = 0               # every buffer (running statistics, rotary tables ...)
    inference_memory_bytes: int = 0     # sum of leaf-module outputs (a DNN-analyzer table's "inference memory")
    peak_activation_bytes: int = 0      # largest set of live activations (tensor lifetimes)
    input_bytes: int = 0

    @property
    def memory_traffic_bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def as_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__slots__}
        d["memory_traffic_bytes"] = self.memory_traffic_bytes
        return d
