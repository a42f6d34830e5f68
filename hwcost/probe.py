"""A fixed speed probe: the same small network timed at calibration and again at validation.

A machine's speed is not constant (frequency governors, thermal limits, other tenants of a VM):
this project's 2-core VM ran the same resnet18 at 18 ms and 22 ms on one day. A prediction from a
calibrated profile is for the machine as it was when calibrated; timing the probe at both times
says how much of a validation error is the machine having changed rather than the model being
wrong. The probe mixes the op kinds a network spends its time in (dense and depthwise conv, norm,
activations, pooling, a linear layer), so it moves with compute, memory and dispatch speed alike.

The single-resource readings beside it (cache sizes by sweep, compute and bandwidth now) live in
hwcost.resources.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .devices import RESOURCES, calibration_rates
from .timing import synchronizer, time_callable

PROBE_RUNS = 3        # medians of this many timing rounds, so one noisy round does not decide


# The probe at batch 1 (ops of ~0.1-1 ms: dispatch, thread wake-ups, cache-resident work) and at batch 8
# (ops of ~1-8 ms, compute-bound). On a shared VM they do not move together: at 2 threads here the batch-1
# probe slowed ~1.5x more than compute-bound networks did, and drift-adjusting those by it left them as
# unsteady as no adjustment at all, where the batch-8 probe halved their spread (docs/accuracy.md).
PROBE_BATCHES = (1, 8)


def probe_network(batch_size: int = 1) -> tuple[nn.Module, torch.Tensor]:
    """The fixed probe network and its input (``batch_size`` images of 16 x 56 x 56)."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(16, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.BatchNorm2d(64), nn.ReLU6(),
        nn.Conv2d(64, 96, 1), nn.BatchNorm2d(96), nn.Hardswish(),
        nn.MaxPool2d(2), nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 1000),
    ).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net, torch.randn(batch_size, 16, 56, 56, generator=g)


def probe_ms(backend: str = "cpu", allocator: str = "retain") -> float:
    """Median latency of the probe network here, in ms (about a second of timing on a CPU), under
    the allocator condition calibration and measurement use (with glibc's default malloc the same
    probe varies 2.3-3.2 ms from call to call here; retained, 2.32-2.38 ms)."""
    from .allocator import held

    net, x = probe_network()
    net, x = net.to(backend), x.to(backend)
    sync = synchronizer(backend)
    rounds = []
    with held(allocator), torch.inference_mode():
        for _ in range(PROBE_RUNS):
            rounds.append(time_callable(lambda: net(x), warmup=5, repeats=40, sync=sync, max_seconds=1.0).median_s)
    return 1e3 * statistics.median(rounds)


def rates_line(then: dict[str, float], now: dict[str, float], label: str = "now vs at calibration") -> str | None:
    """One line per resource of how much longer the same work takes now than then (x1.00 = unchanged,
    above 1 = slower: the direction of every ratio hwcost prints), None if none in common."""
    parts = [f"{RESOURCES[k]} x{then[k] / now[k]:.2f}" for k in RESOURCES if then.get(k) and now.get(k)]
    return f"resources {label} (time, >1 = slower): " + ", ".join(parts) if parts else None


def calibration_probe_ms(calibration: dict | None, batch_size: int = 1) -> float | None:
    """The probe time a calibrated profile stands for, on its samples' scale (the probe's ratio to the
    reference workload times that workload's median over the run: hwcost.calibration.samples.probe_during):
    read in a fresh process where the profile has that reading (``fresh_during_ms``), as every process a
    user times a model in starts, else read during the run (``during_ms``, or in older profiles the
    median of the probe readings taken between cases), else the mean of the readings at its start and end.
    The calibrating process ages: the probe's ratio to the reference crept up 5-7% over a run, the cases'
    ~3% (hwcost.calibration.fresh). ``batch_size`` 8: the batch-8 probe's, None where the
    profile did not read it (calibrated before it was, or on CUDA)."""
    on_scale = probe_on_scale_ms(calibration, batch_size)
    if on_scale or batch_size != 1:
        return on_scale
    p = (calibration or {}).get("probe") or {}
    times = [p[k] for k in ("start_ms", "end_ms") if p.get(k)]
    return sum(times) / len(times) if times else None


def probe_on_scale_ms(calibration: dict | None, batch_size: int = 1) -> float | None:
    """The CNN probe's time at ``batch_size`` on the samples' scale (calibration_probe_ms without its
    fallback to the start and end readings, which are not on that scale); None where not read."""
    return _on_scale_ms(calibration, "" if batch_size == 1 else f"b{batch_size}_")


def _on_scale_ms(calibration: dict | None, prefix: str) -> float | None:
    """A probe's time on the samples' scale as a profile records it (``prefix``: "" for the CNN probe at
    batch 1, "b8_", "decode_"): the fresh-process reading, else the in-run one, else None."""
    p = (calibration or {}).get("probe") or {}
    return p.get(f"{prefix}fresh_during_ms") or p.get(f"{prefix}during_ms")


@dataclass(frozen=True)
class Reference:
    """A probe to time a model against, call by call: the network, its input, and its time on the
    calibration's scale (calibration_probe_ms)."""

    network: nn.Module = field(repr=False)
    example: torch.Tensor = field(repr=False)
    then_ms: float
    batch_size: int

    @property
    def label(self) -> str:
        return f"probe b{self.batch_size}"


def kernel_scale_ms(prediction) -> float:
    """How long a predicted model's kernels run, in ms: each op's predicted time over the kernels it runs
    one after another (a fused RNN's steps x layers: hwcost.formulas.serial_steps), averaged weighted by
    that time. A shared machine's slowdowns hit short kernels (dispatch, thread wake-ups) and long
    compute-bound ones differently; this says which kind a model's time is spent in."""
    from .formulas import serial_steps

    total_s = sum(t.latency_s for t in prediction.ops)
    if total_s <= 0:
        return 0.0
    return 1e3 * sum(t.latency_s ** 2 / serial_steps(t.cost) for t in prediction.ops) / total_s


def probe_reference(calibration: dict | None, batch_size: int = 1) -> Reference | None:
    """The probe network at ``batch_size`` with its time on a calibration's scale; None where that
    calibration did not read it."""
    then_ms = calibration_probe_ms(calibration, batch_size)
    if not then_ms:
        return None
    net, x = probe_network(batch_size)
    return Reference(net, x, then_ms, batch_size)


def matching_reference(prediction) -> Reference | None:
    """The probe to drift-adjust a measurement of the ``prediction``'s model by: among the probe batches
    its profile read at calibration (PROBE_BATCHES), the one whose kernels run nearest the model's in
    duration (kernel_scale_ms, compared in log: the batch-8 probe's kernels run ~7x the batch-1 one's),
    both predicted on that profile. Decided from predictions, before anything is measured; None where the
    profile read no probe (a datasheet profile)."""
    from .predict import predict

    refs = [r for b in PROBE_BATCHES if (r := probe_reference(prediction.device.calibration, b))]
    if len(refs) < 2:
        return refs[0] if refs else None
    target = math.log(max(kernel_scale_ms(prediction), 1e-9))

    def distance(ref: Reference) -> float:
        probe = predict(ref.network, ref.example, device=prediction.device)
        return abs(math.log(max(kernel_scale_ms(probe), 1e-9)) - target)

    return min(refs, key=distance)


def calibration_decode_probe_ms(calibration: dict | None) -> float | None:
    """The decode probe's time (decode_probe_network) on the samples' scale, read in a fresh process where
    the profile has that reading, as calibration_probe_ms; None for profiles calibrated before it was read
    (or on CUDA)."""
    return _on_scale_ms(calibration, "decode_")


def quick_probe_ms(net: nn.Module, x: torch.Tensor, sync=lambda: None, calls: int = 5) -> float:
    """The probe network's median over a few calls (a few tens of ms): a reading cheap enough to take
    between calibration cases all through a run."""
    with torch.inference_mode():
        return 1e3 * time_callable(lambda: net(x), warmup=1, repeats=calls, sync=sync).median_s


def change_during_calibration(calibration: dict | None) -> float | None:
    """end / start of the probe over the calibration run (None: not recorded)."""
    p = (calibration or {}).get("probe") or {}
    return p["end_ms"] / p["start_ms"] if p.get("start_ms") and p.get("end_ms") else None


def calibration_steadiness_note(calibration: dict | None, tolerance: float = 0.10) -> str | None:
    """A warning when the machine's speed changed by more than ``tolerance`` while it was calibrated:
    the probe network's time, or any single resource's rate."""
    d = change_during_calibration(calibration)
    p = (calibration or {}).get("probe") or {}
    start, end = p.get("start") or {}, p.get("end") or {}
    moved = {k for k in RESOURCES if start.get(k) and end.get(k) and abs(end[k] / start[k] - 1) > tolerance}
    if (d is None or abs(d - 1) <= tolerance) and not moved:
        return None
    if d is not None:
        what = (f"the speed probe ran {p['start_ms']:.2f} ms at the start of this calibration and "
                f"{p['end_ms']:.2f} ms at its end ({100 * (d - 1):+.0f}%)")
    else:
        what = "a resource's rate changed over this calibration"
    if moved:
        what += f" ({rates_line(start, end, 'end vs start')})"
    return (f"warning: {what}: the machine's speed changed while it was measured, and predictions carry that "
            "uncertainty (a quiet machine, or --threads 1 on a shared VM, calibrates steadier)")


def drift_line(calibration: dict | None, now_ms: float, now_rates: dict[str, float] | None = None) -> str | None:
    """What a validation should say about the machine's speed since calibration (None: no record),
    with the single-resource readings where both the profile and ``now_rates`` have them."""
    then = calibration_probe_ms(calibration)
    if then is None:
        return None
    resources = rates_line(calibration_rates(calibration), now_rates or {})
    r = now_ms / then
    d = change_during_calibration(calibration)
    during = f"; it already changed {100 * (d - 1):+.0f}% during the calibration" if d and abs(d - 1) > 0.05 else ""
    verdict = ("about as fast as when calibrated" if abs(r - 1) <= 0.05 else
               f"{abs(100 * (r - 1)):.0f}% {'slower' if r > 1 else 'faster'} than when calibrated: errors of that "
               "size are the machine, not the model")
    line = f"speed probe: {now_ms:.2f} ms now vs {then:.2f} ms at calibration (x{r:.2f}); this machine runs {verdict}{during}"
    return line + (f"\n{resources}" if resources else "")
