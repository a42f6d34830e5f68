"""The roofline per op: the FLOP/s an op can reach on a device (matrix or vector units, its dtype's
rate), its compute and memory times at the profile's efficiencies, and its fixed startup cost.

compute time = FLOPs / (peak[dtype] x efficiency[family]); memory time = bytes (and a recurrent layer's
step weights read again from DRAM) / (bandwidth x memory efficiency); the op takes the larger, plus its
family's startup (a fixed cost per call, so small ops reach less of the peak: Hockney's r_inf and
n_1/2). On a CPU profile whose PyTorch has no oneDNN (grouped_conv: per_group), a grouped convolution runs
as one convolution per group: at the convolution efficiency, with a startup per call, per group and per
element of the im2col columns.
"""
from __future__ import annotations

import math

from .conventions import QUANTIZED_DTYPES
from .devices import DeviceProfile
from .features import reread_bytes, shape_features
from .formulas import CONV_FAMILIES, PRODUCT_FAMILIES, conv_groups, serial_steps
from .records import OpCost

PER_GROUP_FAMILIES = frozenset({"depthwise_conv", "grouped_conv"})


def op_dtype(cost: OpCost, dtype: str) -> str:
    """The rate an op runs at: a product whose weight is int8 (torch.ao quantized layers) runs
    int8 arithmetic whatever the model's float dtype."""
    if cost.family in PRODUCT_FAMILIES and any(
            str(t.dtype).removeprefix("torch.") in QUANTIZED_DTYPES for t in cost.record.inputs):
        return "int8"
    return dtype


def peak_for(cost: OpCost, device: DeviceProfile, dtype: str) -> float:
    """FLOP/s available to this op: matrix units for products (TF32 for fp32 convs where the
    device runs them so, as cuDNN does by default), vector units for everything else."""
    dtype = op_dtype(cost, dtype)
    if cost.family in CONV_FAMILIES and dtype == "float32" and device.tf32_tflops:
        return device.tf32_tflops * 1e12
    return device.peak_flops(dtype, matrix=cost.family in PRODUCT_FAMILIES)


def runs_per_group(cost: OpCost, device: DeviceProfile, dtype: str) -> bool:
    """Does PyTorch run this op as one convolution per group? On a build without oneDNN a float 1-D or
    2-D convolution with groups goes to ConvBackend::Slow2d, which has no groups of its own: it runs
    slow_conv2d on each group's narrowed input and weight and concatenates the outputs
    (aten/src/ATen/native/Convolution.cpp). Quantized ones run QNNPACK's grouped kernels; 3-D ones
    Slow3d, which takes groups."""
    if not device.grouped_conv_per_group or cost.family not in PER_GROUP_FAMILIES or not cost.record.inputs:
        return False
    return cost.record.inputs[0].ndim in (3, 4) and op_dtype(cost, dtype) != "int8"


def im2col_elements(cost: OpCost) -> int:
    """Elements slow_conv2d's column buffers hold over all groups: input channels x kernel positions x
    output positions x batch (each group unfolds its own channels)."""
    rec = cost.record
    x, w, out = rec.inputs[0], rec.args[1], rec.outputs[0]
    kernel = math.prod(int(k) for k in w.shape[2:])
    return int(x.shape[0]) * int(x.shape[1]) * kernel * math.prod(int(s) for s in out.shape[2:])


def roofline_times(cost: OpCost, device: DeviceProfile, dtype: str) -> tuple[float, float]:
    # each group is a plain convolution (im2col + GEMM): the convolution efficiency, not the family's
    family = "conv" if runs_per_group(cost, device, dtype) else cost.family
    eff_c = device.compute_efficiency.get(family, device.compute_efficiency["elementwise"])
    compute_s = cost.flops / (peak_for(cost, device, dtype) * eff_c) if cost.flops else 0.0
    traffic = cost.memory_traffic_bytes + dram_reread_bytes(cost, device)
    memory_s = traffic / (device.bandwidth_gbps * 1e9 * device.memory_efficiency)
    return compute_s, memory_s


def dram_reread_bytes(cost: OpCost, device: DeviceProfile) -> float:
    """A fused recurrent layer's step weights read again from DRAM: where one layer's hidden-to-hidden
    weights exceed the last-level cache (memory.cache_mb), each step's GEMM streams them whole, which its
    bytes counted once do not see (an LSTM with 1024 hidden units holds 16 MB of them: on a 1 MB cache at
    12.8 GB/s, 1.3 ms a step beside its 17 MFLOP at batch 1). 0 where the profile gives no cache size."""
    if cost.family != "rnn" or not device.cache_mb:
        return 0.0
    return reread_bytes(shape_features(cost), cost.family, device.cache_mb * 1e6)


def startup_s(cost: OpCost, device: DeviceProfile, dtype: str) -> float:
    """Fixed cost of each call beyond the dispatch (Hockney's startup): what makes small ops reach
    less of the peak than large ones. A fused RNN pays it per step, layer and direction; a convolution
    run per group pays it per call, per group and per im2col element (the loop, the views, each group's
    buffers and the column copy: serial host work)."""
    if runs_per_group(cost, device, dtype):
        p = device.per_group_conv
        rec = cost.record
        n = (p["startup_dispatches"] + conv_groups(rec, rec.args[1], rec.inputs[0]) * p["group_dispatches"]
             + im2col_elements(cost) * p["column_dispatches"])
        return n * device.host_per_op_us * 1e-6
    n = device.startup_dispatches.get(cost.family, 0.0)
    return n * device.host_per_op_us * 1e-6 * serial_steps(cost) if n else 0.0
