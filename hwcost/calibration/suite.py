"""The microbenchmark suite: one generator of cases per op family, over shapes that span real networks.

A case is a tiny nn.Module and its input, called the way a network calls it (through
``nn.Module.__call__``), so a measured time includes the same dispatch a model pays. Shapes come
from seeded draws over the ranges real CNNs, transformers and recurrent nets use; the families are
interleaved (weighted) so that a run stopped at any point covers every family.

Long because it holds one case generator per op family (15) and the network-like chains.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

SUITE_VERSION = 39  # 39: half the token linears a transformer block's projections (_token_block_linear),
# LM heads drawn twice as often (HEAD_SHARE 0.04 -> 0.08): no warm product of 3072+ outputs over more than 65
# rows had been sampled, and the trees dropped 10-15% there (1576 x 768 -> 3072) where the product runs flat
# 38: a mobile block's pointwise 1 x 1 in 15% of the conv draws (_pointwise)
# 37: the same cases; the cache's knee, band edge and miss shares from each size's median
# over five copy sweeps (resources.LLC_SWEEPS), not one: one sweep's share of a 128 MiB read from DRAM spread
# 0.32-0.45 over five sweeps in five seconds at 2 threads here (medians of five: 0.30-0.33; at 1 thread
# 0.44-0.63 either way, the cache itself moving between them)
# 36: the same cases; samples record native_conv (formulas.native_conv: whether PyTorch
# runs a float32 convolution with its own kernel or oneDNN), so a calibration of an older suite is not resumed
# with them (its samples read 0 there)
# 35: half the large convolution draws a batched CNN's body (3x3 or bottleneck 1x1, stride 1,
# 32-512 wide, 2-D and 3-D): the large draws were mostly unaligned widths and 1x1s over big maps (90-150
# GFLOP/s at 1 thread here), no sample near VGG's or C3D's 3x3s (175-200), and calibration D put VGG-11's
# and C3D's batch-8 convolutions 20-46% slow, timed alone beside calibration cases at its speed
# 34: warm linear layers also at prompt lengths (32 rows) and at the widths LLM and ViT
# blocks have off the powers of two (704, 1408, 1536, 2816, 5632): a 15M Llama's 32-token prefill products
# (256 -> 704, 128 and 256 wide) ran 11-27% over their prediction alone at 1 thread, 45M's at 128 tokens
# (512 -> 1408) 22-24% at 2, with no sample of either width (the 15M model's time to first token 20% fast)
# 33: a matrix-vector sweep's knee recorded (resources.measured_matvec_stream_bytes): a product
# whose own weights exceed it is predicted cold in any pass (a 15M Llama's 33 MB LM head streamed where the copy
# sweep's share at the pass's 45 MB put it a quarter cached: the decode probe predicted 0.85x its reading)
# 32: convolution strides as networks use them (stride 4 only for kernels of 7 and more, a
# 1x1 strided one in five), and three in ten convolution chains a mobile network's blocks at batch 1 (10-18
# layers of 16-96 channels over 14-56 px): 3x3 convolutions at stride 4 (20-36 GFLOP/s here) sat at the FLOPs
# of a U-Net's stride-1 3x3s (87) and the trees put one at 42; strided 1x1s (2-8 GFLOP/s) beside
# MobileNetV3's few-channel 1x1s (45-55) put those at 1.5-1.9x their time
# 31: one in five dense 2-D convolutions drawn as a network's high-resolution stages draw
# them, few channels on large maps (3-64 in, 8-96 out, 56-224 px; with the other draws there, a third of them):
# widths and resolutions drawn apart put one in ten there, 13 of calibration II's 326 convolution samples at
# most 64 wide over 64 px or more, and a U-Net's 16 -> 16 3x3 over 128 px at 2.1x its
# time (90 such shapes timed alone at 1 thread: median 1.23x, 41 within +-20%)
# 30: on a CPU each chain is timed as copies of it run in turn, their weights together
# at least twice the private caches (bench.chain_copies): a network's weights come from the last-level cache
# each pass, a small chain's stayed in L2 when repeated as it was (0.8-1.6 MB chains ran 8-16% slower so)
# 29: transposed convolutions drawn as decoders run them (channels mostly halving,
# inputs up to 128 px; was any pair of widths over at most 56 px) and half again as often: a U-Net's
# 32 -> 16 upsampling over 64 px lay past every sample and was extrapolated 2.7x slow
# 28: the copy sweep's share of reads from DRAM at each working set recorded
# (context.llc_miss_from_sweep): a pass whose weights the cache partly keeps is predicted between cached and streamed
# 27: where the copy sweep leaves the cache band (probe.llc_fit_from_sweep) recorded
# beside its knee: the weights a pass may read and still find cached next pass (a 136 MB decoder streamed)
# 26: transformers' Python per forward and per call, from 1- and 3-layer probes with the
# private caches evicted before each layer (transformers_overhead.py)
# 25: generate()'s overhead timed at two vocabulary sizes with an all-ones mask
# (generate_overhead.py): a figure taken at 64 entries left ~0.45 ms per step at 32,000 out
# 24: the last-level cache measured by a copy sweep (resources.measured_llc), not
# read from sysfs, decides which weights are cold: this KVM guest reports 480 MB and behaves like ~120-170
# MB, so the 128 MB streamed-linear pool counted as warm and no network ever streamed its weights
# 23: dense 2-D convolutions drawn at the resolutions of segmentation and detection
# networks too (20, 40, 64, 80, 128, 160 px beside ImageNet's 7-224): a U-Net's 16- and 32-channel 3x3
# convolutions over 128 x 128 ran 77-85 GFLOP/s here and calibration P put them at 34-36 (2.3x slow)
# 22: half the permuted views of LayerNorm and activations 3-D permutations
# (MobileViT's unfold into (patch positions, patches, d)): a LayerNorm over one ran 3x a transposed
# matrix's time at the same size here, and calibrations I-O put MobileViT's 0.30-0.42x (the feature
# ``strided`` now says 2 for them, 1 for a transpose)
# 21: video stems (3 input channels, 8-32 frames of 56-160 px, a 3x3x3 or 3x7x7 kernel) a
# third of the 3D convolutions: drawn among all 3D shapes (1 in ~180 of them), C3D's 3 -> 32 stem over 16 x
# 112 x 112 had no sample near it and every calibration from I to N put it 2-3x fast (22-33 GFLOP/s
# measured, ~85 at 64 output channels); GRUs and plain RNNs drawn as often as LSTMs (LSTM 2 : GRU 2 : RNN 1,
# was 2 : 1 : 1): eager CPUs run an LSTM as one oneDNN kernel and a GRU as a GEMM and eight elementwise ops
# per step, so the trees need each on its own (calibration N: 27 GRU samples from 12 us to 3 ms per step)
# 20: recurrent layers up to RNN_CASE_FLOPS (12 GFLOP, was 4): a 2-layer bidirectional
# LSTM or GRU with 512 hidden units at batch 8 over 64 steps (7-10 GFLOP) lay past every sample, and each
# 300 s calibration put such layers 11-64% slow; ~6% of the recurrent cases now fall in 4-12 GFLOP
# 19: a decode step's LM head drawn twice as often (DECODE_HEAD_SHARE 0.05 -> 0.10): ~10
# samples per 300 s run over 9 widths x 6 vocabularies left calibration J's 1-thread model putting a
# 768 x 32000 head 40% fast, the largest op of a small LM's decode step; batched matmuls 0.25 -> 0.2 of
# the matmul cases make room
# 18: nn.MultiheadAttention self-attention layers (the fused kernel of
# nn.TransformerEncoderLayer) a fifth of the attention cases
# 17: CNN activations as CNNs have them: ReLU drawn as often as three other activations,
# and in place (ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, LeakyReLU, as torchvision builds them) half the
# time, so each in-place op has samples enough for a fit of its own (calibration.fit: suite 16 had 4 relu_)
# 16: a decode step's LM head (one to a few tokens onto a 32K-152K vocabulary, cold
# weights), 3D pools (video networks)
# 15: the same draws as 14; GELU's tanh form sampled as the op gelu_tanh (features.op_key)
# 14: GELU's tanh approximation (gelu_pytorch_tanh of Gemma-class models) beside the erf
# form, half of the GELU cases: both were the op gelu, told apart by FLOPs per element (13 vs 5); on this
# project's VM the tanh form takes 1.8-2.0 ns per element, the erf form 0.5-0.75
# 13: the same draws as 12; each case timed call by call against a fixed reference workload,
# its sample scaled to the reference's median speed over the run (bench.reference_workload)
# 12: the families that gained decode-shaped cases in 11 drawn more often (elementwise
# 3 -> 4, reduction 1 -> 1.4, data movement 1.5 -> 1.7), so their CNN-shaped cases keep suite 10's count
# 11: a decoder's per-token ops: elementwise ops, mean reductions and cats on
# (batch, tokens, d) and (batch, heads, tokens, head_dim) tensors of 1-16 tokens, down to one element
# (RMSNorm's rsqrt), rsqrt / pow / neg / cos / sin, embeddings of 1-4 tokens
# 10: decoder-step chains a third of the chains (was ~12%), fewer layers rather than
# a redraw when over the size limit
# 9: embeddings look up token ids spread over the vocabulary
# 8: decode-shaped attention (one query over a KV cache) and cache appends; decoder-step
# chains, some of whose weights exceed the last-level cache; cold linear layers drawn more often
# 7: norms and activations on permuted views (token mixers); 3x3 stride-1 average pools
# (PoolFormer)
# 6: linear layers with cold weights (rotating through a pool larger than the last-level cache)
# 5: squeeze-excite convs (1x1 maps); chains with late-stage shapes and SE blocks; in-place
# ops sampled under their own key (relu_)
# 4: classifier-head GEMVs (alexnet/vgg), recurrent cells drawn twice as often
# 3: LM-head GEMMs; channel widths off the SIMD block; per-step GEMM feature of RNNs
MAX_CASE_FLOPS = 4e9      # keep most single cases short on small CPUs
RNN_CASE_FLOPS = 12e9     # ... but a recurrent layer runs far below peak, and real ones are this big
LARGE_CASE_FLOPS = 30e9   # ... but draw some as large as batched networks' biggest layers
LARGE_SHARE = 0.15
MAX_CASE_BYTES = 256e6
HEAD_CASE_FLOPS = 80e9    # language-model heads: thousands of tokens onto a 32k-50k vocabulary
HEAD_SHARE = 0.08         # suite 39: 0.04 -> 0.08, the heads held beside the block products (docs/accuracy.md)
DECODE_HEAD_SHARE = 0.10  # ... and one decode step's token onto the vocabulary: the largest op of a small LM's step
CACHED_HEAD_BYTES = 64 * 2**20   # ... half of those that fit this drawn with weights cached (suite 27)
CLASSIFIER_SHARE = 0.08   # CNN classifier heads: one image's features through 9216x4096 or 25088x4096 weights
STREAM_SHARE = 0.25       # linear layers whose weights come from DRAM, as in a decoder's token-by-token steps
CACHED_DECODE_SHARE = 0.06   # ... and a small decoder's projections, whose weights stay cached between steps
TOKEN_LINEAR_END = 0.84   # token linears up to here (0.8 before suite 39, more of them with the block products) ...
BLOCK_LINEAR_SHARE = 0.5  # ... half of them a transformer block's projections over its tokens
RNN_CELL_SHARE = 0.14     # recurrent-cell sized layers (suite 26: 0.2, before CACHED_DECODE_SHARE took 0.06)
STREAM_POOL_BYTES = 128e6 # weight copies per streamed case: 4x a 32 MB L3, 2.5x an H100's 50 MB L2; at
# least STREAM_POOL_LLC_MULTIPLE x the last-level cache calibration measures (bench.stream_pool_bytes)
STREAM_POOL_LLC_MULTIPLE = 2.0


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    build: Callable[[], tuple[nn.Module, tuple]]


class Call(nn.Module):
    """A function as a module, so the case pays a module call like a network layer does."""

    def __init__(self, fn: Callable, *params: nn.Module):
        super().__init__()
        self.fn = fn
        self.params = nn.ModuleList(params)

    def forward(self, *xs):
        return self.fn(*xs)


class StreamedLinear(nn.Module):
    """A linear layer whose weight rotates through copies that together fill STREAM_POOL_BYTES, so each
    call reads a weight the caches no longer hold: what every layer of a network whose weights exceed
    the last-level cache pays (a decoder generating token by token, a large model at batch 1). Timed
    alone, a plain layer keeps its weight in cache and runs 2-5x faster than it does there."""

    def __init__(self, k: int, n: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        base = nn.Linear(k, n, bias=bias).to(dtype)
        self.weights = nn.ParameterList([nn.Parameter(base.weight.detach().clone(), requires_grad=False)])
        self.bias = base.bias
        self._next = 0
        self.extend_pool(STREAM_POOL_BYTES)

    @property
    def weight_copies(self) -> int:
        return len(self.weights)

    def extend_pool(self, pool_bytes: float) -> None:
        """Add weight copies until together they fill ``pool_bytes``: calibration sizes the pool past the
        last-level cache it measured (a VM's cache can exceed STREAM_POOL_BYTES)."""
        per_copy = self.weights[0].numel() * self.weights[0].element_size()
        while self.weight_copies * per_copy < pool_bytes:
            self.weights.append(nn.Parameter(self.weights[0].detach().clone(), requires_grad=False))

    def forward(self, x):
        w = self.weights[self._next]
        self._next = (self._next + 1) % self.weight_copies
        return F.linear(x, w, self.bias)


def _pick(rng: random.Random, xs):
    return xs[rng.randrange(len(xs))]


def _x(*shape, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g, dtype=dtype)


# each generator draws one case's constructor from rng; None = draw again (over the size limit)
def _limit(rng) -> float:
    return LARGE_CASE_FLOPS if rng.random() < LARGE_SHARE else MAX_CASE_FLOPS


def _network_body_conv(rng, dtype):
    """A batched CNN's largest layers: 3x3 (or 1x1 bottleneck) stride-1 convolutions at SIMD-aligned widths,
    2-D (VGG, ResNet) or 3-D (C3D), the shapes that reach the highest share of peak."""
    n = _pick(rng, [4, 8, 16])
    c_in = _pick(rng, [32, 64, 128, 256, 512])
    c_out = min(c_in * _pick(rng, [1, 1, 2]), 512)
    if rng.random() < 0.25:   # frames x height x width
        conv, k = nn.Conv3d, 3
        d, h = _pick(rng, [4, 8, 16]), _pick(rng, [7, 14, 28, 56])
        size = (d, h, h)
    else:
        conv, k = nn.Conv2d, _pick(rng, [3, 3, 1])
        size = (_pick(rng, [14, 28, 56, 112]),) * 2
        if k == 1:
            c_in, c_out = (c_in * 4, c_in) if rng.random() < 0.5 else (c_in, c_in * 4)   # a bottleneck's 1x1s
    flops = 2 * n * c_in * c_out * k ** len(size) * math.prod(size)
    if not 1e9 <= flops <= LARGE_CASE_FLOPS or 4 * n * (c_in + c_out) * math.prod(size) > MAX_CASE_BYTES:
        return None
    return lambda: (conv(c_in, c_out, k, 1, k // 2).to(dtype), (_x(n, c_in, *size, dtype=dtype),))


def _conv(rng, dtype):
    limit = _limit(rng)
    if limit == LARGE_CASE_FLOPS and rng.random() < 0.5:
        for _ in range(20):   # most of the body's draws lie outside its size window: keep its share
            build = _network_body_conv(rng, dtype)
            if build is not None:
                return build
        return None
    n = _pick(rng, [1, 1, 2, 8] if limit == MAX_CASE_FLOPS else [4, 8, 16])
    if rng.random() < 0.25:  # 3D (video)
        if rng.random() < 1 / 3:   # a video network's stem: RGB frames at full resolution, its largest layer
            c_in, c_out = 3, _pick(rng, [16, 24, 32, 45, 64])
            d, h = _pick(rng, [8, 16, 16, 32]), _pick(rng, [56, 112, 112, 160])
            k = _pick(rng, [(3, 3, 3), (3, 3, 3), (3, 7, 7)])
            s = (1, 2, 2) if k[1] == 7 else _pick(rng, [(1, 1, 1), (1, 2, 2)])   # R3D's 3x7x7 stem strides
        else:
            c_in, c_out = _pick(rng, [3, 16, 32, 64, 128]), _pick(rng, [16, 32, 64, 128, 256])
            d, h = _pick(rng, [4, 8, 16]), _pick(rng, [14, 28, 56, 112])
            k, s = (_pick(rng, [1, 3]),) * 3, (_pick(rng, [1, 1, 2]),) * 3
        flops = 2 * n * c_in * c_out * math.prod(k) * d * h * h / math.prod(s)
        if flops > limit:
            return None
        pad = tuple(kk // 2 for kk in k)
        return lambda: (nn.Conv3d(c_in, c_out, k, s, pad).to(dtype), (_x(n, c_in, d, h, h, dtype=dtype),))
    if rng.random() < 0.15:
        return _pointwise(rng, dtype, n, limit)
    if rng.random() < 0.2:
        # a network's high-resolution stages: its stem and first blocks, a U-Net's or detector's top levels
        c_in, c_out = _pick(rng, [3, 8, 16, 24, 32, 48, 64]), _pick(rng, [8, 16, 24, 32, 48, 64, 96])
        h = _pick(rng, [56, 64, 80, 112, 128, 160, 224])
    else:
        # widths of real networks, with some that are not a multiple of the SIMD block (shufflenet
        # 58/116/232, mobilenet_v3 40/120/200): those run a slow tail
        c_in = _pick(rng, [3, 16, 24, 32, 40, 48, 58, 64, 96, 116, 120, 128, 192, 232, 256, 384, 512, 768, 1024,
                           2048])
        c_out = _pick(rng, [16, 24, 32, 40, 58, 64, 96, 116, 120, 128, 160, 200, 232, 256, 320, 512, 1024, 1280,
                            2048])
        # ImageNet's ladder and the resolutions of segmentation and detection networks (a U-Net at 128 px, a
        # YOLO at 320 or 640: 160 / 80 / 40 / 20), squeeze-excite's 1 x 1 as often as before
        h = _pick(rng, [1, 1, 7, 14, 20, 28, 40, 56, 64, 80, 112, 128, 160, 224])
    k = _pick(rng, [1, 1, 1, 3, 3, 3, 5, 7, 11])
    # strides as networks use them (suite 32): 4 only in stems (AlexNet's 11x11, a 7x7 patchify), a
    # 1x1 downsampling shortcut one in five 1x1s (was one in three, and 3x3 / 5x5 at stride 4 one in five)
    s = _pick(rng, ([1, 1, 1, 2, 4] if k >= 7 else [1, 1, 1, 2]) if k > 1 else [1, 1, 1, 1, 2])
    if h == 1:  # squeeze-excite (mobilenet_v3, efficientnet): a 1x1 conv on a pooled 1x1 map, a GEMV
        k, s = 1, 1
    bias = rng.random() < 0.3
    flops = 2 * n * c_in * c_out * k * k * (h / s) ** 2
    if flops > limit or k > h:
        return None
    return lambda: (nn.Conv2d(c_in, c_out, k, s, k // 2, bias=bias).to(dtype), (_x(n, c_in, h, h, dtype=dtype),))


def _pointwise(rng, dtype, n: int, limit: float):
    """A mobile block's pointwise 1 x 1 (MobileNet, EfficientNet, ShuffleNet: 8-160 channels over 7-112 px).
    Under a batch of 16 PyTorch runs it with its own GEMM at one thread (formulas.native_conv 1) and oneDNN at
    more. In the op audits of runs PP-WW1 (docs/accuracy.md) 41-69 of 151 1 x 1s missed ±20%, MobileNetV3-Small's
    16 -> 16 at 56 px predicted 61 us against 23: the other draws put few samples in this corner."""
    widths = [8, 16, 24, 32, 40, 48, 58, 64, 72, 88, 96, 116, 120, 144, 160]
    c_in, c_out, h = _pick(rng, widths), _pick(rng, widths), _pick(rng, [7, 14, 28, 56, 112])
    bias = rng.random() < 0.3
    if 2 * n * c_in * c_out * h * h > limit:
        return None
    return lambda: (nn.Conv2d(c_in, c_out, 1, bias=bias).to(dtype), (_x(n, c_in, h, h, dtype=dtype),))


def _depthwise(rng, dtype):
    n = _pick(rng, [1, 1, 2, 8])
    c = _pick(rng, [16, 32, 58, 64, 72, 96, 116, 120, 144, 184, 192, 200, 232, 240, 384, 480, 576, 672, 960, 1152])
    h = _pick(rng, [7, 14, 28, 56, 112])
    k, s = _pick(rng, [3, 3, 5, 7]), _pick(rng, [1, 1, 2])
    if n * c * h * h * 4 * 2 > MAX_CASE_BYTES:
        return None
    return lambda: (nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False).to(dtype), (_x(n, c, h, h, dtype=dtype),))


def _grouped(rng, dtype):
    n = _pick(rng, [1, 1, 8])
    g = _pick(rng, [2, 4, 8, 32])
    c = g * _pick(rng, [4, 8, 16, 32, 64])
    h, k, s = _pick(rng, [7, 14, 28, 56]), _pick(rng, [1, 3]), _pick(rng, [1, 1, 2])
    if 2 * n * c * c / g * k * k * (h / s) ** 2 > MAX_CASE_FLOPS:
        return None
    return lambda: (nn.Conv2d(c, c, k, s, k // 2, groups=g, bias=False).to(dtype), (_x(n, c, h, h, dtype=dtype),))


def _conv_transpose(rng, dtype):
    """A decoder's 2x upsampling as U-Nets, FCNs and GAN generators run it: the channels mostly halve
    (or quarter) on the way up, inputs up to 128 px (a 256 px U-Net's last upsampling), 2x2 kernels the
    most common. Suite 28 drew any pair of widths over inputs of at most 56 px (calibration CC's 50
    samples here: 4-16 GFLOP/s from 16 channels, 25-170 from 64-256), and CC extrapolated a U-Net's
    32 -> 16 upsampling over 64 px at 1.49 ms against 0.55 measured alone."""
    n = _pick(rng, [1, 1, 2, 8])
    c_in = _pick(rng, [16, 32, 64, 128, 256, 512])
    r = rng.random()
    if r < 0.5:
        c_out = c_in // 2
    elif r < 0.65:
        c_out = max(c_in // 4, 8)
    else:
        c_out = _pick(rng, [16, 32, 64, 128])
    h, k = _pick(rng, [7, 14, 28, 32, 56, 64, 80, 128]), _pick(rng, [2, 2, 3, 4])
    out = 2 * h   # the output's side (within a pixel for an odd kernel)
    if 2 * n * c_in * c_out * k * k * h * h > MAX_CASE_FLOPS or 4 * n * (c_in * h * h + c_out * out * out) > MAX_CASE_BYTES:
        return None
    return lambda: (nn.ConvTranspose2d(c_in, c_out, k, 2, (k - 1) // 2).to(dtype), (_x(n, c_in, h, h, dtype=dtype),))


def _matmul(rng, dtype):
    limit = _limit(rng)
    kind = rng.random()
    if kind < RNN_CELL_SHARE:  # recurrent-cell sized: few rows, gates 3-4x wide
        m, k = _pick(rng, [1, 2, 4, 8]), _pick(rng, [32, 64, 128, 256, 512, 1024])
        nout = k * _pick(rng, [1, 3, 4])
        return lambda: (nn.Linear(k, nout).to(dtype), (_x(m, k, dtype=dtype),))
    if kind < RNN_CELL_SHARE + HEAD_SHARE:  # LM head: many tokens onto a vocabulary, the largest GEMM of a decoder
        m, k = _pick(rng, [128, 256, 512, 1024, 2048]), _pick(rng, [512, 768, 1024])
        nout = _pick(rng, [32000, 50257])
        if 2 * m * k * nout > HEAD_CASE_FLOPS:
            return None
        return lambda: (nn.Linear(k, nout, bias=False).to(dtype), (_x(m, k, dtype=dtype),))
    if kind < RNN_CELL_SHARE + HEAD_SHARE + DECODE_HEAD_SHARE:
        # a decode step's LM head: a few rows onto 32K-152K outputs, its weights cold (a small LM's head
        # is 30-60 MB against a 32 MB L3). Its time per byte depends on the hidden size: here a 256-wide
        # head streamed at 6.8 GB/s, a 1024-wide one at 14.5 GB/s, and drawn among all streamed layers
        # (few of them this wide and this narrow) the trees put a 256 x 32000 head at 11.8 GB/s
        m = _pick(rng, [1, 1, 1, 1, 2, 4, 8])
        k = _pick(rng, [256, 384, 512, 576, 768, 896, 1024, 1536, 2048])
        nout = _pick(rng, [32000, 49152, 50257, 65024, 128256, 151936])
        if k * nout * 4 > MAX_CASE_BYTES:
            return None
        if k * nout * 4 <= CACHED_HEAD_BYTES and rng.random() < 0.5:
            # suite 27: a small LM's head stays cached between steps (a 15M Llama's 33 MB head in a 45 MB
            # model ran at its time alone; predicted from streamed heads and bigger warm ones, 25-34% slow)
            return lambda: (nn.Linear(k, nout, bias=False).to(dtype), (_x(1, m, k, dtype=dtype),))
        return lambda: (StreamedLinear(k, nout, False, dtype), (_x(m, k, dtype=dtype),))
    if kind < RNN_CELL_SHARE + HEAD_SHARE + DECODE_HEAD_SHARE + CLASSIFIER_SHARE:
        # CNN classifier heads: 40-400 MB of weights streamed from DRAM for a few rows. At one row
        # the BLAS runs a GEMV, at two or more a GEMM that packs the weights first: a regime of its own
        m, k = _pick(rng, [1, 1, 1, 2, 8, 16]), _pick(rng, [2048, 4096, 9216, 25088])
        nout = _pick(rng, [1000, 4096])
        return lambda: (nn.Linear(k, nout).to(dtype), (_x(m, k, dtype=dtype),))
    if kind < RNN_CELL_SHARE + HEAD_SHARE + DECODE_HEAD_SHARE + CLASSIFIER_SHARE + STREAM_SHARE:
        # decoder-shaped layers with cold weights: a few rows (decode steps, short prompts) up to a few
        # hundred, where the product turns compute-bound and cold weights stop mattering
        m = _pick(rng, [1, 1, 1, 1, 2, 4, 8, 16, 32, 64, 128, 256])
        k = _pick(rng, [256, 512, 768, 1024, 1536, 2048, 3072, 4096])
        nout = _pick(rng, [256, 512, 768, 1024, 2048, 2816, 3072, 4096, 5632, 8192, 11008, 32000, 50257])
        if 2 * m * k * nout > limit or k * nout * 4 > MAX_CASE_BYTES:
            return None
        bias = rng.random() < 0.5
        return lambda: (StreamedLinear(k, nout, bias, dtype), (_x(m, k, dtype=dtype),))
    if kind < RNN_CELL_SHARE + HEAD_SHARE + DECODE_HEAD_SHARE + CLASSIFIER_SHARE + STREAM_SHARE + CACHED_DECODE_SHARE:
        # a small decoder's decode-step projections (suite 27), weights cached: one to a few tokens, mostly
        # without bias (mm). Suite 26 timed 13 such products warm against 56 streamed, and the trees put a
        # 15M Llama's 256 x 128 projection at 15.6 us against 5.8 measured alone
        m, k = _pick(rng, [1, 1, 1, 2, 4]), _pick(rng, [128, 256, 384, 512, 768, 1024, 2048])
        nout = _pick(rng, [128, 256, 512, 704, 1024, 1408, 2048, 2816])
        bias = rng.random() < 0.25
        return lambda: (nn.Linear(k, nout, bias=bias).to(dtype), (_x(1, m, k, dtype=dtype),))
    if kind < TOKEN_LINEAR_END:  # linear layers on token / flattened features (suite 19: a share as before, bmm gave way)
        if rng.random() < BLOCK_LINEAR_SHARE:
            return _token_block_linear(rng, dtype)
        m = _pick(rng, [1, 2, 8, 16, 32, 64, 128, 197, 256, 512, 1024, 1576, 4096])
        k, nout = _pick(rng, [64, 128, 192, 256, 384, 512, 704, 768, 1024, 1408, 1536, 2048, 2816, 3072, 4096]), _pick(
            rng, [10, 64, 128, 256, 512, 704, 768, 1000, 1024, 1408, 1536, 2048, 2816, 3072, 4096, 5632, 32000, 50257])
        if 2 * m * k * nout > limit:
            return None
        bias = rng.random() < 0.8
        return lambda: (nn.Linear(k, nout, bias=bias).to(dtype), (_x(m, k, dtype=dtype),))
    b = _pick(rng, [1, 4, 12, 24, 48, 96])
    m, k, nout = _pick(rng, [16, 64, 128, 197, 256]), _pick(rng, [16, 32, 64, 128, 197]), _pick(rng, [16, 64, 128, 197, 256])
    if 2 * b * m * k * nout > limit:
        return None
    return lambda: (Call(torch.bmm), (_x(b, m, k, dtype=dtype), _x(b, k, nout, dtype=dtype)))


def _token_block_linear(rng, dtype):
    """One of a transformer block's projections (q/k/v or fused qkv, MLP up and down) over a batch of
    tokens, up to LARGE_CASE_FLOPS: with M, K and N drawn apart under the 4 GFLOP limit, the wide warm
    products sampled were few-row ones, and the trees extrapolated a batched ViT's or BERT's MLP."""
    d = _pick(rng, [256, 384, 512, 768, 1024, 1280])
    k, nout = _pick(rng, [(d, d), (d, 3 * d), (d, 4 * d), (4 * d, d)])
    m = _pick(rng, [128, 197, 256, 512, 1024, 1576, 2048, 4096])
    if 2 * m * k * nout > LARGE_CASE_FLOPS:
        return None
    bias = rng.random() < 0.8
    return lambda: (nn.Linear(k, nout, bias=bias).to(dtype), (_x(m, k, dtype=dtype),))


def _self_attention_layer(rng, dtype):
    """nn.MultiheadAttention as nn.TransformerEncoderLayer calls it (eval, batch first, no weights
    returned): eager CPUs run it as one fused kernel (aten._native_multi_head_attention: packed q/k/v
    projection, attention, output projection), hwcost records it as one op; without these cases its
    time came from the family's scaled_dot_product_attention samples, which have no projections."""
    b, heads, e = _pick(rng, [1, 1, 2, 8]), _pick(rng, [2, 4, 8, 12]), _pick(rng, [32, 64])
    length, d = _pick(rng, [16, 49, 64, 128, 197, 256]), heads * e
    if 8 * b * length * d * d + 4 * b * length * length * d > MAX_CASE_FLOPS:
        return None

    def build():
        mha = nn.MultiheadAttention(d, heads, batch_first=True).eval().to(dtype)
        return Call(lambda x: mha(x, x, x, need_weights=False)[0], mha), (_x(b, length, d, dtype=dtype),)
    return build


def _attention(rng, dtype):
    if rng.random() < 0.2:
        return _self_attention_layer(rng, dtype)
    if rng.random() < 0.35:
        # a decode step: a few queries over a KV cache, grouped-query heads (enable_gqa), as transformers
        # calls it token by token
        b, kv_heads, group = _pick(rng, [1, 1, 2, 4]), _pick(rng, [1, 2, 4, 8]), _pick(rng, [1, 2, 4, 8])
        q_len, kv_len, e = _pick(rng, [1, 1, 1, 4, 16]), _pick(rng, [16, 64, 128, 256, 512, 1024, 2048, 4096]), _pick(rng, [64, 128])
        if b * kv_heads * kv_len * e * 4 * 2 > MAX_CASE_BYTES:
            return None
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=group > 1)  # noqa: E731
        return lambda: (Call(fn), (_x(b, kv_heads * group, q_len, e, dtype=dtype), _x(b, kv_heads, kv_len, e, dtype=dtype),
                                   _x(b, kv_heads, kv_len, e, dtype=dtype)))
    b, h = _pick(rng, [1, 2, 8]), _pick(rng, [2, 3, 4, 8, 12, 16])
    length, e = _pick(rng, [16, 64, 128, 197, 256, 512]), _pick(rng, [32, 64, 128])
    causal = rng.random() < 0.4
    if 4 * b * h * length * length * e > MAX_CASE_FLOPS:
        return None
    fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
    return lambda: (Call(fn), tuple(_x(b, h, length, e, dtype=dtype) for _ in range(3)))


def _embedding(rng, dtype):
    vocab, dim = _pick(rng, [1000, 10000, 32000, 50257]), _pick(rng, [64, 128, 256, 512, 768, 1024])
    tokens = _pick(rng, [1, 1, 4, 16, 64, 128, 512, 1024])   # 1-4: a decode step's tokens
    # token ids spread over the vocabulary, as text gives: ids all 0 (suite 8 and before) read one row,
    # cached, and came out 2.5-4x faster than the embeddings of BERT and GPT-2
    ids = lambda: torch.randint(0, vocab, (1, tokens), generator=torch.Generator().manual_seed(0))  # noqa: E731
    return lambda: (nn.Embedding(vocab, dim).to(dtype), (ids(),))


def _rnn(rng, dtype):
    cell = _pick(rng, [nn.LSTM, nn.LSTM, nn.GRU, nn.GRU, nn.RNN])
    b, t = _pick(rng, [1, 1, 4, 8, 16]), _pick(rng, [8, 16, 32, 64, 128])
    i, h = _pick(rng, [32, 64, 128, 256, 512]), _pick(rng, [64, 128, 256, 512, 1024])
    layers, bidir = _pick(rng, [1, 1, 2, 3]), rng.random() < 0.5
    gates = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}[cell]
    if 2 * b * t * gates * h * (i + h) * layers * (2 if bidir else 1) > RNN_CASE_FLOPS:
        return None
    return lambda: (cell(i, h, num_layers=layers, bidirectional=bidir, batch_first=True).to(dtype),
                    (_x(b, t, i, dtype=dtype),))


_UNARY = [nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU]
_UNARY_DRAWS = _UNARY + [nn.ReLU, nn.ReLU]   # ReLU: most of a CNN's activations
_IN_PLACE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.LeakyReLU)
_BINARY = [torch.add, torch.mul, torch.sub, torch.div]


def _numel(rng) -> int:
    return int(2 ** rng.uniform(math.log2(256), math.log2(8e6)))


_TOKEN_UNARY = [F.silu, F.gelu, torch.neg, torch.rsqrt, torch.cos, torch.sin, lambda x: x.pow(2), torch.exp,
                lambda x: F.gelu(x, approximate="tanh")]


def _token_shape(rng) -> tuple[int, ...]:
    """A decoder's per-token tensor: (batch, tokens, d) or, split into heads, (batch, heads, tokens,
    head_dim); tokens mostly 1 (a decode step); d 1 for a per-token statistic (RMSNorm's mean)."""
    b, t = _pick(rng, [1, 1, 1, 4, 8]), _pick(rng, [1, 1, 1, 2, 4, 16, 64])
    if rng.random() < 0.4:
        return b, _pick(rng, [1, 2, 4, 8, 12, 16, 32]), t, _pick(rng, [16, 32, 64, 128])
    return b, t, _pick(rng, [1, 1, 64, 256, 512, 768, 1024, 2048, 4096, 8192])


def _token_elementwise(rng, dtype):
    """Elementwise ops of a decode step: one token's activations, RMSNorm's per-token scale (a
    (b, t, 1) tensor broadcast over d) and its eps add in place, rotary embedding's products."""
    shape = _token_shape(rng)
    r = rng.random()
    if r < 0.4:
        fn = _pick(rng, _TOKEN_UNARY)
        return lambda: (Call(fn), (_x(*shape, dtype=dtype).abs() + 0.5,))
    if r < 0.55:   # x + eps, in place, as RMSNorm adds its epsilon
        return lambda: (Call(lambda a: a.add_(1e-6)), (_x(*shape, dtype=dtype),))
    op = _pick(rng, _BINARY[:2] + _BINARY[:2] + _BINARY[2:])
    if r < 0.8 or shape[-1] == 1:
        return lambda: (Call(op), (_x(*shape, dtype=dtype), _x(*shape, dtype=dtype)))
    small = shape[:-1] + (1,) if rng.random() < 0.5 else (shape[-1],)   # a per-token scale or a weight
    return lambda: (Call(op), (_x(*shape, dtype=dtype), _x(*small, dtype=dtype)))


def _elementwise(rng, dtype):
    if rng.random() < 0.25:
        return _token_elementwise(rng, dtype)
    numel = _numel(rng)
    r = rng.random()
    if r < 0.55:
        act = _pick(rng, _UNARY_DRAWS)
        inplace = act in _IN_PLACE and rng.random() < 0.5
        mod = act(inplace=True) if inplace else act()
        if act is nn.GELU and rng.random() < 0.5:   # tanh approximation: the op gelu_tanh
            mod = nn.GELU(approximate="tanh")
        if rng.random() < 0.15 and numel >= 1024:   # on a permuted view (token mixers' transposes)
            c = _pick(rng, [16, 64, 144, 256])
            view = _permuted_view(rng, c, numel // c, dtype)
            return lambda: (mod, (view(),))
        return lambda: (mod, (_x(numel, dtype=dtype),))
    op = _pick(rng, _BINARY)
    if r < 0.85:
        return lambda: (Call(op), (_x(numel, dtype=dtype), _x(numel, dtype=dtype)))
    c = _pick(rng, [16, 64, 256, 1024])  # broadcast: (N, C, H, W) x (N, C, 1, 1), as squeeze-excite
    hw = max(1, numel // c)
    return lambda: (Call(op), (_x(1, c, hw, 1, dtype=dtype), _x(1, c, 1, 1, dtype=dtype)))


def _permuted_view(rng, d: int, rows: int, dtype) -> Callable[[], torch.Tensor]:
    """A (rows, d) operand as a permuted view: half the time a transposed matrix (a patch embedding's
    flatten(2).transpose(1, 2)), otherwise MobileViT's unfold, (patch positions, patches, d) permuted
    out of (d, patches, positions): a 3-D permutation, which copy kernels walk as nested strided loops
    (a LayerNorm over it ran 3x the transposed matrix's time here)."""
    p = _pick(rng, [4, 4, 2])   # patch positions: MobileViT's 2 x 2 patches
    if rng.random() < 0.5 or rows % p or rows < 2 * p:
        return lambda: _x(d, rows, dtype=dtype).t()
    return lambda: _x(d, rows // p, p, dtype=dtype).permute(2, 1, 0)


def _norm(rng, dtype):
    r = rng.random()
    if r < 0.5:
        n, c, h = _pick(rng, [1, 1, 8]), _pick(rng, [16, 32, 64, 128, 256, 512, 1024, 2048]), _pick(rng, [7, 14, 28, 56, 112])
        if n * c * h * h * 4 > MAX_CASE_BYTES:
            return None
        return lambda: (nn.BatchNorm2d(c).eval().to(dtype), (_x(n, c, h, h, dtype=dtype),))
    if r < 0.85:
        tokens, d = _pick(rng, [1, 16, 64, 128, 197, 512, 1576, 3136]), _pick(rng, [96, 144, 192, 256, 384, 512, 768, 1024])
        if rng.random() < 0.3:   # over a permuted view: a patch embedding's flatten(2).transpose(1, 2), or
            # MobileViT's unfold into (patch positions, patches, d), a 3-D permutation
            view = _permuted_view(rng, d, tokens, dtype)
            return lambda: (nn.LayerNorm(d).to(dtype), (view(),))
        return lambda: (nn.LayerNorm(d).to(dtype), (_x(tokens, d, dtype=dtype),))
    c, h = _pick(rng, [32, 64, 128, 256]), _pick(rng, [14, 28, 56])
    return lambda: (nn.GroupNorm(8, c).to(dtype), (_x(1, c, h, h, dtype=dtype),))


def _pool(rng, dtype):
    if rng.random() < 0.2:   # 3D pools of video networks (C3D, R(2+1)D): (N, C, frames, H, W)
        c, d, h = _pick(rng, [16, 32, 64, 128, 256, 512]), _pick(rng, [2, 4, 8, 16]), _pick(rng, [7, 14, 28, 56, 112])
        if c * d * h * h * 4 > MAX_CASE_BYTES:
            return None
        mod = _pick(rng, [lambda: nn.MaxPool3d(2), lambda: nn.MaxPool3d((1, 2, 2)), lambda: nn.AdaptiveAvgPool3d(1)])
        return lambda: (mod(), (_x(1, c, d, h, h, dtype=dtype),))
    n, c, h = _pick(rng, [1, 1, 8]), _pick(rng, [16, 64, 128, 256, 512, 1024, 2048]), _pick(rng, [7, 14, 28, 56, 112])
    if n * c * h * h * 4 > MAX_CASE_BYTES:
        return None
    mod = _pick(rng, [lambda: nn.MaxPool2d(3, 2, 1), lambda: nn.MaxPool2d(2), lambda: nn.AvgPool2d(2),
                      lambda: nn.AdaptiveAvgPool2d(7), lambda: nn.AdaptiveAvgPool2d(1),
                      # a token mixer (PoolFormer): same-size 3x3 average, padding left out of the count
                      lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False)])
    return lambda: (mod(), (_x(n, c, h, h, dtype=dtype),))


def _reduction(rng, dtype):
    if rng.random() < 0.3:   # RMSNorm's mean of squares over d, per token
        shape = _token_shape(rng)
        return lambda: (Call(lambda x: x.mean(-1, keepdim=True)), (_x(*shape, dtype=dtype),))
    n, c, h = _pick(rng, [1, 8]), _pick(rng, [64, 256, 1024, 2048]), _pick(rng, [7, 14, 28])
    fn = _pick(rng, [lambda x: x.mean([2, 3]), lambda x: x.sum(1), lambda x: x.amax(-1)])
    return lambda: (Call(fn), (_x(n, c, h, h, dtype=dtype),))


def _softmax(rng, dtype):
    rows, n = _pick(rng, [1, 12, 64, 197 * 12, 128 * 12, 4096]), _pick(rng, [10, 64, 128, 197, 512, 1000])
    return lambda: (nn.Softmax(dim=-1), (_x(rows, n, dtype=dtype),))


def _interpolate(rng, dtype):
    c, h = _pick(rng, [16, 64, 256]), _pick(rng, [7, 14, 28, 56])
    mode = _pick(rng, ["nearest", "bilinear"])
    return lambda: (nn.Upsample(scale_factor=2, mode=mode), (_x(1, c, h, h, dtype=dtype),))


def _data_movement(rng, dtype):
    n, c, h = _pick(rng, [1, 8]), _pick(rng, [16, 32, 64, 128, 256, 512]), _pick(rng, [7, 14, 28, 56])
    r = rng.random()
    if r < 0.1:  # rotary embedding's rotate_half: cat(-x2, x1) over the head dim, a few tokens
        b, heads, t, e = _pick(rng, [1, 1, 4]), _pick(rng, [1, 2, 4, 8, 16, 32]), _pick(rng, [1, 1, 4, 16, 128]), _pick(rng, [16, 32, 64])
        return lambda: (Call(lambda a, b_: torch.cat([a, b_], -1)), (_x(b, heads, t, e, dtype=dtype),
                                                                    _x(b, heads, t, e, dtype=dtype)))
    if r < 0.3:  # a KV-cache append: (batch, heads, length, head_dim) plus a few new positions
        heads, length, e, new = _pick(rng, [1, 2, 4, 8, 16]), _pick(rng, [1, 4, 16, 64, 256, 1024, 4096]), _pick(rng, [32, 64, 128]), _pick(rng, [1, 1, 4])
        return lambda: (Call(lambda a, b: torch.cat([a, b], -2)), (_x(1, heads, length, e, dtype=dtype),
                                                                  _x(1, heads, new, e, dtype=dtype)))
    if r < 0.45:
        return lambda: (Call(lambda a, b: torch.cat([a, b], 1)), (_x(n, c, h, h, dtype=dtype), _x(n, c, h, h, dtype=dtype)))
    if r < 0.75:  # transpose + contiguous: the copy behind channel shuffles and head splits
        return lambda: (Call(lambda a: a.view(n, 2, c // 2, h, h).transpose(1, 2).contiguous()),
                        (_x(n, c, h, h, dtype=dtype),))
    return lambda: (Call(lambda a: F.pad(a, (1, 1, 1, 1))), (_x(n, c, h, h, dtype=dtype),))


GENERATORS: dict[str, tuple[float, Callable]] = {
    # family: (weight in the interleaving, generator)
    "conv": (4, _conv), "depthwise_conv": (2, _depthwise), "grouped_conv": (1, _grouped),
    "conv_transpose": (0.75, _conv_transpose), "matmul": (3, _matmul), "attention": (1, _attention),
    "embedding": (0.5, _embedding), "elementwise": (4, _elementwise), "norm": (2, _norm),
    "pool": (1, _pool), "reduction": (1.4, _reduction), "softmax": (1, _softmax),
    "interpolate": (0.5, _interpolate), "data_movement": (1.7, _data_movement), "rnn": (2, _rnn),
}


def cases(seed: int = 0, dtype: torch.dtype = torch.float32) -> Iterator[Case]:
    """An endless, deterministic stream of cases, families interleaved by weight."""
    rngs = {f: random.Random(f"{seed}:{f}") for f in GENERATORS}
    counts = {f: 0 for f in GENERATORS}
    credit = {f: 0.0 for f in GENERATORS}
    while True:
        for fam, (weight, gen) in GENERATORS.items():
            credit[fam] += weight
            while credit[fam] >= 1:
                credit[fam] -= 1
                build = None
                for _ in range(50):
                    build = gen(rngs[fam], dtype)
                    if build is not None:
                        break
                counts[fam] += 1
                yield Case(f"{fam}-{counts[fam]}", fam, build)


# ------------------------------------------------------------------ chains: ops in network context

MAX_CHAIN_FLOPS = 3e9


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class _TokenMixer(nn.Module):
    """Self-attention over tokens from primitives (not a zoo block)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.norm = heads, nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class _SqueezeExcite(nn.Module):
    """Channel gating from primitives (not a zoo block): pool to 1x1, reduce, expand, gate, scale."""

    def __init__(self, c: int, reduced: int):
        super().__init__()
        self.pool, self.act, self.gate = nn.AdaptiveAvgPool2d(1), nn.ReLU(), nn.Hardsigmoid()
        self.reduce, self.expand = nn.Conv2d(c, reduced, 1), nn.Conv2d(reduced, c, 1)

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


def _conv_chain(rng: random.Random, version: int = SUITE_VERSION):
    n, c, h = _pick(rng, [1, 1, 2, 4, 8]), _pick(rng, [3, 16, 32]), _pick(rng, [56, 112, 160, 224])
    depth = (4, 9)
    if version >= 32 and rng.random() < 0.3:
        # a mobile network's blocks at batch 1 (suite 32): many ops of 10-60 us each, one after another. The
        # chains drawn before ran a median 160 us per op at 2 threads here (33 of 219 under 50 us), against
        # ~40 in MobileNetV3-Small, whose ops ran 1.6x their time alone in the network: the context terms
        # that carry that were fitted on chains of larger ops (small networks at 2 threads 16-30% fast)
        n, c, h, depth = 1, _pick(rng, [16, 24, 40, 48, 96]), _pick(rng, [14, 28, 56]), (10, 18)
    elif version >= 5 and rng.random() < 0.35:
        # the late stages of a network: small maps, wide channels, many small ops per millisecond
        c, h = _pick(rng, [40, 64, 96, 160, 256]), _pick(rng, [7, 14, 28])
    c0, h0 = c, h
    act = _pick(rng, [nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish])
    layers: list[nn.Module] = []
    flops = 0.0
    for _ in range(rng.randint(*depth)):
        kind = rng.random()
        if kind < 0.45 or c == 3:
            cout, k, s = _pick(rng, [16, 24, 32, 64, 96, 144, 192, 256]), _pick(rng, [1, 1, 3, 3]), _pick(rng, [1, 1, 2])
            layers += [nn.Conv2d(c, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), act()]
            flops += 2 * n * c * cout * k * k * (h / s) ** 2
            c, h = cout, (h + s - 1) // s
        elif kind < 0.7:
            k, s = _pick(rng, [3, 5]), _pick(rng, [1, 2])
            layers += [nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False), nn.BatchNorm2d(c), act()]
            flops += 2 * n * c * k * k * (h / s) ** 2
            h = (h + s - 1) // s
            if version >= 5 and rng.random() < 0.4:
                layers.append(_SqueezeExcite(c, max(8, c // 4)))
                flops += 4 * n * c * max(8, c // 4)
        elif kind < 0.85:
            layers.append(_Residual(nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), act())))
            flops += 2 * n * c * c * h * h
        elif h > 7:
            layers.append(_pick(rng, [nn.MaxPool2d(2), nn.AvgPool2d(2), nn.MaxPool2d(3, 2, 1)]))
            h //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 100)]
    if flops > MAX_CHAIN_FLOPS:
        return None
    return lambda: (nn.Sequential(*layers), (_x(n, c0, h0, h0),))


def _token_chain(rng: random.Random):
    b, n, d = _pick(rng, [1, 1, 4, 8]), _pick(rng, [16, 64, 128, 197, 256]), _pick(rng, [128, 192, 256, 384, 512])
    heads = _pick(rng, [2, 4, 8])
    layers: list[nn.Module] = []
    flops = 0.0
    for _ in range(rng.randint(2, 5)):
        if rng.random() < 0.5:
            layers.append(_TokenMixer(d, heads))
            flops += 2 * b * n * d * 4 * d + 4 * b * n * n * d
        else:
            hidden = d * _pick(rng, [2, 4])
            layers.append(_Residual(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), _pick(rng, [nn.GELU, nn.SiLU])(),
                                                  nn.Linear(hidden, d))))
            flops += 4 * b * n * d * hidden
    if flops > MAX_CHAIN_FLOPS:
        return None
    return lambda: (nn.Sequential(*layers, nn.LayerNorm(d)), (_x(b, n, d),))


class _DecoderBlock(nn.Module):
    """One Llama-style block at decode time, from primitives (not a zoo block): RMS norms, grouped-query
    attention whose keys and values append to a fixed cache (each call appends anew, so repeated calls
    time the same step), rotary embedding, a gated MLP."""

    def __init__(self, d: int, heads: int, kv_heads: int, ffn: int, cache_len: int):
        super().__init__()
        self.heads, self.kv_heads, self.e = heads, kv_heads, d // heads
        self.norm1, self.norm2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.q, self.k = nn.Linear(d, d, bias=False), nn.Linear(d, kv_heads * self.e, bias=False)
        self.v, self.o = nn.Linear(d, kv_heads * self.e, bias=False), nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, ffn, bias=False), nn.Linear(d, ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)
        self.register_buffer("k_cache", _x(1, kv_heads, cache_len, self.e))
        self.register_buffer("v_cache", _x(1, kv_heads, cache_len, self.e))

    @staticmethod
    def _rotary(x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    def forward(self, x):
        b, t, d = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, t, self.heads, self.e).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv_heads, self.e).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv_heads, self.e).transpose(1, 2)
        angle = torch.arange(t, dtype=x.dtype, device=x.device)[:, None] * 1e-2
        cos, sin = angle.cos(), angle.sin()
        q, k = self._rotary(q, cos, sin), self._rotary(k, cos, sin)
        k, v = torch.cat([self.k_cache, k], dim=-2), torch.cat([self.v_cache, v], dim=-2)
        a = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.heads != self.kv_heads)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def decode_probe_network() -> tuple[nn.Module, torch.Tensor]:
    """A fixed language-model decode step, the speed reference for generation: one token through four
    Llama-style blocks 256 wide (grouped-query attention over a 64-token cache, a gated 704-wide MLP)
    and a 32,000-token LM head, 45 MB of weights read once per step, more than a 32 MB last-level cache.
    Decode steps (dispatch-bound small ops, weights streamed from DRAM) follow the CNN probe poorly: timed
    back to back in blocks for two minutes on this project's 2-vCPU VM, a 15M-parameter transformers
    Llama's step varied against the CNN probe with a standard deviation of 16% from block to block, against
    another decode step of 10.5%."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        blocks = [_DecoderBlock(256, 4, 2, 704, 64) for _ in range(4)]
        net = nn.Sequential(*blocks, nn.RMSNorm(256), nn.Linear(256, 32000, bias=False)).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(0.05 / max(float(p.std()), 1e-6) if p.dim() > 1 else 1.0)
        x = torch.randn(1, 1, 256)
    return net, x


def _decode_chain(rng: random.Random, version: int = SUITE_VERSION):
    """A decoder generating: a few tokens through Llama-style blocks over a KV cache, and sometimes an LM
    head. Many of these stream more weights than a last-level cache holds, as a real decoder does each
    step: what that does to the small ops between the weight reads (their code and data evicted too) the
    context model can only learn from such chains."""
    d = _pick(rng, [256, 512, 768, 1024, 1536, 2048])
    heads = max(2, d // _pick(rng, [64, 128]))
    kv_heads = heads // _pick(rng, [1, 2, 4]) or 1
    ffn = int(d * _pick(rng, [2.75, 2.6875, 4]))
    layers, vocab = rng.randint(1, 6), _pick(rng, [0, 0, 32000])
    t, cache_len = _pick(rng, [1, 1, 1, 2, 4]), _pick(rng, [16, 128, 512, 2048])
    e = d // heads

    def weight_bytes() -> int:
        return 4 * (layers * (2 * d * d + 2 * d * kv_heads * e + 3 * d * ffn) + vocab * d)

    while version >= 10 and weight_bytes() > MAX_CASE_BYTES and layers > 1:
        layers -= 1
    if weight_bytes() > MAX_CASE_BYTES:
        return None
    blocks: list[nn.Module] = [_DecoderBlock(d, heads, kv_heads, ffn, cache_len) for _ in range(layers)]
    if vocab:
        blocks += [nn.RMSNorm(d), nn.Linear(d, vocab, bias=False)]
    return lambda: (nn.Sequential(*blocks).eval(), (_x(1, t, d),))


def chain_case(seed: int, k: int, version: int = SUITE_VERSION) -> Case:
    """The k-th chain: a random stack of layers (conv/norm/activation/pool, token MLP/attention, or
    decoder blocks at decode time), as suite ``version`` drew it, so that samples of an older suite
    refit against the chains they timed."""
    rng = random.Random(f"{seed}:chain:{k}")
    for _ in range(100):
        u = rng.random()
        if version < 8:
            build = _conv_chain(rng, version) if u < 0.65 else _token_chain(rng)
        elif version < 10:
            build = _conv_chain(rng, version) if u < 0.55 else _token_chain(rng) if u < 0.8 else _decode_chain(rng, version)
        else:
            # decoder steps a third: the streamed per-op term is fitted on them alone
            build = _conv_chain(rng, version) if u < 0.45 else _token_chain(rng) if u < 0.67 else _decode_chain(rng, version)
        if build is not None:
            return Case(f"chain-{k}", "_chain", build)
    raise RuntimeError("no chain under the size limit")  # unreachable with the ranges above
