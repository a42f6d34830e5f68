"""hwcost.register_formula: users add formulas for any op, their own custom ops included; every
built-in name is a real op in its torch.ops namespace."""
import pytest
import torch
import torch.nn as nn

import hwcost
from hwcost import formulas
from hwcost.errors import InputError

# ops some PyTorch builds lack (older releases; torch.cholesky's op is gone from 2.14); the rest must all
# exist in this one
OPTIONAL = {"_grouped_mm", "grouped_mm", "_fused_rms_norm", "_safe_softmax", "cholesky"}
# names records carry that are not overloads: hwcost's own record of nn.MultiheadAttention
HWCOST_RECORDS = {"multi_head_attention_forward"}


def _exists(name: str) -> bool:
    ns, _, op = name.rpartition("::")
    try:
        getattr(getattr(torch.ops, ns or "aten"), op)
        return True
    except (AttributeError, RuntimeError):
        return False


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401  (registers the torchvision:: ops)
        return True
    except Exception:   # absent, or a build for another torch
        return False


def test_every_registered_name_is_an_op():
    # torchvision's ops (roi_align, nms) are ops only where torchvision imports
    library_ops = set() if _torchvision_imports() else {n for n in formulas.REGISTRY if n.startswith("torchvision::")}
    missing = [n for n in formulas.REGISTRY if n not in HWCOST_RECORDS | OPTIONAL | library_ops and not _exists(n)]
    assert missing == []


@pytest.fixture
def custom_op():
    lib = torch.library.Library("hwcost_test", "FRAGMENT")
    lib.define("scale(Tensor x, float k) -> Tensor")
    lib.impl("scale", lambda x, k: x * k, "CPU")
    lib.impl("scale", lambda x, k: torch.empty_like(x), "Meta")
    yield torch.ops.hwcost_test.scale
    formulas.REGISTRY.pop("hwcost_test::scale", None)
    lib._destroy()


class Scaled(nn.Module):
    def forward(self, x):
        return torch.ops.hwcost_test.scale(x, 2.0)


def test_a_custom_op_counts_with_a_user_formula(custom_op):
    a = hwcost.analyze(Scaled(), (4, 8))
    assert a.unsupported == {"hwcost_test::scale": 1}     # before: bytes only, flagged

    @hwcost.register_formula(custom_op, family="elementwise")
    def scale_cost(rec):
        return hwcost.Work(flops=rec.outputs[0].numel)

    a = hwcost.analyze(Scaled(), (4, 8))
    assert a.unsupported == {} and a.total.flops == 32 and a.ops[0].family == "elementwise"
    assert hwcost.predict(Scaled(), (4, 8), device="raspberry-pi-4").latency_ms > 0


def test_registering_twice_needs_override(custom_op):
    hwcost.register_formula("hwcost_test::scale", lambda rec: hwcost.Work(flops=1))
    with pytest.raises(InputError, match="already has a formula"):
        hwcost.register_formula("hwcost_test::scale", lambda rec: hwcost.Work(flops=2))
    hwcost.register_formula("hwcost_test::scale", lambda rec: hwcost.Work(flops=3), override=True)
    assert formulas.REGISTRY["hwcost_test::scale"].fn(None).flops == 3
    with pytest.raises(InputError, match="already has a formula"):
        hwcost.register_formula(torch.ops.aten.convolution.default, lambda rec: hwcost.Work())
    with pytest.raises(InputError, match="unknown op family"):
        hwcost.register_formula("hwcost_test::other", lambda rec: hwcost.Work(), family="magic")
