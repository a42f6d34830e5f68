"""Search spaces for the specialization loop: OFA-MobileNetV3 and a ResNet width/depth space.

A space subclasses ``SearchSpace`` (or offers the same interface):

    sample(rng) -> config               a random sub-network (configs are plain tuples, hashable)
    mutate(config, rng, prob) -> config each choice resampled with probability ``prob``
    crossover(a, b, rng) -> config      each choice taken from a or b
    build(config) -> nn.Module          the real sub-network
    input_shape(config) -> shape        without batch, e.g. (3, 192, 192)
    blocks(config) -> [Block]           the network as a sequence of blocks, each with a hashable
                                        signature and a builder; equal signatures = equal latency
    smallest() / largest() -> config

Once-for-All (Cai et al., ICLR 2020): MobileNetV3 super-network with elastic kernel {3,5,7},
expand ratio {3,4,6}, depth {2,3,4} per stage over 5 stages, input resolution 160..224 step 4.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import torch.nn as nn

from .zoo.cnn import ConvNormAct, SqueezeExcitation, make_divisible


class Block(NamedTuple):
    """One block of a sub-network: what sets its cost, how to build it, and its input (a search makes
    thousands of these a second, so a named tuple, not a dataclass)."""

    signature: tuple                       # everything that sets the block's cost
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]           # without batch
    module_key: tuple | None = None        # what the built module depends on (the signature less the input size)


class SearchSpace:
    """A space of sub-networks whose config is (resolution, group, group, ...), each group a tuple of
    choices (per stage depth, per block kernel, ...). Sampling, mutation, crossover and the extremes are
    the same for every such space; a subclass says its groups, its blocks and how to describe a config."""

    name: str = "space"
    resolutions: Sequence[int] = ()
    notation: str = ""              # how ``describe`` writes a config, for users reading search results

    def groups(self) -> list[tuple[Sequence[Any], int]]:
        """(choices, how many) for each group after the resolution."""
        raise NotImplementedError

    def blocks(self, config: Any) -> list[Block]:
        raise NotImplementedError

    def describe(self, config: Any) -> str:
        raise NotImplementedError

    def sample(self, rng: random.Random) -> tuple:
        return (rng.choice(self.resolutions),
                *(tuple(rng.choice(choices) for _ in range(n)) for choices, n in self.groups()))

    def mutate(self, config: tuple, rng: random.Random, prob: float) -> tuple:
        pick = lambda cur, choices: rng.choice(choices) if rng.random() < prob else cur  # noqa: E731
        return (pick(config[0], self.resolutions),
                *(tuple(pick(x, choices) for x in group) for group, (choices, _) in zip(config[1:], self.groups())))

    def crossover(self, a: tuple, b: tuple, rng: random.Random) -> tuple:
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        return (pick(a[0], b[0]), *(tuple(map(pick, ga, gb)) for ga, gb in zip(a[1:], b[1:])))

    def smallest(self) -> tuple:
        return (min(self.resolutions), *((min(choices),) * n for choices, n in self.groups()))

    def largest(self) -> tuple:
        return (max(self.resolutions), *((max(choices),) * n for choices, n in self.groups()))

    def input_shape(self, config: tuple) -> tuple[int, ...]:
        return (3, config[0], config[0])

    def build(self, config: tuple) -> nn.Module:
        return Sequential(*[b.build() for b in self.blocks(config)])


class Sequential(nn.Sequential):
    """The built sub-network: blocks in order (named like the LUT's blocks)."""


# ------------------------------------------------------------------ OFA MobileNetV3


class MBBlock(nn.Module):
    """MobileNetV3 inverted residual with elastic kernel and expand ratio (OFA's MBConvLayer)."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int, se: bool, act: str):
        super().__init__()
        mid = make_divisible(cin * expand)
        a = nn.Hardswish if act == "h_swish" else nn.ReLU
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if mid != cin:
            layers.append(ConvNormAct(cin, mid, 1, act=a))
        layers.append(ConvNormAct(mid, mid, kernel, stride, groups=mid, act=a))
        if se:
            layers.append(SqueezeExcitation(mid, make_divisible(mid // 4), scale_activation=nn.Hardsigmoid))
        layers.append(ConvNormAct(mid, cout, 1, act=None))
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.first_conv = ConvNormAct(3, 16, 3, 2, act=nn.Hardswish)
        self.first_block = MBBlock(16, 16, 3, 1, 1, False, "relu")

    def forward(self, x):
        return self.first_block(self.first_conv(x))


class Head(nn.Module):
    def __init__(self, cin: int = 160, expand: int = 960, mix: int = 1280, classes: int = 1000):
        super().__init__()
        self.final_expand = ConvNormAct(cin, expand, 1, act=nn.Hardswish)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_mix = nn.Sequential(nn.Conv2d(expand, mix, 1, bias=False), nn.Hardswish())
        self.classifier = nn.Linear(mix, classes)

    def forward(self, x):
        return self.classifier(self.feature_mix(self.pool(self.final_expand(x))).flatten(1))


OFAConfig = tuple  # (resolution, depths (5,), kernels (20,), expands (20,)) - per stage, 4 slots each


@dataclass
class OFAMobileNetV3(SearchSpace):
    """Once-for-All MobileNetV3 (width 1.0): 5 elastic stages of up to 4 blocks."""

    kernels: Sequence[int] = (3, 5, 7)
    expands: Sequence[int] = (3, 4, 6)
    depths: Sequence[int] = (2, 3, 4)
    resolutions: Sequence[int] = tuple(range(160, 225, 4))
    # per stage: output channels, first stride, activation, squeeze-excite (OFA's MBv3 layout)
    stages: Sequence[tuple[int, int, str, bool]] = (
        (24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "h_swish", False),
        (112, 1, "h_swish", True), (160, 2, "h_swish", True),
    )
    name: str = "ofa-mbv3"

    notation: str = ("r<input resolution> d<blocks per stage, 5 stages> | then per stage its blocks as "
                     "k<depthwise kernel>e<expand ratio>, separated by /")

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def groups(self) -> list[tuple[Sequence[Any], int]]:
        n = len(self.stages) * self.max_depth
        return [(self.depths, len(self.stages)), (self.kernels, n), (self.expands, n)]

    def blocks(self, config: OFAConfig) -> list[Block]:
        res, depths, kernels, expands = config
        size = _ceil_div(res, 2)  # after the stride-2 first conv
        out: list[Block] = [Block(("stem", res), Stem, (3, res, res), ("stem",))]
        cin = 16
        for s, (cout, stride, act, se) in enumerate(self.stages):
            for i in range(depths[s]):
                slot = s * self.max_depth + i
                st = stride if i == 0 else 1
                sig = ("mb", cin, cout, kernels[slot], expands[slot], st, se, act, size)
                out.append(Block(sig, _mb_builder(cin, cout, kernels[slot], expands[slot], st, se, act), (cin, size, size),
                                 sig[:-1]))
                size = _ceil_div(size, st)
                cin = cout
        out.append(Block(("head", cin, size), lambda c=cin: Head(c), (cin, size, size), ("head", cin)))
        return out

    def describe(self, config: OFAConfig) -> str:
        res, depths, kernels, expands = config
        parts = []
        for s, d in enumerate(depths):
            ks = kernels[s * self.max_depth: s * self.max_depth + d]
            es = expands[s * self.max_depth: s * self.max_depth + d]
            parts.append("/".join(f"k{k}e{e}" for k, e in zip(ks, es)))
        return f"r{res} d{''.join(map(str, depths))} | " + " | ".join(parts)


def _ceil_div(a: int, b: int) -> int:
    """Output size of a stride-b layer padded to keep ceil(a / b) (k // 2 padding, odd k)."""
    return -(-a // b)


def _mb_builder(cin, cout, k, e, stride, se, act) -> Callable[[], nn.Module]:
    return lambda: MBBlock(cin, cout, k, e, stride, se, act)


# ------------------------------------------------------------------ ResNet width/depth


class ResBlock(nn.Module):
    """A basic residual block with an elastic width (the OFA-ResNet idea on BasicBlocks)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(ConvNormAct(cin, cout, 3, stride), ConvNormAct(cout, cout, 3, act=None))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResStem(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv = ConvNormAct(3, width, 7, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return self.pool(self.conv(x))


class ResHead(nn.Module):
    def __init__(self, cin: int, classes: int = 1000):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


@dataclass
class ResNetSpace(SearchSpace):
    """ResNet-18-like: per stage depth {1,2,3} and width multiplier {0.5, 0.75, 1.0}, resolution 128..224."""

    depths: Sequence[int] = (1, 2, 3)
    widths: Sequence[float] = (0.5, 0.75, 1.0)
    resolutions: Sequence[int] = tuple(range(128, 225, 16))
    base_widths: Sequence[int] = (64, 128, 256, 512)
    name: str = "resnet"

    notation: str = "r<input resolution> depths <blocks per stage> widths <width multiplier per stage>"

    def groups(self) -> list[tuple[Sequence[Any], int]]:
        n = len(self.base_widths)
        return [(self.depths, n), (self.widths, n)]

    def blocks(self, config: tuple) -> list[Block]:
        res, depths, widths = config
        stem_w = make_divisible(64 * widths[0])
        size = _ceil_div(_ceil_div(res, 2), 2)  # conv stride 2, then max-pool stride 2
        out = [Block(("stem", res, stem_w), lambda w=stem_w: ResStem(w), (3, res, res), ("stem", stem_w))]
        cin = stem_w
        for s, (base, d, w) in enumerate(zip(self.base_widths, depths, widths)):
            cout = make_divisible(base * w)
            for i in range(d):
                st = 2 if i == 0 and s > 0 else 1
                out.append(Block(("res", cin, cout, st, size), lambda a=cin, b=cout, c=st: ResBlock(a, b, c),
                                 (cin, size, size), ("res", cin, cout, st)))
                size = _ceil_div(size, st)
                cin = cout
        out.append(Block(("head", cin), lambda c=cin: ResHead(c), (cin, size, size)))
        return out

    def describe(self, config: tuple) -> str:
        res, depths, widths = config
        return f"r{res} depths {'-'.join(map(str, depths))} widths {'-'.join(f'{w:g}' for w in widths)}"


SPACES: dict[str, Callable[[], Any]] = {"ofa-mbv3": OFAMobileNetV3, "resnet": ResNetSpace}
