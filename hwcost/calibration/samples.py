"""Calibration samples: one measured op case or chain per row, stored as plain CSV beside the profile."""
from __future__ import annotations

import bisect
import csv
import io
import os
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import InputError
from ..features import CACHE_FEATURES, FEATURES, KEY_FEATURES
from ..probe import PROBE_BATCHES
from .suite import SUITE_VERSION

SAMPLE_COLUMNS = ("case_id", "family", "op", "time_s", "p10_s", "p90_s", "repeats", "flops", "bytes_read",
                  "bytes_written", "matrix", "energy_j", "energy_s", "ref_ratio", "ref_s") + tuple(
    f for f in FEATURES if f not in KEY_FEATURES + CACHE_FEATURES)
_META = 15  # columns before the features


@dataclass
class Sample:
    case_id: str
    family: str
    op: str
    time_s: float
    p10_s: float
    p90_s: float
    repeats: int
    flops: float
    bytes_read: float
    bytes_written: float
    matrix: bool
    features: dict[str, float] = field(default_factory=dict)
    energy_j: float = 0.0            # per run, where a power sensor was readable (chains)
    energy_s: float = 0.0            # wall time per run of the loop the energy was read around
    ref_ratio: float = 0.0           # median over blocks of this case's time / the reference's after it
    ref_s: float = 0.0               # the reference workload's median time in the same seconds (0: not timed)

    def row(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in SAMPLE_COLUMNS[:_META]}
        d["matrix"] = int(self.matrix)
        d.update({k: self.features.get(k, 0.0) for k in SAMPLE_COLUMNS[_META:]})
        return d


def write_samples_header(f) -> csv.DictWriter:
    w = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS, lineterminator="\n")
    w.writeheader()
    return w


def read_samples(text: str) -> list[Sample]:
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        # a feature added since the file was written reads 0, its neutral value (cold_weights)
        feats = {k: float(r.get(k) or 0.0) for k in SAMPLE_COLUMNS[_META:]}
        out.append(Sample(r["case_id"], r["family"], r["op"], float(r["time_s"]), float(r["p10_s"]),
                          float(r["p90_s"]), int(r["repeats"]), float(r["flops"]), float(r["bytes_read"]),
                          float(r["bytes_written"]), r["matrix"] == "1", feats, float(r["energy_j"]),
                          float(r["energy_s"]), float(r.get("ref_ratio") or 0.0), float(r.get("ref_s") or 0.0)))
    return out


def atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def samples_path_for(out: str) -> str:
    base = out[:-5] if out.endswith(".yaml") else out[:-4] if out.endswith(".yml") else out
    return base + ".samples.csv"


def load_existing(path: str) -> list[Sample]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        text = f.read()
    try:
        samples = read_samples(text)
    except (KeyError, ValueError) as e:
        raise InputError(f"{path} is not a samples file of this hwcost version ({e}); move it away to start over") from e
    # files older than this record are suite version 2
    version = next((s.time_s for s in samples if s.family == "_fundamental" and s.op == "suite_version"), 2.0)
    if samples and version != SUITE_VERSION:
        # chains are rebuilt from their ids at fit time: another suite version would rebuild others
        raise InputError(f"{path} holds samples of suite version {version:g}, this hwcost runs "
                         f"version {SUITE_VERSION}; move it away (or use another --out) to calibrate afresh")
    return samples


def fundamental_row(key: str, value: float) -> dict[str, Any]:
    return Sample(f"_{key}", "_fundamental", key, value, value, value, 1, 0, 0, 0, False, {}).row()


def steady(samples: list[Sample]) -> list[Sample]:
    """The samples with each reference-timed case's time at the run's median speed: its median ratio to
    the reference workload timed in blocks beside it, times that workload's median over every case of
    the run. A shared machine's speed swings within a second; the same case timed twice a minute apart
    agreed within 20% in 53-76% of 250 suite cases by its own median, in 78-87% by its ratio so scaled
    (2-vCPU VM, 1 and 2 threads). Samples without a reference (older files, chains, CUDA) keep their time."""
    scale = reference_median_s(samples)
    if scale is None:
        return samples
    return [replace(s, time_s=s.ref_ratio * scale) if _referenced(s) and _reference_in_step(s, scale) else s
            for s in samples]


# a reference block this many times slower (or faster) than the run's median did not run as the case
# beside it did: at 2 threads here the workload ran 7-17x its median right after a few large GEMM cases
# (the same cases in two calibrations) while the case itself ran at its usual speed, and its ratio put a
# 50 GFLOP matmul at 1,700 GFLOP/s (five times this machine's peak); such a case keeps its plain median
REFERENCE_OUT_OF_STEP = 3.0


def _reference_in_step(s: Sample, scale: float) -> bool:
    return scale / REFERENCE_OUT_OF_STEP <= s.ref_s <= scale * REFERENCE_OUT_OF_STEP


def _referenced(s: Sample) -> bool:
    return s.ref_s > 0 and s.ref_ratio > 0


def reference_median_s(samples: list[Sample]) -> float | None:
    """The reference workload's median time over every case timed beside it (None: none was)."""
    refs = sorted(s.ref_s for s in samples if _referenced(s))
    return refs[len(refs) // 2] if refs else None


# the small cases (footprint within the private cache) on each side of a probe reading whose reference
# readings stand for the machine's speed then, and the fewest probe readings to judge it from
PROBE_NEIGHBOURS = 8
PROBE_MIN_READINGS = 15


def probe_disturbance(samples: list[Sample]) -> float:
    """How much slower the reference workload ran beside the probe network than beside the small cases
    timed around it: the median over the run's probe readings of the reference time the reading implies
    (its time over its ratio) over the median reference time beside its PROBE_NEIGHBOURS nearest small
    cases on each side. The cases are put on the scale by their ratios (steady), so the probe's ratio
    stands for its time on that scale only if the reference ran alike beside both. At 1 thread here it
    did not: 4.7% slower beside the probe (157 readings; at 2 threads 0.5%), even with the reference
    warmed for 3 ms, which took that out beside every band of cases (1.000-1.007); the probe's time on the
    scale was as much too fast, and every drift-adjusted time and error with it (held-out models'
    median signed error +5.6% adjusted against +2.3% raw). 1.0 where the run recorded no private cache
    size, or read the probe or timed small cases too few times."""
    private = next((s.time_s for s in samples if s.family == "_fundamental" and s.op == "private_cache_bytes"), 0.0)
    if not private:
        return 1.0
    events: list[tuple[bool, float]] = []   # (a probe reading?, reference seconds), in run order
    probe_ms = None
    for s in samples:
        if s.family == "_fundamental":
            if s.op == "probe_during_ms":
                probe_ms = s.time_s
            elif s.op == "probe_reference_ratio" and probe_ms and s.time_s > 0:
                events.append((True, probe_ms * 1e-3 / s.time_s))
        elif s.family != "_chain" and _referenced(s) and s.bytes_read + s.bytes_written <= private:
            events.append((False, s.ref_s))
    quiet = [i for i, (probe, _) in enumerate(events) if not probe]
    readings = [i for i, (probe, _) in enumerate(events) if probe]
    if len(quiet) < 2 * PROBE_NEIGHBOURS or len(readings) < PROBE_MIN_READINGS:
        return 1.0
    ratios = []
    for i in readings:
        at = bisect.bisect_left(quiet, i)
        near = [events[j][1] for j in quiet[max(0, at - PROBE_NEIGHBOURS):at + PROBE_NEIGHBOURS]]
        ratios.append(events[i][1] / statistics.median(near))
    return statistics.median(ratios)


def probe_during(samples: list[Sample]) -> dict[str, float]:
    """The probe time the samples stand for. The fit keeps each case at its ratio to the reference
    workload times that workload's median over the run (samples.steady), so where the run read the probe
    beside that workload, the probe's median ratio to it times the same median: the speed the samples
    were put at. The probe's own median reading is not: at 2 threads here it read 11% slower than that
    (3.64 against 3.28 ms, the probe read between cases right after each, the workload beside every
    case), and every drift-adjusted validation came out as much too slow. Older runs (and CUDA, whose
    samples have no reference): the median of the probe readings taken between cases (a resumed run adds
    to the earlier ones).

    The other probes (decode, batch 8) are each read seconds after a reading of this one, and are put on
    the scale through it: its time on the scale times their median ratio to its reading just before. Not
    through the workload: beside the decode probe the workload ran 10-16% faster than beside this probe
    at the same moments, in four calibrations here (the decode probe leaves it warmer than the cases
    do), so the workload's ratio put the decode probe 11-18% above its own readings, and every decode
    step drift-adjusted by it came out as much too slow. The probe's own ratio is put on the scale as
    slow as the reference ran beside it against beside the small cases around it (probe_disturbance).

    Where the run read the probes in a fresh process as well (fresh.py; at the start and at the end of runs
    since the forty-third session, at the end only since the thirty-third), those readings go beside these
    (``*_fresh_during_ms``: the CNN probe's fresh ratio on the same scale, the median over the fresh
    processes, the others through their fresh time over the CNN probe's beside them), and they are the
    ones drift adjustment reads (hwcost.probe.calibration_probe_ms; fresh.py's docstring says why)."""
    fundamentals = [s for s in samples if s.family == "_fundamental"]

    def median(op: str) -> float | None:
        v = sorted(s.time_s for s in fundamentals if s.op == op)
        return v[len(v) // 2] if v else None

    def pooled(op: str) -> float | None:   # one reading per fresh process: their median
        v = [s.time_s for s in fundamentals if s.op == op]
        return statistics.median(v) if v else None

    ref_s = reference_median_s(samples)

    def on_scale(name: str, disturbance: float = 1.0) -> dict[str, float]:
        ratio = median(f"{name}_reference_ratio")
        return ({f"{name}_during_ms": ratio * ref_s * disturbance * 1e3, f"{name}_reference_ratio": ratio}
                if ratio and ref_s else {})

    def through_probe(name: str, probe_ms: float | None) -> dict[str, float]:
        last, bridge = None, []
        for s in fundamentals:
            if s.op == "probe_during_ms":
                last = s.time_s
            elif s.op == f"{name}_during_ms" and last:
                bridge.append(s.time_s / last)
        if not (bridge and probe_ms):
            return on_scale(name)
        return {**on_scale(name), f"{name}_during_ms": probe_ms * statistics.median(bridge)}

    disturbance = probe_disturbance(samples)
    plain, during = on_scale("probe", disturbance), median("probe_during_ms")
    if not plain and during:
        plain = {"probe_during_ms": during}
    fresh = pooled("probe_fresh_reference_ratio")
    if fresh and ref_s:   # read in fresh processes (fresh.py): what drift adjustment reads
        plain.update(probe_fresh_during_ms=fresh * ref_s * disturbance * 1e3, probe_fresh_reference_ratio=fresh)
    # the decode probe (suite 16 on) and the larger-batch probe, through the b1 probe read before each
    # (and, on record, beside it in the fresh process)
    probe_ms, fresh_ms = plain.get("probe_during_ms"), plain.get("probe_fresh_during_ms")

    def through(name: str) -> dict[str, float]:
        bridge = pooled(f"{name}_fresh_bridge")
        out = through_probe(name, probe_ms)
        return {**out, f"{name}_fresh_during_ms": fresh_ms * bridge} if bridge and fresh_ms else out

    return {**plain, **through("probe_decode"), **{k: v for b in PROBE_BATCHES[1:] for k, v in through(f"probe_b{b}").items()}}
