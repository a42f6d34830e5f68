"""hwcost.predict: map each op's counted work onto a device profile, then per layer and in total.

Per op, roofline: compute time = FLOPs / (peak[dtype] x efficiency[family]), memory time =
bytes / (bandwidth x memory efficiency); the op takes the larger, plus its family's startup
(a fixed cost per call, so small ops reach less of the peak: Hockney's r_inf and n_1/2). On a sequential device (eager
PyTorch on a CPU) every op also pays the host's per-op dispatch time and ops run one after another.
On an async device (GPU) the host enqueues each op (host_per_op) while the device runs the previous
kernels; a kernel starts when the host has issued it and the previous kernel is done, and takes its
roofline time plus a fixed per-kernel cost. End-to-end time is when both are done.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch.nn as nn

from .analysis import Analysis, analyze
from .counters import CONV_FAMILIES, PRODUCT_FAMILIES, serial_steps
from .conventions import MB, QUANTIZED_DTYPES
from .devices import DeviceProfile, load_device
from .errors import ProfileError
from .records import COST_FIELDS, OpCost
from .table import format_table, save_text
from .inputs import Example



@dataclass(slots=True)
class OpTiming:
    cost: OpCost
    compute_s: float
    memory_s: float
    overhead_s: float           # host dispatch (CPU) or host enqueue (GPU) for this op
    kernel_s: float             # device busy time (GPU: roofline + per-kernel cost; CPU: roofline)
    latency_s: float = 0.0      # this op's share of the end-to-end time (they sum to the total)
    bound: str = "compute"
    energy_j: float = 0.0


@dataclass
class LayerPrediction:
    name: str
    type: str
    params: int
    macs: int
    flops: int
    bytes_read: int
    bytes_written: int
    activation_bytes: int
    storage_bytes: int
    buffer_bytes: int
    latency_ms: float
    share_pct: float
    bound: str                   # compute | memory | overhead
    arithmetic_intensity: float  # FLOPs per byte of memory traffic
    attained_gflops: float
    energy_mj: float | None
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    overhead_ms: float = 0.0
    ops: list[OpTiming] = field(default_factory=list, repr=False)

    @property
    def memory_traffic_bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "name", "type", *COST_FIELDS, "latency_ms", "share_pct", "bound", "arithmetic_intensity",
            "attained_gflops", "energy_mj", "compute_ms", "memory_ms", "overhead_ms")}
        d["memory_traffic_bytes"] = self.memory_traffic_bytes
        return d


@dataclass
class Prediction:
    device: DeviceProfile
    analysis: Analysis
    layers: list[LayerPrediction]
    ops: list[OpTiming] = field(repr=False)
    latency_ms: float = 0.0
    host_ms: float = 0.0         # total host time (dispatch / enqueue)
    device_ms: float = 0.0       # total device busy time
    energy_mj: float | None = 0.0
    energy_capped: bool = False  # the estimate exceeded max power x latency and was capped

    @property
    def batch_size(self) -> int:
        return self.analysis.batch_size

    @property
    def fps(self) -> float:
        return 1000.0 * self.batch_size / self.latency_ms if self.latency_ms > 0 else float("inf")

    @property
    def average_power_w(self) -> float | None:
        if self.energy_mj is None:
            return None
        return self.energy_mj / self.latency_ms if self.latency_ms > 0 else 0.0

    @property
    def energy_per_sample_mj(self) -> float | None:
        return None if self.energy_mj is None else self.energy_mj / self.batch_size

    @property
    def warnings(self) -> list[str]:
        """Everything that makes this number less than trustworthy, in one list (rendered by summary)."""
        out = []
        heavy = self.analysis.uncounted_heavy_ops()
        if heavy:
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(heavy.items()))
            out.append(f"ops without a formula may carry real work ({ops}): their arithmetic is not in this "
                       "latency; register a formula for them (hwcost.counters.register)")
        return out

    def bound_shares(self) -> dict[str, float]:
        shares = {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
        for t in self.ops:
            shares[t.bound] += t.latency_s
        total = sum(shares.values()) or 1.0
        return {k: 100 * v / total for k, v in shares.items()}

    def table(self, depth: int | None = None) -> str:
        rows = [
            [r.name, r.type, r.macs / 1e6, r.memory_traffic_bytes / MB, r.arithmetic_intensity, r.bound,
             r.latency_ms, r.share_pct, r.attained_gflops, r.energy_mj]
            for r in self.aggregate(depth)
        ]
        headers = ["layer", "type", "MACs (M)", "traffic (MB)", "FLOP/B", "bound", "latency (ms)",
                   "share %", "GFLOP/s", "energy (mJ)"]
        return format_table(headers, rows) + "\n" + self.summary()

    def summary(self) -> str:
        d, a = self.device, self.analysis
        b = self.bound_shares()
        lines = [
            f"model: {a.model_name}   device: {d.name} ({d.kind}, {d.execution}, "
            f"{'calibrated' if d.calibration else 'datasheet'} profile)   batch: {a.batch_size}   dtype: {a.dtype}",
            f"latency:        {self.latency_ms:,.3f} ms   ({self.fps:,.1f} FPS)",
            (f"energy:         {self.energy_mj:,.2f} mJ per batch, {self.energy_per_sample_mj:,.2f} mJ per sample, "
             f"average power {self.average_power_w:,.2f} W" + ("  (capped at max power)" if self.energy_capped else "")
             if self.energy_mj is not None else "energy:         unknown (this profile has no power figures)"),
            f"time bound by:  compute {b['compute']:.0f}%, memory {b['memory']:.0f}%, per-op overhead {b['overhead']:.0f}%",
            f"work:           {a.total.macs / 1e9:,.3f} GMAC, {a.total.flops / 1e9:,.3f} GFLOP, "
            f"{a.total.memory_traffic_bytes / MB:,.1f} MB memory traffic",
        ]
        if d.execution == "async":
            lines.append(f"host enqueue:   {self.host_ms:,.3f} ms; device busy: {self.device_ms:,.3f} ms "
                         f"({'host' if self.host_ms > self.device_ms else 'device'}-bound)")
        if a.unsupported:
            lines.append("ops with no FLOP formula (bytes only): " + ", ".join(sorted(a.unsupported)))
        lines.extend(f"WARNING: {w}" for w in self.warnings)
        return "\n".join(lines)

    def aggregate(self, depth: int | None) -> list[LayerPrediction]:
        if depth is None:
            return self.layers
        rows = self.analysis.aggregate(depth)
        timing = {id(t.cost): t for t in self.ops}
        return [_layer(r, [timing[id(c)] for c in r.ops if id(c) in timing], self.latency_ms) for r in rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.analysis.model_name,
            "device": self.device.name,
            "profile": "calibrated" if self.device.calibration else "datasheet",
            "batch_size": self.batch_size,
            "dtype": self.analysis.dtype,
            "latency_ms": self.latency_ms,
            "fps": self.fps,
            "energy_mj": self.energy_mj,
            "average_power_w": self.average_power_w,
            "host_ms": self.host_ms,
            "device_ms": self.device_ms,
            "bound_pct": self.bound_shares(),
            "warnings": self.warnings,
            "layers": [r.as_dict() for r in self.layers],
            "total": self.analysis.total.as_dict(),
        }

    def to_json(self, path: str | None = None) -> str:
        return save_text(json.dumps(self.to_dict(), indent=1), path)


# ------------------------------------------------------------------ per op


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


def time_ops(costs: list[OpCost], device: DeviceProfile, dtype: str) -> list[OpTiming]:
    """Roofline and overhead of every op that does work (allocations launch nothing)."""
    working = [c for c in costs if c.launches]
    calibrated = calibrated_times(working, device, dtype) if device.calibration else None
    host_s = device.host_per_op_us * 1e-6
    timings = []
    for i, c in enumerate(working):
        compute_s, memory_s = roofline_times(c, device, dtype)
        bound = "compute" if compute_s >= memory_s else "memory"
        if calibrated is not None and device.execution == "sequential":
            # a measured op call includes its dispatch: split it back out for the overhead bound
            overhead = min(host_s, calibrated[i])
            timings.append(OpTiming(c, compute_s, memory_s, overhead, calibrated[i] - overhead, bound=bound))
            continue
        if calibrated is not None:
            kernel = calibrated[i]
        else:
            kernel = max(compute_s, memory_s) + startup_s(c, device)
            if device.execution == "async":
                kernel += device.device_per_op_us * 1e-6
        timings.append(OpTiming(c, compute_s, memory_s, host_s, kernel, bound=bound))
    return timings


def add_framework_overhead(timings: list[OpTiming], analysis: Analysis, device: DeviceProfile) -> None:
    """Host time of module calls and view ops (measured by calibration), spread over the ops.

    Views move no bytes and container modules launch no kernel, but each costs a Python dispatch;
    spreading the total evenly keeps a CPU's sum exact and lets the GPU queue see it as host time."""
    extra_s = (analysis.module_calls * device.module_call_us + analysis.view_ops * device.view_us) * 1e-6
    if timings and extra_s:
        share = extra_s / len(timings)
        for t in timings:
            t.overhead_s += share


def calibrated_times(costs: list[OpCost], device: DeviceProfile, dtype: str) -> list[float]:
    """Per-op seconds from the profile's fitted time model (see hwcost/calibration/fit.py)."""
    from .calibration.fit import rates_of, time_model_for

    try:
        model = time_model_for(device.calibration_file("model"), rates_of(device))
    except ValueError as e:
        raise ProfileError(f"{device.path}: {e}; recalibrate (or refit) with this hwcost version") from e
    return model.predict(costs, dtype, [c.family in PRODUCT_FAMILIES for c in costs])


def run_sequential(timings: list[OpTiming]) -> tuple[float, float, float]:
    """CPU eager: each op dispatches, then runs. Returns (total, host, device) seconds."""
    for t in timings:
        t.latency_s = t.overhead_s + t.kernel_s
        if t.overhead_s > t.kernel_s:
            t.bound = "overhead"
    host = sum(t.overhead_s for t in timings)
    dev = sum(t.kernel_s for t in timings)
    return host + dev, host, dev


def queue(host_s: Iterable[float], kernel_s: Iterable[float]) -> Iterator[tuple[float, bool]]:
    """GPU eager: the host enqueues op i at host_i; kernel i starts at max(host_i, end of kernel i-1).

    Yields, after each op, the finishing time so far, max(host clock, device clock), and whether
    that op's kernel had to wait for the host."""
    host = dev = 0.0
    for h, k in zip(host_s, kernel_s):
        host += h
        waited_for_host = host > dev
        dev = max(host, dev) + k
        yield max(host, dev), waited_for_host


def run_async(timings: list[OpTiming]) -> tuple[float, float, float]:
    """Each op's latency is how far it moved the finishing time, so the per-op latencies sum to the
    end-to-end time. An op that waited for the host, with a kernel shorter than its dispatch, is
    overhead-bound."""
    frontier = 0.0
    steps = queue([t.overhead_s for t in timings], [t.kernel_s for t in timings])
    for t, (new_frontier, waited_for_host) in zip(timings, steps):
        t.latency_s = new_frontier - frontier
        frontier = new_frontier
        if waited_for_host and t.kernel_s < t.overhead_s:
            t.bound = "overhead"
    return frontier, sum(t.overhead_s for t in timings), sum(t.kernel_s for t in timings)


def simulate(timings: list[OpTiming], execution: str) -> tuple[float, float, float]:
    return run_async(timings) if execution == "async" else run_sequential(timings)


def assign_energy(timings: list[OpTiming], device: DeviceProfile, total_s: float) -> tuple[float | None, bool]:
    """Idle power over each op's latency plus its dynamic energy (joules): on a GPU (max - idle)
    power over its kernel's busy time, on a CPU (or from a measured fit) energy per FLOP and per
    DRAM byte (DeviceProfile.energy_model says which and why).

    The sum is capped at max power x latency: a profile's energy-per-FLOP figure is a full-load
    average, and no device draws more than its maximum power. None when the profile has no power
    figures (a calibrated profile without a sensor or a datasheet base)."""
    model = device.energy_model
    if model is None:
        return None, False
    for t in timings:
        if model == "busy":
            dynamic = (device.power_max_w - device.power_idle_w) * t.kernel_s
        else:
            dynamic = (t.cost.flops * device.pj_per_flop + t.cost.memory_traffic_bytes * device.pj_per_byte) * 1e-12
        t.energy_j = dynamic + device.power_idle_w * t.latency_s
    total = sum(t.energy_j for t in timings)
    cap = device.power_max_w * total_s
    if total > cap > 0:
        for t in timings:
            t.energy_j *= cap / total
        return cap, True
    return total, False


# ------------------------------------------------------------------ per layer


def _layer(row, timings: list[OpTiming], total_ms: float) -> LayerPrediction:
    latency_s = sum(t.latency_s for t in timings)
    parts = {
        "compute": sum(t.latency_s for t in timings if t.bound == "compute"),
        "memory": sum(t.latency_s for t in timings if t.bound == "memory"),
        "overhead": sum(t.latency_s for t in timings if t.bound == "overhead"),
    }
    traffic = row.bytes_read + row.bytes_written
    return LayerPrediction(
        name=row.name, type=row.type, params=row.params, macs=row.macs, flops=row.flops,
        bytes_read=row.bytes_read, bytes_written=row.bytes_written, activation_bytes=row.activation_bytes,
        storage_bytes=row.storage_bytes, buffer_bytes=row.buffer_bytes,
        latency_ms=latency_s * 1e3,
        share_pct=100.0 * latency_s * 1e3 / total_ms if total_ms > 0 else 0.0,
        bound=max(parts, key=parts.get) if latency_s > 0 else "-",
        arithmetic_intensity=row.flops / traffic if traffic else 0.0,
        attained_gflops=row.flops / latency_s / 1e9 if latency_s > 0 else 0.0,
        energy_mj=sum(t.energy_j for t in timings) * 1e3 if timings and timings[0].energy_j is not None else 0.0,
        compute_ms=sum(t.compute_s for t in timings) * 1e3,
        memory_ms=sum(t.memory_s for t in timings) * 1e3,
        overhead_ms=sum(t.overhead_s for t in timings) * 1e3,
        ops=timings,
    )


def predict_analysis(analysis: Analysis, device: str | DeviceProfile) -> Prediction:
    """Predict latency and energy of an existing analysis on a device."""
    profile = load_device(device)
    timings = time_ops(analysis.ops, profile, analysis.dtype)
    add_framework_overhead(timings, analysis, profile)
    total_s, host_s, dev_s = simulate(timings, profile.execution)
    energy_j, capped = assign_energy(timings, profile, total_s)
    energy_mj = None if energy_j is None else energy_j * 1e3
    unknown_energy = energy_mj is None
    by_cost = {id(t.cost): t for t in timings}
    total_ms = total_s * 1e3
    layers = [_layer(r, [by_cost[id(c)] for c in r.ops if id(c) in by_cost], total_ms) for r in analysis.layers]
    if unknown_energy:
        for layer in layers:
            layer.energy_mj = None
    return Prediction(profile, analysis, layers, timings, total_ms, host_s * 1e3, dev_s * 1e3,
                      energy_mj, capped)


def predict(
    model: nn.Module,
    inputs: Example,
    device: str | DeviceProfile = "raspberry-pi-4",
    batch_size: int | None = None,
    dtype: str | None = None,
    model_name: str | None = None,
) -> Prediction:
    """Per-layer latency, share, bound, energy, and the model's latency, FPS and energy on a device.

    ``device``: a shipped profile name (``hwcost.devices()``), a profile YAML path, or a DeviceProfile.
    Other arguments as for ``hwcost.analyze``.
    """
    profile = load_device(device)  # fail on a bad device before tracing
    a = analyze(model, inputs, batch_size=batch_size, dtype=dtype, model_name=model_name)
    return predict_analysis(a, profile)
