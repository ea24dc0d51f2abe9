"""Winograd F(4x4, 3x3) (convnp/ops/winograd.py) against independent truths: its transforms against a
direct correlation, forward and both gradients against the loops of convnp.reference (float64),
through F.conv2d against PyTorch (float32 and float64), its float32 error against a float64 truth,
one thread against two, and the rule that chooses it."""
import numpy as np
import pytest
import torch

import convnp
from convnp import functional as F, reference
from convnp.ops import conv, winograd
from helpers import assert_close, assert_parity, tolerance


def test_the_transforms_compute_a_correlation_of_six_inputs_with_three_taps():
    """1-D: AT [(G g) * (BT d)] = the 4 outputs of correlating d (6) with g (3), exactly up to rounding."""
    bt, g, at = (np.array(m, dtype=np.float64) for m in
                 (winograd.INPUT_TRANSFORM, winograd.FILTER_TRANSFORM, winograd.OUTPUT_TRANSFORM))
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, taps = rng.standard_normal(6), rng.standard_normal(3)
        np.testing.assert_allclose(at @ ((g @ taps) * (bt @ d)), np.correlate(d, taps, mode="valid"),
                                   rtol=1e-12, atol=1e-12)


# (N, C, H, W, F, padding): run through the Winograd functions directly (ragged tiles included)
DIRECT_CASES = [
    (2, 3, 8, 8, 4, 1),     # whole tiles
    (3, 5, 9, 7, 6, 1),     # ragged last tiles in both directions, odd sizes
    (2, 4, 10, 9, 3, 0),    # no padding (the MNIST example's layer)
    (1, 2, 7, 6, 5, 2),     # padding 2, batch 1
]


@pytest.mark.parametrize("group", [winograd.GROUP_CHUNKS, 1])  # dU's shares summed 16 or 1 chunk(s) at a time
@pytest.mark.parametrize("case", DIRECT_CASES)
def test_forward_and_both_gradients_match_the_loops(case, group, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_COLUMNS", 4)  # several chunks (and waves) even for these small inputs
    monkeypatch.setattr(winograd, "GROUP_CHUNKS", group)
    n, c, h, w_in, f, p = case
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((n, c, h, w_in)), rng.standard_normal((f, c, 3, 3))
    y_loops = reference.conv2d_forward(x, w, None, 1, p)
    dy = rng.standard_normal(y_loops.shape)
    dx_loops, dw_loops, _ = reference.conv2d_backward(dy, x, w, 1, p)
    b = rng.standard_normal(f)
    xb, dyb = conv.batch_innermost(x), conv.batch_innermost(dy)
    u = winograd.transformed_filters(w)
    assert_close(winograd.convolution(xb, u, p), y_loops, 1e-10, 1e-10, "y")
    assert_close(winograd.convolution(xb, u, p, b), y_loops + b[:, None, None], 1e-10, 1e-10, "y + b")
    assert_close(reference.conv2d_forward_winograd(x, w, p), y_loops, 1e-10, 1e-10, "reference y")
    dx, dw, db = winograd.gradients(dyb, xb, u, p, x.shape, bias_gradient=True)  # dx by the adjoint
    assert_close(dx, dx_loops, 1e-10, 1e-10, "dx")
    assert_close(dw, dw_loops, 1e-10, 1e-10, "dw")
    assert_close(db, dy.sum(axis=(0, 2, 3)), 1e-10, 1e-10, "db")  # the sum of Z at (1, 1): ragged tiles' zeros
    assert winograd.gradients(dyb, xb, u, p, x.shape, False, False)[2] is None
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # dx as a convolution of dy
    assert_close(winograd.convolution(dyb, winograd.transformed_filters(flipped), 2 - p), dx_loops,
                 1e-10, 1e-10, "dx by convolution")


# (N, C, H, W, F, padding): layers the rule sends to Winograd, through F.conv2d
LAYER_CASES = [
    (2, 32, 8, 8, 32, 1),   # a VGG/ResNet layer: dx as the Winograd convolution of dy
    (2, 32, 6, 6, 64, 0),   # more filters than channels, no padding: dx by the adjoint
    (3, 64, 4, 8, 48, 1),   # 64 channels, a non-square image: the adjoint
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", LAYER_CASES)
def test_layers_that_take_winograd_match_pytorch(case, dtype, monkeypatch):
    monkeypatch.setattr(conv, "SMALL_PRODUCTS", True)  # the 32 -> 32 layer too, on any CPU (see winograd.applies)
    n, c, h, w_in, f, p = case
    h_out, w_out = h + 2 * p - 2, w_in + 2 * p - 2
    assert winograd.applies((3, 3), (1, 1), (1, 1), 1, (p, p), (h_out, w_out), c, f, False, True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w_in)).astype(dtype)
    w = (rng.standard_normal((f, c, 3, 3)) / np.sqrt(9 * c)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    rtol, atol = tolerance(dtype)
    assert_parity(lambda x, w, b: F.conv2d(x, w, b, padding=p),
                  lambda x, w, b: torch.nn.functional.conv2d(x, w, b, padding=p), x, w, b, rtol=rtol, atol=atol)


def test_a_non_contiguous_input_and_an_nchw_gradient(monkeypatch):
    monkeypatch.setattr(conv, "SMALL_PRODUCTS", True)  # a 32 -> 32 layer takes Winograd on any CPU
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 32, 10, 12)).astype(np.float32)[::2, :, 1:-1, ::-1]  # a strided NCHW view
    w = (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
    assert_parity(lambda x, w: F.relu(F.conv2d(x, w, padding=1)).sum(axis=(2, 3)),
                  lambda x, w: torch.relu(torch.nn.functional.conv2d(x, w, padding=1)).sum(dim=(2, 3)),
                  x, w, rtol=1e-4, atol=1e-5)


def test_float32_error_stays_within_the_parity_tolerance_of_a_wide_layer():
    """128 -> 128 channels (the sums of 1152 products): against the float64 loops, within rtol 1e-4 and
    atol 1e-5 of the scale (tests/helpers.py), forward and both gradients.  The points 0, 1, -1, 1/2,
    -2 matter: with 0, +-1, +-2 the forward error was 2.7x larger (docs/performance.md)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 128, 8, 8))
    w = rng.standard_normal((128, 128, 3, 3)) / np.sqrt(9 * 128)
    dy = rng.standard_normal((2, 128, 8, 8))
    y64 = reference.conv2d_forward_im2col(x, w, None, 1, 1)
    dx64, dw64, _ = reference.conv2d_backward_im2col(dy, x, w, 1, 1)
    xt = convnp.Tensor(x.astype(np.float32), requires_grad=True)
    wt = convnp.Tensor(w.astype(np.float32), requires_grad=True)
    y = F.conv2d(xt, wt, padding=1)
    y.backward(dy.astype(np.float32))
    for name, got, truth in (("y", y.numpy(), y64), ("dx", xt.grad, dx64), ("dw", wt.grad, dw64)):
        assert_close(got, truth, 1e-4, 1e-5, name)


def test_one_thread_and_two_give_the_right_gradients():
    """The input gradient's chunks add into shared rows in two waves: with one thread and with two, a
    layer of many chunks (32x32) and one whose waves are split by images (8x8) give the float64
    gradients (a race would lose or double whole rows of tiles, far beyond float32 rounding)."""
    rng = np.random.default_rng(5)
    for side, batch in ((32, 16), (8, 64)):
        x = rng.standard_normal((batch, 64, side, side)).astype(np.float32)
        w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
        dy = rng.standard_normal((batch, 64, side, side)).astype(np.float32)
        dx64, dw64, _ = reference.conv2d_backward_im2col(dy.astype(np.float64), x.astype(np.float64),
                                                         w.astype(np.float64), 1, 1)
        for threads in (1, 2):
            with convnp.num_threads(threads):
                xt, wt = convnp.Tensor(x, requires_grad=True), convnp.Tensor(w, requires_grad=True)
                F.conv2d(xt, wt, padding=1).backward(dy)
            assert_close(xt.grad, dx64, 1e-4, 1e-5, f"dx, {threads} threads, {side}x{side}")
            assert_close(wt.grad, dw64, 1e-4, 1e-5, f"dw, {threads} threads, {side}x{side}")


def test_winograd_gives_what_im2col_gives_in_a_training_step(monkeypatch):
    """A conv -> ReLU -> conv stack of Winograd layers: the loss and every gradient with Winograd on and off."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 32, 8, 8)).astype(np.float32)
    w1 = (rng.standard_normal((64, 32, 3, 3)) / 17).astype(np.float32)
    w2 = (rng.standard_normal((32, 64, 3, 3)) / 24).astype(np.float32)
    results = []
    for enabled in (False, True):
        monkeypatch.setattr(conv, "WINOGRAD", enabled)
        tensors = [convnp.Tensor(a, requires_grad=True) for a in (x, w1, w2)]
        loss = (F.conv2d(F.relu(F.conv2d(tensors[0], tensors[1], padding=1)), tensors[2], padding=1) ** 2).sum()
        loss.backward()
        results.append([loss.numpy()] + [t.grad for t in tensors])
    for name, plain, fast in zip(("loss", "dx", "dw1", "dw2"), *results):
        assert_close(fast, plain, 1e-4, 1e-5, name)


RULE_CASES = [  # (kernel, stride, dilation, groups, padding, out_size, channels, filters, on_device, expected)
    ((3, 3), (1, 1), (1, 1), 1, (1, 1), (16, 16), 64, 64, False, True),    # a VGG layer
    ((3, 3), (1, 1), (1, 1), 1, (0, 0), (24, 24), 32, 64, False, True),    # the MNIST example's conv2
    ((3, 3), (1, 1), (1, 1), 1, (1, 1), (32, 32), 32, 32, False, True),    # a 32 -> 32 layer (AVX-512 CPUs)
    ((3, 3), (1, 1), (1, 1), 1, (1, 1), (32, 32), 16, 16, False, False),   # 16 channels: slower than im2col
    ((3, 3), (2, 2), (1, 1), 1, (1, 1), (16, 16), 64, 64, False, False),   # stride 2
    ((3, 3), (1, 1), (2, 2), 1, (2, 2), (16, 16), 64, 64, False, False),   # dilation
    ((3, 3), (1, 1), (1, 1), 2, (1, 1), (16, 16), 64, 64, False, False),   # groups
    ((5, 5), (1, 1), (1, 1), 1, (2, 2), (16, 16), 64, 64, False, False),   # 5x5
    ((3, 3), (1, 1), (1, 1), 1, (1, 1), (26, 26), 64, 64, False, False),   # ragged tiles
    ((3, 3), (1, 1), (1, 1), 1, (3, 3), (20, 20), 64, 64, False, False),   # padding 3: dx would need -1
    ((3, 3), (1, 1), (1, 1), 1, (1, 0), (16, 14), 64, 64, False, False),   # unequal padding
    ((3, 3), (1, 1), (1, 1), 1, (1, 1), (16, 16), 64, 64, True, False),    # on the GPU
]


@pytest.mark.parametrize("kernel, stride, dilation, groups, padding, out_size, channels, filters, on_device, expected",
                         RULE_CASES)
def test_the_rule_takes_winograd_only_where_it_is_defined_and_faster(kernel, stride, dilation, groups, padding,
                                                                     out_size, channels, filters, on_device, expected):
    assert winograd.applies(kernel, stride, dilation, groups, padding, out_size, channels, filters,
                            on_device, True) is expected


AVX2_CASES = [  # (channels, filters, expected) of a 3x3 layer at 32x32, padding 1, without AVX-512 kernels
    (32, 32, False),  # im2col was 0.81-0.89 of Winograd's time here (docs/performance.md, 2026-12-03)
    (48, 48, False),
    (32, 64, True),   # more filters than channels: Winograd stays faster
    (64, 32, True),   # the input gradient of a 32 -> 64 layer
    (64, 64, True),
    (16, 32, False),  # fewer than MIN_CHANNELS, as with AVX-512 kernels
]


@pytest.mark.parametrize("channels, filters, expected", AVX2_CASES)
def test_without_avx512_kernels_32_channel_layers_stay_on_im2col_unless_they_widen(channels, filters, expected):
    assert winograd.applies((3, 3), (1, 1), (1, 1), 1, (1, 1), (32, 32), channels, filters, False, False) is expected


@pytest.mark.parametrize("small_products, known, expected", [
    (True, True, True),    # OpenBLAS's AVX-512 kernels
    (False, True, False),  # a known AVX2 kernel set: im2col for 32 -> 32
    (False, False, True),  # a BLAS that does not say (or no threadpoolctl): the AVX-512 measurements' rule
])
def test_winograd_from_32_channels_follows_the_blas_kernel_set(small_products, known, expected, monkeypatch):
    monkeypatch.setattr(conv, "SMALL_PRODUCTS", None)
    monkeypatch.setattr(conv, "blas_has_small_product_kernels", lambda: small_products)
    monkeypatch.setattr(conv, "blas_kernel_set_known", lambda: known)
    assert conv.winograd_from_32_channels() is expected
    for forced in (True, False):  # a test's SMALL_PRODUCTS decides, whatever the BLAS
        monkeypatch.setattr(conv, "SMALL_PRODUCTS", forced)
        assert conv.winograd_from_32_channels() is forced


@pytest.mark.parametrize("small_products", [True, False])
def test_the_convolution_asks_the_rule_with_the_blas_kernels(small_products, monkeypatch):
    """Conv2d passes SMALL_PRODUCTS (or the BLAS's answer) to the rule: a 32 -> 32 layer's forward runs as
    Winograd with AVX-512 kernels and as row windows without, both matching PyTorch."""
    monkeypatch.setattr(conv, "SMALL_PRODUCTS", small_products)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 32, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
    y = F.conv2d(convnp.Tensor(x), convnp.Tensor(w, requires_grad=True), padding=1)
    assert y._ctx.winograd is small_products
    truth = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    assert_close(y.numpy(), truth, 1e-4, 1e-5, "y")


@pytest.mark.parametrize("threads", [1, 2])
def test_padded_input_is_x_itself_when_nothing_is_added_else_a_zero_bordered_copy(threads, monkeypatch):
    """winograd.padded_input: with padding 0 and whole tiles it hands back x's own memory (no copy);
    otherwise x at offset (p, p) with zeros around it (padding and a ragged tile's rows and columns),
    the same when its channel slices run on two threads (STREAM_NUMBERS lowered so they do)."""
    rng = np.random.default_rng(7)
    x = conv.batch_innermost(rng.standard_normal((3, 5, 10, 10)).astype(np.float32))  # 10 = 4 * 2 + 2
    exact = winograd.padded_input(x, 0, winograd.tile_counts((8, 8)))
    assert np.shares_memory(exact, x)
    np.testing.assert_array_equal(exact, x.transpose(1, 2, 3, 0))
    monkeypatch.setattr(convnp.parallel, "STREAM_NUMBERS", 16)
    with convnp.num_threads(threads):
        for padding in (0, 1, 2):
            out_size = (10 + 2 * padding - 2,) * 2  # 8, 10 (ragged: 3 tiles) and 12
            tiles = winograd.tile_counts(out_size)
            x_pad = winograd.padded_input(x, padding, tiles)
            expected = np.zeros((5, 4 * tiles[0] + 2, 4 * tiles[1] + 2, 3), np.float32)
            expected[:, padding:padding + 10, padding:padding + 10] = x.transpose(1, 2, 3, 0)
            np.testing.assert_array_equal(x_pad, expected)
            assert padding == 0 or not np.shares_memory(x_pad, x)
