"""Built-in reference architectures: ``hwcost zoo`` lists them, loaders build them by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from . import cnn, inception, recurrent, transformer


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[[], nn.Module]
    example: Callable[[], Any]       # default input: a shape without batch, or an example tensor
    description: str
    reference_params: int | None = None   # the standard version's count (torchvision / timm)


def _image(size: int = 224) -> Callable[[], tuple[int, ...]]:
    return lambda: (3, size, size)


def _tokens(seq: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.zeros(1, seq, dtype=torch.long)  # token ids: small, and values a trace can read


_ENTRIES = [
    ZooEntry("alexnet", cnn.AlexNet, _image(), "AlexNet (2012)", 61_100_840),
    ZooEntry("vgg11", lambda: cnn.VGG(11), _image(), "VGG-11 (2014)", 132_863_336),
    ZooEntry("vgg11_bn", lambda: cnn.VGG(11, True), _image(), "VGG-11 with batch norm", 132_868_840),
    ZooEntry("vgg16", lambda: cnn.VGG(16), _image(), "VGG-16 (2014)", 138_357_544),
    ZooEntry("vgg16_bn", lambda: cnn.VGG(16, True), _image(), "VGG-16 with batch norm", 138_365_992),
    ZooEntry("resnet18", lambda: cnn.ResNet(cnn.BasicBlock, [2, 2, 2, 2]), _image(), "ResNet-18 (2015)", 11_689_512),
    ZooEntry("resnet50", lambda: cnn.ResNet(cnn.Bottleneck, [3, 4, 6, 3]), _image(), "ResNet-50 v1.5", 25_557_032),
    ZooEntry("resnet34", lambda: cnn.ResNet(cnn.BasicBlock, [3, 4, 6, 3]), _image(), "ResNet-34 (2015)", 21_797_672),
    ZooEntry("resnet101", lambda: cnn.ResNet(cnn.Bottleneck, [3, 4, 23, 3]), _image(), "ResNet-101 v1.5", 44_549_160),
    ZooEntry("resnet152", lambda: cnn.ResNet(cnn.Bottleneck, [3, 8, 36, 3]), _image(), "ResNet-152 v1.5", 60_192_808),
    ZooEntry("vgg13", lambda: cnn.VGG(13), _image(), "VGG-13 (2014)", 133_047_848),
    ZooEntry("vgg13_bn", lambda: cnn.VGG(13, True), _image(), "VGG-13 with batch norm", 133_053_736),
    ZooEntry("squeezenet1_0", lambda: cnn.SqueezeNet("1_0"), _image(), "SqueezeNet 1.0 (2016)", 1_248_424),
    ZooEntry("squeezenet1_1", lambda: cnn.SqueezeNet("1_1"), _image(), "SqueezeNet 1.1", 1_235_496),
    ZooEntry("densenet121", lambda: cnn.DenseNet(121), _image(), "DenseNet-121 (2017)", 7_978_856),
    ZooEntry("densenet169", lambda: cnn.DenseNet(169), _image(), "DenseNet-169", 14_149_480),
    ZooEntry("densenet201", lambda: cnn.DenseNet(201), _image(), "DenseNet-201", 20_013_928),
    ZooEntry("densenet161", lambda: cnn.DenseNet(161), _image(), "DenseNet-161", 28_681_000),
    ZooEntry("mobilenet_v2", cnn.MobileNetV2, _image(), "MobileNetV2 (2018)", 3_504_872),
    ZooEntry("mobilenet_v3_small", lambda: cnn.MobileNetV3(cnn.MBV3_SMALL, 1024), _image(),
             "MobileNetV3-Small (2019)", 2_542_856),
    ZooEntry("mobilenet_v3_large", lambda: cnn.MobileNetV3(cnn.MBV3_LARGE, 1280), _image(),
             "MobileNetV3-Large (2019)", 5_483_032),
    ZooEntry("shufflenet_v2_x1_0", cnn.ShuffleNetV2, _image(), "ShuffleNetV2 1.0x (2018)", 2_278_604),
    ZooEntry("shufflenet_v2_x0_5", lambda: cnn.ShuffleNetV2(channels=(24, 48, 96, 192, 1024)), _image(),
             "ShuffleNetV2 0.5x", 1_366_792),
    ZooEntry("shufflenet_v2_x1_5", lambda: cnn.ShuffleNetV2(channels=(24, 176, 352, 704, 1024)), _image(),
             "ShuffleNetV2 1.5x", 3_503_624),
    ZooEntry("shufflenet_v2_x2_0", lambda: cnn.ShuffleNetV2(channels=(24, 244, 488, 976, 2048)), _image(),
             "ShuffleNetV2 2.0x", 7_393_996),
    ZooEntry("resnext101_32x8d", lambda: cnn.ResNet(cnn.Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8),
             _image(), "ResNeXt-101 32x8d (2017)", 88_791_336),
    ZooEntry("googlenet", inception.GoogLeNet, _image(), "GoogLeNet / Inception v1 (2014), no auxiliary heads",
             6_624_904),
    ZooEntry("inception_v3", inception.InceptionV3, _image(299), "Inception v3 (2015), no auxiliary head",
             23_834_568),
    ZooEntry("efficientnet_b0", cnn.EfficientNetB0, _image(), "EfficientNet-B0 (2019)", 5_288_548),
    ZooEntry("vit_ti_16", lambda: transformer.VisionTransformer(dim=192, depth=12, heads=3, mlp_dim=768),
             _image(), "ViT-Ti/16 (DeiT-tiny layout)", 5_717_416),
    ZooEntry("vit_b_16", transformer.VisionTransformer, _image(), "ViT-B/16 (2020)", 86_567_656),
    ZooEntry("llama_tiny", lambda: transformer.Decoder(transformer.LLAMA_TINY), _tokens(128),
             "Llama-style decoder, 8 layers, d=512, GQA 8/4 heads, seq 128"),
    ZooEntry("llama_125m", lambda: transformer.Decoder(transformer.LLAMA_125M), _tokens(128),
             "Llama-style decoder, 12 layers, d=768, GQA 12/4 heads, FFN 2048, seq 128 (runs on a CPU)"),
    ZooEntry("llama2_70b", lambda: transformer.Decoder(transformer.LLAMA2_70B), _tokens(2048),
             "Llama-2-70B-shaped decoder (80 layers, d=8192, GQA 8 KV heads, FFN 28672), seq 2048",
             68_976_648_192),
    ZooEntry("lstm_classifier", recurrent.LSTMClassifier, _tokens(64),
             "embedding + 2-layer bidirectional LSTM (hidden 512) + linear, seq 64"),
    ZooEntry("gru_classifier", lambda: recurrent.LSTMClassifier(cell="gru"), _tokens(64),
             "embedding + 2-layer bidirectional GRU (hidden 512) + linear, seq 64"),
    ZooEntry("c3d_small", recurrent.C3D, lambda: (3, 16, 112, 112),
             "small 3D-conv video classifier, 16 frames of 112x112"),
]

ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}


def names() -> list[str]:
    return list(ZOO)
