"""MACs of the conv/matmul/attention family equal torch's FlopCounterMode total / 2, exactly.

FlopCounterMode runs on meta tensors here: there attention takes the math path, which it counts;
on real CPU tensors it misses the fused flash kernel (see README).
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import hwcost
from hwcost.loaders import load_model
from hwcost.zoo import ZOO

PRODUCT_FAMILIES = {"conv", "depthwise_conv", "grouped_conv", "conv_transpose", "matmul", "attention", "rnn"}


def product_macs(a: hwcost.Analysis) -> int:
    return sum(c.macs for c in a.ops if c.family in PRODUCT_FAMILIES)


def flop_counter_macs(model, *args, **kwargs) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*args, **kwargs)
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("name", [n for n in ZOO if n != "llama2_70b"])
def test_zoo_matches_flop_counter(name):
    loaded = load_model(name)
    model = loaded.model.eval()
    ex = loaded.example
    x = torch.empty((1, *ex), device="meta") if isinstance(ex, tuple) else ex.to("meta")
    a = hwcost.analyze(model, ex)
    assert product_macs(a) == flop_counter_macs(model, x)
    assert not a.unsupported


transformers = pytest.importorskip("transformers")


def _hf(name):
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, ViTConfig, ViTModel

    ids = {"input_ids": torch.zeros(1, 128, dtype=torch.long, device="meta")}
    return {
        "bert": (lambda: BertModel(BertConfig()), ids, 11_174_215_680),
        "gpt2": (lambda: GPT2LMHeadModel(GPT2Config()), ids, 16_114_089_984),
        "vit": (lambda: ViTModel(ViTConfig()), {"pixel_values": torch.zeros(1, 3, 224, 224, device="meta")},
                17_563_650_048),
    }[name]


@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_transformers_match_flop_counter(name, attn):
    build, inputs, expected = _hf(name)
    with torch.device("meta"):
        model = build().eval()
    model.config._attn_implementation = attn
    a = hwcost.analyze(model, inputs)
    assert product_macs(a) == flop_counter_macs(model, **inputs) == expected
    assert not a.unsupported


def test_transformers_real_weights_on_cpu():
    """A real (non-meta) model is analyzed on meta stand-ins: same counts, weights untouched."""
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2,
                                 intermediate_size=512)).eval()
    ids = torch.randint(0, 1000, (2, 32))
    a = hwcost.analyze(model, {"input_ids": ids})
    with torch.device("meta"):
        meta_model = BertModel(model.config).eval()
    assert product_macs(a) == flop_counter_macs(meta_model, input_ids=ids.to("meta"))
    assert next(model.parameters()).device.type == "cpu"
