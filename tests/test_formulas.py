"""One test per formula family, against numbers derived by hand (see conventions.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import hwcost
from hwcost.formulas import adaptive_window_total, serial_steps


class Fn(nn.Module):
    """Wrap a function of the inputs as a model."""

    def __init__(self, fn, *mods):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, *xs):
        return self.fn(*xs)


def ops(model, *inputs, **kw):
    a = hwcost.analyze(model, tuple(inputs) if len(inputs) > 1 else inputs[0], **kw)
    return a, [c for c in a.ops if c.family != "data_movement" or c.macs or c.flops]


def single(model, *inputs, **kw):
    a, costs = ops(model, *inputs, **kw)
    assert len(costs) == 1, [(c.record.name, c.family) for c in costs]
    return costs[0]


# ------------------------------------------------------------------ convolution


def test_conv2d_stride_padding_bias():
    c = single(nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.zeros(1, 3, 32, 32))
    assert c.family == "conv"
    assert c.macs == 8 * 16 * 16 * 3 * 9 == 55_296
    assert c.flops == 2 * 55_296 + 8 * 16 * 16  # one add per output for the bias
    assert c.bytes_read == (3 * 32 * 32 + 8 * 3 * 9 + 8) * 4
    assert c.bytes_written == 8 * 16 * 16 * 4


def test_conv1d_dilation_and_conv3d():
    c = single(nn.Conv1d(4, 6, 5, dilation=2, padding=4), torch.zeros(1, 4, 20))
    assert c.macs == 6 * 20 * 4 * 5
    c = single(nn.Conv3d(2, 4, 3, padding=1, bias=False), torch.zeros(1, 2, 4, 8, 8))
    assert c.macs == 4 * (4 * 8 * 8) * 2 * 27
    assert c.flops == 2 * c.macs


def test_grouped_and_depthwise_conv():
    c = single(nn.Conv2d(8, 16, 3, groups=4, padding=1, bias=False), torch.zeros(1, 8, 10, 10))
    assert (c.family, c.macs) == ("grouped_conv", 16 * 100 * 2 * 9)
    c = single(nn.Conv2d(8, 8, 3, groups=8, padding=1, bias=False), torch.zeros(1, 8, 10, 10))
    assert (c.family, c.macs) == ("depthwise_conv", 8 * 100 * 9)


def test_transposed_conv():
    # each of the 4*5*5 inputs scatters into (C_out/groups) * k*k = 2 * 16 outputs
    c = single(nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1), torch.zeros(1, 4, 5, 5))
    assert c.family == "conv_transpose"
    assert c.macs == 100 * 2 * 16
    assert c.record.outputs[0].shape == (1, 2, 10, 10)


def test_seed_003_standard_vs_separable():
    """Seed 003: torchinfo's mult-adds count each bias add as one more MAC; hwcost keeps it in FLOPs."""

    class Separable(nn.Module):
        def __init__(self):
            super().__init__()
            self.depthwise = nn.Conv2d(512, 512, 3, groups=512, stride=2, padding=1)
            self.pointwise = nn.Conv2d(512, 1024, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    std = hwcost.analyze(nn.Conv2d(512, 1024, 3, stride=2, padding=1), (512, 128, 128))
    sep = hwcost.analyze(Separable(), (512, 128, 128))
    assert std.total.params == 4_719_616 and sep.total.params == 530_432
    assert std.total.macs == 9 * 512 * 1024 * 64 * 64
    bias_adds = std.total.flops - 2 * std.total.macs
    assert bias_adds == 1024 * 64 * 64
    assert std.total.macs + bias_adds == 19_331_547_136          # the seed's figure
    sep_bias = sep.total.flops - 2 * sep.total.macs
    assert sep.total.macs + sep_bias == 2_172_649_472              # the seed's figure
    assert round(sep.total.params / std.total.params, 4) == 0.1124
    # the MAC ratio without bias is 1/C_out + 1/K^2 exactly (seed 003's formula)
    assert sep.total.macs / std.total.macs == pytest.approx(1 / 1024 + 1 / 9)


# ------------------------------------------------------------------ matmul family


def test_linear_2d_and_3d():
    c = single(nn.Linear(10, 20), torch.zeros(3, 10))
    assert (c.record.name, c.macs, c.flops) == ("addmm", 600, 1200 + 60)
    a = hwcost.analyze(nn.Linear(10, 20, bias=False), torch.zeros(2, 5, 10))
    assert a.total.macs == 2 * 5 * 10 * 20 and a.total.flops == 2 * a.total.macs


def test_matmul_operator_einsum_baddbmm():
    a, b = torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 5, 6)
    assert single(Fn(lambda x, y: x @ y), a, b).macs == 2 * 3 * 4 * 5 * 6
    c = single(Fn(lambda x, y: torch.einsum("bij,bjk->bik", x, y)), torch.zeros(2, 3, 4), torch.zeros(2, 4, 5))
    assert c.macs == 2 * 3 * 4 * 5
    c = single(Fn(lambda s, x, y: torch.baddbmm(s, x, y)), torch.zeros(2, 3, 5), torch.zeros(2, 3, 4),
               torch.zeros(2, 4, 5))
    assert (c.macs, c.flops) == (120, 240 + 30)


def test_scaled_dot_product_attention_fused():
    q, kv = torch.zeros(2, 4, 16, 8), torch.zeros(2, 4, 32, 8)
    c = single(Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v)), q, kv, kv.clone())
    assert c.family == "attention"
    assert c.macs == 2 * 4 * 16 * 32 * (8 + 8)
    # 2 MACs + one scale per score + softmax (3n - 1 per row)
    assert c.flops == 2 * c.macs + 2 * 4 * 16 * 32 + 2 * 4 * 16 * (3 * 32 - 1)
    # fused: q, k, v read once, output written once, no L x L score matrix in memory
    assert c.bytes_read == (1024 + 2048 + 2048) * 4
    assert c.bytes_written == 1024 * 4
    # called with keywords, as diffusers calls it (Flux, SD3): the same count
    named = single(Fn(lambda q, k, v: F.scaled_dot_product_attention(query=q, key=k, value=v, is_causal=False)),
                   q, kv, kv.clone())
    assert (named.macs, named.flops, named.bytes_read) == (c.macs, c.flops, c.bytes_read)


def test_attention_with_gqa_and_mask():
    q, kv = torch.zeros(1, 8, 10, 16), torch.zeros(1, 2, 10, 16)
    c = single(Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)),
               q, kv, kv.clone())
    assert c.macs == 8 * 10 * 10 * 32
    mask = torch.zeros(1, 1, 10, 10)
    c2 = single(Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)), q, q.clone(),
                q.clone(), mask)
    assert c2.flops == 2 * c2.macs + 2 * 800 + 80 * 29  # scale + mask add per score, softmax


def test_embedding_reads_only_looked_up_rows():
    c = hwcost.analyze(nn.Embedding(100, 16), torch.zeros(2, 5, dtype=torch.long)).ops[0]
    assert (c.family, c.flops) == ("embedding", 0)
    assert c.bytes_read == 10 * 8 + 10 * 16 * 4
    assert c.bytes_written == 10 * 16 * 4


# ------------------------------------------------------------------ normalization


@pytest.mark.parametrize(
    "module,shape,flops",
    [
        (nn.BatchNorm2d(4), (1, 4, 8, 8), 4 * 256),                     # seed 002: 4 per element
        (nn.BatchNorm2d(4, affine=False), (1, 4, 8, 8), 2 * 256),
        (nn.LayerNorm(16), (2, 5, 16), 8 * 160),                         # stats 4 + apply 2 + affine 2
        (nn.LayerNorm(16, elementwise_affine=False), (2, 5, 16), 6 * 160),
        (nn.GroupNorm(2, 4), (1, 4, 8, 8), 8 * 256),
        (nn.InstanceNorm2d(4), (1, 4, 8, 8), 6 * 256),                   # no affine by default
        (nn.BatchNorm1d(6), (3, 6), 4 * 18),
    ],
)
def test_norms(module, shape, flops):
    c = single(module, torch.zeros(shape))
    assert c.family == "norm" and c.flops == flops


def test_weight_norm_recomputed_each_forward():
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3), name="weight", dim=2)
    a = hwcost.analyze(conv, torch.zeros(1, 4, 10))
    (c,) = [c for c in a.ops if c.record.name == "_weight_norm_interface"]
    # 72 weights: square, add, multiply each; a root and a divide per norm, one per kernel tap (dim 2)
    assert c.family == "norm" and c.flops == 3 * 72 + 2 * 3 and not a.unsupported


def test_fft_counts_5_n_log2_n_per_complex_transform():
    def flops(fn, x):
        return sum(c.flops for c in hwcost.analyze(Fn(fn), x).ops if c.record.name.startswith("_fft"))

    assert flops(lambda x: torch.fft.rfft(x), torch.zeros(2, 256)) == 2.5 * 2 * 256 * 8      # 2 real 256-point
    # the inverse scales its 3 x 64 outputs by 1 / n
    assert flops(lambda x: torch.fft.irfft(x, n=64),
                 torch.zeros(3, 33, dtype=torch.complex64)) == 2.5 * 3 * 64 * 6 + 192
    # a 2-D complex transform of 8 x 16 = 128 points, 4 of them; "ortho" scales each of the 512 outputs
    assert flops(lambda x: torch.fft.fft2(x), torch.zeros(4, 8, 16, dtype=torch.complex64)) == 5 * 4 * 128 * 7
    assert flops(lambda x: torch.fft.fft2(x, norm="ortho"),
                 torch.zeros(4, 8, 16, dtype=torch.complex64)) == 5 * 4 * 128 * 7 + 512


def test_dense_linear_algebra_counts_the_textbook_flops():
    def flops(fn, *xs):
        a = hwcost.analyze(Fn(fn), xs if len(xs) > 1 else xs[0])
        assert not a.unsupported, a.unsupported
        return {c.record.name: c.flops for c in a.ops if c.flops}

    a, b = torch.zeros(3, 12, 12), torch.zeros(3, 12, 5)
    assert flops(torch.linalg.cholesky, a) == {"linalg_cholesky_ex": round(3 * 12**3 / 3)}
    assert flops(torch.linalg.inv, a) == {"linalg_inv_ex": 3 * 2 * 12**3}
    # LU of each of the 3 systems, then 2 n^2 per right-hand side: 15 of them
    assert flops(torch.linalg.solve, a, b) == {"_linalg_solve_ex": round(3 * 2 * 12**3 / 3 + 15 * 2 * 144)}
    assert flops(lambda x, y: torch.linalg.solve_triangular(x, y, upper=True), a, b) == {
        "linalg_solve_triangular": 15 * 144}
    tall = torch.zeros(2, 20, 8)   # thin QR: R (2mn^2 - 2n^3/3) and Q (as much again)
    assert flops(torch.linalg.qr, tall) == {"linalg_qr": round(2 * 2 * (2 * 20 * 64 - 2 * 512 / 3))}
    assert flops(lambda x: torch.linalg.qr(x, mode="r"), tall) == {"linalg_qr": round(2 * (2 * 20 * 64 - 2 * 512 / 3))}
    assert flops(lambda x: torch.linalg.eigh(x), a) == {"_linalg_eigh": 3 * 9 * 12**3}
    # Golub-Reinsch, thin U and V: 14mn^2 + 8n^3; a wide matrix costs what its transpose does
    assert flops(lambda x: torch.linalg.svd(x, full_matrices=False), tall) == {"_linalg_svd": 2 * (14 * 20 * 64 + 8 * 512)}
    assert flops(lambda x: torch.linalg.svd(x.transpose(-1, -2), full_matrices=False), tall) == {
        "_linalg_svd": 2 * (14 * 20 * 64 + 8 * 512)}


def test_pointwise_ops_without_a_table_entry_and_accumulating_scatters():
    x = torch.zeros(4, 10)
    for fn in (torch.acos, torch.special.i0, torch.special.bessel_j0, lambda t: torch.atan2(t, t)):
        c = single(Fn(fn), x)
        assert c.family == "elementwise" and c.flops == 40   # one operation per output element
    assert single(Fn(lambda t: torch.clip(t, max=1.0)), x).flops == 40
    # one add per source element, not per target element
    idx = torch.tensor([0, 2, 2])
    c = single(Fn(lambda t, s: t.index_add(0, idx, s)), x, torch.zeros(3, 10))
    assert c.flops == 30 and c.family == "data_movement"
    c = single(Fn(lambda t, s: t.scatter_add(0, torch.zeros(3, 10, dtype=torch.long), s)), x, torch.zeros(3, 10))
    assert c.flops == 30
    put = [c for c in hwcost.analyze(Fn(lambda t, s: t.index_put((idx,), s, accumulate=True)),
                                     (x, torch.zeros(3, 10))).ops if c.record.name == "index_put"]
    assert [c.flops for c in put] == [30]


def test_embedding_bag_grid_sample_and_a_packed_lstm():
    c = single(nn.EmbeddingBag(100, 16, mode="mean"), torch.randint(0, 100, (4, 6)))
    # 24 rows of 16 looked up and added into 4 bags, a divide per output element; only those rows read,
    # with the indices and the 4 bag offsets
    assert c.family == "embedding" and c.flops == 24 * 16 + 4 * 16
    assert c.bytes_read == 4 * 6 * 8 + 4 * 8 + 24 * 16 * 4

    g = single(Fn(lambda x, grid: F.grid_sample(x, grid, align_corners=False)),
               torch.zeros(1, 3, 16, 16), torch.zeros(1, 8, 8, 2))
    assert g.family == "interpolate" and g.flops == 7 * 3 * 64 + 2 * 128   # bilinear + the grid's coordinates

    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(16, 32, batch_first=True)

        def forward(self, x, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            return nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True)[0]

    a = hwcost.analyze(Packed(), (torch.zeros(3, 8, 16), torch.tensor([8, 5, 3])))
    (rnn,) = [c for c in a.ops if c.family == "rnn"]
    # the 16 real tokens, not 3 x 8 padded ones, through W_ih (128 x 16) and W_hh (128 x 32); 8 serial steps
    assert rnn.macs == 16 * 128 * (16 + 32) and serial_steps(rnn) == 8 and not a.unsupported


# ------------------------------------------------------------------ activations and softmax


@pytest.mark.parametrize(
    "module,per_element",
    [
        (nn.ReLU(), 1), (nn.ReLU6(), 2), (nn.LeakyReLU(), 2), (nn.PReLU(), 2), (nn.ELU(), 4),
        (nn.GELU(), 5), (nn.GELU(approximate="tanh"), 13), (nn.SiLU(), 5), (nn.Mish(), 9),
        (nn.Sigmoid(), 4), (nn.Tanh(), 5), (nn.Hardswish(), 5), (nn.Hardsigmoid(), 4),
    ],
)
def test_activations(module, per_element):
    a, costs = ops(module, torch.zeros(10, 100))
    assert sum(c.flops for c in costs) == per_element * 1000
    assert not a.unsupported


def test_softmax_and_log_softmax_seed_002():
    assert single(nn.Softmax(dim=1), torch.zeros(4, 10)).flops == 4 * (3 * 10 - 1)
    assert single(nn.LogSoftmax(dim=1), torch.zeros(4, 10)).flops == 4 * 3 * 10


def test_arithmetic_and_reductions():
    x = torch.zeros(10, 10)
    for fn in (lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b):
        assert single(Fn(fn), x, x.clone()).flops == 100
    assert single(Fn(lambda a: a.pow(2)), x).flops == 100
    assert single(Fn(lambda a: a.mean()), x).flops == 100      # 99 adds + 1 divide
    assert single(Fn(lambda a: a.sum(dim=1)), x).flops == 90   # 9 adds per row
    assert single(Fn(lambda a, b: a.add(b, alpha=2)), x, x.clone()).flops == 200


# ------------------------------------------------------------------ pooling


def test_pools():
    assert single(nn.MaxPool2d(3, 2, 1), torch.zeros(1, 2, 8, 8)).flops == 2 * 16 * 8   # k - 1 comparisons
    assert single(nn.AvgPool2d(2), torch.zeros(1, 2, 8, 8)).flops == 2 * 16 * 5         # k + 1 (seed 002)
    assert single(nn.MaxPool1d(2), torch.zeros(1, 3, 8)).flops == 12 * 1
    assert single(nn.AvgPool3d(2), torch.zeros(1, 1, 4, 4, 4)).flops == 8 * 9
    assert single(nn.MaxPool3d(2), torch.zeros(1, 1, 4, 4, 4)).flops == 8 * 7


def test_adaptive_pools_exact_windows():
    # 7 -> 3 along a dim: windows [0,3), [2,5), [4,7) = 3 + 3 + 3
    assert adaptive_window_total(7, 3) == 9
    assert adaptive_window_total(5, 2) == 6
    assert single(nn.AdaptiveAvgPool2d(3), torch.zeros(1, 1, 7, 7)).flops == 81 + 9
    assert single(nn.AdaptiveMaxPool2d(3), torch.zeros(1, 1, 7, 7)).flops == 81 - 9
    assert single(nn.AdaptiveAvgPool2d(1), torch.zeros(1, 1, 7, 7)).flops == 49
    assert single(nn.AdaptiveAvgPool1d(2), torch.zeros(1, 1, 5)).flops == 6 + 2
    assert single(nn.AdaptiveAvgPool3d(2), torch.zeros(1, 1, 4, 4, 4)).flops == 64 + 8


# ------------------------------------------------------------------ data movement and interpolation


def test_cat_pad_pixel_shuffle_move_bytes_only():
    a = hwcost.analyze(Fn(lambda x, y: torch.cat([x, y], 1)), (torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4)))
    (c,) = a.ops
    assert (c.family, c.flops, c.bytes_read, c.bytes_written) == ("data_movement", 0, 80 * 4, 80 * 4)
    (c,) = hwcost.analyze(Fn(lambda x: F.pad(x, (1, 1, 1, 1))), (2, 4, 4)).ops
    assert c.bytes_written == 2 * 36 * 4 and c.flops == 0
    (c,) = hwcost.analyze(nn.PixelShuffle(2), (8, 3, 3)).ops
    assert c.record.outputs[0].shape == (1, 2, 6, 6) and c.flops == 0
    indices = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    a = hwcost.analyze(Fn(lambda x, i: F.max_unpool2d(x, i, 2)), (torch.zeros(1, 2, 4, 4), indices))
    (c,) = [c for c in a.ops if c.record.name == "max_unpool2d"]
    assert c.family == "data_movement" and c.bytes_written == 2 * 64 * 4 and not a.unsupported


def test_interpolate_nearest_and_bilinear():
    (c,) = hwcost.analyze(nn.Upsample(scale_factor=2, mode="nearest"), (3, 4, 4)).ops
    assert c.flops == 0 and c.bytes_written == 3 * 64 * 4
    (c,) = hwcost.analyze(nn.Upsample(scale_factor=2, mode="bilinear"), (3, 4, 4)).ops
    assert c.family == "interpolate" and c.flops == 7 * 3 * 64   # 4 multiplies + 3 adds per output


def test_views_are_free():
    a = hwcost.analyze(Fn(lambda x: x.view(2, -1).t().unsqueeze(0).expand(3, -1, -1).permute(2, 0, 1)), (4, 6))
    assert a.ops == []
    assert a.total.bytes_read == a.total.bytes_written == 0


def test_dropout_is_free_in_eval():
    a = hwcost.analyze(nn.Dropout(0.5), (100,))
    assert a.ops == [] and a.total.flops == 0


# ------------------------------------------------------------------ recurrent


@pytest.mark.parametrize("cls,gates", [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)])
def test_recurrent_all_layers_both_directions(cls, gates):
    t, b, i, h = 5, 2, 8, 16
    a = hwcost.analyze(cls(i, h, num_layers=2, bidirectional=True), torch.zeros(t, b, i))
    (c,) = [c for c in a.ops if c.family == "rnn"]   # one fused kernel, as oneDNN / cuDNN run it
    assert {o.record.name for o in a.ops if o is not c} <= {"zeros"}   # h0, c0
    layer1 = t * b * gates * h * (i + h)
    layer2 = t * b * gates * h * (2 * h + h)
    assert (c.family, c.macs) == ("rnn", 2 * (layer1 + layer2))
    cell = {4: 26, 3: 18, 1: 5}[gates] + 3 * gates   # nonlinearities and gate adds per unit per step
    assert c.flops == 2 * c.macs + t * b * 4 * h * cell   # 2 layers x 2 directions of h units
    assert c.bytes_written >= t * b * 2 * h * 4            # the output sequence


def test_unknown_op_is_reported_not_silent():
    a = hwcost.analyze(Fn(lambda x: torch.linalg.matrix_exp(x)), (2, 2))
    assert a.unsupported == {"linalg_matrix_exp": 1}
    assert a.total.bytes_read == 16 and a.total.bytes_written == 16
    assert "linalg_matrix_exp x1" in a.table()


def _record(name, *args, out_shape):
    """A recorded op built by hand: torchvision's ops, whose library the tests cannot import."""
    from hwcost.records import OpRecord, TensorSpec

    def spec(shape, i):
        n = 1
        for s in shape:
            n *= s
        return TensorSpec(tuple(shape), torch.float32, 4, n, i, 4 * n)

    tensors = [spec(a, i) if isinstance(a, tuple) else a for i, a in enumerate(args)]
    return OpRecord(0, name, "default", "", "", True, tuple(tensors), {}, (spec(out_shape, 99),), False)


def test_detection_ops_roi_align_nms_nonzero_unique():
    from hwcost.formulas import count

    # 1,000 boxes into 7x7 bins of 256 channels; 2x2 bilinear samples per bin (7 FLOPs, +1 to sum), a divide
    roi = _record("torchvision::roi_align", (1, 256, 50, 50), (1000, 5), 0.25, 7, 7, 2, False,
                  out_shape=(1000, 256, 7, 7))
    assert count(roi).flops == (4 * 8 + 1) * 1000 * 256 * 49
    adaptive = _record("torchvision::roi_align", (1, 256, 50, 50), (10, 5), 0.25, 7, 7, 0, False,
                       out_shape=(10, 256, 7, 7))
    assert count(adaptive).flops == 33 * 10 * 256 * 49   # sampling_ratio 0 (per box) counted at 2
    # NMS of 8 boxes: sorting (8 log2 8 = 24 comparisons) and at worst every pair's IoU (28 x 16)
    assert count(_record("torchvision::nms", (8, 4), (8,), 0.5, out_shape=(3,))).flops == 24 + 28 * 16
    # nonzero tests each element; unique sorts (n log2 n) and compares neighbours (n)
    assert count(_record("nonzero", (4, 16), out_shape=(10, 2))).flops == 64
    assert count(_record("_unique2", (16,), True, False, False, out_shape=(5,))).flops == 16 * 4 + 16


def test_value_dependent_output_sizes_are_flagged_in_a_values_trace():
    class Keep(nn.Module):
        """Keeps the rows its weights score above zero (as a detector keeps boxes), then projects them."""

        def __init__(self):
            super().__init__()
            self.score = nn.Linear(8, 1)
            self.proj = nn.Linear(8, 32)

        def forward(self, x):
            keep = self.score(x).squeeze(-1) > 0      # computed from the weights: needs a values trace
            return self.proj(x[keep])

    a = hwcost.analyze(Keep(), (100, 8))
    assert a.trace_mode == "values"
    note = a.value_dependence()
    assert note is not None and "index x1" in note and "the model's weights" in note
    p = hwcost.predict(Keep(), (100, 8), device="raspberry-pi-4")
    assert note in p.warnings and note in p.summary()
    # a boolean mask from the input alone is followed on the meta trace with the input's values: no warning
    meta = hwcost.analyze(Fn(lambda x: x[x > 0] * 2), torch.randn(4, 4))
    assert meta.trace_mode == "meta" and meta.value_dependence() is None
