"""A fixed speed probe: the same small network timed at calibration and again at validation.

A machine's speed is not constant (frequency governors, thermal limits, other tenants of a VM):
this project's 2-core VM ran the same resnet18 at 18 ms and 22 ms on one day. A prediction from a
calibrated profile is for the machine as it was when calibrated; timing the probe at both times
says how much of a validation error is the machine having changed rather than the model being
wrong. The probe mixes the op kinds a network spends its time in (dense and depthwise conv, norm,
activations, pooling, a linear layer), so it moves with compute, memory and dispatch speed alike.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn as nn

from ..measure import synchronizer, time_callable

PROBE_RUNS = 3        # medians of this many timing rounds, so one noisy round does not decide


def probe_network() -> tuple[nn.Module, torch.Tensor]:
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
    return net, torch.randn(1, 16, 56, 56, generator=g)


def probe_ms(backend: str = "cpu", allocator: str = "retain") -> float:
    """Median latency of the probe network here, in ms (about a second of timing on a CPU), under
    the allocator condition calibration and measurement use (with glibc's default malloc the same
    probe varies 2.3-3.2 ms from call to call here; retained, 2.32-2.38 ms)."""
    from ..allocator import apply

    apply(allocator)
    net, x = probe_network()
    net, x = net.to(backend), x.to(backend)
    sync = synchronizer(backend)
    rounds = []
    with torch.inference_mode():
        for _ in range(PROBE_RUNS):
            rounds.append(time_callable(lambda: net(x), warmup=5, repeats=40, sync=sync, max_seconds=1.0).median_s)
    return 1e3 * statistics.median(rounds)


def calibration_probe_ms(calibration: dict | None) -> float | None:
    """The probe time a calibrated profile recorded (mean of the start and end of its run)."""
    p = (calibration or {}).get("probe") or {}
    times = [p[k] for k in ("start_ms", "end_ms") if p.get(k)]
    return sum(times) / len(times) if times else None


def change_during_calibration(calibration: dict | None) -> float | None:
    """end / start of the probe over the calibration run (None: not recorded)."""
    p = (calibration or {}).get("probe") or {}
    return p["end_ms"] / p["start_ms"] if p.get("start_ms") and p.get("end_ms") else None


def calibration_steadiness_note(calibration: dict | None, tolerance: float = 0.10) -> str | None:
    """A warning when the machine's speed changed by more than ``tolerance`` while it was calibrated."""
    d = change_during_calibration(calibration)
    if d is None or abs(d - 1) <= tolerance:
        return None
    p = calibration["probe"]
    return (f"warning: the speed probe ran {p['start_ms']:.2f} ms at the start of this calibration and "
            f"{p['end_ms']:.2f} ms at its end ({100 * (d - 1):+.0f}%): the machine's speed changed while it was "
            "measured, and predictions carry that uncertainty (a quiet machine, or --threads 1 on a shared VM, "
            "calibrates steadier)")


def drift_line(calibration: dict | None, now_ms: float) -> str | None:
    """What a validation should say about the machine's speed since calibration (None: no record)."""
    then = calibration_probe_ms(calibration)
    if then is None:
        return None
    r = now_ms / then
    d = change_during_calibration(calibration)
    during = f"; it already changed {100 * (d - 1):+.0f}% during the calibration" if d and abs(d - 1) > 0.05 else ""
    verdict = ("about as fast as when calibrated" if abs(r - 1) <= 0.05 else
               f"{abs(100 * (r - 1)):.0f}% {'slower' if r > 1 else 'faster'} than when calibrated: errors of that "
               "size are the machine, not the model")
    return f"speed probe: {now_ms:.2f} ms now vs {then:.2f} ms at calibration (x{r:.2f}); this machine runs {verdict}{during}"
