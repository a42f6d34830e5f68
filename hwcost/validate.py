"""hwcost.validate: predicted against measured latency on this machine, for several models and batch
sizes, each timed call by call against the calibration's probe network so that the machine's speed
swings cancel; the raw and the drift-adjusted error side by side."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import report
from .devices import DeviceProfile, load_device
from .allocator import held as held_allocator
from .errors import InputError
from .host import describes_this_machine
from .loaders import load_model
from .measure import Measurement, measure
from .timing import fixed_threads
from .predict import predict
from .probe import calibration_probe_ms, drift_line, matching_reference
from .resources import calibration_cache_bytes, resource_rates

# the machine moved when the reference ran this much slower or faster than at calibration
MOVED_FACTOR = 0.05


@dataclass
class ValidationRow:
    model: str
    batch_size: int
    predicted_ms: float
    measurement: Measurement

    @property
    def measured_ms(self) -> float:
        return self.measurement.latency_ms

    @property
    def adjusted_ms(self) -> float | None:
        return self.measurement.drift_adjusted_ms

    @property
    def error_pct(self) -> float:
        return 100 * (self.predicted_ms / self.measured_ms - 1)

    @property
    def adjusted_error_pct(self) -> float | None:
        adj = self.adjusted_ms
        return None if adj is None else 100 * (self.predicted_ms / adj - 1)


@dataclass
class Validation:
    device: DeviceProfile
    rows: list[ValidationRow]
    threads: int
    same_machine: bool | None
    machine_note: str
    notes: list[str] = field(default_factory=list)

    def errors(self, adjusted: bool) -> list[float]:
        errs = [r.adjusted_error_pct if adjusted else r.error_pct for r in self.rows]
        return [e for e in errs if e is not None]

    @property
    def machine_factor(self) -> float | None:
        """Median over the rows of the reference's time now / at calibration (>1: slower now)."""
        f = [r.measurement.machine_factor for r in self.rows if r.measurement.machine_factor]
        return statistics.median(f) if f else None

    @property
    def believe(self) -> str:
        """Which error to read: drift-adjusted when there is one and the machine moved."""
        f = self.machine_factor
        if f is None:
            return "raw"
        return "drift-adjusted" if abs(f - 1) > MOVED_FACTOR else "either"

    def table(self) -> str:
        return report.validation_table(self)


def validate(
    device: str | DeviceProfile,
    models: Sequence[str | tuple[str, Any, Any]],
    batch_sizes: Sequence[int] = (1,),
    backend: str = "cpu",
    dtype: str = "float32",
    repeats: int = 20,
    threads: int | None = None,
    allocator: str = "retain",
    force: bool = False,
) -> Validation:
    """Measure each model here (interleaved with the probe the profile recorded nearest it: hwcost.probe.
    matching_reference) and predict it on ``device``. ``models``: zoo names, or (name, model, example) with real weights.

    Refused when the profile describes another machine (a calibrated profile records its CPU or GPU;
    a datasheet one its instruction set) unless ``force``: the errors would compare two machines."""
    profile = load_device(device)
    same, why = describes_this_machine(profile, backend)
    if same is False and not force:
        raise InputError(f"cannot validate here: {why}. Validate a profile on the machine it describes (calibrate "
                         "this one with `hwcost calibrate`), or pass force=True / --force to compare anyway")
    cal_threads = (profile.calibration or {}).get("threads")
    if threads is None and cal_threads:
        threads = int(cal_threads)   # a calibrated profile describes this machine at that thread count
    then_ms = calibration_probe_ms(profile.calibration)
    with held_allocator(allocator):   # one condition for every model, as calibration holds it for every sample
        rows = _validation_rows(profile, models, batch_sizes, dtype, backend, repeats, threads, allocator)
        if then_ms and rows:
            with fixed_threads(threads):   # the same conditions the models were measured under
                now_rates = resource_rates(backend, calibration_cache_bytes(profile.calibration))
    v = Validation(profile, rows, rows[0].measurement.threads if rows else (threads or 0), same, why)
    if then_ms and rows:
        # on the batch-1 probe's scale, whichever probe each row was timed against
        now_ms = then_ms * statistics.median(r.measurement.machine_factor for r in rows)
        v.notes.append(drift_line(profile.calibration, now_ms, now_rates))
    cal_alloc = ((profile.calibration or {}).get("host") or {}).get("allocator")
    if cal_alloc and rows and cal_alloc != rows[-1].measurement.allocator:
        v.notes.append(f"{profile.name} was calibrated with allocator {cal_alloc!r}, measured here with "
                       f"{rows[-1].measurement.allocator!r}")
    return v


def _validation_rows(profile: DeviceProfile, models: Sequence, batch_sizes: Sequence[int], dtype: str,
                     backend: str, repeats: int, threads: int | None, allocator: str) -> list[ValidationRow]:
    rows = []
    for spec in models:
        name, model, example = (spec, None, None) if isinstance(spec, str) else spec
        if model is None:
            loaded = load_model(name, meta=False)
            model, example = loaded.model, loaded.default_input()
        for b in batch_sizes:
            p = predict(model, example, device=profile, batch_size=b, dtype=dtype, model_name=name)
            with fixed_threads(threads):
                m = measure(model, example, backend=backend, batch_size=b, dtype=dtype, repeats=repeats,
                            threads=threads, model_name=name, allocator=allocator, reference=matching_reference(p))
            rows.append(ValidationRow(name, b, p.latency_ms, m))
    return rows
