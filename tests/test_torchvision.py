"""torchvision's own models, where torchvision imports (not on CI: its PyPI build needs another torch). Run
here in a venv with torch 2.14.1 and torchvision 0.29.1."""
import pytest

import hwcost
from hwcost.loaders import load_model


def _torchvision():
    try:
        import torchvision
    except Exception as e:   # absent, or a build for another torch ("operator torchvision::nms does not exist")
        pytest.skip(f"torchvision does not import: {type(e).__name__}")
    return torchvision


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b3", "vit_b_16", "r3d_18", "swin3d_t", "mvit_v2_s",
                                  "lraspp_mobilenet_v3_large", "retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large"])
def test_macs_equal_torchvisions_table_at_its_inputs(name):
    tv = _torchvision()
    loaded = load_model(f"torchvision:{name}")
    shape = (3, 800, 800) if name.startswith("retinanet") else loaded.example   # its table's detection input
    ops = next(w.meta["_ops"] for w in tv.models.get_model_weights(name))
    assert hwcost.analyze(loaded.model, shape).total.macs / 1e9 == pytest.approx(ops, abs=0.0015)


def test_a_detector_counts_its_heads_and_says_its_boxes_came_from_random_weights():
    _torchvision()
    loaded = load_model("torchvision:fasterrcnn_resnet50_fpn")     # no download: backbone weights left out too
    anchors = loaded.model.rpn.anchor_generator.cell_anchors
    p = hwcost.predict(loaded.model, (3, 800, 800), device="jetson-orin-nano")
    assert p.analysis.total.macs / 1e9 == pytest.approx(134.38, abs=0.005)   # torchvision's table
    assert not p.analysis.unsupported
    assert any("torchvision::nms" in w and "random weights" in w for w in p.warnings)
    assert loaded.model.rpn.anchor_generator.cell_anchors is anchors and anchors[0].device.type == "cpu"


def test_quantized_names_build_the_int8_model():
    _torchvision()
    loaded = load_model("torchvision:quantized_mobilenet_v2")
    a = hwcost.analyze(loaded.model, loaded.example)
    assert "quantized int8" in a.dtype_label and not a.unsupported
    with pytest.raises(hwcost.HwcostError, match="no int8 rate"):
        hwcost.predict(loaded.model, loaded.example, device="jetson-nano")
