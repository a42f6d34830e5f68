"""Predictions a user can trust: refused dtypes, models that do not fit, validation against another
machine, measurements and calibrations on a busy machine, GPU capacity, physical bounds."""
import multiprocessing as mp
import time

import pytest
import torch
import torch.nn as nn
import yaml

import hwcost
from hwcost.devices import parse_profile
from hwcost.errors import InputError, ProfileError
from hwcost.measure import measure


# ------------------------------------------------------------------ dtypes without a rate


def test_a_dtype_without_a_rate_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    for device, dtype in (("raspberry-pi-4", "float16"), ("raspberry-pi-4", "bfloat16"), ("ryzen-9-7950x", "float16"),
                          ("h100", "float64")):
        with pytest.raises(ProfileError, match=f"has no {dtype} rate"):
            hwcost.predict(model, (3, 16, 16), device=device, dtype=dtype)
    assert hwcost.predict(model, (3, 16, 16), device="h100", dtype="float16").latency_ms > 0


def test_a_quantized_model_needs_an_int8_rate():
    text = yaml.safe_dump({"name": "fp32-only", "kind": "cpu", "description": "x", "execution": "sequential",
                           "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
                           "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x",
                                                                             "overhead_us": "x"}})
    q = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(64, 64)), {nn.Linear}, dtype=torch.qint8)
    with pytest.raises(ProfileError, match="has no int8 rate"):
        hwcost.predict(q, torch.zeros(1, 64), device=parse_profile(text))


# ------------------------------------------------------------------ memory


def test_a_model_larger_than_the_device_is_flagged():
    model = hwcost.load_model("llama2_70b")
    p = hwcost.predict(model.model, model.example, device="jetson-orin-nano", dtype="float16")
    assert p.memory.fits is False and p.memory.shortfall_bytes > 100e9
    assert any(w.startswith("does not fit: needs 13") and "GB short" in w for w in p.warnings)
    assert "WARNING: does not fit" in p.summary() and p.to_dict()["fits"] is False
    small = hwcost.predict(nn.Linear(8, 8), (8,), device="jetson-orin-nano")
    assert small.memory.fits is True and not small.warnings


def test_fit_is_unknown_without_a_capacity_and_reserved_needs_one():
    base = {"name": "x", "kind": "cpu", "description": "x", "execution": "sequential",
            "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
            "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x", "overhead_us": "x"}}
    p = hwcost.predict(nn.Linear(8, 8), (8,), device=parse_profile(yaml.safe_dump(base)))
    assert p.memory.fits is None and p.to_dict()["fits"] is None
    base["memory"]["reserved_gb"] = 1.0
    with pytest.raises(ProfileError, match="reserved_gb"):
        parse_profile(yaml.safe_dump(base))


# ------------------------------------------------------------------ validation on another machine


def test_validate_refuses_a_profile_of_another_machine(tmp_path):
    tiny = ("tiny", nn.Sequential(nn.Linear(16, 16)), (16,))
    with pytest.raises(InputError, match="cannot validate here: raspberry-pi-4 describes an aarch64 CPU"):
        hwcost.validate("raspberry-pi-4", [tiny])
    with pytest.raises(InputError, match="describes a GPU"):
        hwcost.validate("h100", [tiny])
    v = hwcost.validate("raspberry-pi-4", [tiny], repeats=3, force=True)   # asked for: compared, and said loudly
    assert v.same_machine is False and "WARNING: raspberry-pi-4 describes" in v.table()


def test_validate_refuses_a_calibration_of_another_cpu(tmp_path):
    doc = {"name": "elsewhere", "kind": "cpu", "description": "x", "execution": "sequential",
           "compute": {"matrix_tflops": {"float32": 0.1}}, "memory": {"bandwidth_gbps": 10.0},
           "overhead_us": {"host_per_op": 2.0}, "sources": {"compute": "x", "memory": "x", "overhead_us": "x"},
           "calibration": {"host": {"cpu": "Some Other CPU @ 9 GHz"}}}
    path = tmp_path / "elsewhere.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError, match="was calibrated on 'Some Other CPU @ 9 GHz'"):
        hwcost.validate(str(path), [("tiny", nn.Linear(4, 4), (4,))])


# ------------------------------------------------------------------ busy machines


def _spin(stop):
    while not stop.is_set():
        pass


@pytest.fixture
def two_busy_loops():
    stop = mp.Event()
    procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    yield
    stop.set()
    for p in procs:
        p.join(5)


def test_per_layer_shares_hold_on_a_busy_machine(two_busy_loops):
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for _ in range(10):
        m = measure(model, (3, 32, 32), batch_size=2, repeats=5, per_layer=True, model_name="tiny")
        shares = [layer.share_pct for layer in m.layers]
        assert len(shares) == 5 and all(0 <= s <= 100 for s in shares) and sum(shares) <= 101


def test_other_processes_load_is_seen(two_busy_loops):
    from hwcost.host import OTHER_LOAD_LIMIT, OtherLoad

    with OtherLoad() as load:
        time.sleep(1.0)
    assert load.share > OTHER_LOAD_LIMIT


def test_a_measurement_beside_other_load_says_so(two_busy_loops):
    m = measure(nn.Linear(64, 64), (64,), repeats=5, threads=1, model_name="tiny")
    assert m.other_cpu_share > 0.10 and "other processes used" in m.steadiness_note()
    assert "other processes used" in m.table() and m.to_dict()["other_cpu_share"] == m.other_cpu_share


def test_calibrate_refuses_a_busy_machine(tmp_path, two_busy_loops):
    out = tmp_path / "busy.yaml"
    # one thread and 60 s (max_cases ends it sooner): two intra-op threads beside two busy loops on two cores
    # spin at every barrier, and with 20 s the fundamentals alone outlasted the budget on a 2-vCPU VM
    with pytest.raises(InputError, match="other processes used .* of this machine's CPU time"):
        hwcost.calibrate(name="busy", out=str(out), budget_s=60.0, max_cases=4, progress=False, threads=1)
    assert not out.exists() and (tmp_path / "busy.samples.busy.csv").exists()
    p = hwcost.calibrate(name="busy", out=str(out), budget_s=60.0, max_cases=4, progress=False, allow_busy=True,
                         threads=1)
    assert p.calibration["other_cpu_pct"] > 10


# ------------------------------------------------------------------ a CUDA calibration's capacity


def test_a_cuda_profile_records_the_gpus_memory(monkeypatch):
    from hwcost.calibration.profile import CalibrationRun, profile_yaml

    class Props:
        total_memory = 80 * 1024**3

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake GPU")
    fundamentals = {"matmul_flops_float32": 5e13, "copy_bytes_per_s": 2e12, "floor_s": 5e-6, "host_enqueue_s": 8e-6}
    text = profile_yaml(CalibrationRun("g", "cuda", 1, ("float32",), 10.0), fundamentals, "g.samples.csv", "")
    doc = yaml.safe_load(text)
    assert doc["memory"]["capacity_gb"] == 80.0 and doc["calibration"]["host"]["gpu"] == "Fake GPU"


@pytest.mark.parametrize("share, launch", [(0.97, "blocking"), (0.02, "queued")])
def test_a_cuda_profile_says_whether_launches_block(monkeypatch, share, launch):
    from hwcost.calibration.profile import CalibrationRun, profile_yaml

    class Props:
        total_memory = 4 * 1024**3

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake Tegra")
    fundamentals = {"matmul_flops_float32": 2e11, "copy_bytes_per_s": 2e10, "floor_s": 5e-6, "host_enqueue_s": 9e-5,
                    "launch_issue_share": share}
    text = profile_yaml(CalibrationRun("g", "cuda", 1, ("float32",), 10.0), fundamentals, "g.samples.csv", "")
    assert yaml.safe_load(text)["launch"] == launch
    assert parse_profile(text).launch_blocking == (launch == "blocking")


# ------------------------------------------------------------------ a time model that stays physical


def _conv_cost(cin=16, size=28):
    a = hwcost.analyze(nn.Conv2d(cin, 32, 3, padding=1), torch.zeros(1, cin, size, size))
    (c,) = [c for c in a.ops if c.family == "conv"]
    return c


def test_ops_outside_the_sampled_ranges_are_flagged_and_bounded():
    import math

    from hwcost.features import shape_features
    from hwcost.calibration.fit import sampled_ranges
    from hwcost.timemodel import ContextModel, Rates, TimeModel, TreeEnsemble

    rates = Rates(floor_s=2e-6, matrix_flops={"float32": 1e11}, vector_flops={"float32": 1e11}, bandwidth=1e10)
    small = _conv_cost(16, 28)
    # sampled: convs like `small`, which ran 1.5x to 6x their baseline
    ranges = sampled_ranges({"conv": [(shape_features(small), math.log(1.5)), (shape_features(small), math.log(6.0))]})
    # a tree that extrapolates wildly: 10,000x its baseline for anything
    wild = TreeEnsemble(math.log(1e4), 1.0, [{"feature": [0], "threshold": [0.0], "left": [-1], "right": [-1],
                                             "value": [0.0]}])
    model = TimeModel({"conv": ["convolution"]}, {"conv": wild}, {"conv": 0.0}, 0.0, rates, ContextModel(), ranges)
    huge = _conv_cost(512, 112)
    flags = [False, False]
    iso = model.isolated([small, huge], "float32", [True, True], flags)
    assert flags == [False, True]
    base = rates.base(huge.flops, huge.memory_traffic_bytes, True, "float32")
    assert iso[1] == pytest.approx(6.0 * base)            # held at the least efficient the family measured
    assert iso[0] == pytest.approx(1e4 * rates.base(small.flops, small.memory_traffic_bytes, True, "float32"))
    # a family calibration never sampled is outside too, held within every family's span
    relu = [c for c in hwcost.analyze(nn.ReLU(), (8, 4, 4)).ops if c.launches][0]
    flags = [False]
    model.isolated([relu], "float32", [False], flags)
    assert flags == [True]


def test_a_convolution_of_a_dimensionality_never_sampled_is_outside():
    """The suite draws 2-D and 3-D convolutions; a 1-D one falls inside every size span (a 1 x 31 depthwise
    kernel has the taps of a 5 x 5 and 7 x 7 between them), yet PyTorch runs it at another speed. Its
    family's ranges keep the dimensionalities sampled, and ranges written before they did check sizes only."""
    import math

    from hwcost.features import shape_features
    from hwcost.calibration.fit import sampled_ranges
    from hwcost.timemodel import Rates, TimeModel

    def dw(conv, x):
        (c,) = [c for c in hwcost.analyze(conv, x).ops if c.family == "depthwise_conv"]
        return shape_features(c)

    sampled = [dw(nn.Conv2d(64, 64, k, padding=k // 2, groups=64), torch.zeros(1, 64, 28, 28)) for k in (3, 5, 7)]
    ranges = sampled_ranges({"depthwise_conv": [(f, math.log(2.0)) for f in sampled]})
    assert ranges["depthwise_conv"]["dims"] == [2.0]
    model = TimeModel({}, {}, {}, 0.0, Rates(2e-6, {"float32": 1e11}, {"float32": 1e11}, 1e10), ranges=ranges)
    one_d = dw(nn.Conv1d(64, 64, 31, padding=15, groups=64), torch.zeros(1, 64, 784))
    assert 9 <= one_d["kernel"] <= 49                     # inside the sampled taps: sizes alone would pass it
    assert model.extrapolated("depthwise_conv", one_d)
    assert not model.extrapolated("depthwise_conv", sampled[1])
    del ranges["depthwise_conv"]["dims"]                  # a model file fitted before the check: sizes only
    assert not model.extrapolated("depthwise_conv", one_d)
    # non-convolution families keep size spans only: a (batch, tokens, d) activation's dims are not checked
    relu = [c for c in hwcost.analyze(nn.ReLU(), (8, 4, 4)).ops if c.launches][0]
    assert "dims" not in sampled_ranges({"elementwise": [(shape_features(relu), 0.0)]})["elementwise"]


def test_the_warning_on_outside_1d_convolutions_does_not_advise_a_longer_budget(calibrated_with):
    """A longer calibration samples more sizes but never a 1-D convolution: the warning says so instead."""
    device = calibrated_with(lambda costs, device, dtype: ([1e-4] * len(costs), [c.family == "conv" for c in costs]))
    p = hwcost.predict(nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU()), (3, 16), device=device)
    (w,) = [w for w in p.warnings if "outside what calibration sampled" in w]
    assert "1 of them 1-D convolutions, which calibration does not draw" in w and "longer budget" not in w
    p = hwcost.predict(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (3, 16, 16), device=device)
    (w,) = [w for w in p.warnings if "outside what calibration sampled" in w]
    assert "longer budget" in w and "1-D" not in w


def test_extrapolated_layers_are_counted_under_the_table(calibrated_with):
    device = calibrated_with(lambda costs, device, dtype: ([1e-4] * len(costs), [c.family == "conv" for c in costs]))
    p = hwcost.predict(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (3, 16, 16), device=device)
    assert [r.extrapolated for r in p.layers] == [True, False]
    assert p.layers[0].as_dict()["extrapolated"] is True
    assert any(w.startswith("1 of 2 ops lie outside what calibration sampled (layers 0)") for w in p.warnings)
