"""Search spaces, the latency LUT, and the evolutionary search."""
import random

import pytest
import torch

import hwcost
from hwcost.cli import main
from hwcost.errors import InputError
from hwcost.spaces import OFAMobileNetV3, ResNetSpace
from hwcost.zoo.cnn import make_divisible


def _mb_params(cin, cout, k, e, se):
    """Closed form for one MBBlock: convs without bias, 2 BN parameters per channel."""
    mid = make_divisible(cin * e)
    n = 0 if mid == cin else cin * mid + 2 * mid           # 1x1 expand
    n += mid * k * k + 2 * mid                              # depthwise
    if se:
        sq = make_divisible(mid // 4)
        n += mid * sq + sq + sq * mid + mid                 # squeeze-excite 1x1 convs with bias
    return n + mid * cout + 2 * cout                        # 1x1 project


def _ofa_params(space, cfg):
    _, depths, kernels, expands = cfg
    n = 3 * 16 * 9 + 2 * 16 + _mb_params(16, 16, 3, 1, False)           # stem
    cin = 16
    for s, (cout, _, _, se) in enumerate(space.stages):
        for i in range(depths[s]):
            slot = s * space.max_depth + i
            n += _mb_params(cin, cout, kernels[slot], expands[slot], se)
            cin = cout
    return n + 160 * 960 + 2 * 960 + 960 * 1280 + 1280 * 1000 + 1000     # head


@pytest.mark.parametrize("which", ["smallest", "largest"])
def test_ofa_extremes_build_with_the_right_parameter_count(which):
    space = OFAMobileNetV3()
    cfg = getattr(space, which)()
    with torch.device("meta"):
        net = space.build(cfg)
    assert sum(p.numel() for p in net.parameters()) == _ofa_params(space, cfg)
    a = hwcost.analyze(net, space.input_shape(cfg))
    assert a.total.params == _ofa_params(space, cfg)
    assert a.ops[-1].record.outputs[0].shape == (1, 1000)


def test_ofa_sampling_covers_the_space_and_builds():
    space, rng = OFAMobileNetV3(), random.Random(0)
    cfgs = [space.sample(rng) for _ in range(30)]
    assert {c[0] for c in cfgs} <= set(range(160, 225, 4))
    assert {d for c in cfgs for d in c[1]} == {2, 3, 4}
    assert {k for c in cfgs for k in c[2]} == {3, 5, 7} and {e for c in cfgs for e in c[3]} == {3, 4, 6}
    for cfg in cfgs[:3]:
        with torch.device("meta"):
            net = space.build(cfg)
        a = hwcost.analyze(net, space.input_shape(cfg))
        assert a.ops[-1].record.outputs[0].shape == (1, 1000)
        assert len(space.blocks(cfg)) == 2 + sum(cfg[1])
    child = space.mutate(cfgs[0], rng, 1.0)
    assert child != cfgs[0] and len(child[2]) == 20
    x = space.crossover(cfgs[0], cfgs[1], rng)
    assert all(v in (a, b) for v, a, b in zip(x[2], cfgs[0][2], cfgs[1][2]))


def test_resnet_space_extremes():
    space = ResNetSpace()
    small, large = space.smallest(), space.largest()
    with torch.device("meta"):
        s_net, l_net = space.build(small), space.build(large)
    ps = sum(p.numel() for p in s_net.parameters())
    pl = sum(p.numel() for p in l_net.parameters())
    assert ps < pl
    # the largest is ResNet-18 with 3 blocks per stage; the smallest has one half-width block per stage
    assert hwcost.analyze(l_net, space.input_shape(large)).ops[-1].record.outputs[0].shape == (1, 1000)


@pytest.mark.parametrize("device", ["raspberry-pi-4", "h100"])
def test_lut_agrees_with_full_predict(device):
    space, rng = OFAMobileNetV3(), random.Random(1)
    lut = hwcost.LatencyLUT(space, device)
    for _ in range(6):
        cfg = space.sample(rng)
        with torch.device("meta"):
            net = space.build(cfg)
        full = hwcost.predict(net, space.input_shape(cfg), device=device).latency_ms
        assert lut.latency_ms(cfg) == pytest.approx(full, rel=0.02)


def test_search_respects_budget_and_is_deterministic():
    kw = dict(population=16, generations=4, seed=3)
    r1 = hwcost.search("ofa-mbv3", "raspberry-pi-4", 60, **kw)
    r2 = hwcost.search("ofa-mbv3", "raspberry-pi-4", 60, **kw)
    assert r1.best == r2.best and r1.best_objective == r2.best_objective
    assert r1.best_latency_ms <= 60 and all(c.latency_ms <= 60 for c in r1.pareto)
    assert [c.latency_ms for c in r1.pareto] == sorted(c.latency_ms for c in r1.pareto)
    assert all(a.objective < b.objective for a, b in zip(r1.pareto, r1.pareto[1:]))
    assert r1.evaluated > 16 and r1.per_second > 0
    assert r1.history == sorted(r1.history)  # elitism: the best never gets worse


def test_custom_objective_drives_the_search():
    space = OFAMobileNetV3()
    r = hwcost.search(space, "raspberry-pi-4", 200, objective=lambda c: -c[0], population=12, generations=5)
    assert r.best[0] == 160  # the objective asked for the lowest resolution


def test_impossible_budget_names_the_fastest_reachable():
    with pytest.raises(InputError, match=r"fastest reachable is \d+\.\d+ ms"):
        hwcost.search("ofa-mbv3", "raspberry-pi-4", 0.5)
    with pytest.raises(InputError, match="positive"):
        hwcost.search("ofa-mbv3", "raspberry-pi-4", -1)
    with pytest.raises(InputError, match="unknown search space"):
        hwcost.search("ofa-vgg", "raspberry-pi-4", 10)


def test_cli_search_table(capsys):
    assert main(["search", "--space", "ofa-mbv3", "--devices", "raspberry-pi-4,h100", "--latency-ms", "40,80",
                 "--population", "8", "--generations", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("raspberry-pi-4") == 2 and out.count("h100") == 2 and "NOT accuracy" in out
    assert main(["search", "--device", "raspberry-pi-4", "--latency-ms", "0.1"]) == 2
    assert "fastest reachable" in capsys.readouterr().err
