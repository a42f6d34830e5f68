"""The execution model: how per-op times add up to a model's latency on a device.

Sequential (eager PyTorch on a CPU): every op pays the host's dispatch, then runs; ops run one after
another. Async (GPU): the host enqueues each op (host_per_op) while the device runs the previous
kernels; a kernel starts when the host has issued it and the previous kernel is done, and takes its
roofline (or calibrated) time plus a fixed per-kernel cost; the end-to-end time is when both are done.
Async with blocking launches (a profile's `launch: blocking`, integrated Tegra GPUs): the host issues
the next op only once the previous kernel is done, so host and device times add up per op.
One simulation serves hwcost.predict and the search's latency table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from .analysis import Analysis, OpCounts
from .devices import DeviceProfile, require_rate
from .records import OpCost
from .roofline import op_dtype, roofline_times, runs_per_group, startup_s
from .timemodel import calibrated_times


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
    extrapolated: bool = False  # outside what calibration sampled: held within physical bounds


def time_ops(costs: list[OpCost], device: DeviceProfile, dtype: str) -> list[OpTiming]:
    """Roofline and overhead of every op that does work (allocations launch nothing)."""
    # quantized products run at the int8 rate whatever the model's float dtype
    for d in [dtype, *sorted({op_dtype(c, dtype) for c in costs} - {dtype})]:
        require_rate(device, d)
    working = [c for c in costs if c.launches]
    calibrated, outside = calibrated_times(working, device, dtype) if device.calibration else (None, None)
    host_s = device.host_per_op_us * 1e-6
    timings = []
    for i, c in enumerate(working):
        compute_s, memory_s = roofline_times(c, device, dtype)
        bound = "compute" if compute_s >= memory_s else "memory"
        if calibrated is not None and device.execution == "sequential":
            # a measured op call includes its dispatch: split it back out for the overhead bound
            overhead = min(host_s, calibrated[i])
            timings.append(OpTiming(c, compute_s, memory_s, overhead, calibrated[i] - overhead, bound=bound,
                                    extrapolated=outside[i]))
            continue
        if calibrated is not None:
            kernel = calibrated[i]
        else:
            startup = startup_s(c, device, dtype)
            kernel = max(compute_s, memory_s) + startup
            if runs_per_group(c, device, dtype) and startup > max(compute_s, memory_s):
                bound = "overhead"   # the per-group loop is host work, not the convolution's arithmetic
            if device.execution == "async":
                kernel += device.device_per_op_us * 1e-6
        timings.append(OpTiming(c, compute_s, memory_s, host_s, kernel, bound=bound,
                                extrapolated=bool(outside and outside[i])))
    return timings


def add_framework_overhead(timings: list[OpTiming], analysis: Analysis | OpCounts, device: DeviceProfile) -> None:
    """Host time of module calls and view ops (measured by calibration), spread over the ops.

    Views move no bytes and container modules launch no kernel, but each costs a Python dispatch;
    spreading the total evenly keeps a CPU's sum exact and lets the GPU queue see it as host time."""
    extra_s = (analysis.module_calls * device.module_call_us + analysis.view_ops * device.view_us
               + transformers_python_us(analysis, device)) * 1e-6
    if timings and extra_s:
        share = extra_s / len(timings)
        for t in timings:
            t.overhead_s += share


def transformers_python_us(analysis: Analysis | OpCounts, device: DeviceProfile) -> float:
    """transformers' own Python per forward and per module call. Between two runs of a module's code
    the ops move data through the host's caches; once that exceeds the private cache the interpreter
    finds its code and objects evicted and runs them cold (the profile's main figures, timed so). In
    between, a share bytes / private cache of the way from the _cached figures (timed back to back) to
    those: after a read of 0.25 / 1 / 2 / 4 MB the 1-layer probe's forward paid 12 / 43 / 81 / 100% of its
    eviction cost (1 thread, 2 MB L2 here). Without _cached figures or a known private cache: all cold."""
    if not analysis.transformers_calls:
        return 0.0
    per_call, per_forward = device.transformers_call_us, device.transformers_forward_us
    private = ((device.calibration or {}).get("context") or {}).get("cache_bytes") or 0.0
    reuse = analysis.transformers_reuse_bytes
    if device.transformers_call_cached_us is None or private <= 0 or len(reuse) != analysis.transformers_calls:
        return analysis.transformers_calls * per_call + analysis.transformers_forwards * per_forward
    cached_call, cached_forward = device.transformers_call_cached_us, device.transformers_forward_cached_us or 0.0

    def share(nbytes: float) -> float:
        return min(1.0, nbytes / private)

    pass_bytes = sum(c.memory_traffic_bytes for c in analysis.ops)
    calls_us = sum(cached_call + share(b) * (per_call - cached_call) for b in reuse)
    return calls_us + analysis.transformers_forwards * (cached_forward + share(pass_bytes) * (per_forward - cached_forward))


def run_sequential(timings: list[OpTiming]) -> tuple[float, float, float]:
    """CPU eager: each op dispatches, then runs. Returns (total, host, device) seconds."""
    for t in timings:
        t.latency_s = t.overhead_s + t.kernel_s
        if t.overhead_s > t.kernel_s:
            t.bound = "overhead"
    host = sum(t.overhead_s for t in timings)
    dev = sum(t.kernel_s for t in timings)
    return host + dev, host, dev


def queue(host_s: Iterable[float], kernel_s: Iterable[float],
          blocking: bool = False) -> Iterator[tuple[float, bool]]:
    """GPU eager: the host enqueues op i at host_i; kernel i starts at max(host_i, end of kernel i-1).
    With blocking launches the host's clock waits for each kernel before it issues the next op.

    Yields, after each op, the finishing time so far, max(host clock, device clock), and whether
    that op's kernel had to wait for the host."""
    host = dev = 0.0
    for h, k in zip(host_s, kernel_s):
        host += h
        waited_for_host = host > dev
        dev = max(host, dev) + k
        if blocking:
            host = dev
        yield max(host, dev), waited_for_host


def run_async(timings: list[OpTiming], blocking: bool = False) -> tuple[float, float, float]:
    """Each op's latency is how far it moved the finishing time, so the per-op latencies sum to the
    end-to-end time. An op that waited for the host, with a kernel shorter than its dispatch, is
    overhead-bound."""
    frontier = 0.0
    steps = queue([t.overhead_s for t in timings], [t.kernel_s for t in timings], blocking)
    for t, (new_frontier, waited_for_host) in zip(timings, steps):
        t.latency_s = new_frontier - frontier
        frontier = new_frontier
        if waited_for_host and t.kernel_s < t.overhead_s:
            t.bound = "overhead"
    return frontier, sum(t.overhead_s for t in timings), sum(t.kernel_s for t in timings)


def simulate(timings: list[OpTiming], device: DeviceProfile) -> tuple[float, float, float]:
    if device.execution == "async":
        return run_async(timings, device.launch_blocking)
    return run_sequential(timings)


def replay_s(host_s: list[float], kernel_s: list[float], execution: str, blocking: bool = False) -> float:
    """End-to-end seconds of ops given only their host and kernel times (the search's latency table
    replays blocks' ops this way, through the same queue as predict)."""
    if execution != "async":
        return sum(host_s) + sum(kernel_s)
    end = 0.0
    for end, _ in queue(host_s, kernel_s, blocking):
        pass
    return end
