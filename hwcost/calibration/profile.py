"""Writing a calibrated profile: the host's description, the measured rates and the fitted model
turned into the profile YAML (plain data, its samples and model files referenced by sha256)."""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any

import yaml

from ..devices import DeviceProfile
from ..errors import InputError
from ..features import FEATURES
from ..host import host_info
from ..probe import PROBE_BATCHES, RESOURCES
from ..timemodel import sha256
from .fit import GBM_PARAMS
from .suite import SUITE_VERSION

# launches that take over half their kernels' time to return: the host does not run ahead of the device
LAUNCH_BLOCKING_SHARE = 0.5


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _probe_record(fundamentals: dict[str, float]) -> dict[str, Any]:
    probe: dict[str, Any] = {k: round(fundamentals[f"probe_{k}"], 4)
                             for k in ("start_ms", "end_ms", "during_ms", "reference_ratio", "fresh_during_ms",
                                       "fresh_reference_ratio", "decode_during_ms", "decode_reference_ratio",
                                       "decode_fresh_during_ms",
                                       *(f"b{b}_{k}" for b in PROBE_BATCHES[1:]
                                         for k in ("during_ms", "reference_ratio", "fresh_during_ms")))
                             if fundamentals.get(f"probe_{k}")}
    sized_by = fundamentals.get("probe_start_cache_mb") or fundamentals.get("probe_end_cache_mb")
    if sized_by:   # the cache size the cache and DRAM readings were sized by
        probe["cache_mb"] = round(sized_by, 3)
    for when in ("start", "end"):
        rates = {k: round(fundamentals[f"probe_{when}_{k}"], 2) for k in RESOURCES
                 if fundamentals.get(f"probe_{when}_{k}")}
        if rates:
            probe[when] = rates
    return {"probe": probe} if probe else {}


@dataclass
class CalibrationRun:
    """What one `hwcost calibrate` run was: its settings and how it went."""

    name: str
    backend: str
    threads: int
    dtypes: tuple[str, ...]
    budget_s: float
    seed: int = 0
    cases: int = 0
    interrupted: bool = False
    base: DeviceProfile | None = None      # datasheet profile power and energy figures come from
    sensor: str | None = None              # the power sensor read, if any


def profile_yaml(run: CalibrationRun, fundamentals: dict[str, float], samples_path: str, samples_text: str) -> str:
    name, backend, threads, dtypes = run.name, run.backend, run.threads, run.dtypes
    budget, n_cases, interrupted, base, sensor, seed = (run.budget_s, run.cases, run.interrupted, run.base,
                                                         run.sensor, run.seed)
    host = host_info(backend)
    matrix = {dt: round(fundamentals[f"matmul_flops_{dt}"] / 1e12, 5) for dt in dtypes
              if f"matmul_flops_{dt}" in fundamentals}
    if "float32" not in matrix:
        raise InputError("calibration needs float32 among its dtypes")
    bw = round(fundamentals["copy_bytes_per_s"] / 1e9, 3)
    floor_us = round(fundamentals["floor_s"] * 1e6, 3)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc: dict[str, Any] = {
        "name": name,
        "kind": "gpu" if backend == "cuda" else "cpu",
        "description": f"calibrated on {host.get('gpu') or host['cpu']} ({_threads(threads)}, torch {host['torch']})",
        "execution": "async" if backend == "cuda" else "sequential",
        **({"launch": "blocking" if fundamentals["launch_issue_share"] > LAUNCH_BLOCKING_SHARE else "queued"}
           if backend == "cuda" and "launch_issue_share" in fundamentals else {}),
        "threads": threads,
        "compute": {"matrix_tflops": matrix, "vector_tflops": {"float32": matrix["float32"]}},
        "memory": {"bandwidth_gbps": bw,   # what the model and its activations must fit in: the GPU's own memory on CUDA
                   "capacity_gb": host["gpu_memory_gb"] if backend == "cuda" else host["memory_gb"]},
        "overhead_us": {"host_per_op": round(fundamentals.get("host_enqueue_s", fundamentals["floor_s"]) * 1e6, 3),
                        "device_per_op": 0.0,
                        "per_module_call": round(fundamentals.get("module_call_s", 0.0) * 1e6, 3),
                        "per_view": round(fundamentals.get("view_s", 0.0) * 1e6, 3),
                        **({"per_generate_step": round(fundamentals["generate_step_s"] * 1e6, 2)}
                           if fundamentals.get("generate_step_s") else {}),
                        **({"per_generate_step_per_1k_vocab":
                            round(fundamentals["generate_step_per_vocab_s"] * 1e9, 3)}
                           if "generate_step_per_vocab_s" in fundamentals else {}),
                        **({"per_generate_call": round(fundamentals["generate_call_s"] * 1e6, 2)}
                           if "generate_call_s" in fundamentals else {})},
        "efficiency": {"compute": {f: 1.0 for f in ("conv", "matmul", "attention")}, "memory": 1.0},
        "calibration": {
            "version": 1,
            "suite_version": int(fundamentals.get("suite_version", SUITE_VERSION)),  # a refit keeps its samples' suite
            "seed": seed,
            "backend": backend,
            "date": when,
            "host": host,
            "threads": threads,
            "dtypes": list(dtypes),
            "budget_s": budget,
            "cases": n_cases,
            "interrupted": interrupted,
            "other_cpu_pct": round(100 * fundamentals.get("other_cpu_share", 0.0), 1),   # other processes' load
            "rates": {"floor_us": floor_us,
                      **({"launch_issue_share": round(fundamentals["launch_issue_share"], 3)}
                         if "launch_issue_share" in fundamentals else {})},
            **_probe_record(fundamentals),
            "samples_file": os.path.basename(samples_path),
            "samples_sha256": sha256(samples_text),
            "model": {"kind": "gradient boosting of log(isolated time / baseline) per op family, "
                              "then a context model fitted on network-like chains",
                      "params": dict(GBM_PARAMS), "features": list(FEATURES)},
        },
        "sources": {
            "compute": f"measured by hwcost calibrate ({when}): best {'2048' if backend == 'cuda' else '1024'}^3 "
                       f"matmul rate per dtype ({', '.join(dtypes)}), {_threads(threads)}",
            "memory": "measured: copy of a large tensor (bytes read + written per second)",
            "overhead_us": ("measured: host enqueue time per op (200 launches of a tiny ReLU without waiting); "
                            "launch: blocking when four 2048^3 matmul launches take over half their kernels' "
                            "time to return (the host cannot run ahead), else queued"
                            if backend == "cuda" else
                            "measured: median call time of a ReLU module on an 8-element tensor (dispatch floor)")
                           + "; per_module_call: nn.Identity call minus a plain call; per_view: x.view(-1)"
                           + ("; per_generate_step: transformers' generate() per token less a plain loop of the "
                              "same forwards, at no vocabulary, and per_generate_step_per_1k_vocab on top (timed at "
                              "64 and 32,000 entries); per_generate_call: generate() of one token less a plain forward of the "
                              "prompt and one step (hwcost.calibration.generate_overhead.measure_generate_step)"
                              if fundamentals.get("generate_step_s") else ""),
        },
    }
    has_pj = base is not None and base.pj_per_flop is not None and base.pj_per_byte is not None
    # a CPU profile needs both power and pJ figures; a GPU base may give power only (busy-time energy)
    if base is not None and base.power_idle_w is not None and (has_pj or backend == "cuda"):
        doc["power_w"] = {"idle": base.power_idle_w, "max": base.power_max_w}
        if base.power_typical_w:
            doc["power_w"]["typical"] = base.power_typical_w
        doc["sources"]["power_w"] = f"datasheet, from base profile {base.name}: {base.sources.get('power_w', '')}"
        if has_pj:
            doc["energy"] = {"pj_per_flop": base.pj_per_flop, "pj_per_byte": base.pj_per_byte}
            doc["sources"]["energy"] = f"datasheet, from base profile {base.name}: {base.sources.get('energy', '')}"
    if sensor:
        doc["calibration"]["energy_meter"] = sensor
    else:
        doc["calibration"]["energy"] = (
            "no power sensor (RAPL / NVML) readable here: energy figures, if any, are from the datasheet base")
    return yaml.safe_dump(doc, sort_keys=False, width=100)
