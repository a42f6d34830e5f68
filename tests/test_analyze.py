"""Analysis-level behaviour: seed 001 figures, totals, memory, batch/dtype, API, errors."""
import json

import pytest
import torch
import torch.nn as nn

import hwcost
from hwcost.conventions import MB
from hwcost.errors import InputError, ModelForwardError, UnknownModelError
from hwcost.loaders import load_model
from hwcost.zoo import ZOO


@pytest.fixture(scope="module")
def mbv2():
    return hwcost.analyze(load_model("mobilenet_v2").model, (3, 224, 224))


def test_seed_001_mobilenet_v2_row(mbv2):
    t = mbv2.total
    assert t.params == 3_504_872
    assert round(t.storage_bytes / MB, 2) == 13.37
    assert round(t.inference_memory_bytes / MB, 2) == 74.25
    mm = sum(c.macs for c in mbv2.ops if c.family in ("conv", "depthwise_conv", "matmul"))
    assert round(mm / 1e6, 2) == 300.77
    # seed 001's first conv row: 864 params, our 864 x 112 x 112 MACs (not its 2.71 M)
    first = mbv2.layers[0]
    assert (first.name, first.params, first.macs) == ("features.0.0", 864, 864 * 112 * 112)


@pytest.mark.parametrize("name,inference_mb", [
    ("alexnet", 4.19), ("resnet18", 28.53), ("resnet50", 122.22), ("vgg11", 62.69), ("vgg16_bn", 161.07),
])
def test_seed_001_benchmark_table_inference_memory(name, inference_mb):
    a = hwcost.analyze(load_model(name).model, (3, 224, 224))
    assert round(a.total.inference_memory_bytes / MB, 2) == inference_mb


@pytest.mark.parametrize("name", [n for n, e in ZOO.items() if e.reference_params and n != "llama2_70b"])
def test_zoo_parameter_counts_equal_the_standard_versions(name):
    with torch.device("meta"):
        model = ZOO[name].build()
    assert sum(p.numel() for p in model.parameters()) == ZOO[name].reference_params


# torchvision's model table ("GFLOPS", multiply-adds in billions, to its two decimals) at its input sizes
@pytest.mark.parametrize("name,gmacs", [
    ("googlenet", 1.50), ("inception_v3", 5.71), ("resnext101_32x8d", 16.41), ("shufflenet_v2_x0_5", 0.04),
    ("shufflenet_v2_x1_0", 0.14), ("shufflenet_v2_x1_5", 0.30), ("shufflenet_v2_x2_0", 0.58),
])
def test_zoo_macs_match_torchvisions_table(name, gmacs):
    a = hwcost.analyze(load_model(name).model, ZOO[name].example())
    assert abs(a.total.macs / 1e9 - gmacs) <= 0.005 + 1e-9


def test_rows_sum_to_totals(mbv2):
    for f in ("params", "macs", "flops", "bytes_read", "bytes_written", "storage_bytes"):
        assert sum(getattr(r, f) for r in mbv2.layers) == getattr(mbv2.total, f)
    assert mbv2.total.memory_traffic_bytes == mbv2.total.bytes_read + mbv2.total.bytes_written


def test_parent_own_ops_get_their_own_row():
    a = hwcost.analyze(load_model("resnet18").model, (3, 224, 224))
    names = [r.name for r in a.layers]
    assert "layer1.0 (add)" in names
    row = a.layers[names.index("layer1.0 (add)")]
    assert row.type == "BasicBlock" and row.flops == 64 * 56 * 56


def test_peak_activation_from_lifetimes():
    model = nn.Sequential(nn.Linear(100, 1000), nn.ReLU(), nn.Linear(1000, 10))
    a = hwcost.analyze(model, (100,))
    # in 400 B -> 4000 B -> 4000 B -> 40 B; at most two activations are alive at once
    assert a.total.peak_activation_bytes == 8000
    assert a.total.inference_memory_bytes == 4000 + 4000 + 40


def test_batch_scales_work_not_weights():
    m = load_model("resnet18").model
    a1, a8 = hwcost.analyze(m, (3, 224, 224)), hwcost.analyze(m, (3, 224, 224), batch_size=8)
    assert a8.total.macs == 8 * a1.total.macs and a8.total.flops == 8 * a1.total.flops
    assert a8.total.params == a1.total.params and a8.total.storage_bytes == a1.total.storage_bytes
    assert a8.total.peak_activation_bytes == pytest.approx(8 * a1.total.peak_activation_bytes, rel=1e-3)
    assert a8.batch_size == 8 and a8.input_shapes == [(8, 3, 224, 224)]


@pytest.mark.parametrize("dtype,size", [("float16", 2), (torch.bfloat16, 2), ("int8", 1)])
def test_dtype_changes_bytes_not_work(dtype, size):
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    a32, a = hwcost.analyze(m, (3, 16, 16)), hwcost.analyze(m, (3, 16, 16), dtype=dtype)
    assert a.total.macs == a32.total.macs and a.total.flops == a32.total.flops
    assert a.total.storage_bytes * 4 == a32.total.storage_bytes * size
    assert a.total.bytes_written * 4 == a32.total.bytes_written * size


def test_example_inputs_tensor_tuple_dict():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)

        def forward(self, ids, scale=None):
            return self.emb(ids) * scale

    m = Two()
    ids = torch.randint(0, 50, (2, 7))
    a = hwcost.analyze(m, {"ids": ids, "scale": torch.ones(1)})
    assert a.input_shapes == [(2, 7), (1,)]
    b = hwcost.analyze(m, (ids, torch.ones(1)), batch_size=4)
    assert b.input_shapes[0] == (4, 7)


def test_user_model_is_not_moved_or_modified():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout())
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    hwcost.analyze(m, (3, 8, 8))
    assert m.training and all(x.training for x in m.modules())
    for k, v in m.state_dict().items():
        assert v.device.type == "cpu" and torch.equal(v, before[k])
    assert not m[0]._forward_hooks and not m[0]._forward_pre_hooks


def test_meta_built_model_analyzes():
    with torch.device("meta"):
        m = nn.Sequential(nn.Linear(4096, 4096), nn.GELU(), nn.Linear(4096, 4096))
    a = hwcost.analyze(m, (16, 4096))
    assert a.total.macs == 2 * 16 * 4096 * 4096


def test_depth_aggregation_keeps_totals():
    a = hwcost.analyze(load_model("resnet50").model, (3, 224, 224))
    rows = a.aggregate(1)
    assert [r.name for r in rows][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    assert sum(r.macs for r in rows) == a.total.macs
    assert "layer3" in a.table(depth=1)


def test_exports(tmp_path, mbv2):
    d = mbv2.to_dict()
    assert d["total"]["params"] == 3_504_872 and len(d["layers"]) == len(mbv2.layers)
    mbv2.to_json(tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text())["total"]["macs"] == mbv2.total.macs
    mbv2.to_csv(tmp_path / "a.csv")
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0].startswith("name,type,params,macs") and len(lines) == len(mbv2.layers) + 1


def test_llama_70b_shape_on_meta():
    m = load_model("llama2_70b").model
    a = hwcost.analyze(m, ZOO["llama2_70b"].example())
    assert a.total.params == 68_976_648_192
    # per token: 2 x params of the matmuls (all but the embedding), plus attention
    linear_macs = 2048 * (a.total.params - 32000 * 8192 - 161 * 8192)  # embedding and 161 RMSNorm weights
    attn_macs = 80 * 64 * 2048 * 2048 * 128 * 2
    assert a.total.macs == linear_macs + attn_macs


# ------------------------------------------------------------------ errors


def test_wrong_input_shape_names_layer_and_shapes():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ModelForwardError) as e:
        hwcost.analyze(m, (3, 8, 8))
    msg = str(e.value)
    assert "'2' (Linear)" in msg and "(1, 288)" in msg and "(1, 3, 8, 8)" in msg


def test_forward_that_raises():
    class Bad(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(ModelForwardError, match="boom"):
        hwcost.analyze(Bad(), (3,))


def test_bad_inputs():
    with pytest.raises(InputError, match="shape"):
        hwcost.analyze(nn.ReLU(), "3,224,224")
    with pytest.raises(InputError, match="non-positive"):
        hwcost.analyze(nn.ReLU(), (3, 0))
    with pytest.raises(InputError, match="dtype"):
        hwcost.analyze(nn.ReLU(), (3,), dtype="float12")
    with pytest.raises(InputError, match="batch_size"):
        hwcost.analyze(nn.ReLU(), (3,), batch_size=0)
    with pytest.raises(InputError, match="nn.Module"):
        hwcost.analyze(lambda x: x, (3,))


def test_unknown_model_lists_close_names():
    with pytest.raises(UnknownModelError, match="mobilenet_v2"):
        load_model("mobilenet_v22")


def test_module_calls_and_view_ops_are_counted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU())

        def forward(self, x):
            return self.body(x.view(2, 8)).t().unsqueeze(0)

    a = hwcost.analyze(Net(), torch.zeros(16))
    assert a.module_calls == 4          # Net, Sequential, Linear, ReLU
    assert a.view_ops >= 3              # view, t, unsqueeze (linear's own transpose of its weight too)


def test_weight_bytes_are_the_parameter_part_of_bytes_read():
    """Linear(64 -> 32) at batch 4, float32: weight 32x64 + bias 32 read as parameters; the input is not."""
    a = hwcost.analyze(nn.Sequential(nn.Linear(64, 32), nn.ReLU()), (64,), batch_size=4)
    addmm, relu = [c for c in a.ops if c.launches]
    assert addmm.weight_bytes == (32 * 64 + 32) * 4
    assert addmm.bytes_read == addmm.weight_bytes + 4 * 64 * 4
    assert relu.weight_bytes == 0
    m = load_model("mobilenet_v2").model
    total = sum(c.weight_bytes for c in hwcost.analyze(m, (3, 224, 224)).ops)
    assert total == pytest.approx(sum(t.numel() * 4 for t in list(m.parameters()) + list(m.buffers())
                                      if t.is_floating_point()), rel=1e-3)
