"""The roofline per op: the FLOP/s an op can reach on a device (matrix or vector units, its dtype's
rate), its compute and memory times at the profile's efficiencies, and its fixed startup cost.

compute time = FLOPs / (peak[dtype] x efficiency[family]); memory time = bytes / (bandwidth x memory
efficiency); the op takes the larger, plus its family's startup (a fixed cost per call, so small ops
reach less of the peak: Hockney's r_inf and n_1/2).
"""
from __future__ import annotations

from .conventions import QUANTIZED_DTYPES
from .devices import DeviceProfile
from .formulas import CONV_FAMILIES, PRODUCT_FAMILIES, serial_steps
from .records import OpCost


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


def roofline_times(cost: OpCost, device: DeviceProfile, dtype: str) -> tuple[float, float]:
    eff_c = device.compute_efficiency.get(cost.family, device.compute_efficiency["elementwise"])
    compute_s = cost.flops / (peak_for(cost, device, dtype) * eff_c) if cost.flops else 0.0
    memory_s = cost.memory_traffic_bytes / (device.bandwidth_gbps * 1e9 * device.memory_efficiency)
    return compute_s, memory_s


def startup_s(cost: OpCost, device: DeviceProfile) -> float:
    """Fixed cost of each call beyond the dispatch (Hockney's startup): what makes small ops reach
    less of the peak than large ones. A fused RNN pays it per step, layer and direction."""
    n = device.startup_dispatches.get(cost.family, 0.0)
    return n * device.host_per_op_us * 1e-6 * serial_steps(cost) if n else 0.0
