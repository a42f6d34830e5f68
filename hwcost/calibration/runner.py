"""``hwcost calibrate``: the orchestration only: run the suite's cases within a time budget
(resumable), fit the time model, write the profile. Timing is in bench.py, the samples store in
samples.py, fitting in fit.py, the YAML in profile.py. Long because the run's steps (fundamentals, cases
with probe readings, the second look, the fresh-process probes, the end readings, the load check) must
keep their order and their resume and interruption handling together in one loop."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from typing import Callable

import yaml

from ..analysis import Analysis, analyze
from ..devices import DeviceProfile, load_device, parse_profile
from ..errors import InputError
from ..host import OTHER_LOAD_LIMIT, OtherLoad
from ..measure import check_backend
from ..predict import predict_analysis
from ..probe import PROBE_BATCHES, probe_network, probe_on_scale_ms
from ..timing import fixed_threads, subnormals_flushed_in_process, synchronizer
from ..timemodel import ContextModel, Rates, TimeModel, calibration_text, rates_of, sha256
from .bench import (last_level_cache_bytes, llc_miss_points, measure_case, measure_chain, measure_fundamentals,
                    private_cache_bytes, probe_reading, speed_readings)
from .fit import fit_context_model, fit_energy, fit_time_model, suspect_samples
from .profile import CalibrationRun, _probe_record, profile_yaml
from .samples import (SAMPLE_COLUMNS, Sample, atomic_write, fundamental_row, load_existing, probe_during,
                      read_samples, samples_path_for, steady, write_samples_header)
from .suite import SUITE_VERSION, cases, chain_case, decode_probe_network
from .transformers_overhead import measured as transformers_measured, transformers_overheads

DEFAULT_BUDGET_S = 300.0
QUICK_BUDGET_S = 45.0
CHAIN_EVERY = 10          # one network-like chain per this many isolated cases
RECHECK_SHARE = 0.05      # the budget's last part: the second look at cases that came out far too slow


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
    allow_busy: bool = False,
    _stop: Callable[[int], bool] | None = None,
) -> DeviceProfile:
    """Run the microbenchmark suite here and write a calibrated profile (YAML + samples CSV).

    ``budget_s``: wall time for the suite (default 300 s; ``quick``: 45 s). ``base``: a datasheet
    profile (name or path) whose power and energy figures the new profile inherits when no power
    sensor is readable. Interrupting (Ctrl-C) keeps the samples; rerunning resumes. ``allocator``:
    the host malloc condition the samples are taken under (hwcost.allocator; recorded in the profile).
    Refused when other processes took more than hwcost.host.OTHER_LOAD_LIMIT of the machine's CPU time
    while it measured (its samples are set aside), unless ``allow_busy``.
    """
    from ..allocator import held as held_allocator
    from ..meters import EnergyMeter

    check_backend(backend)
    with held_allocator(allocator):
        out = out or f"{name}.yaml"
        budget = budget_s if budget_s is not None else (QUICK_BUDGET_S if quick else DEFAULT_BUDGET_S)
        samples_path = samples_path_for(out)
        existing = load_existing(samples_path)
        done_ids = {s.case_id for s in existing}
        base_profile = load_device(base) if base else None
        interrupted, retimed = False, 0
        meter = EnergyMeter.detect(backend)
        prog = Progress(budget, progress)
        probe_net, probe_x = probe_network()
        probe, sync = (probe_net.to(backend), probe_x.to(backend)), synchronizer(backend)
        decode_probe = decode_probe_network() if backend == "cpu" else None   # generation's reference (bench)
        batch_probe = probe_network(PROBE_BATCHES[-1]) if backend == "cpu" else None   # compute-bound models' one
        with fixed_threads(threads) as n_threads, OtherLoad() as load:
            fundamentals = {s.op: s.time_s for s in existing if s.family == "_fundamental"}
            new_file = not existing
            with open(samples_path, "a") as f:
                writer = write_samples_header(f) if new_file else None
                if writer is None:
                    import csv

                    writer = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS, lineterminator="\n")
                try:
                    if not fundamentals:
                        prog.update(0, "fundamentals")
                        fundamentals = measure_fundamentals(backend, list(dtypes))
                        fundamentals["suite_version"] = float(SUITE_VERSION)
                        fundamentals.update(speed_readings("start", backend, allocator))
                        for k, v in fundamentals.items():
                            writer.writerow(fundamental_row(k, v))
                        if backend == "cpu":
                            _write_fresh_readings(writer, n_threads, allocator)
                        f.flush()
                    count = len([s for s in existing if not s.family.startswith("_")])
                    chains = len([s for s in existing if s.family == "_chain"])
                    for case in cases(seed):
                        if prog.elapsed >= budget * (1 - RECHECK_SHARE) or (max_cases is not None and count >= max_cases):
                            break
                        if _stop is not None and _stop(count):
                            raise KeyboardInterrupt
                        if case.id in done_ids:
                            continue
                        count += _time_case(case, writer, f, backend)
                        if count % CHAIN_EVERY == 0:
                            writer.writerow(measure_chain(seed, chains, backend, meter).row())
                            # the machine's speed all through the run, not only at its ends
                            for k, v in probe_reading(probe, sync, backend, decode_probe, chains, batch_probe).items():
                                writer.writerow(fundamental_row(k, v))
                            f.flush()
                            chains += 1
                        prog.update(count, case.family)
                    f.flush()
                    prog.update(count, "second look")
                    retimed = second_look(samples_path, writer, f, seed, fundamentals, backend,
                                          lambda: prog.elapsed < budget)
                except KeyboardInterrupt:
                    interrupted = True
                try:  # the probes as a fresh process runs them (fresh.py), then the machine's speed at the end
                    if backend == "cpu" and not interrupted:
                        _write_fresh_readings(writer, n_threads, allocator)
                    end = speed_readings("end", backend, allocator)
                    fundamentals.update(end)
                    for k, v in end.items():
                        writer.writerow(fundamental_row(k, v))
                except KeyboardInterrupt:  # a second Ctrl-C: keep the samples, skip the probe
                    interrupted = True
        with open(samples_path) as f:
            samples_text = f.read()
        samples = read_samples(samples_text)
        fundamentals.update(probe_during(samples))
        n_cases = len({s.case_id for s in samples if not s.family.startswith("_")})
        prog.finish(
            f"{'interrupted: ' if interrupted else ''}{n_cases} cases measured in {samples_path}"
            + (f" ({retimed} timed again: far slower than their family predicted)" if retimed else "")
            + ("; rerun the same command to resume" if interrupted else "")
        )
        fundamentals["other_cpu_share"] = load.share
        if load.share > OTHER_LOAD_LIMIT and not allow_busy:
            aside = samples_path[: -len(".csv")] + ".busy.csv"
            os.replace(samples_path, aside)
            raise InputError(
                f"other processes used {load.share:.0%} of this machine's CPU time while it was calibrated (limit "
                f"{OTHER_LOAD_LIMIT:.0%}): ops timed on a busy machine come out slow, and so would every prediction. "
                f"The samples are set aside in {aside}. Calibrate when the machine is quiet, or pass --allow-busy "
                "(allow_busy=True) to write the profile anyway")
        if n_cases == 0:   # after the load check: a busy machine may measure nothing, and the load is why
            raise InputError("no case was measured; nothing to fit (give a larger --budget)")
        run = CalibrationRun(name, backend, n_threads, dtypes, budget, seed, n_cases, interrupted, base_profile,
                             meter.name if meter else None)
        text = profile_yaml(run, fundamentals, samples_path, samples_text)
        return _fit_and_write(text, out, samples, samples_path, seed, fundamentals)


_TRANSFORMERS_SOURCE_START = "; per_transformers_"
TRANSFORMERS_KEYS = ("per_transformers_call", "per_transformers_forward", "per_transformers_call_cached",
                     "per_transformers_forward_cached")


def _write_fresh_readings(writer, threads: int, allocator: str) -> None:
    """The probes read in a fresh process (fresh.py), written as fundamentals; taken at a run's start and at
    its end, pooled by samples.probe_during: one child's eleven readings in five seconds scattered with the
    ratio's 5-13% round-to-round movement here. Where the child fails, the run's own readings stand, and
    it says so."""
    from .fresh import fresh_probe_readings   # here: `python -m` of it imports this package

    fresh, why = fresh_probe_readings(threads, allocator, subnormals_flushed_in_process())
    for k, v in fresh.items():
        writer.writerow(fundamental_row(k, v))
    if why:
        print(f"hwcost calibrate: the probes could not be read in a fresh process ({why}); drift adjustment "
              "reads the readings taken during the run where no fresh process read them", file=sys.stderr)


def _transformers_source(entries: dict[str, float]) -> str:
    if "per_transformers_forward" not in entries:   # samples before suite 26: one cached 1-layer forward
        return (_TRANSFORMERS_SOURCE_START + "call: a one-layer transformers Llama's measured decode forward less this "
                "profile's prediction of it, per call of a transformers module")
    return (_TRANSFORMERS_SOURCE_START + "forward / _call: decode forwards of 1- and 3-layer transformers Llamas, "
            "measured with the private caches evicted before each layer as a real model's weights evict them "
            "(_cached: back to back), less their prediction and (where timed) a plain network of the same ops' time over "
            "its own, split into a cost per forward and one per module call (calibration/transformers_overhead.py)")


def _fit_and_write(text: str, out: str, samples: list[Sample], samples_path: str, seed: int,
                   fundamentals: dict[str, float]) -> DeviceProfile:
    # the caches this run measured: a fresh profile records them only with the context model fitted below
    rates = replace(rates_of(parse_profile(text, out)),
                    private_cache_bytes=fundamentals.get("private_cache_bytes", 0.0))
    model = fit_time_model(samples, rates)
    doc = yaml.safe_load(text)
    cal = doc.get("calibration") or {}
    cpu_threads = int(cal.get("threads") or 0) if cal.get("backend", "cpu") == "cpu" else 0
    model.context, energy_rows = fit_context(model, samples, seed, fundamentals, cpu_threads)
    energy = fit_energy(energy_rows, form="busy" if doc.get("execution") == "async" else "linear")
    model_text = json.dumps(model.to_dict(), separators=(",", ":"))
    model_path = samples_path[: -len(".samples.csv")] + ".model.json"
    atomic_write(model_path, model_text)
    doc["calibration"]["model_file"] = os.path.basename(model_path)
    doc["calibration"]["model_sha256"] = sha256(model_text)
    doc["calibration"]["context"] = {k: v for k, v in vars(model.context).items()}
    doc["calibration"].update(_probe_record(fundamentals))   # a refit re-derives the probe times as well
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
    if transformers_measured(fundamentals):
        # a refit starts from the written profile: its earlier values must not predict part of the residual
        for key in TRANSFORMERS_KEYS:
            doc["overhead_us"].pop(key, None)
        source = doc["sources"]["overhead_us"].split(_TRANSFORMERS_SOURCE_START)[0]
        bare = parse_profile(yaml.safe_dump(doc, sort_keys=False), out)
        entries = transformers_overheads(fundamentals, lambda a: predict_analysis(a, bare).latency_ms * 1e-3)
        if entries:
            doc["overhead_us"].update(entries)
            doc["sources"]["overhead_us"] = source + _transformers_source(entries)
    text = yaml.safe_dump(doc, sort_keys=False, width=100)
    atomic_write(out, text)
    return parse_profile(text, out)


def refit(profile_path: str) -> DeviceProfile:
    """Fit a calibrated profile's model again from its stored samples (no measuring)."""
    prof = load_device(profile_path)
    if not prof.calibration:
        raise InputError(f"{profile_path} is not a calibrated profile (no calibration section)")
    samples_text = calibration_text(prof, "samples")
    samples = read_samples(samples_text)
    fundamentals = {s.op: s.time_s for s in samples if s.family == "_fundamental"}
    fundamentals.update(probe_during(samples))
    backend = prof.calibration.get("backend", "cpu")
    if "private_cache_bytes" not in fundamentals:  # samples of suite version 2: take this host's
        fundamentals["private_cache_bytes"] = private_cache_bytes(backend, int(prof.calibration.get("threads", 1)))
    if "llc_bytes" not in fundamentals:            # samples before suite version 6: likewise
        fundamentals["llc_bytes"] = last_level_cache_bytes(backend)
    samples_path = os.path.join(os.path.dirname(os.path.abspath(profile_path)), prof.calibration["samples_file"])
    with open(profile_path) as f:
        text = f.read()
    return _fit_and_write(text, profile_path, samples, samples_path, int(prof.calibration.get("seed", 0)), fundamentals)


def second_look(samples_path: str, writer, f, seed: int, fundamentals: dict[str, float], backend: str,
                time_left: Callable[[], bool]) -> int:
    """Time again the cases that came out far slower than the rest of their family predicts
    (fit.suspect_samples), while ``time_left()``; each new row is appended under the same case id, and
    the fit keeps a case's faster time (fit.fastest_per_case). Returns the number timed again.

    A shared machine slows down for a second or more at a time, and a case timed then is slow in all its
    repeats: its median cannot see it, and the trees carry the slowness to its neighbours (a
    bidirectional GRU's 327 ms sample put a 2-layer GRU classifier at 151 ms against 78 measured)."""
    with open(samples_path) as fh:
        samples = read_samples(fh.read())
    # the baseline only orders a family's samples; any measured matmul rate serves
    peak = fundamentals.get("matmul_flops_float32") or next(
        (v for k, v in fundamentals.items() if k.startswith("matmul_flops_")), 1e9)
    rates = Rates(floor_s=fundamentals["floor_s"], matrix_flops={"float32": peak}, vector_flops={"float32": peak},
                  bandwidth=fundamentals["copy_bytes_per_s"],
                  private_cache_bytes=fundamentals.get("private_cache_bytes", 0.0))
    wanted = set(suspect_samples(samples, rates))
    drawn = len([s for s in samples if not s.family.startswith("_")])
    done = 0
    for i, case in enumerate(cases(seed)):
        if not wanted or not time_left() or i > 2 * drawn + 100:   # every id wanted was drawn by then
            break
        if case.id in wanted:
            wanted.discard(case.id)
            done += _time_case(case, writer, f, backend)
    return done


def _time_case(case, writer, f, backend: str) -> int:
    """Build, time and append one suite case; 1 if it gave a sample (0: no op to time)."""
    mod, inputs = case.build()
    s = measure_case(mod, inputs, case.id, backend)
    if s is None:
        return 0
    writer.writerow(s.row())
    f.flush()
    return 1


def fit_context(model: TimeModel, samples: list[Sample], seed: int, fundamentals: dict[str, float],
                cpu_threads: int = 0) -> tuple[ContextModel, list[tuple[float, float, float, float, float]]]:
    """Rebuild every measured chain (deterministic ids), predict its ops in isolation, and fit how
    much slower they run in context (after the measured module-call and view costs), anchored to the CNN
    probes the run read on the samples' scale (fit_context_model says why); ``cpu_threads``: the threads a CPU
    run timed on (0: a GPU), which decide each convolution's kernel (ContextModel.threads). Also returns
    (seconds, FLOPs, bytes, joules, isolated-sum seconds) per chain for the energy fit."""
    rows, times, energy_rows = [], [], []
    cache_bytes, llc_bytes = fundamentals.get("private_cache_bytes", 0.0), fundamentals.get("llc_bytes", 0.0)
    llc_fit = fundamentals.get("llc_fit_bytes", 0.0)   # samples before suite 27: none, the knee serves
    caches = ContextModel(cache_bytes=cache_bytes, llc_bytes=llc_bytes, llc_fit_bytes=llc_fit,   # suite 28 on:
                          llc_miss=llc_miss_points(fundamentals),   # before, all or nothing
                          cold_pool_bytes=fundamentals.get("stream_pool_bytes", 0.0),
                          # suite 30 on (CPU): chains timed with their weights rotated past the private caches
                          resident_bytes=cache_bytes if fundamentals.get("chain_rotation_bytes", 0.0) > 0 else 0.0,
                          matvec_stream_bytes=fundamentals.get("matvec_stream_bytes", 0.0),   # suite 33 on
                          threads=cpu_threads)
    version = int(fundamentals.get("suite_version", 2))

    def row_and_time(net, inputs: tuple, time_s: float) -> tuple[dict[str, float], float, Analysis]:
        a = analyze(net, inputs if len(inputs) > 1 else inputs[0])
        framework = a.module_calls * fundamentals.get("module_call_s", 0.0) + a.view_ops * fundamentals.get("view_s", 0.0)
        return model.chain_row(a.ops, caches), max(time_s - framework, 0.5 * time_s), a

    for s in steady(samples):   # chains at the run's median speed, as the isolated samples
        if s.family != "_chain":
            continue
        k = int(s.case_id.split("-")[1])
        row, time_s, a = row_and_time(*chain_case(seed, k, version).build(), s.time_s)
        rows.append(row)
        times.append(time_s)
        energy_rows.append((s.energy_s, float(a.total.flops), float(a.total.memory_traffic_bytes), s.energy_j,
                            row["_isolated_s"]))   # the chain's kernel (busy) time, for a GPU's energy fit
    anchors = []
    read = _probe_record(fundamentals)   # as the profile will record the probes
    for b in PROBE_BATCHES:
        probe_ms = probe_on_scale_ms(read, b)
        if probe_ms:
            net, x = probe_network(b)
            anchors.append(row_and_time(net, (x,), probe_ms * 1e-3)[:2])
    return fit_context_model(rows, times, caches, anchors), energy_rows
