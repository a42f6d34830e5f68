"""hwcost.measure: real latency of a model on this machine (CPU or CUDA), optionally timed call by call
against a reference network (drift-adjusted), and per-layer durations. Timing rules: hwcost.timing."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from . import report
from .errors import InputError
from .host import OTHER_LOAD_LIMIT, OtherLoad
from .inputs import real_inputs
from .probe import Reference
from .timing import (UNSTEADY_SPREAD, PairedStats, TimingStats, fixed_threads, subnormals_flushed, synchronizer,
                     time_callable, time_interleaved)

# ------------------------------------------------------------------ measuring a model

# Untimed calls before each timed one when a model is timed against a reference. The model: one. The
# reference: three. Its time at calibration was read in blocks beside a 1.3 MB workload (steady state);
# right after a model, a second call of the 4 ms batch-1 probe still read a median 5% slower than a fourth
# (12 pairs over six models, 1 thread: after an LSTM or a GRU 5-8%, after BERT 8-9%), and the batch-8 probe
# read the same either way. One untimed call left every model timed against the batch-1 probe
# drift-adjusted that much too fast (docs/accuracy.md, twentieth session). A short model is likewise slow
# for more than one call after the probe's four: the 1.3 ms keyword spotter's second call read 8-12% above
# its fourth and above its time back to back, MobileNetV3-small's (5 ms) 0-10%, a 10 ms encoder's 0-6%,
# ResNet-18's (33 ms) none (1 thread, two rounds each, twenty-first session). So the model gets untimed
# calls lasting at least MODEL_WARMUP_S, at least one and at most MODEL_WARMUP_MAX_PER_PAIR.
MODEL_WARMUP_PER_PAIR = 1
MODEL_WARMUP_MAX_PER_PAIR = 3
MODEL_WARMUP_S = 0.02
REFERENCE_WARMUP_PER_PAIR = 3

# A paired measurement whose model / reference ratio varied more than this between its p10 and p90 calls did
# not see both under the same conditions: the machine slowed one more than the other (a slow phase that hits
# hundreds of tiny serial kernels harder than the probe's convolutions). It is timed again, up to
# PAIRED_ATTEMPTS in all, and the steadiest attempt kept: chosen by the ratio's spread, never by its value.
# On an AMD EPYC guest (twenty-fourth session) the keyword spotter at batch 1, 1 thread, read x1.91 and 2.83 ms
# drift-adjusted in bench_accuracy, then 1.65 ms alone and against the probe twenty minutes later; of 104
# such rows the 4 with a spread above 1.5 erred by 6-36% (median 18%), the other 100 by a median of 5.4%.
UNSTEADY_RATIO_SPREAD = 1.5
PAIRED_ATTEMPTS = 3


LOAD_WINDOW_S = 0.25   # other processes' load is read over at least this long, however short the timing


def ratio_held(spread: float) -> bool:
    """Did a model / reference ratio with this p90 / p10 spread hold while it was timed?"""
    return spread <= UNSTEADY_RATIO_SPREAD


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
    reference_ms: float | None = None        # the reference network's median, timed interleaved with the model
    reference_then_ms: float | None = None   # its time when the profile was calibrated
    ratio_median: float | None = None        # median of model / reference, call by call
    ratio_spread: float | None = None
    reference_name: str | None = None        # which reference ("probe b1", "probe b8": hwcost.probe.Reference)
    paired_attempts: int = 0                 # paired timings made (more than one: the first were unsteady)
    other_cpu_share: float = 0.0             # CPU time other processes took while it was timed (share of the machine)

    @property
    def drift_adjusted_ms(self) -> float | None:
        """The latency the machine would have shown at its speed when calibrated: the model's time per
        reference time, call by call, times the reference's time then. Nothing is fitted to results."""
        if self.ratio_median is None or not self.reference_then_ms:
            return None
        return self.ratio_median * self.reference_then_ms

    @property
    def machine_factor(self) -> float | None:
        """Reference time now / at calibration: above 1, this machine runs slower than it did then."""
        if not self.reference_ms or not self.reference_then_ms:
            return None
        return self.reference_ms / self.reference_then_ms

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

    @property
    def pairing_steady(self) -> bool:
        """Did the model / reference ratio hold (True without a reference): if not, after every pairing
        measure made, the drift-adjusted latency is no steadier than the raw one."""
        return self.ratio_spread is None or ratio_held(self.ratio_spread)

    def steadiness_note(self) -> str | None:
        notes = []
        if self.other_cpu_share > OTHER_LOAD_LIMIT:
            # threads that wait for a core held by another process: 2 threads beside a 2-thread test run timed
            # MobileNetV3-Small at 470 ms here, 5 ms alone
            notes.append(f"warning: other processes used {self.other_cpu_share:.0%} of this machine's CPU while it "
                         "was timed: the latency is theirs as much as the model's; time it on a quiet machine")
        if not self.steady:
            hint = " (pinning one thread, --threads 1, often steadies a shared VM)" if self.threads > 1 else ""
            notes.append(f"warning: runs varied x{self.spread:.2f} between p10 and p90: this machine's speed was not "
                         "steady (other load, a shared VM, frequency scaling); the median is not reproducible to better "
                         f"than that{hint}")
        return "\n".join(notes) or None

    def table(self) -> str:
        return report.measurement_table(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "backend": self.backend, "batch_size": self.batch_size,
            "dtype": self.dtype, "threads": self.threads, "latency_ms": self.latency_ms,
            "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "spread": self.spread, "fps": self.fps, "samples_ms": self.samples_ms,
            "energy_mj": self.energy_mj, "energy_source": self.energy_source, "allocator": self.allocator,
            "reference": self.reference_name, "reference_ms": self.reference_ms,
            "reference_then_ms": self.reference_then_ms, "ratio_median": self.ratio_median, "drift_adjusted_ms": self.drift_adjusted_ms,
            "ratio_spread": self.ratio_spread, "paired_attempts": self.paired_attempts,
            "other_cpu_share": self.other_cpu_share,
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
    reference: Reference | tuple[nn.Module, torch.Tensor] | None = None,
    reference_then_ms: float | None = None,
    flush_subnormals: bool = True,
) -> Measurement:
    """Time ``model`` for real: median latency with p10/p90, FPS, optional per-layer durations.

    The model must hold real weights (not meta). It is run in eval mode under inference_mode on a
    copy moved to ``backend`` when it is not already there; the caller's model is left as it was.
    ``allocator``: ``retain`` (default, as calibration) keeps freed host memory in the process so
    runs do not pay page faults for re-mapped activations; ``system`` leaves malloc as it is (see
    hwcost.allocator; held for this call only, the freed memory given back after it, unless the caller
    retained it already).
    ``reference``: a fixed (network, input) timed call by call between the model's calls, or a
    hwcost.probe.Reference (the probe that calibration read; hwcost.probe.matching_reference picks the one
    nearest a model); each timed call of either follows untimed ones of the same network
    (MODEL_WARMUP_*, REFERENCE_WARMUP_PER_PAIR), so both are timed warm, as a prediction and the
    probe's calibration time are; a pairing whose ratio varied more than UNSTEADY_RATIO_SPREAD is timed again
    (PAIRED_ATTEMPTS in all) and the steadiest kept; with ``reference_then_ms`` (a
    Reference carries it), its time when the profile was calibrated, the result carries the
    drift-adjusted latency beside the raw one.
    ``flush_subnormals`` (default on): subnormal floats are taken as zeros while timing, as an untrained
    network's activations can decay into them and x86 cores run them several times slower; a trained
    one's do not (hwcost.timing.subnormals_flushed).
    """
    from . import allocator as alloc
    from .conventions import dtype_name, parse_dtype
    from .meters import EnergyMeter

    check_backend(backend)
    ref_name = None
    if isinstance(reference, Reference):
        ref_name = reference.label
        reference_then_ms = reference_then_ms if reference_then_ms is not None else reference.then_ms
        reference = (reference.network, reference.example)
    dt = parse_dtype(dtype)
    if not dt.is_floating_point:
        raise InputError("measure runs floating-point models; int8 needs a quantized model (torch.ao.quantization)")
    if any(p.is_meta for p in model.parameters()):
        raise InputError("this model has meta (weightless) parameters; build it with real weights to measure it")
    run_model = _prepared(model, backend, dt)
    args, kwargs = real_inputs(inputs, batch_size, dt, backend)
    sync = synchronizer(backend)
    meter = EnergyMeter.detect(backend)
    with alloc.held(allocator) as allocator_mode, fixed_threads(threads) as n_threads, \
            subnormals_flushed(flush_subnormals), torch.inference_mode(), OtherLoad(LOAD_WINDOW_S) as load:
        call = lambda: run_model(*args, **kwargs)  # noqa: E731
        paired, attempts = None, 0
        if reference is not None:
            ref_net, ref_x = reference
            ref_net, ref_x = ref_net.to(backend).eval(), ref_x.to(backend)

            def timed_pair() -> tuple[PairedStats, float | None]:
                before = meter.read_j() if meter else None
                pair = time_interleaved(call, lambda: ref_net(ref_x), warmup, repeats, sync, max_seconds=max_seconds,
                                        model_warmup=MODEL_WARMUP_PER_PAIR, model_warmup_s=MODEL_WARMUP_S,
                                        model_warmup_max=MODEL_WARMUP_MAX_PER_PAIR,
                                        reference_warmup=REFERENCE_WARMUP_PER_PAIR)
                return pair, _energy_mj(meter, before, pair.model, pair.reference)

            (paired, energy_mj), attempts = steadiest_pair(timed_pair)
            stats = paired.model
        else:
            energy_before = meter.read_j() if meter else None
            stats = time_callable(call, warmup, repeats, sync, max_seconds=max_seconds)
            energy_mj = _energy_mj(meter, energy_before, stats)
        layers = _per_layer(run_model, args, kwargs, sync, stats.median_s) if per_layer else []
    batch = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) and args[0].ndim else (batch_size or 1)
    return Measurement(
        model_name=model_name or type(model).__name__, backend=backend, batch_size=batch,
        dtype=dtype_name(dt), threads=n_threads, latency_ms=stats.median_ms, p10_ms=stats.p10_s * 1e3,
        p90_ms=stats.p90_s * 1e3, samples_ms=[s * 1e3 for s in stats.samples_s], layers=layers,
        energy_mj=energy_mj, energy_source=meter.name if meter else None, allocator=allocator_mode,
        reference_ms=paired.reference.median_ms if paired else None, reference_then_ms=reference_then_ms,
        ratio_median=paired.ratio_median if paired else None, ratio_spread=paired.ratio_spread if paired else None,
        reference_name=ref_name if paired else None, paired_attempts=attempts, other_cpu_share=load.share,
    )


def steadiest_pair(timed_pair: Callable[[], tuple[PairedStats, Any]],
                   attempts: int = PAIRED_ATTEMPTS) -> tuple[tuple[PairedStats, Any], int]:
    """``timed_pair()`` until its ratio holds (``ratio_held``), at most ``attempts``
    times; the attempt with the smallest spread (with what else ``timed_pair`` returned) and the number made."""
    best = None
    for made in range(1, attempts + 1):
        got = timed_pair()
        if best is None or got[0].ratio_spread < best[0].ratio_spread:
            best = got
        if ratio_held(best[0].ratio_spread):
            break
    return best, made


def _energy_mj(meter, before_j: float | None, model: TimingStats, reference: TimingStats | None = None) -> float | None:
    if meter is None or before_j is None:
        return None
    after = meter.read_j()
    return None if after is None else per_call_energy_j(after - before_j, model, reference) * 1e3


def per_call_energy_j(energy_j: float, model: TimingStats, reference: TimingStats | None = None) -> float:
    """The model's energy per call from a meter read around all of a measurement's calls: every call made,
    warm-up and untimed ones included (``calls``), and, when a reference network ran in between, only the
    model's share of the busy time (each side's calls x its median). Counting only the timed calls charged
    the model its warm-up too: 23 calls' energy over 20 unpaired, and about 10% more paired."""
    calls = model.calls or len(model.samples_s) + model.rejected
    model_s = calls * model.median_s
    busy_s = model_s + (reference.calls * reference.median_s if reference is not None else 0.0)
    return energy_j * (model_s / busy_s if busy_s > 0 else 1.0) / calls


def _prepared(model: nn.Module, backend: str, dtype: torch.dtype) -> nn.Module:
    import copy

    p = next(model.parameters(), None)
    same = p is None or (p.device.type == backend and p.dtype == dtype)
    m = model if same and not model.training else copy.deepcopy(model)
    if not same:
        m = m.to(device=backend, dtype=dtype)
    return m.eval()


def _per_layer(model: nn.Module, args: tuple, kwargs: dict, sync: Callable[[], None], total_s: float,
               runs: int = 5, warmup: int = 2) -> list[MeasuredLayer]:
    """Leaf-module durations from pre/post forward hooks: after warm-up runs with the hooks in place, the
    median per layer over ``runs`` runs. Shares are of the same hooked runs' total, so a machine whose
    speed swings between this and the plain timing (a shared VM, other load) cannot push them past 100%."""
    leaves = [(n, m) for n, m in model.named_modules() if next(iter(m.children()), None) is None and n]
    current: dict[str, float] = {n: 0.0 for n, _ in leaves}
    calls: dict[str, int] = {n: 0 for n, _ in leaves}
    starts: dict[int, float] = {}
    handles = []
    for name, mod in leaves:
        def pre(m, a, _id=id(mod)):
            sync()
            starts[_id] = time.perf_counter()

        def post(m, a, o, _id=id(mod), _name=name):
            sync()
            current[_name] += time.perf_counter() - starts.pop(_id, time.perf_counter())
            calls[_name] += 1

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    per_run: dict[str, list[float]] = {n: [] for n, _ in leaves}
    totals: list[float] = []
    try:
        for i in range(warmup + runs):
            for n in current:
                current[n] = 0.0
            t0 = time.perf_counter()
            model(*args, **kwargs)
            sync()
            if i >= warmup:
                totals.append(time.perf_counter() - t0)
                for n, t in current.items():
                    per_run[n].append(t)
    finally:
        for h in handles:
            h.remove()
    types = {n: type(m).__name__ for n, m in leaves}
    out = []
    for name, ts in per_run.items():
        if calls[name] == 0:
            continue
        # each run's share of that same run (the machine's speed cancels), then the median over runs;
        # the time column is that share of the plain runs' median
        share = sorted(t / total for t, total in zip(ts, totals))[len(ts) // 2] if all(totals) else 0.0
        out.append(MeasuredLayer(name, types[name], share * total_s * 1e3, 100 * share,
                                 calls[name] // (warmup + runs)))
    return out
