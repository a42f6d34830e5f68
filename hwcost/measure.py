"""hwcost.measure: real latency of a model on this machine (CPU or CUDA), and per-layer durations.

Timing rules (shared with calibration): warm-up runs first, a fixed thread count, CUDA
synchronization around every timed region on GPUs, then the median of the repeats after dropping
outliers (beyond median + 4 scaled MADs: a preempted run, a page fault storm).
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from .errors import InputError
from . import report

OUTLIER_MADS = 4.0
UNSTEADY_SPREAD = 1.25   # p90 / p10 of the kept runs above which a measurement says the machine was not steady


@dataclass
class TimingStats:
    median_s: float
    p10_s: float
    p90_s: float
    samples_s: list[float]
    rejected: int = 0

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def reject_outliers(samples: list[float], mads: float = OUTLIER_MADS) -> tuple[list[float], int]:
    """Drop samples slower than median + mads x 1.4826 x MAD (one-sided: a run is never too fast)."""
    if len(samples) < 4:
        return list(samples), 0
    med = statistics.median(samples)
    mad = statistics.median(abs(s - med) for s in samples) * 1.4826
    if mad == 0:
        return list(samples), 0
    kept = [s for s in samples if s <= med + mads * mad]
    return kept, len(samples) - len(kept)


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples: list[float]) -> TimingStats:
    kept, rejected = reject_outliers(samples)
    return TimingStats(statistics.median(kept), _quantile(kept, 0.1), _quantile(kept, 0.9), kept, rejected)


def synchronizer(backend: str) -> Callable[[], None]:
    if backend == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_callable(
    fn: Callable[[], Any],
    warmup: int = 3,
    repeats: int = 10,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    max_seconds: float | None = None,
) -> TimingStats:
    """Warm up, then time ``repeats`` calls (fewer if ``max_seconds`` runs out, at least 3)."""
    for _ in range(warmup):
        fn()
    sync()
    samples: list[float] = []
    start = clock()
    for i in range(repeats):
        t0 = clock()
        fn()
        sync()
        samples.append(clock() - t0)
        if max_seconds is not None and i >= 2 and clock() - start > max_seconds:
            break
    return summarize(samples)


@contextmanager
def fixed_threads(threads: int | None):
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------------------------ model inputs


def real_inputs(example: Any, batch_size: int | None, dtype: torch.dtype, device: str) -> tuple[tuple, dict]:
    """Concrete tensors for a shape / example spec (see hwcost.inputs.real_inputs)."""
    from .inputs import real_inputs as _real

    return _real(example, batch_size, dtype, device)


# ------------------------------------------------------------------ measuring a model


@dataclass
class MeasuredLayer:
    name: str
    type: str
    latency_ms: float
    share_pct: float
    calls: int


@dataclass
class Measurement:
    model_name: str
    backend: str
    batch_size: int
    dtype: str
    threads: int
    latency_ms: float
    p10_ms: float
    p90_ms: float
    samples_ms: list[float]
    layers: list[MeasuredLayer] = field(default_factory=list)
    energy_mj: float | None = None
    energy_source: str | None = None
    allocator: str = "system"

    @property
    def fps(self) -> float:
        return 1000.0 * self.batch_size / self.latency_ms

    @property
    def spread(self) -> float:
        """p90 / p10 of the runs: near 1 on a quiet machine. A shared VM whose second vCPU is taken
        away in phases of seconds gives two modes (this project's 2-core VM: mobilenet_v2 runs
        12.4 ms and 19-20 ms in turns at 2 threads), and then no single statistic is reproducible."""
        return self.p90_ms / self.p10_ms if self.p10_ms > 0 else 1.0

    @property
    def steady(self) -> bool:
        return self.spread <= UNSTEADY_SPREAD

    def steadiness_note(self) -> str | None:
        if self.steady:
            return None
        hint = " (pinning one thread, --threads 1, often steadies a shared VM)" if self.threads > 1 else ""
        return (f"warning: runs varied x{self.spread:.2f} between p10 and p90: this machine's speed was not steady "
                f"(other load, a shared VM, frequency scaling); the median is not reproducible to better than that{hint}")

    def table(self) -> str:
        return report.measurement_table(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "backend": self.backend, "batch_size": self.batch_size,
            "dtype": self.dtype, "threads": self.threads, "latency_ms": self.latency_ms,
            "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "spread": self.spread, "fps": self.fps, "samples_ms": self.samples_ms,
            "energy_mj": self.energy_mj, "energy_source": self.energy_source, "allocator": self.allocator,
            "layers": [vars(r) for r in self.layers],
        }


def check_backend(backend: str) -> None:
    if backend not in ("cpu", "cuda"):
        raise InputError(f"unknown backend {backend!r}: use cpu or cuda")
    if backend == "cuda" and not torch.cuda.is_available():
        raise InputError("backend 'cuda' asked for, but torch.cuda.is_available() is False on this machine")


def measure(
    model: nn.Module,
    inputs: Any,
    backend: str = "cpu",
    batch_size: int | None = None,
    dtype: str | torch.dtype | None = None,
    warmup: int = 3,
    repeats: int = 20,
    per_layer: bool = False,
    threads: int | None = None,
    model_name: str | None = None,
    max_seconds: float = 30.0,
    allocator: str = "retain",
) -> Measurement:
    """Time ``model`` for real: median latency with p10/p90, FPS, optional per-layer durations.

    The model must hold real weights (not meta). It is run in eval mode under inference_mode on a
    copy moved to ``backend`` when it is not already there; the caller's model is left as it was.
    ``allocator``: ``retain`` (default, as calibration) keeps freed host memory in the process so
    runs do not pay page faults for re-mapped activations; ``system`` leaves malloc as it is (see
    hwcost.allocator; ``retain`` stays in force for the rest of the process).
    """
    from . import allocator as alloc
    from .conventions import dtype_name, parse_dtype
    from .meters import EnergyMeter

    check_backend(backend)
    allocator_mode = alloc.apply(allocator)
    dt = parse_dtype(dtype)
    if not dt.is_floating_point:
        raise InputError("measure runs floating-point models; int8 needs a quantized model (torch.ao.quantization)")
    if any(p.is_meta for p in model.parameters()):
        raise InputError("this model has meta (weightless) parameters; build it with real weights to measure it")
    run_model = _prepared(model, backend, dt)
    args, kwargs = real_inputs(inputs, batch_size, dt, backend)
    sync = synchronizer(backend)
    meter = EnergyMeter.detect(backend)
    with fixed_threads(threads) as n_threads, torch.inference_mode():
        call = lambda: run_model(*args, **kwargs)  # noqa: E731
        energy_before = meter.read_j() if meter else None
        stats = time_callable(call, warmup, repeats, sync, max_seconds=max_seconds)
        energy_mj = None
        if meter and energy_before is not None:
            after = meter.read_j()
            if after is not None:
                runs = len(stats.samples_s) + stats.rejected
                energy_mj = (after - energy_before) / runs * 1e3
        layers = _per_layer(run_model, args, kwargs, sync, stats.median_s) if per_layer else []
    batch = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) and args[0].ndim else (batch_size or 1)
    return Measurement(
        model_name=model_name or type(model).__name__, backend=backend, batch_size=batch,
        dtype=dtype_name(dt), threads=n_threads, latency_ms=stats.median_ms, p10_ms=stats.p10_s * 1e3,
        p90_ms=stats.p90_s * 1e3, samples_ms=[s * 1e3 for s in stats.samples_s], layers=layers,
        energy_mj=energy_mj, energy_source=meter.name if meter else None, allocator=allocator_mode,
    )


def _prepared(model: nn.Module, backend: str, dtype: torch.dtype) -> nn.Module:
    import copy

    p = next(model.parameters(), None)
    same = p is None or (p.device.type == backend and p.dtype == dtype)
    m = model if same and not model.training else copy.deepcopy(model)
    if not same:
        m = m.to(device=backend, dtype=dtype)
    return m.eval()


def _per_layer(model: nn.Module, args: tuple, kwargs: dict, sync: Callable[[], None], total_s: float,
               runs: int = 5) -> list[MeasuredLayer]:
    """Leaf-module durations from pre/post forward hooks (median over runs), seed 001's duration %."""
    leaves = [(n, m) for n, m in model.named_modules() if next(iter(m.children()), None) is None and n]
    acc: dict[str, list[float]] = {n: [] for n, _ in leaves}
    calls: dict[str, int] = {n: 0 for n, _ in leaves}
    starts: dict[int, float] = {}
    handles = []
    for name, mod in leaves:
        def pre(m, a, _id=id(mod)):
            sync()
            starts[_id] = time.perf_counter()

        def post(m, a, o, _id=id(mod), _name=name):
            sync()
            acc[_name].append(time.perf_counter() - starts.pop(_id, time.perf_counter()))
            calls[_name] += 1

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        for _ in range(runs):
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    types = dict((n, type(m).__name__) for n, m in leaves)
    out = []
    for name, ts in acc.items():
        if not ts:
            continue
        per_run = sum(ts) / runs
        out.append(MeasuredLayer(name, types[name], per_run * 1e3, 100 * per_run / total_s, calls[name] // runs))
    return out
