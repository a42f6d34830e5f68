"""How well a calibrated profile predicts the speed probes its own calibration timed: the CNN probe at
batch 1 and 8 and the decode step, whose times on the samples' scale the profile records. Nothing is
measured here; a profile that misses its own probes will miss networks like them by about as much.

Why it is worth printing: the context model's terms trade off against one another over the chains it is
fitted on, and which one a pass leans on moves from one 300 s calibration to the next. Of two calibrations
of one machine (this project's 2-vCPU AMD guest, 1 thread), one predicted its decode probe at 0.99 of its
reading and the 15M-110M Llamas' decode within 11%; the next at 0.91, and two of the six figures 15-18%
fast (docs/accuracy.md, twenty-ninth session)."""
from __future__ import annotations

from dataclasses import dataclass

from ..devices import DeviceProfile
from ..predict import predict
from ..probe import PROBE_BATCHES, calibration_decode_probe_ms, calibration_probe_ms, probe_network
from .suite import decode_probe_network

# a probe predicted further off than this (either way) from its own reading is flagged
SELF_CHECK_TOLERANCE = 0.10


@dataclass(frozen=True)
class ProbeCheck:
    probe: str               # which probe ("CNN b1", "CNN b8", "decode step")
    predicted_ms: float      # the profile's prediction of it
    measured_ms: float       # its time on the calibration's scale (hwcost.probe.calibration_probe_ms)

    @property
    def ratio(self) -> float:
        return self.predicted_ms / self.measured_ms

    @property
    def off(self) -> bool:
        return abs(self.ratio - 1) > SELF_CHECK_TOLERANCE


def probe_self_check(profile: DeviceProfile) -> list[ProbeCheck]:
    """Each probe the profile's calibration read, predicted on the profile beside that reading; [] for a
    datasheet profile."""
    cal = profile.calibration or {}
    read = [(f"CNN b{b}", lambda b=b: probe_network(b), calibration_probe_ms(cal, b)) for b in PROBE_BATCHES]
    read.append(("decode step", decode_probe_network, calibration_decode_probe_ms(cal)))
    checks = []
    for name, build, measured_ms in read:
        if measured_ms:
            net, x = build()
            checks.append(ProbeCheck(name, predict(net, (x,), device=profile).latency_ms, measured_ms))
    return checks


def self_check_note(checks: list[ProbeCheck]) -> str | None:
    """One line for the user after calibrating: each probe's predicted / measured, and what to do when one
    lies past SELF_CHECK_TOLERANCE. None without probes."""
    if not checks:
        return None
    line = "self-check, its own probes predicted / measured: " + ", ".join(
        f"{c.probe} {c.ratio:.2f}x" for c in checks)
    off = [c.probe for c in checks if c.off]
    if not off:
        return line + f" (all within ±{SELF_CHECK_TOLERANCE:.0%})"
    return (line + f"; {', '.join(off)} off by more than {SELF_CHECK_TOLERANCE:.0%}: networks like "
            f"{'it' if len(off) == 1 else 'them'} will likely be predicted off by about as much. Calibrate again "
            "on a quiet machine, or with a longer --budget")
