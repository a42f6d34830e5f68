"""Activations a pass finds evicted (hwcost.reuse), and what they add to a calibrated prediction."""
import pytest
import torch
import torch.nn as nn

from hwcost.analysis import analyze
from hwcost.context import ContextModel
from hwcost.devices import calibration_rates
from hwcost.reuse import dram_activation_bytes, dram_extra_s_per_byte
from hwcost.timemodel import Rates, TimeModel

# a cache that keeps everything up to 1 MB and nothing past 2 MB (a cyclic read's miss share by size)
STEP = [[1e6, 0.0], [2e6, 1.0]]
WIDTH = 4096   # 16 KB activations; the 4096 x 4096 product reads 64 MB of weights


class Skip(nn.Module):
    """relu, a product whose weights flush the cache, then an add that reads the relu's output again."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        y = torch.relu(x)
        return self.fc(y) + y


def _ops(model, *inputs):
    return [c for c in analyze(model, inputs).ops if c.launches]


def test_a_skip_across_a_weight_read_comes_from_dram():
    ops = _ops(Skip(), torch.randn(1, WIDTH))
    assert [c.record.name for c in ops] == ["relu", "addmm", "add"]
    evicted = dram_activation_bytes(ops, STEP)
    # relu writes into the block the last pass's add freed (16 KB since); the product reads that just
    # written; its output block lies beyond 64 MB of weights, but alone the product misses as much (its
    # own working set is past the cache), so nothing more; the add reads y back from beyond the weights
    # and writes its output into a block last touched before them: 16 KB each way
    assert evicted == [0.0, 0.0, 2 * WIDTH * 4]


def test_nothing_evicted_without_a_miss_curve_or_within_the_cache():
    ops = _ops(Skip(), torch.randn(1, WIDTH))
    assert dram_activation_bytes(ops, []) == [0.0, 0.0, 0.0]
    # a cache of 1 GB keeps the whole pass
    assert dram_activation_bytes(ops, [[1e9, 0.0], [2e9, 1.0]]) == [0.0, 0.0, 0.0]


def test_one_op_repeated_is_its_own_isolated_sample():
    ops = _ops(nn.ReLU(), torch.randn(8, 1 << 20))   # 32 MB in, 32 MB out: past the step, alone too
    assert dram_activation_bytes(ops, STEP) == [0.0]


def test_a_chain_of_small_maps_stays_cached():
    model = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()) for _ in range(6)])
    ops = _ops(model, torch.randn(1, 8, 32, 32))   # 32 KB maps, 2.3 KB of weights per conv
    assert sum(dram_activation_bytes(ops, STEP)) == 0.0


def test_the_prediction_pays_the_evicted_bytes_at_the_dram_penalty():
    ops = _ops(Skip(), torch.randn(1, WIDTH))
    rates = Rates(floor_s=1e-6, matrix_flops={"float32": 1e11}, vector_flops={"float32": 1e10}, bandwidth=2e10)
    penalty = Rates(**{**vars(rates), "dram_extra_s_per_byte": 3e-11})
    cached = TimeModel({}, {}, {}, 0.0, rates, ContextModel(llc_miss=STEP)).predict(ops, "float32")
    evicted = TimeModel({}, {}, {}, 0.0, penalty, ContextModel(llc_miss=STEP)).predict(ops, "float32")
    assert evicted[:2] == cached[:2]
    assert evicted[2] - cached[2] == pytest.approx(2 * WIDTH * 4 * 3e-11)
    # no miss curve (a GPU, an older profile): the penalty is not paid
    assert TimeModel({}, {}, {}, 0.0, penalty, ContextModel()).predict(ops, "float32") == cached


def test_dram_penalty_from_the_calibration_copy_rates():
    def penalty(probe):
        return dram_extra_s_per_byte(calibration_rates({"probe": probe}))

    probe = {"start": {"cache_gbps": 50.0, "dram_gbps": 20.0}, "end": {"cache_gbps": 50.0, "dram_gbps": 30.0}}
    assert penalty(probe) == pytest.approx((1 / 25 - 1 / 50) * 1e-9)
    assert penalty({"start": {"cache_gbps": 50.0}}) == 0.0   # DRAM not read
    assert penalty({}) == 0.0
    # a cache no faster than DRAM costs nothing more from DRAM
    assert penalty({"start": {"cache_gbps": 20.0, "dram_gbps": 25.0}}) == 0.0
