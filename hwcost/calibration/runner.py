"""hwcost.calibrate: measure the suite on this machine, fit the time model, write a YAML profile.

Samples are appended to ``<profile>.samples.csv`` as they are measured, so Ctrl-C keeps them and a
rerun with the same output resumes where it stopped (cases are identified by a deterministic id).
The profile is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from typing import Any, Callable

import torch
import torch.nn as nn
import yaml

from ..analysis import analyze
from ..devices import DeviceProfile, load_device, parse_profile
from ..errors import InputError
from ..measure import fixed_threads, synchronizer, time_callable
from ..counters import PRODUCT_FAMILIES
from .features import FEATURES, op_key, shape_features
from .fit import (GBM_PARAMS, ContextModel, Sample, TimeModel, dominant, fit_energy, rates_of, read_samples, sha256,
                  write_samples_header)
from .probe import RESOURCES, cache_bytes_at_level, probe_ms, resource_rates
from .suite import SUITE_VERSION, cases, chain_case

DEFAULT_BUDGET_S = 300.0
QUICK_BUDGET_S = 45.0
CASE_SECONDS = 0.12       # timing budget per case after warm-up
CHAIN_EVERY = 10          # one network-like chain per this many isolated cases


def host_info(backend: str) -> dict[str, Any]:
    import psutil

    from ..allocator import state as allocator_state

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    freq = psutil.cpu_freq()
    info = {
        "cpu": cpu,
        "machine": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "cpu_freq_mhz": round(freq.max or freq.current, 1) if freq else None,
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "allocator": allocator_state(),
    }
    if backend == "cuda":
        info["gpu"] = str(torch.cuda.get_device_name(0))
        info["cuda"] = str(torch.version.cuda)
    return info


def private_cache_bytes(backend: str, threads: int) -> float:
    """Cache an op's threads keep to themselves between two ops: L2 per core x threads on a CPU
    (Linux sysfs), the device L2 on a GPU. 0.0 where the platform does not say (bytes then uncapped)."""
    if backend == "cuda":
        return float(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 0)
    return cache_bytes_at_level(2) * max(1, threads)


# ------------------------------------------------------------------ measuring


def _time_module_cuda(mod: nn.Module, inputs: tuple, calls: int = 20) -> tuple[float, float, float, int]:
    """Device time per call: replay of a CUDA graph of ``calls`` launches (no host gaps), timed with
    CUDA events; if the op cannot be captured, back-to-back launches between two synchronizations."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            mod(*inputs)
    torch.cuda.current_stream().wait_stream(stream)
    run: Callable[[], Any]
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                mod(*inputs)
        run = graph.replay
    except Exception:  # not capturable: dynamic shapes, host syncs, CPU fallbacks
        def run():
            for _ in range(calls):
                mod(*inputs)
    samples = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        run()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / calls)
    from ..measure import summarize

    st = summarize(samples)
    return st.median_s, st.p10_s, st.p90_s, len(st.samples_s) * calls


def _time_module(mod: nn.Module, inputs: tuple, backend: str) -> tuple[float, float, float, int]:
    if backend == "cuda":
        return _time_module_cuda(mod, inputs)
    sync = synchronizer(backend)
    call = lambda: mod(*inputs)  # noqa: E731
    t0 = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - t0
    repeats = int(min(30, max(3, CASE_SECONDS / max(first, 1e-6))))
    st = time_callable(call, warmup=2, repeats=repeats, sync=sync, max_seconds=CASE_SECONDS * 2)
    return st.median_s, st.p10_s, st.p90_s, len(st.samples_s)


def measure_case(mod: nn.Module, inputs: tuple, case_id: str, backend: str) -> Sample | None:
    mod = mod.eval()
    a = analyze(mod, inputs if len(inputs) > 1 else inputs[0])
    main = dominant(a.ops)
    if main is None:
        return None
    device_inputs = tuple(x.to(backend) for x in inputs)
    mod = mod.to(backend)
    with torch.inference_mode():
        med, p10, p90, n = _time_module(mod, device_inputs, backend)
    working = [c for c in a.ops if c.launches]
    flops = sum(c.flops for c in working)
    read = sum(c.bytes_read for c in working)
    written = sum(c.bytes_written for c in working)
    feats = shape_features(main)
    feats.pop("op_code")
    return Sample(case_id, main.family, op_key(main), med, p10, p90, n, flops, read, written,
                  main.family in PRODUCT_FAMILIES, feats)


def measure_fundamentals(backend: str, dtypes: list[str]) -> dict[str, float]:
    """Dispatch floor, matmul rate per dtype, copy bandwidth: the baseline's rates."""
    dev = backend
    sync = synchronizer(backend)
    res: dict[str, float] = {}
    with torch.inference_mode():
        tiny = nn.ReLU().to(dev)
        x = torch.zeros(8, device=dev)
        res["floor_s"] = time_callable(lambda: tiny(x), warmup=20, repeats=200, sync=sync).median_s
        # host costs that ops do not carry: nn.Module.__call__ (containers too), and view ops
        ident = nn.Identity()
        plain = lambda t: t  # noqa: E731
        direct = time_callable(lambda: plain(x), warmup=20, repeats=400).median_s
        res["module_call_s"] = max(0.0, time_callable(lambda: ident(x), warmup=20, repeats=400).median_s - direct)
        res["view_s"] = time_callable(lambda: x.view(-1), warmup=20, repeats=400).median_s
        if backend == "cuda":
            # host enqueue cost of an op: launches timed without waiting for the device
            def enqueue_many():
                for _ in range(200):
                    tiny(x)
            res["host_enqueue_s"] = time_callable(enqueue_many, warmup=2, repeats=10).median_s / 200
            torch.cuda.synchronize()
            res["floor_s"] = _time_module_cuda(tiny, (x,))[0]  # device-side cost of a tiny kernel
        for dt in dtypes:
            t = getattr(torch, dt)
            n = 2048 if backend == "cuda" else 1024
            a = torch.randn(n, n, device=dev).to(t)
            b = torch.randn(n, n, device=dev).to(t)
            st = time_callable(lambda: a @ b, warmup=3, repeats=10, sync=sync)
            res[f"matmul_flops_{dt}"] = 2 * n**3 / st.median_s
        big = torch.randn(32 * 1024**2 if backend == "cpu" else 256 * 1024**2, device=dev)
        st = time_callable(lambda: big.clone(), warmup=2, repeats=8, sync=sync)
        res["copy_bytes_per_s"] = 2 * big.numel() * 4 / st.median_s
    res["private_cache_bytes"] = private_cache_bytes(backend, torch.get_num_threads())
    return res


# ------------------------------------------------------------------ progress


class Progress:
    """A progress bar with time left on a terminal; a line per 10% otherwise (logs, CI)."""

    def __init__(self, budget_s: float, enabled: bool, stream=sys.stderr):
        self.budget_s, self.enabled, self.stream = budget_s, enabled, stream
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.last_draw = -1.0
        self.last_decile = -1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        now = self.elapsed
        frac = min(1.0, now / self.budget_s)
        left = max(0.0, self.budget_s - now)
        if self.tty:
            if now - self.last_draw < 0.2:
                return
            self.last_draw = now
            bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
            self.stream.write(f"\rcalibrating [{bar}] {frac:4.0%}  {done} cases  "
                              f"{int(left) // 60}:{int(left) % 60:02d} left  {note:<16s}")
        elif int(frac * 10) > self.last_decile:
            self.last_decile = int(frac * 10)
            self.stream.write(f"calibrating: {frac:4.0%}, {done} cases, {int(left)} s left\n")
        else:
            return
        self.stream.flush()

    def finish(self, msg: str) -> None:
        if self.enabled:
            self.stream.write("\n" + msg + "\n")
            self.stream.flush()


# ------------------------------------------------------------------ the run


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _samples_path(out: str) -> str:
    base = out[:-5] if out.endswith(".yaml") else out[:-4] if out.endswith(".yml") else out
    return base + ".samples.csv"


def _load_existing(path: str) -> list[Sample]:
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


def calibrate(
    name: str,
    backend: str = "cpu",
    out: str | None = None,
    budget_s: float | None = None,
    quick: bool = False,
    threads: int | None = None,
    dtypes: tuple[str, ...] = ("float32",),
    base: str | None = None,
    seed: int = 0,
    progress: bool = True,
    max_cases: int | None = None,
    allocator: str = "retain",
    _stop: Callable[[int], bool] | None = None,
) -> DeviceProfile:
    """Run the microbenchmark suite here and write a calibrated profile (YAML + samples CSV).

    ``budget_s``: wall time for the suite (default 300 s; ``quick``: 45 s). ``base``: a datasheet
    profile (name or path) whose power and energy figures the new profile inherits when no power
    sensor is readable. Interrupting (Ctrl-C) keeps the samples; rerunning resumes. ``allocator``:
    the host malloc condition the samples are taken under (hwcost.allocator; recorded in the profile).
    """
    from ..allocator import apply as apply_allocator
    from ..energy import EnergyMeter

    if backend not in ("cpu", "cuda"):
        raise InputError(f"unknown backend {backend!r}: use cpu or cuda")
    if backend == "cuda" and not torch.cuda.is_available():
        raise InputError("backend 'cuda' asked for, but torch.cuda.is_available() is False here")
    apply_allocator(allocator)
    out = out or f"{name}.yaml"
    budget = budget_s if budget_s is not None else (QUICK_BUDGET_S if quick else DEFAULT_BUDGET_S)
    samples_path = _samples_path(out)
    existing = _load_existing(samples_path)
    done_ids = {s.case_id for s in existing}
    base_profile = load_device(base) if base else None
    interrupted = False
    meter = EnergyMeter.detect(backend)
    prog = Progress(budget, progress)
    with fixed_threads(threads) as n_threads:
        fundamentals = {s.op: s.time_s for s in existing if s.family == "_fundamental"}
        new_file = not existing
        with open(samples_path, "a") as f:
            writer = write_samples_header(f) if new_file else None
            if writer is None:
                import csv

                from .fit import SAMPLE_COLUMNS

                writer = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS, lineterminator="\n")
            try:
                if not fundamentals:
                    prog.update(0, "fundamentals")
                    fundamentals = measure_fundamentals(backend, list(dtypes))
                    fundamentals["suite_version"] = float(SUITE_VERSION)
                    fundamentals.update(_speed_readings("start", backend, allocator))
                    for k, v in fundamentals.items():
                        writer.writerow(_fundamental_row(k, v))
                    f.flush()
                count = len([s for s in existing if not s.family.startswith("_")])
                chains = len([s for s in existing if s.family == "_chain"])
                for case in cases(seed):
                    if prog.elapsed >= budget or (max_cases is not None and count >= max_cases):
                        break
                    if _stop is not None and _stop(count):
                        raise KeyboardInterrupt
                    if case.id in done_ids:
                        continue
                    mod, inputs = case.build()
                    s = measure_case(mod, inputs, case.id, backend)
                    if s is not None:
                        writer.writerow(s.row())
                        f.flush()
                        count += 1
                    if count % CHAIN_EVERY == 0:
                        writer.writerow(measure_chain(seed, chains, backend, meter).row())
                        f.flush()
                        chains += 1
                    prog.update(count, case.family)
            except KeyboardInterrupt:
                interrupted = True
            try:  # the machine's speed at the end of this run (a resumed run updates it)
                end = _speed_readings("end", backend, allocator)
                fundamentals.update(end)
                for k, v in end.items():
                    writer.writerow(_fundamental_row(k, v))
            except KeyboardInterrupt:  # a second Ctrl-C: keep the samples, skip the probe
                interrupted = True
    with open(samples_path) as f:
        samples_text = f.read()
    samples = read_samples(samples_text)
    n_cases = len([s for s in samples if not s.family.startswith("_")])
    prog.finish(
        f"{'interrupted: ' if interrupted else ''}{n_cases} cases measured in {samples_path}"
        + ("; rerun the same command to resume" if interrupted else "")
    )
    if n_cases == 0:
        raise InputError("no case was measured; nothing to fit (give a larger --budget)")
    text = profile_yaml(name, backend, n_threads, fundamentals, dtypes, samples_path, samples_text, budget,
                        n_cases, interrupted, base_profile, meter.name if meter else None, seed)
    return _fit_and_write(text, out, samples, samples_path, seed, fundamentals)


def _fit_and_write(text: str, out: str, samples: list[Sample], samples_path: str, seed: int,
                   fundamentals: dict[str, float]) -> DeviceProfile:
    import json

    rates = rates_of(parse_profile(text, out))
    model = TimeModel.fit(samples, rates)
    model.context, energy_rows = fit_context(model, samples, seed, fundamentals)
    doc = yaml.safe_load(text)
    energy = fit_energy(energy_rows, form="busy" if doc.get("execution") == "async" else "linear")
    model_text = json.dumps(model.to_dict(), separators=(",", ":"))
    model_path = samples_path[: -len(".samples.csv")] + ".model.json"
    _atomic_write(model_path, model_text)
    doc["calibration"]["model_file"] = os.path.basename(model_path)
    doc["calibration"]["model_sha256"] = sha256(model_text)
    doc["calibration"]["context"] = {k: v for k, v in vars(model.context).items()}
    if energy is not None:
        meter_name = doc["calibration"].get("energy_meter", "a power sensor")
        when = doc["calibration"]["date"]
        static = round(energy["static_w"], 3)
        if energy["form"] == "busy":
            # predictions charge idle x latency + (max - idle) x busy time: max = static + fitted busy power
            doc["power_w"] = {"idle": static, "max": round(static + energy["busy_w"], 3)}
            doc.pop("energy", None)
            doc["sources"].pop("energy", None)
            doc["sources"]["power_w"] = (f"measured ({when}): non-negative least squares of {meter_name} chain energy "
                                         f"on wall time (idle) and kernel busy time (max - idle) over "
                                         f"{energy['chains']} chains, median error {energy['median_abs_error_pct']}%")
        else:
            old_max = (doc.get("power_w") or {}).get("max", 0.0)
            doc["power_w"] = {"idle": static,
                              "max": round(max(old_max, energy["max_observed_w"], energy["static_w"] * 1.001), 3)}
            doc["energy"] = {"pj_per_flop": round(energy["pj_per_flop"], 4) or 1e-6,
                             "pj_per_byte": round(energy["pj_per_byte"], 4) or 1e-6}
            doc["sources"]["power_w"] = (f"measured ({when}): static power fitted to {meter_name} readings over "
                                         f"{energy['chains']} chains; max = the largest of the datasheet base and "
                                         "the highest observed")
            doc["sources"]["energy"] = (f"measured ({when}): non-negative least squares of chain energy on time, "
                                        f"FLOPs and bytes ({meter_name}, median error {energy['median_abs_error_pct']}%)")
        doc["calibration"]["energy"] = {"fitted": energy}
    text = yaml.safe_dump(doc, sort_keys=False, width=100)
    _atomic_write(out, text)
    return parse_profile(text, out)


def refit(profile_path: str) -> DeviceProfile:
    """Fit a calibrated profile's model again from its stored samples (no measuring)."""
    prof = load_device(profile_path)
    if not prof.calibration:
        raise InputError(f"{profile_path} is not a calibrated profile (no calibration section)")
    samples_text = prof.calibration_file("samples")
    samples = read_samples(samples_text)
    fundamentals = {s.op: s.time_s for s in samples if s.family == "_fundamental"}
    if "private_cache_bytes" not in fundamentals:  # samples of suite version 2: take this host's
        fundamentals["private_cache_bytes"] = private_cache_bytes(prof.calibration.get("backend", "cpu"),
                                                                  int(prof.calibration.get("threads", 1)))
    samples_path = os.path.join(os.path.dirname(os.path.abspath(profile_path)), prof.calibration["samples_file"])
    with open(profile_path) as f:
        text = f.read()
    return _fit_and_write(text, profile_path, samples, samples_path, int(prof.calibration.get("seed", 0)), fundamentals)


ENERGY_SECONDS = 0.3      # run a chain at least this long between two energy readings


def measure_chain(seed: int, k: int, backend: str, meter: Any = None) -> Sample:
    case = chain_case(seed, k)
    mod, inputs = case.build()
    mod = mod.eval().to(backend)
    inputs = tuple(x.to(backend) for x in inputs)
    sync = synchronizer(backend)
    energy = energy_s = 0.0
    with torch.inference_mode():
        st = time_callable(lambda: mod(*inputs), warmup=2, repeats=7, sync=sync, max_seconds=1.0)
        if meter is not None:
            runs = max(3, int(ENERGY_SECONDS / max(st.median_s, 1e-6)))
            sync()
            before, t0 = meter.read_j(), time.perf_counter()
            for _ in range(runs):
                mod(*inputs)
            sync()
            after, t1 = meter.read_j(), time.perf_counter()
            if before is not None and after is not None and after > before:
                energy, energy_s = (after - before) / runs, (t1 - t0) / runs
    return Sample(case.id, "_chain", "chain", st.median_s, st.p10_s, st.p90_s, len(st.samples_s), 0, 0, 0, False, {},
                  energy, energy_s)


def fit_context(model: TimeModel, samples: list[Sample], seed: int,
                fundamentals: dict[str, float]) -> tuple[ContextModel, list[tuple[float, float, float, float, float]]]:
    """Rebuild every measured chain (deterministic ids), predict its ops in isolation, and fit how
    much slower they run in context (after the measured module-call and view costs). Also returns
    (seconds, FLOPs, bytes, joules, isolated-sum seconds) per chain for the energy fit."""
    rows, times, energy_rows = [], [], []
    cache_bytes = fundamentals.get("private_cache_bytes", 0.0)
    version = int(fundamentals.get("suite_version", 2))
    for s in samples:
        if s.family != "_chain":
            continue
        k = int(s.case_id.split("-")[1])
        mod, inputs = chain_case(seed, k, version).build()
        a = analyze(mod, inputs if len(inputs) > 1 else inputs[0])
        framework = a.module_calls * fundamentals.get("module_call_s", 0.0) + a.view_ops * fundamentals.get("view_s", 0.0)
        rows.append(model.chain_row(a.ops, cache_bytes))
        times.append(max(s.time_s - framework, 0.5 * s.time_s))
        energy_rows.append((s.energy_s, float(a.total.flops), float(a.total.memory_traffic_bytes), s.energy_j,
                            rows[-1]["_isolated_s"]))   # the chain's kernel (busy) time, for a GPU's energy fit
    return ContextModel.fit(rows, times, cache_bytes), energy_rows


def _speed_readings(when: str, backend: str, allocator: str) -> dict[str, float]:
    """The probe network's time and the single-resource rates, under the keys the samples file and
    ``_probe_record`` use (probe_start_ms, probe_start_compute_gflops, ...)."""
    readings = {f"probe_{when}_ms": probe_ms(backend, allocator)}
    readings.update({f"probe_{when}_{k}": v for k, v in resource_rates(backend).items()})
    return readings


def _fundamental_row(key: str, value: float) -> dict[str, Any]:
    return Sample(f"_{key}", "_fundamental", key, value, value, value, 1, 0, 0, 0, False, {}).row()


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _probe_record(fundamentals: dict[str, float]) -> dict[str, Any]:
    probe: dict[str, Any] = {k: round(fundamentals[f"probe_{k}"], 4) for k in ("start_ms", "end_ms")
                             if fundamentals.get(f"probe_{k}")}
    for when in ("start", "end"):
        rates = {k: round(fundamentals[f"probe_{when}_{k}"], 2) for k in RESOURCES
                 if fundamentals.get(f"probe_{when}_{k}")}
        if rates:
            probe[when] = rates
    return {"probe": probe} if probe else {}


def profile_yaml(name: str, backend: str, threads: int, fundamentals: dict[str, float], dtypes: tuple[str, ...],
                 samples_path: str, samples_text: str, budget: float, n_cases: int, interrupted: bool,
                 base: DeviceProfile | None, sensor: str | None, seed: int = 0) -> str:
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
        "threads": threads,
        "compute": {"matrix_tflops": matrix, "vector_tflops": {"float32": matrix["float32"]}},
        "memory": {"bandwidth_gbps": bw, "capacity_gb": host["memory_gb"]},
        "overhead_us": {"host_per_op": round(fundamentals.get("host_enqueue_s", fundamentals["floor_s"]) * 1e6, 3),
                        "device_per_op": 0.0,
                        "per_module_call": round(fundamentals.get("module_call_s", 0.0) * 1e6, 3),
                        "per_view": round(fundamentals.get("view_s", 0.0) * 1e6, 3)},
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
            "rates": {"floor_us": floor_us},
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
            "overhead_us": ("measured: host enqueue time per op (200 launches of a tiny ReLU without waiting)"
                            if backend == "cuda" else
                            "measured: median call time of a ReLU module on an 8-element tensor (dispatch floor)")
                           + "; per_module_call: nn.Identity call minus a plain call; per_view: x.view(-1)",
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
