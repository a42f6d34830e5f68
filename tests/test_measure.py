"""Measurement harness: statistics, warm-up, outlier rejection, per-layer shares, energy meters."""
import itertools

import pytest
import torch
import torch.nn as nn

from hwcost.meters import rapl_meter
from hwcost.errors import InputError
from hwcost.measure import Measurement, measure
from hwcost.timing import reject_outliers, subnormals_flushed, summarize, time_callable


def test_outlier_rejection_is_one_sided_and_robust():
    samples = [10.0, 10.2, 9.9, 10.1, 10.0, 55.0, 10.05]
    kept, rejected = reject_outliers(samples)
    assert rejected == 1 and 55.0 not in kept
    fast = [10.0, 10.2, 9.9, 10.1, 1.0]                  # a fast run is never dropped
    assert reject_outliers(fast)[1] == 0
    assert reject_outliers([1.0, 1.0, 1.0, 1.0])[1] == 0  # zero spread: nothing to judge
    assert reject_outliers([1.0, 9.0])[1] == 0            # too few samples to judge


def test_summary_quantiles():
    st = summarize([float(x) for x in range(1, 12)])      # 1..11
    assert st.median_s == 6 and st.p10_s == pytest.approx(2.0) and st.p90_s == pytest.approx(10.0)
    assert st.p10_s <= st.median_s <= st.p90_s


def test_time_callable_warms_up_and_repeats_with_a_fake_clock():
    calls = []
    ticks = itertools.count()
    clock = lambda: float(next(ticks))  # noqa: E731  every reading advances one "second"
    st = time_callable(lambda: calls.append(1), warmup=4, repeats=6, clock=clock)
    assert len(calls) == 4 + 6 == st.calls   # every call counted, for the energy per call
    assert len(st.samples_s) == 6 and st.median_s == 1.0
    calls.clear()
    st = time_callable(lambda: calls.append(1), warmup=0, repeats=100, clock=clock, max_seconds=5)
    assert 3 <= len(st.samples_s) < 100  # the time limit stops it, after at least 3 runs


def test_interleaved_pairs_time_the_reference_warm_and_the_model_alone():
    from hwcost.timing import time_interleaved

    now = [0.0]
    log = []

    def model():
        log.append("model")
        now[0] += 3.0

    def reference():   # the first call after the model is slow (cold), the next one warm
        cold = log[-1] == "model"
        log.append("ref")
        now[0] += 2.0 if cold else 1.0

    paired = time_interleaved(model, reference, warmup=1, repeats=4, clock=lambda: now[0])
    assert paired.model.median_s == 3.0 and paired.reference.median_s == 1.0 and paired.ratio_median == 3.0
    assert log.count("model") == 5 and log.count("ref") == 1 + 2 * 4
    log.clear()
    cold = time_interleaved(model, reference, warmup=0, repeats=4, clock=lambda: now[0], reference_warmup=0)
    assert cold.reference.median_s == 2.0 and cold.ratio_median == 1.5


def test_interleaved_pairs_can_time_the_model_warm_too():
    from hwcost.timing import time_interleaved

    now, log = [0.0], []

    def model():   # the first call after the reference is slow (cold), the next one warm
        cold = not log or log[-1] == "ref"
        log.append("model")
        now[0] += 5.0 if cold else 3.0

    def reference():
        cold = log[-1] == "model"
        log.append("ref")
        now[0] += 2.0 if cold else 1.0

    cold = time_interleaved(model, reference, warmup=1, repeats=4, clock=lambda: now[0])
    assert cold.model.median_s == 5.0
    log.clear()
    warm = time_interleaved(model, reference, warmup=1, repeats=4, clock=lambda: now[0], model_warmup=1)
    assert warm.model.median_s == 3.0 and warm.reference.median_s == 1.0 and warm.ratio_median == 3.0
    assert log.count("model") == 1 + 2 * 4 and log.count("ref") == 1 + 2 * 4


def test_measure_times_a_reference_that_recovers_slowly_from_the_model_in_its_steady_state(monkeypatch):
    """A small probe right after a large model reads slow for more than one call (its caches refill): the
    pairing measure uses must let it recover, or every drift-adjusted figure comes out too low."""
    import importlib

    from hwcost.timing import time_interleaved

    measure_mod = importlib.import_module("hwcost.measure")   # the package's ``measure`` is the function

    now, log = [0.0], []

    def model():
        log.append("model")
        now[0] += 3.0

    def reference():   # 2.0 for the first two calls after the model, then 1.0
        since = len(log) - 1 - max(i for i, name in enumerate(log) if name == "model") if "model" in log else 9
        log.append("ref")
        now[0] += 2.0 if since < 2 else 1.0

    seen = {}

    def recording(fn, ref, warmup, repeats, sync, **kwargs):   # measure's pairing, on this fake clock
        seen.update(kwargs)
        kwargs.pop("max_seconds", None)
        return time_interleaved(model, reference, warmup, repeats, sync, clock=lambda: now[0], **kwargs)

    monkeypatch.setattr(measure_mod, "time_interleaved", recording)
    net = nn.Linear(4, 4)
    m = measure_mod.measure(net, (4,), repeats=5, reference=(nn.Linear(4, 4), torch.randn(1, 4)),
                            reference_then_ms=1000.0)
    assert seen["reference_warmup"] == measure_mod.REFERENCE_WARMUP_PER_PAIR >= 2
    assert m.reference_ms == 1000.0 and m.machine_factor == 1.0 and m.ratio_median == 3.0
    log.clear()
    one = time_interleaved(model, reference, 1, 5, clock=lambda: now[0], reference_warmup=1)
    assert one.reference.median_s == 2.0   # one untimed call is not enough for such a reference


def test_energy_per_call_counts_every_call_and_only_the_models_share(monkeypatch):
    """A meter read around a whole measurement: the model is charged its own calls' energy, warm-up and
    untimed calls counted, not the reference's. Constant 10 W, the model 3 s a call, the reference 1 s:
    30 J per model call, however many untimed calls either side made."""
    import importlib

    from hwcost.meters import EnergyMeter
    from hwcost.timing import TimingStats, time_interleaved

    measure_mod = importlib.import_module("hwcost.measure")
    assert measure_mod.per_call_energy_j(40.0, TimingStats(2.0, 2.0, 2.0, [2.0] * 4, calls=5),
                                         TimingStats(1.0, 1.0, 1.0, [1.0] * 4, calls=10)) == pytest.approx(4.0)
    assert measure_mod.per_call_energy_j(46.0, TimingStats(2.0, 2.0, 2.0, [2.0] * 20, calls=23)) == pytest.approx(2.0)
    now = [0.0]

    def model():
        now[0] += 3.0

    def reference():
        now[0] += 1.0

    monkeypatch.setattr(EnergyMeter, "detect", staticmethod(lambda backend: EnergyMeter("fake", lambda: 10.0 * now[0])))

    def paired(fn, ref, warmup, repeats, sync, **kwargs):
        kwargs.pop("max_seconds", None)
        kwargs["model_warmup_s"] = 10.0   # three untimed model calls per pair, and the one that sizes them
        return time_interleaved(model, reference, warmup, repeats, sync, clock=lambda: now[0], **kwargs)

    def alone(fn, warmup, repeats, sync, **kwargs):
        from hwcost.timing import time_callable
        kwargs.pop("max_seconds", None)
        return time_callable(model, warmup, repeats, sync, clock=lambda: now[0])

    monkeypatch.setattr(measure_mod, "time_interleaved", paired)
    m = measure_mod.measure(nn.Linear(4, 4), (4,), repeats=5, reference=(nn.Linear(4, 4), torch.randn(1, 4)),
                            reference_then_ms=1000.0)
    assert m.energy_mj == pytest.approx(30_000.0)
    monkeypatch.setattr(measure_mod, "time_callable", alone)
    assert measure_mod.measure(nn.Linear(4, 4), (4,), repeats=5).energy_mj == pytest.approx(30_000.0)


def test_interleaved_pairs_warm_a_short_model_for_longer_than_a_long_one():
    """After the reference, a model runs slow for its first two calls: a short one gets untimed calls
    lasting ``model_warmup_s`` (capped) and is timed steady; a long one keeps the single untimed call."""
    from hwcost.timing import time_interleaved

    def run(warm_s: float, cold_s: float):
        now, log = [0.0], []

        def model():
            since = len(log) - 1 - max(i for i, n in enumerate(log) if n == "ref") if "ref" in log else 9
            log.append("model")
            now[0] += cold_s if since < 2 else warm_s

        def reference():
            log.append("ref")
            now[0] += 1.0

        paired = time_interleaved(model, reference, warmup=1, repeats=4, clock=lambda: now[0], model_warmup=1,
                                  model_warmup_s=0.05, model_warmup_max=3)
        assert paired.model.calls == log.count("model") and paired.reference.calls == log.count("ref") == 1 + 4 * 2
        return paired, log.count("model")

    short, calls = run(0.004, 0.005)   # 4 ms warm: ceil(50 / 4) = 13 calls wanted, capped at 3
    assert short.model_warmup == 3 and short.model.median_s == pytest.approx(0.004) and calls == 1 + 1 + 4 * 4
    long, calls = run(0.1, 0.125)      # 100 ms: one untimed call lasts longer than 50 ms
    assert long.model_warmup == 1 and calls == 1 + 1 + 4 * 2
    fixed = time_interleaved(lambda: None, lambda: None, warmup=0, repeats=3, model_warmup=2)
    assert fixed.model_warmup == 2   # without model_warmup_s the count is what was asked


def test_blocks_time_both_warm_and_follow_the_machines_speed():
    from hwcost.timing import time_in_blocks

    now, log, speed = [0.0], [], [1.0]

    def timed(name, warm_s, cold_s):
        def call():
            cold = not log or log[-1] != name
            log.append(name)
            now[0] += (cold_s if cold else warm_s) * speed[0]
        return call

    model = timed("model", 3.0, 5.0)      # a first call after the other is cold: untimed in a block
    reference = timed("ref", 1.0, 2.0)

    def slowing_model():
        if log.count("model") == 6:        # the machine halves its speed after the first two blocks
            speed[0] = 2.0
        model()

    paired = time_in_blocks(slowing_model, reference, repeats=8, rounds=4, clock=lambda: now[0])
    assert sorted(set(paired.model.samples_s)) == [3.0, 6.0]     # warm model calls only, at either speed
    assert set(paired.reference.samples_s) <= {1.0, 2.0}
    assert paired.ratio_median == 3.0 and paired.ratio_spread == 1.0   # every block's ratio held while the speed moved
    assert log.count("model") == 4 * 3 and log.count("ref") == 4 * 4


def test_a_short_reference_is_warmed_for_a_while_before_it_is_timed():
    from hwcost.timing import time_in_blocks

    now, since_case = [0.0], [0]

    def case():                # streams memory: the reference after it runs slow for its first calls
        since_case[0] = 0
        now[0] += 10.0

    def reference():
        since_case[0] += 1
        now[0] += {1: 5.0, 2: 3.0, 3: 2.0}.get(since_case[0], 1.0)

    one_call = time_in_blocks(case, reference, repeats=4, rounds=2, reference_calls=3, clock=lambda: now[0],
                              reference_warm_s=0.0)
    assert sorted(set(one_call.reference.samples_s)) == [1.0, 2.0, 3.0]   # timed while it recovered
    warmed = time_in_blocks(case, reference, repeats=4, rounds=2, reference_calls=3, clock=lambda: now[0],
                            reference_warm_s=9.0)
    assert set(warmed.reference.samples_s) == {1.0}                       # 5 + 3 + 2 untimed first
    assert warmed.ratio_median == 10.0 and one_call.ratio_median == 5.0


def test_sync_is_called_around_each_timed_run():
    events = []
    time_callable(lambda: events.append("run"), warmup=1, repeats=3, sync=lambda: events.append("sync"))
    assert events == ["run", "sync", "run", "sync", "run", "sync", "run", "sync"]


def test_subnormals_are_flushed_while_timing_and_restored_after():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero control")
    tiny = torch.tensor([1e-40])   # subnormal in float32
    assert (tiny * 1.0).item() != 0.0
    with subnormals_flushed():
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0
    with subnormals_flushed(False):
        assert (tiny * 1.0).item() != 0.0


def test_a_process_that_flushes_subnormals_keeps_them_flushed_after_a_measurement():
    import hwcost.timing as timing

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero control")
    tiny = torch.tensor([1e-40])
    try:
        timing.flush_subnormals_now()
        with subnormals_flushed():
            pass
        assert (tiny * 1.0).item() == 0.0   # the CLI's setting, not switched off by the measurement
    finally:
        timing.flush_subnormals_now(False)


class _Probe(nn.Module):
    """Records whether subnormals were flushed while it ran (on the class: measure runs a copy)."""
    flushed: list[bool] = []

    def forward(self, x):
        _Probe.flushed.append((torch.tensor([1e-40]) * 1.0).item() == 0.0)
        return x


def test_the_cli_called_in_process_leaves_the_callers_subnormal_setting(capsys):
    from hwcost.cli import main

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero control")
    assert main(["devices"]) == 0
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0


def test_measure_times_with_subnormals_flushed_unless_told_not_to():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero control")
    for flush in (True, False):
        _Probe.flushed = []
        measure(_Probe(), (4,), batch_size=1, repeats=3, warmup=1, flush_subnormals=flush)
        assert _Probe.flushed and set(_Probe.flushed) == {flush}
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0


def test_measure_a_model_with_per_layer_shares():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    m = measure(model, (3, 32, 32), batch_size=2, repeats=5, per_layer=True, model_name="tiny")
    assert m.latency_ms > 0 and m.p10_ms <= m.latency_ms <= m.p90_ms
    assert m.batch_size == 2 and m.fps == pytest.approx(2000 / m.latency_ms)
    assert [layer.name for layer in m.layers] == ["0", "1", "2", "3", "4"]
    assert all(layer.share_pct >= 0 for layer in m.layers) and 0 < sum(x.share_pct for x in m.layers) < 300
    assert "duration %" in m.table()
    assert model.training  # the caller's model is left as it was


def test_measure_rejects_what_it_cannot_run():
    with torch.device("meta"):
        meta_model = nn.Linear(4, 4)
    with pytest.raises(InputError, match="meta"):
        measure(meta_model, (4,))
    with pytest.raises(InputError, match="backend"):
        measure(nn.Linear(4, 4), (4,), backend="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="cuda"):
            measure(nn.Linear(4, 4), (4,), backend="cuda")
    with pytest.raises(InputError, match="int8"):
        measure(nn.Linear(4, 4), (4,), dtype="int8")


def test_rapl_reader_sums_packages_and_handles_wraparound(tmp_path):
    for pkg, (energy, wrap) in {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (500, 10_000_000)}.items():
        d = tmp_path / pkg
        d.mkdir()
        (d / "energy_uj").write_text(str(energy))
        (d / "max_energy_range_uj").write_text(str(wrap))
    (tmp_path / "intel-rapl:0:0").mkdir()   # a sub-domain (core), not summed
    meter = rapl_meter(str(tmp_path))
    assert meter is not None and "2 package domains" in meter.name
    base = meter.read_j()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text(str(3_000_000))   # +2 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text(str(100))         # wrapped: +9,999,600 uJ
    assert meter.read_j() - base == pytest.approx(2.0 + 9.9996)
    assert rapl_meter(str(tmp_path / "none")) is None


def test_allocator_modes():
    from hwcost import allocator

    with pytest.raises(InputError, match="allocator"):
        allocator.apply("jemalloc")
    assert allocator.apply("system") in allocator.MODES   # leaves malloc alone


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc mallopt and ru_minflt")
def test_retain_allocator_stops_refaulting_freed_activations():
    """With retain, a 40 MB block freed and allocated again is served from the heap: no page faults."""
    import resource

    from hwcost import allocator

    if allocator.apply("retain") != "retain":
        pytest.skip("no glibc mallopt here")
    nbytes = 40 * 2**20
    for _ in range(2):                      # the first pass may fault the heap in
        torch.empty(nbytes, dtype=torch.uint8).fill_(1)
    trials = []
    for _ in range(5):   # the kernel may reclaim idle heap pages (DAMON here) now and then: one clean trial shows it
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            torch.empty(nbytes, dtype=torch.uint8).fill_(1)
        trials.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert min(trials) < 0.1 * 3 * nbytes / 4096   # without retain: one fault per 4 KiB page, every time
    m = measure(nn.Linear(4, 4), (4,), repeats=3, allocator="system")
    assert m.allocator == "retain" and "allocator: retain" in m.table()  # a caller's retain stays, and says so
    allocator.release()
    assert allocator.state() == "system"


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc mallopt and malloc_trim")
def test_a_measurement_gives_back_the_memory_it_retained():
    """measure holds retain for its own calls only: 300 MB of freed activations go back to the system after it
    (kept, a process that calibrates and measures again and again grew to 20 GB of fragments)."""
    import psutil

    from hwcost import allocator

    allocator.release()

    class Big(nn.Module):
        def forward(self, x):
            return (x.expand(3, 25_000_000) + 1).sum()   # a 300 MB float32 temporary per call

    rss = lambda: psutil.Process().memory_info().rss  # noqa: E731
    with allocator.held("retain") as mode:
        if mode != "retain":
            pytest.skip("no glibc mallopt here")
    before = rss()
    m = measure(Big(), (1,), repeats=3, warmup=1, max_seconds=5.0)
    assert m.allocator == "retain" and allocator.state() == "system"
    assert rss() - before < 100 * 2**20
    with allocator.held("retain"):
        with allocator.held("retain"):
            pass
        assert allocator.state() == "retain"     # an inner block leaves the outer one's condition alone
    assert allocator.state() == "system"


def _measurement(p10_ms: float, p90_ms: float, threads: int) -> Measurement:
    return Measurement("m", "cpu", 1, "float32", threads, latency_ms=(p10_ms + p90_ms) / 2, p10_ms=p10_ms,
                       p90_ms=p90_ms, samples_ms=[p10_ms, p90_ms])


def test_an_unsteady_machine_is_called_out():
    steady = _measurement(10.0, 11.0, threads=2)
    assert steady.spread == pytest.approx(1.1) and steady.steady and steady.steadiness_note() is None
    assert "not steady" not in steady.table()
    bimodal = _measurement(12.4, 19.8, threads=2)        # a shared VM losing its second vCPU in phases
    assert not bimodal.steady
    note = bimodal.steadiness_note()
    assert "x1.60" in note and "--threads 1" in note and note in bimodal.table()
    assert bimodal.to_dict()["spread"] == pytest.approx(19.8 / 12.4)
    assert "--threads 1" not in _measurement(12.4, 19.8, threads=1).steadiness_note()  # already one thread


def test_an_unsteady_pairing_is_timed_again_and_the_steadiest_kept():
    from hwcost.measure import PAIRED_ATTEMPTS, UNSTEADY_RATIO_SPREAD, steadiest_pair
    from hwcost.timing import PairedStats

    def pairing(spread, ratio):
        st = summarize([1.0, 1.0, 1.0])
        return PairedStats(st, st, ratio_median=ratio, ratio_spread=spread)

    def attempts(*spreads):
        made = iter([(pairing(s, ratio=10.0 + i), f"energy {i}") for i, s in enumerate(spreads)])
        return steadiest_pair(lambda: next(made))

    (pair, extra), made = attempts(1.2, 3.0)                      # steady at once: one pairing
    assert made == 1 and pair.ratio_median == 10.0 and extra == "energy 0"
    (pair, extra), made = attempts(2.0, 1.3, 1.1)                 # stops at the first steady one
    assert made == 2 and pair.ratio_spread == 1.3 and extra == "energy 1"
    (pair, _), made = attempts(2.4, 1.8, 1.9, 1.0)                # never steady: the steadiest, not the last
    assert made == PAIRED_ATTEMPTS == 3 and pair.ratio_spread == 1.8 and pair.ratio_median == 11.0
    assert UNSTEADY_RATIO_SPREAD > 1.0


def test_measure_against_a_reference_reports_its_pairings():
    model, ref = nn.Sequential(nn.Linear(32, 32), nn.ReLU()), nn.Linear(64, 64)
    m = measure(model, (32,), repeats=6, threads=1, max_seconds=2, reference=(ref, torch.randn(4, 64)),
                reference_then_ms=1.0)
    assert 1 <= m.paired_attempts <= 3 and m.ratio_spread > 0
    assert m.to_dict()["paired_attempts"] == m.paired_attempts
    assert measure(model, (32,), repeats=3, threads=1).paired_attempts == 0


def test_validate_names_rows_whose_ratio_to_the_probe_never_held():
    from hwcost.devices import load_device
    from hwcost.report import validation_table
    from hwcost.validate import Validation, ValidationRow

    def row(name, spread, attempts):
        m = Measurement(model_name=name, backend="cpu", batch_size=1, dtype="float32", threads=1, latency_ms=2.0,
                        p10_ms=1.9, p90_ms=2.1, samples_ms=[2.0], reference_ms=5.0, reference_then_ms=4.0,
                        ratio_median=0.4, ratio_spread=spread, reference_name="probe b1", paired_attempts=attempts)
        return ValidationRow(name, 1, 1.8, m)

    v = Validation(load_device("raspberry-pi-4"), [row("steady", 1.1, 1), row("wobbly", 1.9, 3)], 1, True, "")
    text = validation_table(v)
    assert "did not hold for wobbly b1 (x1.90 after 3 pairings)" in text and "steady b1" not in text.split("did not hold")[1]
    assert not v.rows[1].measurement.pairing_steady and v.rows[0].measurement.pairing_steady


def _bench_accuracy():
    """benchmarks/bench_accuracy.py as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_accuracy.py"
    spec = importlib.util.spec_from_file_location("bench_accuracy_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_accuracy_benchmark_takes_the_median_over_its_rounds_and_keeps_each():
    """benchmarks/bench_accuracy.py times every model in several passes; a row's raw and drift-adjusted
    latencies are the medians over them (hand-derived), a pass without a pairing does not count towards
    the adjusted one, and every pass stays in the row."""
    bench = _bench_accuracy()

    def one(measured, adjusted, spread=1.1, attempts=1):
        return {"measured_ms": measured, "adjusted_ms": adjusted, "machine_factor": adjusted / measured if adjusted else None,
                "ratio_spread": spread, "paired_attempts": attempts, "reference": "probe b1"}

    three = [one(10.0, 12.0), one(14.0, 11.0, 1.3, 2), one(11.0, 15.0)]
    row = bench.over_rounds(three)
    assert row["measured_ms"] == 11.0 and row["adjusted_ms"] == 12.0
    assert row["ratio_spread"] == 1.3 and row["paired_attempts"] == 4 and row["rounds"] == three
    two = bench.over_rounds([one(10.0, 12.0), one(12.0, 13.0)])
    assert two["measured_ms"] == 11.0 and two["adjusted_ms"] == 12.5
    unpaired = bench.over_rounds([one(10.0, None), one(12.0, 13.0)])
    assert unpaired["measured_ms"] == 11.0 and unpaired["adjusted_ms"] == 13.0


def test_the_accuracy_benchmark_calibrates_in_a_process_of_its_own():
    """The models are measured in a process that has not calibrated (bench_accuracy.calibration_command):
    the CLI's calibrate with the benchmark's name, output, threads and budget, and no progress bar off a
    terminal."""
    import sys
    from pathlib import Path

    bench = _bench_accuracy()
    cmd = bench.calibration_command("this-cpu-2t", Path("/x/this-cpu-2t.yaml"), 300.0, 2, progress=False)
    assert cmd == [sys.executable, "-m", "hwcost", "calibrate", "--name", "this-cpu-2t", "--out", "/x/this-cpu-2t.yaml",
                   "--threads", "2", "--budget", "300", "--no-progress"]
    default = bench.calibration_command("n", Path("n.yaml"), None, 1, progress=True)
    assert "--budget" not in default and "--no-progress" not in default   # the tool's own 300 s, a bar on a tty


def test_the_accuracy_benchmark_times_each_model_in_a_process_of_its_own(tmp_path):
    """bench_accuracy.measure_in_child: one model, each batch in the order given against the probe named for
    it, timed in a fresh process (a process that had held and run the other models ran the small ones
    slower); a child that fails stops the benchmark with the model's name and the child's error."""
    import argparse
    from pathlib import Path

    import yaml

    bench = _bench_accuracy()
    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "device_profiles" / "raspberry-pi-4.yaml").read_text())
    doc["calibration"] = {"threads": 1, "probe": {"fresh_during_ms": 4.0, "b8_fresh_during_ms": 30.0}}
    prof = tmp_path / "p.yaml"
    prof.write_text(yaml.safe_dump(doc))
    args = argparse.Namespace(repeats=2, max_seconds=1.0)
    got = bench.measure_in_child("kws-conv1d-gru", {2: 8, 1: 1}, prof, 1, args)
    assert [r["reference"] for r in got] == ["probe b8", "probe b1"]
    for r in got:   # adjusted = raw median x the probe then / the probe now (machine_factor = now / then)
        assert r["measured_ms"] > 0 and r["adjusted_ms"] == pytest.approx(r["measured_ms"] / r["machine_factor"], rel=0.25)
    with pytest.raises(SystemExit, match="timing no-such-model failed"):
        bench.measure_in_child("no-such-model", {1: 1}, prof, 1, args)


def test_the_accuracy_benchmark_refuses_no_rounds_with_a_clear_error():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_accuracy.py"
    for bad in (["--rounds", "0"], ["--repeats", "0"]):
        r = subprocess.run([sys.executable, str(script), "--threads", "1", "--reuse", *bad],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "must be at least 1" in r.stderr and "Traceback" not in r.stderr
