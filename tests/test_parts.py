"""A layer recorded as one op is timed as the kernels it runs (hwcost.parts)."""
import pytest
import torch
import torch.nn as nn

from hwcost.analysis import analyze
from hwcost.parts import timed_parts
from hwcost.timemodel import ContextModel, Rates, TimeModel


def _mha_cost(mod, *inputs):
    return next(c for c in analyze(mod, inputs).ops if "attention" in c.record.name)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_layer_parts_carry_the_layers_work(cross, need_weights):
    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(64, 4, batch_first=True)

        def forward(self, x, y):
            return self.attn(x, y if cross else x, y if cross else x, need_weights=need_weights)[0]

    x, y = torch.randn(2, 10, 64), torch.randn(2, 7, 64)
    cost = _mha_cost(Layer().eval(), x, y)
    parts = timed_parts(cost)
    names = [p.record.name for p in parts]
    # self-attention: one GEMM onto the packed q/k/v weight; cross: three; returned weights: no fused core
    assert names[0] == "addmm" and names[-1] == "addmm"
    assert names.count("addmm") == (4 if cross else 2)
    assert ("scaled_dot_product_attention" in names) != need_weights
    # the parts leave out the query scaling and the returned weights' head average (0.3% here)
    assert sum(p.flops for p in parts) == pytest.approx(cost.flops, rel=1e-2 if need_weights else 2e-3)
    assert sum(p.weight_bytes for p in parts) == pytest.approx(cost.weight_bytes, rel=2e-2)
    # the projections' GEMM shapes: 20 tokens x 64 onto 3 x 64 (self) or 64 (cross)
    a, w = parts[0].record.args[1:]
    assert a.shape == (20, 64) and w.shape == (64, 64 if cross else 192)


def test_other_ops_are_their_own_part_and_the_time_model_sums_the_parts():
    cost = _mha_cost(nn.MultiheadAttention(64, 4).eval(), torch.randn(10, 1, 64), torch.randn(10, 1, 64),
                     torch.randn(10, 1, 64))
    relu = next(c for c in analyze(nn.ReLU(), (8, 8)).ops if c.launches)
    assert timed_parts(relu) == [relu]
    rates = Rates(1e-6, {"float32": 1e11}, {"float32": 1e10}, 2e10)
    model = TimeModel({}, {}, {}, 0.0, rates, ContextModel())
    parts = timed_parts(cost)
    whole = model.predict([cost, relu], "float32")
    assert whole[0] == pytest.approx(sum(model.predict(parts, "float32")))
    assert whole[1] == pytest.approx(model.predict([relu], "float32")[0])
