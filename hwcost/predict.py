"""hwcost.predict: per-layer and total latency, share, bound and energy of an analysis on a device:
the records a user gets, and the roll-up of op timings (roofline.py, timemodel.py) through the execution
model (execution.py) and the energy model (energy.py) into layers and totals."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from . import report
from .analysis import Analysis, analyze
from .devices import DeviceProfile, MemoryFit, load_device, memory_fit
from .energy import assign_energy
from .execution import OpTiming, add_framework_overhead, simulate, time_ops
from .features import shape_features
from .formulas import CONV_FAMILIES
from .inputs import Example
from .records import LayerCost
from .roofline import runs_per_group


@dataclass(slots=True)
class LayerPrediction(LayerCost):
    """A row of the analysis (LayerCost: its counts and its ops' costs) with its predicted time."""

    latency_ms: float = 0.0
    share_pct: float = 0.0
    bound: str = "-"                  # compute | memory | overhead
    arithmetic_intensity: float = 0.0  # FLOPs per byte of memory traffic
    attained_gflops: float = 0.0
    energy_mj: float | None = None
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    overhead_ms: float = 0.0
    extrapolated: bool = False        # an op of it lies outside what calibration sampled
    timings: list[OpTiming] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = LayerCost.as_dict(self)
        d.update({k: getattr(self, k) for k in (
            "latency_ms", "share_pct", "bound", "arithmetic_intensity", "attained_gflops", "energy_mj",
            "compute_ms", "memory_ms", "overhead_ms", "extrapolated")})
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
        if (w := self.memory.warning(self.device.name)) is not None:
            out.append(w)
        outside = [t for t in self.ops if t.extrapolated]
        if outside:
            layers = [r.name for r in self.layers if r.extrapolated]
            named = ", ".join(layers[:5]) + (f" and {len(layers) - 5} more" if len(layers) > 5 else "")
            # a longer budget samples more sizes, never a 1-D convolution (the suite draws 2-D and 3-D ones);
            # 1-D as the range check reads it (TimeModel.extrapolated: the spatial_dims shape feature)
            one_d = sum(t.cost.family in CONV_FAMILIES and shape_features(t.cost).get("spatial_dims") == 1.0
                        for t in outside)
            advice = (f"{one_d} of them 1-D convolutions, which calibration does not draw; read their times as bounds"
                      if one_d else "calibrate with a longer budget, or read them as bounds")
            out.append(f"{len(outside)} of {len(self.ops)} ops lie outside what calibration sampled (layers {named}): "
                       f"their times are held between the most and least efficient its family measured; {advice}")
        if (w := self.analysis.value_dependence()) is not None:
            out.append(w)
        if (w := self._per_group_warning()) is not None:
            out.append(w)
        heavy = self.analysis.uncounted_heavy_ops()
        if heavy:
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(heavy.items()))
            out.append(f"ops without a formula may carry real work ({ops}): their arithmetic is not in this "
                       "latency; register a formula for them (hwcost.register_formula)")
        return out

    def _per_group_warning(self) -> str | None:
        """A profile of PyTorch without oneDNN runs grouped convolutions one group at a time: where that is
        a tenth of the time or more, the number holds for such a build only (one with oneDNN takes another
        path)."""
        looped = [t for t in self.ops if runs_per_group(t.cost, self.device, self.analysis.dtype)]
        looped_ms = sum(t.latency_s for t in looped) * 1e3
        if not looped or looped_ms < 0.1 * self.latency_ms:
            return None
        return (f"{len(looped)} grouped convolutions take {looped_ms:.1f} of the {self.latency_ms:.1f} ms: "
                f"{self.device.name} describes PyTorch without oneDNN, which runs them one group at a time; where "
                "torch.backends.mkldnn.is_available() is True on the device, predict with a copy of the profile "
                "that says grouped_conv: native")

    @property
    def memory(self) -> MemoryFit:
        """Weights and buffers, the inputs, and the peak of live activations, against the device."""
        t = self.analysis.total
        return memory_fit(self.device, {"weights": t.storage_bytes + t.buffer_bytes, "inputs": t.input_bytes,
                                        "activations": t.peak_activation_bytes})

    def bound_shares(self) -> dict[str, float]:
        shares = {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
        for t in self.ops:
            shares[t.bound] += t.latency_s
        total = sum(shares.values()) or 1.0
        return {k: 100 * v / total for k, v in shares.items()}

    def table(self, depth: int | None = None) -> str:
        return report.prediction_table(self, depth)

    def summary(self) -> str:
        return report.prediction_summary(self)

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
            "memory_needed_bytes": self.memory.needed_bytes,
            "memory_usable_bytes": self.memory.usable_bytes,
            "fits": self.memory.fits,
            "layers": [r.as_dict() for r in self.layers],
            "total": self.analysis.total.as_dict(),
        }

    def to_json(self, path: str | None = None) -> str:
        return report.save_text(report.to_json_text(self.to_dict()), path)


# ------------------------------------------------------------------ per layer


def _layer(row: LayerCost, timings: list[OpTiming], total_ms: float) -> LayerPrediction:
    latency_s = sum(t.latency_s for t in timings)
    parts = {b: sum(t.latency_s for t in timings if t.bound == b) for b in ("compute", "memory", "overhead")}
    traffic = row.bytes_read + row.bytes_written
    counts = {f: getattr(row, f) for f in LayerCost.__slots__}
    return LayerPrediction(
        **counts,
        latency_ms=latency_s * 1e3,
        share_pct=100.0 * latency_s * 1e3 / total_ms if total_ms > 0 else 0.0,
        bound=max(parts, key=parts.get) if latency_s > 0 else "-",
        arithmetic_intensity=row.flops / traffic if traffic else 0.0,
        attained_gflops=row.flops / latency_s / 1e9 if latency_s > 0 else 0.0,
        energy_mj=sum(t.energy_j for t in timings) * 1e3 if timings and timings[0].energy_j is not None else 0.0,
        compute_ms=sum(t.compute_s for t in timings) * 1e3,
        memory_ms=sum(t.memory_s for t in timings) * 1e3,
        overhead_ms=sum(t.overhead_s for t in timings) * 1e3,
        extrapolated=any(t.extrapolated for t in timings),
        timings=timings,
    )


def predict_analysis(analysis: Analysis, device: str | DeviceProfile) -> Prediction:
    """Predict latency and energy of an existing analysis on a device."""
    profile = load_device(device)
    timings = time_ops(analysis.ops, profile, analysis.dtype)
    add_framework_overhead(timings, analysis, profile)
    total_s, host_s, dev_s = simulate(timings, profile)
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
