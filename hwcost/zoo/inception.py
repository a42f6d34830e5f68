"""Multi-branch reference architectures: GoogLeNet (Szegedy et al. 2014) and Inception v3 (Szegedy et
al. 2015), with the layer shapes of torchvision's ImageNet versions as their pretrained weights build
them (same parameter counts), so hwcost counts and predicts them without torchvision.

As loaded with weights, both scale the input per channel first (``transform_input``: three slices,
a multiply-add each and a concat); the auxiliary classifiers only run in training and are left out.
GoogLeNet keeps torchvision's 3x3 convolution in its "5x5" branch (the layout its weights have).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# torchvision's transform_input: ImageNet normalisation undone, then mapped to [-1, 1] per channel
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def transform_input(x: torch.Tensor) -> torch.Tensor:
    channels = [x[:, i:i + 1] * (s / 0.5) + (m - 0.5) / 0.5 for i, (m, s) in enumerate(zip(_MEAN, _STD))]
    return torch.cat(channels, 1)


class BasicConv2d(nn.Module):
    """Conv without bias, batch norm (eps 1e-3, as both networks use) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


# ------------------------------------------------------------------ GoogLeNet


class GoogLeNetBlock(nn.Module):
    def __init__(self, cin: int, c1: int, c3red: int, c3: int, c5red: int, c5: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3red, 1), BasicConv2d(c3red, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5red, 1), BasicConv2d(c5red, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection) per block, Table 1 of the paper
_GOOGLENET_BLOCKS = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128), "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        for name, shape in _GOOGLENET_BLOCKS.items():
            setattr(self, f"inception{name}", GoogLeNetBlock(*shape))
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(transform_input(x))))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, f"inception{name}")(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# ------------------------------------------------------------------ Inception v3


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1)


def _beside_pooled(x: torch.Tensor, convs: tuple[nn.Module, ...], pooled: nn.Module) -> torch.Tensor:
    """Branches side by side, the last on a same-size 3x3 average pool of the input (blocks A and C)."""
    return torch.cat([conv(x) for conv in convs] + [pooled(_avg_pool_same(x))], 1)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5 = nn.Sequential(BasicConv2d(cin, 48, 1), BasicConv2d(48, 64, 5, padding=2))
        self.branch3x3dbl = nn.Sequential(BasicConv2d(cin, 64, 1), BasicConv2d(64, 96, 3, padding=1),
                                          BasicConv2d(96, 96, 3, padding=1))
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _beside_pooled(x, (self.branch1x1, self.branch5x5, self.branch3x3dbl), self.branch_pool)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl = nn.Sequential(BasicConv2d(cin, 64, 1), BasicConv2d(64, 96, 3, padding=1),
                                          BasicConv2d(96, 96, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), F.max_pool2d(x, 3, 2)], 1)


def _seven(cin: int, cout: int, vertical: bool) -> BasicConv2d:
    """A 1x7 or 7x1 convolution (the factorised 7x7)."""
    return BasicConv2d(cin, cout, (7, 1) if vertical else (1, 7), padding=(3, 0) if vertical else (0, 3))


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7 = nn.Sequential(BasicConv2d(cin, c7, 1), _seven(c7, c7, False), _seven(c7, 192, True))
        self.branch7x7dbl = nn.Sequential(BasicConv2d(cin, c7, 1), _seven(c7, c7, True), _seven(c7, c7, False),
                                          _seven(c7, c7, True), _seven(c7, 192, False))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _beside_pooled(x, (self.branch1x1, self.branch7x7, self.branch7x7dbl), self.branch_pool)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = nn.Sequential(BasicConv2d(cin, 192, 1), BasicConv2d(192, 320, 3, stride=2))
        self.branch7x7x3 = nn.Sequential(BasicConv2d(cin, 192, 1), _seven(192, 192, False), _seven(192, 192, True),
                                         BasicConv2d(192, 192, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch7x7x3(x), F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x),
                          torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1),
                          torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1),
                          self.branch_pool(_avg_pool_same(x))], 1)


class InceptionV3(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            BasicConv2d(3, 32, 3, stride=2), BasicConv2d(32, 32, 3), BasicConv2d(32, 64, 3, padding=1),
            nn.MaxPool2d(3, 2), BasicConv2d(64, 80, 1), BasicConv2d(80, 192, 3), nn.MaxPool2d(3, 2))
        self.mixed = nn.Sequential(
            InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64), InceptionB(288),
            InceptionC(768, 128), InceptionC(768, 160), InceptionC(768, 160), InceptionC(768, 192),
            InceptionD(768), InceptionE(1280), InceptionE(2048))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixed(self.stem(transform_input(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
