"""Device profiles and prediction: roofline arithmetic, queue simulation, profiles, batch/dtype."""
import textwrap
from importlib import resources

import pytest
import torch.nn as nn

import hwcost
from hwcost.cli import main
from hwcost.devices import parse_profile
from hwcost.errors import ProfileError
from hwcost.loaders import load_model
from hwcost.execution import OpTiming, replay_s, run_async, run_sequential

FAMILIES = ["conv", "depthwise_conv", "grouped_conv", "conv_transpose", "matmul", "attention", "embedding",
            "elementwise", "norm", "pool", "reduction", "softmax", "interpolate", "data_movement", "rnn", "unknown"]

ROUND = textwrap.dedent("""
    name: round
    kind: {kind}
    description: round numbers for hand-checked arithmetic
    execution: {execution}
    compute:
      matrix_tflops: {{float32: 1.0, float16: 4.0}}
      vector_tflops: {{float32: 0.5, float16: 0.5}}
    memory: {{bandwidth_gbps: 100.0}}
    overhead_us: {{host_per_op: {host}, device_per_op: {dev}}}
    power_w: {{idle: 10.0, max: 100.0}}
    energy: {{pj_per_flop: 10.0, pj_per_byte: 100.0}}
    efficiency:
      compute: {{{effs}}}
      memory: 1.0
    sources: {{compute: test, memory: test, overhead_us: test, power_w: test, energy: test}}
""")


def round_device(kind="cpu", execution="sequential", host=0.0, dev=0.0):
    effs = ", ".join(f"{f}: 1.0" for f in FAMILIES)
    return parse_profile(ROUND.format(kind=kind, execution=execution, host=host, dev=dev, effs=effs), "round")


# ------------------------------------------------------------------ roofline arithmetic


def test_compute_bound_op():
    p = hwcost.predict(nn.Linear(1024, 1024), (1024,), device=round_device(), batch_size=1024)
    (op,) = p.ops
    flops = 2 * 1024**3 + 1024**2            # + bias adds
    traffic = (3 * 1024**2 + 1024) * 4       # input, weight, bias read; output written
    assert op.compute_s == pytest.approx(flops / 1e12)
    assert op.memory_s == pytest.approx(traffic / 100e9)
    assert op.bound == "compute"
    assert p.latency_ms == pytest.approx(flops / 1e12 * 1e3)
    layer = p.layers[0]
    assert layer.arithmetic_intensity == pytest.approx(flops / traffic)
    assert layer.attained_gflops == pytest.approx(1000.0)  # the whole 1 TFLOP/s peak


def test_memory_bound_op_uses_vector_peak_and_bandwidth():
    p = hwcost.predict(nn.ReLU(), (1_000_000,), device=round_device())
    (op,) = p.ops
    assert op.compute_s == pytest.approx(1e6 / 0.5e12)       # elementwise: vector units
    assert op.memory_s == pytest.approx(8e6 / 100e9)
    assert op.bound == "memory" and p.latency_ms == pytest.approx(0.08)


def test_dtype_selects_peak_and_bytes():
    dev = round_device()
    p32 = hwcost.predict(nn.Linear(1024, 1024, bias=False), (1024,), device=dev, batch_size=1024)
    p16 = hwcost.predict(nn.Linear(1024, 1024, bias=False), (1024,), device=dev, batch_size=1024, dtype="float16")
    assert p16.ops[0].compute_s == pytest.approx(p32.ops[0].compute_s / 4)   # 4 vs 1 TFLOP/s
    assert p16.ops[0].memory_s == pytest.approx(p32.ops[0].memory_s / 2)     # 2-byte elements


def _with_startup(startup: str, host: float) -> hwcost.DeviceProfile:
    text = ROUND.format(kind="cpu", execution="sequential", host=host, dev=0.0,
                        effs=", ".join(f"{f}: 1.0" for f in FAMILIES))
    return parse_profile(text.replace("memory: 1.0\n", f"memory: 1.0\n  startup_dispatches: {{{startup}}}\n"))


def test_startup_makes_small_ops_reach_less_of_the_peak():
    dev = _with_startup("matmul: 5, elementwise: 0", host=2.0)
    assert dev.startup_dispatches["matmul"] == 5 and dev.startup_dispatches["conv"] == 20  # kind default kept
    small = hwcost.predict(nn.Linear(64, 64, bias=False), (64,), device=dev, batch_size=64)
    (op,) = small.ops
    roof_s = max(op.compute_s, op.memory_s)
    assert op.kernel_s == pytest.approx(roof_s + 5 * 2e-6)        # startup = 5 dispatches
    assert small.latency_ms == pytest.approx((2e-6 + roof_s + 10e-6) * 1e3)
    big = hwcost.predict(nn.Linear(2048, 2048, bias=False), (2048,), device=dev, batch_size=2048)
    eff = lambda p: p.analysis.total.flops / (p.latency_ms * 1e-3) / 1e12  # noqa: E731 (fraction of 1 TFLOP/s)
    assert eff(small) < 0.1 < 0.99 < eff(big) <= 1.0
    relu = hwcost.predict(nn.ReLU(), (64,), device=dev)
    assert relu.ops[0].kernel_s == pytest.approx(max(relu.ops[0].compute_s, relu.ops[0].memory_s))


def test_rnn_pays_its_startup_per_step_layer_and_direction():
    lstm = nn.LSTM(8, 8, num_layers=2, bidirectional=True, batch_first=True)
    on, off = _with_startup("rnn: 1", host=1.0), _with_startup("rnn: 0", host=1.0)
    a = hwcost.analyze(lstm, (10, 8), batch_size=3)   # 10 steps
    (rnn_on,) = [t for t in hwcost.predict_analysis(a, on).ops if t.cost.family == "rnn"]
    (rnn_off,) = [t for t in hwcost.predict_analysis(a, off).ops if t.cost.family == "rnn"]
    assert rnn_on.kernel_s - rnn_off.kernel_s == pytest.approx(10 * 2 * 2 * 1e-6)


def test_a_recurrent_layer_past_the_last_level_cache_reads_its_step_weights_from_dram_each_step():
    """A GRU with hidden 512 holds 3 x 512 x 512 x 4 B = 3.1 MB of hidden-to-hidden weights: on a device with a
    1 MB last-level cache each of its 20 steps streams them from DRAM (100 GB/s here: 31.5 us a step); with
    hidden 256 (0.79 MB) they stay, and on a profile without a cache size nothing is assumed."""
    def memory_s(hidden, cache_mb):
        text = ROUND.format(kind="cpu", execution="sequential", host=0.0, dev=0.0,
                            effs=", ".join(f"{f}: 1.0" for f in FAMILIES))
        if cache_mb:
            text = text.replace("memory: {bandwidth_gbps: 100.0}",
                                f"memory: {{bandwidth_gbps: 100.0, cache_mb: {cache_mb}}}")
        a = hwcost.analyze(nn.GRU(hidden, hidden, batch_first=True), (20, hidden))
        (op,) = [t for t in hwcost.predict_analysis(a, parse_profile(text)).ops if t.cost.family == "rnn"]
        return op.memory_s, op.cost.memory_traffic_bytes / 100e9

    streamed, once = memory_s(512, 1.0)
    assert streamed == pytest.approx(once + 20 * 3 * 512 * 512 * 4 / 100e9)
    assert memory_s(512, None)[0] == pytest.approx(memory_s(512, None)[1])
    assert memory_s(512, 4.0)[0] == pytest.approx(memory_s(512, 4.0)[1])
    assert memory_s(256, 1.0)[0] == pytest.approx(memory_s(256, 1.0)[1])


def _per_group(host: float, effs: str = "depthwise_conv: 0.5, grouped_conv: 0.5, conv: 1.0") -> hwcost.DeviceProfile:
    text = ROUND.format(kind="cpu", execution="sequential", host=host, dev=0.0, effs=effs)
    text = text.replace("execution: sequential\n", "execution: sequential\ngrouped_conv: per_group\n")
    text = text.replace("float16: 4.0}", "float16: 4.0, int8: 2.0}")
    return parse_profile(text.replace("energy: test}", "energy: test, grouped_conv: test}"))


def test_a_build_without_onednn_runs_a_grouped_convolution_per_group():
    dev = _per_group(host=2.0)
    native = _with_startup("depthwise_conv: 37", host=2.0)
    pg = dev.per_group_conv
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)          # 8 groups over 10 x 10
    (op,) = hwcost.predict(dw, (8, 10, 10), device=dev).ops
    (op_native,) = hwcost.predict(dw, (8, 10, 10), device=native).ops
    columns = 8 * 9 * 100                                              # channels x kernel x output positions
    startup = (pg["startup_dispatches"] + 8 * pg["group_dispatches"] + columns * pg["column_dispatches"]) * 2e-6
    assert op.compute_s == pytest.approx(2 * 8 * 9 * 100 / 1e12)     # each group a plain conv: conv efficiency 1.0
    assert op.kernel_s == pytest.approx(max(op.compute_s, op.memory_s) + startup)
    assert op_native.kernel_s == pytest.approx(max(op_native.compute_s, op_native.memory_s) + 37 * 2e-6)
    # twice the groups over the same channels: twice the per-group cost, the same columns
    (g16,) = hwcost.predict(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), (16, 10, 10), device=dev).ops
    (g8,) = hwcost.predict(nn.Conv2d(16, 16, 3, padding=1, groups=8, bias=False), (16, 10, 10), device=dev).ops
    extra = [t.kernel_s - max(t.compute_s, t.memory_s) for t in (g16, g8)]
    assert extra[0] - extra[1] == pytest.approx(8 * pg["group_dispatches"] * 2e-6)


def test_per_group_leaves_plain_3d_and_quantized_convolutions_alone():
    import torch

    dev, native = _per_group(host=2.0), _with_startup("conv: 20, grouped_conv: 35", host=2.0)

    def kernel(model, shape, device):
        (op,) = [t for t in hwcost.predict(model, shape, device=device).ops if t.cost.family in
                 ("conv", "grouped_conv", "depthwise_conv")]
        return op.kernel_s - max(op.compute_s, op.memory_s)

    assert kernel(nn.Conv2d(8, 8, 3), (8, 10, 10), dev) == pytest.approx(kernel(nn.Conv2d(8, 8, 3), (8, 10, 10), native))
    conv3d = nn.Conv3d(8, 8, 3, groups=4)
    assert kernel(conv3d, (8, 6, 6, 6), dev) == pytest.approx(35 * 2e-6)   # Slow3d takes groups
    q = torch.ao.nn.quantized.Conv2d(8, 8, 3, groups=4)
    x = torch.quantize_per_tensor(torch.randn(1, 8, 10, 10), 0.1, 0, torch.quint8)
    assert kernel(q, x, dev) == pytest.approx(35 * 2e-6)                   # QNNPACK's grouped kernel


def test_a_prediction_carried_by_per_group_convolutions_says_so():
    dev = _per_group(host=2.0)
    depthwise = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.ReLU())
    p = hwcost.predict(depthwise, (64, 16, 16), device=dev)
    conv = p.ops[0]
    assert conv.bound == "overhead" and conv.kernel_s > 10 * max(conv.compute_s, conv.memory_s)
    (w,) = [w for w in p.warnings if "grouped convolutions" in w]
    assert w.startswith(f"1 grouped convolutions take {conv.latency_s * 1e3:.1f} of the {p.latency_ms:.1f} ms")
    assert "grouped_conv: native" in w and "WARNING: 1 grouped" in p.summary()
    # a plain convolution beside a small grouped one: the grouped share is under a tenth, nothing to say
    mixed = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 1, groups=2))
    big = hwcost.predict(mixed, (64, 64, 64), device=_per_group(host=0.01))
    assert not [w for w in big.warnings if "grouped convolutions" in w]
    assert not [w for w in hwcost.predict(depthwise, (64, 16, 16), device=_with_startup("conv: 1", 2.0)).warnings
                if "grouped" in w]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("energy: test, grouped_conv: test}", "energy: test}"), "needs 'sources.grouped_conv'"),
    (lambda s: s.replace("grouped_conv: per_group\n", "grouped_conv: looped\n"), "must be one of native, per_group"),
    (lambda s: s.replace("execution: sequential", "execution: async"), "'grouped_conv' is for sequential"),
])
def test_grouped_conv_is_checked(edit, message):
    text = ROUND.format(kind="cpu", execution="sequential", host=1.0, dev=0.0, effs="conv: 1.0")
    text = text.replace("execution: sequential\n", "execution: sequential\ngrouped_conv: per_group\n")
    text = text.replace("energy: test}", "energy: test, grouped_conv: test}")
    parse_profile(text)   # the unedited text loads
    with pytest.raises(ProfileError, match=message):
        parse_profile(edit(text))


def test_per_group_needs_a_kind_with_per_group_costs():
    text = ROUND.format(kind="npu", execution="sequential", host=1.0, dev=0.0,
                        effs=", ".join(f"{f}: 1.0" for f in FAMILIES))
    parse_profile(text)   # an npu profile with every efficiency given loads
    text = text.replace("execution: sequential\n", "execution: sequential\ngrouped_conv: per_group\n")
    with pytest.raises(ProfileError, match="has costs for kind 'cpu' only"):
        parse_profile(text.replace("energy: test}", "energy: test, grouped_conv: test}"))


def test_sequential_cpu_adds_dispatch_overhead():
    p = hwcost.predict(nn.Sequential(nn.ReLU(), nn.ReLU()), (10,), device=round_device(host=100.0))
    assert p.latency_ms == pytest.approx(2 * (0.1 + 80 / 100e9 * 1e3))
    assert [o.bound for o in p.ops] == ["overhead", "overhead"]


# ------------------------------------------------------------------ GPU queue simulation


def _timings(host_us, kernel_us):
    return [OpTiming(cost=None, compute_s=k * 1e-6, memory_s=0.0, overhead_s=h * 1e-6, kernel_s=k * 1e-6)
            for h, k in zip(host_us, kernel_us)]


def test_queue_simulation_hand_made_sequence():
    # host issues at 10, 20, 30, 40 us; kernels 5, 50, 5, 5 us
    # k1 10-15, k2 20-70, k3 70-75 (queued behind k2), k4 75-80
    ts = _timings([10] * 4, [5, 50, 5, 5])
    total, host, dev = run_async(ts)
    assert total == pytest.approx(80e-6) and host == pytest.approx(40e-6) and dev == pytest.approx(65e-6)
    assert [t.latency_s * 1e6 for t in ts] == pytest.approx([15, 55, 5, 5])
    assert ts[0].bound == "overhead" and ts[1].bound == "compute"


def test_queue_host_bound_and_device_bound_limits():
    total, host, _ = run_async(_timings([10] * 100, [1] * 100))
    assert total == pytest.approx(host + 1e-6)           # host-bound: the last kernel trails the host
    total, _, dev = run_async(_timings([1] * 100, [10] * 100))
    assert total == pytest.approx(dev + 1e-6)            # device-bound: the first issue leads the device
    total, host, dev = run_sequential(_timings([1] * 10, [10] * 10))
    assert total == pytest.approx(host + dev)


def test_blocking_launches_add_host_and_device_time():
    # the same sequence as above with launches that return only when their kernel is done:
    # op i is issued after kernel i-1 ends, so nothing overlaps
    ts = _timings([10] * 4, [5, 50, 5, 5])
    total, host, dev = run_async(ts, blocking=True)
    assert total == pytest.approx(host + dev) == pytest.approx(105e-6)
    assert [t.latency_s * 1e6 for t in ts] == pytest.approx([15, 60, 15, 15])
    assert replay_s([10e-6] * 4, [5e-6, 50e-6, 5e-6, 5e-6], "async", blocking=True) == pytest.approx(105e-6)
    assert replay_s([10e-6] * 4, [5e-6, 50e-6, 5e-6, 5e-6], "async") == pytest.approx(80e-6)


def test_a_tegra_profile_adds_host_and_device_time():
    nano = hwcost.load_device("jetson-nano")
    assert nano.launch_blocking and not hwcost.load_device("h100").launch_blocking
    p = hwcost.predict(load_model("resnet18").model, (3, 224, 224), device=nano, dtype="float16")
    assert p.latency_ms == pytest.approx(p.host_ms + p.device_ms, rel=1e-9)
    assert "launches block until their kernel is done" in p.summary()


@pytest.mark.parametrize("extra, message", [("launch: blocking\n", "'launch' is for async"),
                                            ("launch: sometimes\n", "must be one of queued, blocking")])
def test_launch_is_checked(extra, message):
    shipped = resources.files("hwcost.device_profiles")
    base = "raspberry-pi-4" if "blocking" in extra else "jetson-nano"
    text = shipped.joinpath(f"{base}.yaml").read_text().replace("launch: blocking\n", "") + extra
    with pytest.raises(ProfileError, match=message):
        parse_profile(text)


def test_h100_mobilenet_v2_batch_1_is_host_bound():
    p = hwcost.predict(load_model("mobilenet_v2").model, (3, 224, 224), device="h100")
    roofline_ms = sum(max(t.compute_s, t.memory_s) for t in p.ops) * 1e3
    assert roofline_ms < 0.1                  # ~0.06 ms with the profile's efficiencies
    assert 2.0 < p.latency_ms < 5.0           # measured ~3 ms (calibration/reference): the host bounds it
    assert p.bound_shares()["overhead"] > 90


# ------------------------------------------------------------------ totals, batch, energy


def test_shares_fps_energy_consistent():
    p = hwcost.predict(load_model("resnet18").model, (3, 224, 224), device="raspberry-pi-4", batch_size=2)
    assert sum(r.share_pct for r in p.layers) == pytest.approx(100.0)
    assert sum(r.latency_ms for r in p.layers) == pytest.approx(p.latency_ms)
    assert p.fps == pytest.approx(1000 * 2 / p.latency_ms)
    assert sum(r.energy_mj for r in p.layers) == pytest.approx(p.energy_mj)
    assert p.device.power_idle_w <= p.average_power_w <= p.device.power_max_w
    assert {r.bound for r in p.layers} <= {"compute", "memory", "overhead", "-"}


def test_batch_scales_device_time_not_host_time():
    m = load_model("resnet18").model
    p1 = hwcost.predict(m, (3, 224, 224), device="h100", batch_size=1)
    p64 = hwcost.predict(m, (3, 224, 224), device="h100", batch_size=64)
    assert p64.host_ms == pytest.approx(p1.host_ms)
    assert p64.device_ms > 10 * p1.device_ms
    assert p64.fps > 10 * p1.fps  # batching amortises the host


def test_energy_capped_at_max_power():
    d = round_device()
    hot = parse_profile(
        ROUND.format(kind="cpu", execution="sequential", host=0.0, dev=0.0,
                     effs=", ".join(f"{f}: 1.0" for f in FAMILIES)).replace("pj_per_flop: 10.0", "pj_per_flop: 1000.0"),
        "hot")
    p = hwcost.predict(nn.Linear(512, 512), (512,), device=hot, batch_size=512)
    assert p.energy_capped and p.average_power_w == pytest.approx(100.0)
    assert not hwcost.predict(nn.Linear(512, 512), (512,), device=d, batch_size=512).energy_capped


def test_gpu_energy_is_idle_power_plus_max_power_while_busy():
    # one compute-bound GEMM on the round device: 2 x 1024^3 FLOPs at 1 TFLOP/s = 2.147 ms of kernel,
    # issued after 1 us of host time; idle 10 W, max 100 W
    gpu = round_device(kind="gpu", execution="async", host=1.0)
    assert gpu.energy_model == "busy"
    p = hwcost.predict(nn.Linear(1024, 1024, bias=False), (1024,), device=gpu, batch_size=1024)
    kernel_s = 2 * 1024**3 / 1e12
    assert p.latency_ms == pytest.approx(1e-3 + kernel_s * 1e3, rel=1e-6)
    assert p.energy_mj == pytest.approx(10.0 * p.latency_ms + 90.0 * kernel_s * 1e3, rel=1e-6)
    # a CPU keeps energy per FLOP and per byte: 10 pJ/FLOP, 100 pJ/byte (4 MiB in x2 + weight 4 MiB)
    cpu = round_device()
    assert cpu.energy_model == "linear"
    c = hwcost.predict(nn.Linear(1024, 1024, bias=False), (1024,), device=cpu, batch_size=1024)
    traffic = 3 * 1024 * 1024 * 4
    assert c.energy_mj == pytest.approx(10.0 * c.latency_ms + (2 * 1024**3 * 10 + traffic * 100) * 1e-9, rel=1e-6)


def test_an_async_profile_needs_only_power_for_energy():
    text = ROUND.format(kind="gpu", execution="async", host=1.0, dev=0.0, effs="conv: 0.5")
    bare = text.replace("energy: {pj_per_flop: 10.0, pj_per_byte: 100.0}\n", "").replace(", energy: test", "")
    gpu = parse_profile(bare, "gpu without pJ figures")
    assert gpu.pj_per_flop is None and gpu.energy_model == "busy"
    assert hwcost.predict(nn.ReLU(), (64,), device=gpu).energy_mj > 0


def test_measured_energy_fit_is_used_in_its_form():
    text = ROUND.format(kind="gpu", execution="async", host=1.0, dev=0.0,
                        effs=", ".join(f"{f}: 1.0" for f in FAMILIES))
    fitted = text + "calibration: {energy: {fitted: {form: linear, static_w: 10.0, pj_per_flop: 10.0}}}\n"
    assert parse_profile(fitted, "measured").energy_model == "linear"
    older = text + "calibration: {energy: {fitted: {static_w: 10.0, pj_per_flop: 10.0, pj_per_byte: 100.0}}}\n"
    assert parse_profile(older, "older").energy_model == "linear"    # an older hwcost's NVML fit
    busy = text + "calibration: {energy: {fitted: {form: busy, static_w: 10.0, busy_w: 90.0}}}\n"
    assert parse_profile(busy, "measured busy").energy_model == "busy"
    no_power = "\n".join(line for line in text.splitlines() if not line.strip().startswith(("power_w", "energy")))
    no_power = no_power.replace("power_w: test, energy: test", "")
    assert parse_profile(no_power, "bare").energy_model is None


# ------------------------------------------------------------------ profiles


@pytest.mark.parametrize("name", hwcost.devices())
def test_every_shipped_profile_loads(name):
    d = hwcost.load_device(name)
    assert d.name == name and d.peak_flops("float32") > 0 and d.bandwidth_gbps > 0
    assert set(d.sources) >= {"compute", "memory", "overhead_us", "power_w", "energy"}
    assert hwcost.predict(nn.Conv2d(3, 8, 3), (3, 32, 32), device=name).latency_ms > 0


def test_at_least_the_required_devices_ship():
    names = set(hwcost.devices())
    assert {"raspberry-pi-4", "raspberry-pi-5", "jetson-nano", "jetson-orin-nano", "rtx-4090", "a100", "h100"} <= names
    kinds = {hwcost.load_device(n).kind for n in names}
    assert kinds == {"cpu", "gpu"}


def _bad(text):
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "bad.yaml")
    return str(e.value)


GOOD = ROUND.format(kind="cpu", execution="sequential", host=1.0, dev=0.0, effs="conv: 0.5")


@pytest.mark.parametrize("edit,needle", [
    (lambda s: s + "\nfoo: 1\n", "unknown field 'foo'"),
    (lambda s: s.replace("matrix_tflops: {float32: 1.0, float16: 4.0}", "matrix_tflops: {float16: 4.0}"),
     "missing required field 'compute.matrix_tflops.float32'"),
    (lambda s: s.replace("bandwidth_gbps: 100.0", "bandwidth_gbps: -5"), "'memory.bandwidth_gbps' must be > 0"),
    (lambda s: s.replace("bandwidth_gbps: 100.0", "bandwidth_gbps: 0"), "must be > 0"),
    (lambda s: s.replace("bandwidth_gbps: 100.0", "bandwidth_gbps: 100 GB/s"), "must be a number in the unit its name gives (GB/s)"),
    (lambda s: s.replace("kind: cpu", "kind: tpu"), "'kind' must be one of cpu, gpu, npu"),
    (lambda s: s.replace("execution: sequential", "execution: parallel"), "'execution' must be one of"),
    (lambda s: s.replace("energy: test", "").replace("power_w: test, ", "power_w: test"), "missing: energy"),
    (lambda s: s.replace("idle: 10.0", "idle: 500.0"), "'power_w.idle' is above 'power_w.max'"),
    (lambda s: s.replace("energy: {pj_per_flop: 10.0, pj_per_byte: 100.0}\n", "").replace(", energy: test", ""),
     "a sequential (CPU) profile's energy needs both 'power_w' and 'energy'"),
    (lambda s: s.replace("power_w: {idle: 10.0, max: 100.0}\n", "").replace(", power_w: test", ""),
     "'energy' needs 'power_w'"),
    (lambda s: s.replace("conv: 0.5", "conv: 1.5"), "efficiency.compute.conv must be a fraction"),
    (lambda s: s.replace("conv: 0.5", "convolution: 0.5"), "unknown op family 'convolution'"),
    (lambda s: s.replace("memory: 1.0\n", "memory: 1.0\n  startup_dispatches: {conv: -1}\n"),
     "efficiency.startup_dispatches.conv must be a number >= 0"),
    (lambda s: s.replace("memory: 1.0\n", "memory: 1.0\n  startup_dispatches: {convs: 2}\n"),
     "startup_dispatches has unknown op family 'convs'"),
    (lambda s: s.replace("memory: {bandwidth_gbps: 100.0}", "memory: 12"), "'memory' must be a mapping"),
    (lambda s: "name: [unclosed", "not valid YAML"),
    (lambda s: "- a list\n- not a mapping\n", "a profile is a YAML mapping"),
])
def test_bad_profiles_get_clear_errors(edit, needle):
    assert needle in _bad(edit(GOOD))


def test_npu_needs_its_own_efficiency():
    msg = _bad(GOOD.replace("kind: cpu", "kind: npu"))
    assert "no default efficiencies for kind 'npu'" in msg
    full = ROUND.format(kind="npu", execution="sequential", host=1.0, dev=0.0,
                        effs=", ".join(f"{f}: 0.5" for f in FAMILIES))
    assert parse_profile(full).kind == "npu"


def test_unknown_device_and_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="Did you mean: raspberry-pi-4"):
        hwcost.load_device("raspberry-pi4")
    with pytest.raises(ProfileError, match="does not exist"):
        hwcost.load_device(str(tmp_path / "nope.yaml"))
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    assert hwcost.load_device(str(f)).name == "round"


# ------------------------------------------------------------------ CLI


def test_cli_predict_compare_devices(capsys, tmp_path):
    assert main(["predict", "mobilenet_v2", "--device", "raspberry-pi-4"]) == 0
    out = capsys.readouterr().out
    assert "latency:" in out and "FPS" in out and "features.0.0" in out
    assert main(["compare", "mobilenet_v2", "--devices", "raspberry-pi-4,raspberry-pi-5,rtx-4090,h100"]) == 0
    out = capsys.readouterr().out
    assert all(d in out for d in ("raspberry-pi-5", "rtx-4090", "h100"))
    assert main(["devices"]) == 0
    assert "jetson-orin-nano" in capsys.readouterr().out
    assert main(["predict", "resnet18", "--device", "nowhere"]) == 2
    assert "unknown device 'nowhere'" in capsys.readouterr().err


def test_cli_roofline_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.png"
    assert main(["roofline", "resnet18", "--device", "raspberry-pi-4", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_readme_profile_example_is_valid():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("## Adding a device", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    d = parse_profile(block, "README example")
    assert d.name == "my-board" and d.isa == "aarch64" and d.compute_efficiency["conv"] > 0


def test_measured_module_call_and_view_costs_are_added():
    base = ROUND.format(kind="cpu", execution="sequential", host=0.0, dev=0.0,
                        effs=", ".join(f"{f}: 1.0" for f in FAMILIES))
    with_costs = base.replace("overhead_us: {host_per_op: 0.0, device_per_op: 0.0}",
                              "overhead_us: {host_per_op: 0.0, device_per_op: 0.0, per_module_call: 10.0, per_view: 5.0}")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
    a = hwcost.analyze(model, (4, 4, 4))
    p0 = hwcost.predict_analysis(a, parse_profile(base))
    p1 = hwcost.predict_analysis(a, parse_profile(with_costs))
    extra_ms = (a.module_calls * 10 + a.view_ops * 5) / 1000
    assert a.module_calls == 4 and a.view_ops >= 1
    assert p1.latency_ms - p0.latency_ms == pytest.approx(extra_ms)
