"""Tracer internals: fast shape rules equal the meta kernels; the meta cache never aliases."""
import pytest
import torch
import torch.nn as nn

import hwcost
from hwcost.trace import _SAME_AS_INPUT, _SAME_SHAPE_BINARY, fast_meta

aten = torch.ops.aten


def _meta(shape, dtype=torch.float32, channels_last=False):
    x = torch.empty(shape, dtype=dtype, device="meta")
    return x.to(memory_format=torch.channels_last) if channels_last else x


def _same(a, b):
    return tuple(a.shape) == tuple(b.shape) and a.stride() == b.stride() and a.dtype == b.dtype


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fast_rules_match_meta_kernels(channels_last, dtype):
    x = _meta((2, 6, 5, 7), dtype, channels_last)
    for op in _SAME_AS_INPUT:
        args = {aten.hardtanh.default: (x, 0.0, 6.0), aten.clamp.default: (x, 0.0, 1.0),
                aten.clamp_min.default: (x, 0.0), aten.clamp_max.default: (x, 1.0)}.get(op, (x,))
        assert _same(fast_meta(op, args, {}), op(*args)), op
    for op in _SAME_SHAPE_BINARY:
        y = _meta((2, 6, 5, 7), dtype, channels_last)
        assert _same(fast_meta(op, (x, y), {}), op(x, y)), op
    w = torch.empty(6, device="meta")
    for training in (False, True):
        ref = aten.native_batch_norm.default(x, w, w, w, w, training, 0.1, 1e-5)
        got = fast_meta(aten.native_batch_norm.default, (x, w, w, w, w, training, 0.1, 1e-5), {})
        assert all(_same(a, b) for a, b in zip(got, ref))


@pytest.mark.parametrize("case", [
    ((2, 6, 9, 11), (8, 6, 3, 3), [1, 1], [1, 1], [1, 1], False, [0, 0], 1),
    ((1, 6, 9, 11), (6, 1, 5, 5), [2, 2], [2, 2], [1, 1], False, [0, 0], 6),      # depthwise, stride 2
    ((1, 4, 10, 7), (8, 2, 3, 1), [2, 1], [0, 1], [2, 1], False, [0, 0], 2),      # grouped, dilated
    ((1, 6, 5, 5), (6, 4, 4, 4), [2, 2], [1, 1], [1, 1], True, [1, 0], 1),        # transposed
    ((2, 3, 16), (5, 3, 4), [3], [2], [1], False, [0], 1),                        # 1-d
    ((1, 3, 4, 8, 8), (4, 3, 3, 3, 3), [1, 2, 2], [1, 1, 1], [1, 1, 1], False, [0, 0, 0], 1),   # 3-d
])
def test_fast_conv_rule_matches_the_meta_kernel(case):
    xs, ws, stride, pad, dil, transposed, out_pad, groups = case
    args = (_meta(xs), _meta(ws), None, stride, pad, dil, transposed, out_pad, groups)
    assert _same(fast_meta(aten.convolution.default, args, {}), aten.convolution.default(*args))


@pytest.mark.parametrize("shapes", [((2, 6, 5, 7), (2, 6, 1, 1)), ((2, 6, 5, 7), (7,)), ((1, 6, 1, 7), (2, 1, 5, 1)),
                                    ((4, 5), (1, 5)), ((2, 6, 1, 1), (2, 6, 5, 7))])
def test_fast_broadcast_rule_matches_the_meta_kernel(shapes):
    x, y = _meta(shapes[0]), _meta(shapes[1])
    for op in _SAME_SHAPE_BINARY:
        assert _same(fast_meta(op, (x, y), {}), op(x, y)), op


def test_fast_matmul_rules_match_the_meta_kernels():
    a, b = _meta((5, 7)), _meta((7, 3))
    for bias in (_meta((3,)), _meta((5, 3)), _meta((1, 3))):
        assert _same(fast_meta(aten.addmm.default, (bias, a, b), {}), aten.addmm.default(bias, a, b))
    assert _same(fast_meta(aten.mm.default, (a, b), {}), aten.mm.default(a, b))
    x, y = _meta((4, 5, 7)), _meta((4, 7, 2))
    assert _same(fast_meta(aten.bmm.default, (x, y), {}), aten.bmm.default(x, y))
    assert fast_meta(aten.mm.default, (a, a), {}) is None                     # does not fit: the kernel says so


@pytest.mark.parametrize("op", [aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default])
@pytest.mark.parametrize("dims,keepdim", [([2, 3], True), ([-1], False), ([1], True), ([0, 2], False)])
def test_fast_reduction_rule_matches_the_meta_kernel(op, dims, keepdim):
    x = _meta((2, 6, 5, 7))
    assert _same(fast_meta(op, (x, dims, keepdim), {}), op(x, dims, keepdim))


def test_fast_rules_decline_what_they_cannot_know():
    x = _meta((4, 6))
    assert fast_meta(aten.relu.default, (x.t(),), {}) is None            # not dense
    assert fast_meta(aten.add.Tensor, (x, _meta((6,), torch.float16)), {}) is None   # dtypes promote
    assert fast_meta(aten.add.Tensor, (x.t(), _meta((4,))), {}) is None              # strided broadcast
    assert fast_meta(aten.relu.default, (torch.empty(3, dtype=torch.long, device="meta"),), {}) is None


def test_repeated_blocks_counted_every_time():
    """The meta cache returns fresh tensors: identical layers are each counted, and never aliased."""
    block = lambda: torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU())
    m = torch.nn.Sequential(*[block() for _ in range(5)])
    a = hwcost.analyze(m, (16,))
    assert a.total.macs == 5 * 256
    outs = [c.record.outputs[0].storage_id for c in a.ops]
    assert len(set(outs)) == len(outs)


class _LastPositionHead(torch.nn.Module):
    """A language model's head on its last position only (logits_to_keep=1): a strided slice."""

    def __init__(self):
        super().__init__()
        self.body, self.head = torch.nn.Linear(16, 16), torch.nn.Linear(16, 50, bias=False)

    def forward(self, x):
        return self.head(self.body(x)[:, -1:, :])


def _eager_matmuls(model, x) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as p:
        model(x)
    return sorted(e.name.removeprefix("aten::") for e in p.events() if e.name in ("aten::mm", "aten::bmm", "aten::addmm"))


def test_matmuls_are_traced_as_eager_runs_them_whatever_the_callers_grad_mode():
    """aten.matmul folds a (B, T, K) input into one mm when the weight requires grad (a parameter's
    default) and runs bmm on a strided slice otherwise: the meta stand-ins of a model's weights, and a
    model built inside a caller's inference_mode (inference tensors), must keep what eager sees.
    Before, an LM head's last position was traced as bmm (a 15M Llama's prefill head: 3.6 ms predicted
    on one calibration against 4.2 as the mm eager ran)."""
    x = torch.randn(1, 8, 16)
    eager = _eager_matmuls(_LastPositionHead(), x)
    assert eager == ["addmm", "mm"]

    def traced(model):
        return sorted(c.record.name for c in hwcost.analyze(model, x).ops if c.record.name in ("mm", "bmm", "addmm"))

    assert traced(_LastPositionHead()) == eager
    with torch.inference_mode():
        assert traced(_LastPositionHead()) == eager       # built and analyzed inside inference_mode
        with torch.device("meta"):
            assert traced(_LastPositionHead()) == eager   # built on meta there


def test_tensors_a_forward_rebinds_on_its_module_are_put_back():
    """torchvision's AnchorGenerator moves its anchors to the input's device in forward: on the meta
    trace that left meta stand-ins in the user's model, and the values trace after it failed."""

    class Anchored(nn.Module):
        def __init__(self):
            super().__init__()
            self.anchors = [torch.arange(4.0)]   # plain attributes, not buffers
            self.cache = None
            self.score = nn.Linear(4, 1)

        def forward(self, x):
            self.anchors = [a.to(x.device) for a in self.anchors]
            self.cache = x.sum()
            self.made = x * 2
            n = int(self.score(x).sum() > 0) + 1     # needs a weight's value: meta gives up, values runs
            return x[:n] + self.anchors[0]

    model = Anchored()
    anchors = model.anchors
    a = hwcost.analyze(model, (4,))
    assert a.trace_mode == "values"
    assert model.anchors is anchors and model.anchors[0].device.type == "cpu"
    assert model.cache is None and not hasattr(model, "made")
    model(torch.zeros(1, 4))   # still runs as the user built it


def test_a_cache_and_the_shape_it_was_made_for_come_back_together():
    """ultralytics' Detect head keeps its anchors with the input shape they were made for; putting back the
    anchors (tensors) without the shape (a torch.Size) broke the call after a prediction."""

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.shape, self.anchors = None, torch.empty(0)

        def forward(self, x):
            if self.shape != x.shape:
                self.anchors, self.shape = torch.arange(x.shape[-1], dtype=x.dtype, device=x.device), x.shape
            return x + self.anchors

    head = Head()
    hwcost.predict(head, (8,), device="raspberry-pi-4")
    assert head.shape is None and head.anchors.numel() == 0
    assert head(torch.zeros(1, 8)).shape == (1, 8)


def test_factories_asked_for_the_cpu_are_stand_ins_on_the_meta_trace():
    """RAFT builds its coordinate grid with torch.arange(n, device="cpu"): the first call made a real
    tensor and the second, the same shape, a cached meta one, and meshgrid refused the mix."""

    class Grid(nn.Module):
        def forward(self, x):
            h, w = x.shape[-2:]
            rows, cols = torch.meshgrid(torch.arange(h, device="cpu"), torch.arange(w, device="cpu"), indexing="ij")
            return x + torch.stack([cols, rows]).float().to(x.device)

    for shape in [(2, 8, 8), (2, 8, 9)]:
        a = hwcost.analyze(Grid(), shape)
        assert a.trace_mode == "meta"
        assert a.total.flops == 2 * shape[1] * shape[2]   # the add; the grid is made, not computed
