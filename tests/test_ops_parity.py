"""Every functional op against torch.nn.functional: forward output and EVERY gradient (input, weight,
bias), on seeded random configurations, in float64 (tight) and float32."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import convnp
from convnp import Tensor, functional as F
from helpers import assert_close, assert_parity, non_contiguous, to_torch

DTYPES = [np.float64, np.float32]


def rng(seed=0):
    return np.random.default_rng(1000 + seed)


# --- conv2d --------------------------------------------------------------------------------------------

# (N, C_in, H, W, F, kernel, stride, padding, dilation, groups, bias, layout)
CONV_CASES = {
    "basic 3x3": (2, 3, 6, 6, 4, 3, 1, 0, 1, 1, True, None),
    "1x1 kernel": (2, 4, 5, 5, 3, 1, 1, 0, 1, 1, True, None),
    "pad 1": (2, 3, 5, 5, 2, 3, 1, 1, 1, 1, False, None),
    "pad 2 stride 2": (2, 2, 7, 7, 3, 3, 2, 2, 1, 1, True, None),
    "stride 2 not divisible": (2, 3, 8, 8, 2, 3, 2, 0, 1, 1, True, None),  # (8 - 3) % 2 = 1
    "stride 3 not divisible": (1, 2, 10, 9, 3, 2, 3, 1, 1, 1, True, None),
    "non-square kernel and input": (2, 3, 7, 5, 4, (3, 2), 1, (1, 0), 1, 1, True, None),
    "per-axis stride/padding": (2, 2, 9, 8, 3, (2, 3), (2, 3), (0, 2), 1, 1, False, None),
    "dilation 2": (2, 2, 8, 8, 3, 3, 1, 2, 2, 1, True, None),
    "dilation + stride + non-square": (2, 3, 9, 11, 2, (2, 3), (2, 1), (1, 2), (2, 1), 1, True, None),
    "groups 2": (2, 4, 6, 5, 6, 3, 1, 1, 1, 2, True, None),
    "groups 2 strided dilated": (2, 4, 9, 9, 4, (3, 2), 2, 1, 2, 2, False, None),
    "depthwise": (2, 3, 6, 6, 3, 3, 1, 1, 1, 3, True, None),
    "depthwise multiplier 2": (2, 3, 7, 6, 6, 3, 2, 1, 1, 3, True, None),
    "kernel = input": (3, 2, 4, 4, 3, 4, 1, 0, 1, 1, True, None),
    "transposed input": (2, 3, 6, 7, 4, 3, 2, 1, 1, 1, True, "transposed"),
    "sliced input": (2, 4, 6, 5, 4, (2, 3), 1, 1, (2, 1), 2, True, "sliced"),
    "flipped input depthwise": (2, 3, 5, 6, 6, 3, 1, 1, 1, 3, False, "flipped"),
    "channels-last input": (2, 3, 7, 6, 4, 3, 2, 1, 1, 1, True, "channels_last"),
    "channels-last grouped dilated": (2, 4, 8, 7, 6, (3, 2), 1, (2, 1), 2, 2, True, "channels_last"),
    # full size, default tiles and chunks: 4-column tiles of the 8-column rows, two chunks of rows
    "LeNet-5 conv2 at batch 128": (128, 6, 12, 12, 16, 5, 1, 0, 1, 1, True, None),
}


def conv_inputs(case, dtype, seed=0):
    n, c, h, w, f, kernel, stride, padding, dilation, groups, bias, layout = case
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    r = rng(seed)
    x = r.standard_normal((n, c, h, w)).astype(dtype)
    if layout is not None:
        x = non_contiguous(x, layout)
    weight = r.standard_normal((f, c // groups, kh, kw)).astype(dtype)
    b = r.standard_normal(f).astype(dtype) if bias else None
    return x, weight, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=list(CONV_CASES))
def test_conv2d(case, dtype):
    x, w, b, kw = conv_inputs(case, dtype)
    y, _ = assert_parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b)
    assert y.ndim == 4 and y.shape[1] == w.shape[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
@pytest.mark.parametrize("plain", [True, False], ids=["plain im2col", "row windows"])
def test_conv2d_of_one_image(case, dtype, plain, monkeypatch):
    """One image of a small layer runs as plain im2col and one GEMM (conv.plain_im2col_convolution);
    both that and the row windows give PyTorch's forward and gradients, for every layer shape."""
    import convnp.ops.conv

    monkeypatch.setattr(convnp.ops.conv, "SMALL_IM2COL_NUMBERS", 1 << 30 if plain else 0)
    calls = []
    original = convnp.ops.conv.plain_im2col_convolution
    monkeypatch.setattr(convnp.ops.conv, "plain_im2col_convolution", lambda *a: calls.append(1) or original(*a))
    x, w, b, kw = conv_inputs((1,) + CONV_CASES[case][1:], dtype)
    assert_parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b)
    assert bool(calls) == plain  # the path asked for ran


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["basic 3x3", "pad 2 stride 2", "dilation + stride + non-square",
                                  "channels-last grouped dilated", "sliced input"])
@pytest.mark.parametrize("tile", [1, 150, 1 << 30], ids=["one-column tiles", "part-row tiles", "whole-row tiles"])
def test_conv2d_in_chunks_and_tiles(case, dtype, tile, monkeypatch):
    """Forward and backward work a chunk of output rows at a time, and multiply a tile of output
    columns at a time.  Force tiny chunks and tiles so every layer takes each path, and compare
    with PyTorch."""
    import convnp.ops.conv

    monkeypatch.setattr(convnp.ops.conv, "TILE_NUMBERS", tile)
    monkeypatch.setattr(convnp.ops.conv, "TILE_COLUMNS", 1)
    monkeypatch.setattr(convnp.ops.conv, "CHUNK_NUMBERS", 64)
    monkeypatch.setattr(convnp.ops.conv, "SMALL_PRODUCTS", False)  # whole-pixel tiles: TILE_NUMBERS decides
    x, w, b, kw = conv_inputs(CONV_CASES[case], dtype)
    y, _ = assert_parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b)
    assert len(y._ctx.geometry.chunks) > 1
    n, w_out = y.shape[0], y.shape[3]
    tile_width = y._ctx.geometry.tile_columns // n
    assert tile_width == {1: 1, 1 << 30: w_out}.get(tile, tile_width) and w_out % tile_width == 0
    if case == "basic 3x3" and tile == 150:  # 54 numbers a column: tiles of 2 of the 4 columns
        assert tile_width == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["basic 3x3", "pad 2 stride 2", "channels-last grouped dilated", "sliced input"])
@pytest.mark.parametrize("macs", [1, 2, 2000], ids=["one-image tiles", "one-pixel tiles", "wide tiles"])
def test_conv2d_in_small_product_tiles(case, dtype, macs, monkeypatch):
    """With small-matrix kernels, a tile may hold part of one pixel's images (columns that divide N):
    force tiny product limits so every layer multiplies such tiles, in forward and in backward
    (col2im then adds whole pixels), and compare with PyTorch."""
    import convnp.ops.conv

    monkeypatch.setattr(convnp.ops.conv, "SMALL_PRODUCTS", True)
    monkeypatch.setattr(convnp.ops.conv, "SMALL_PRODUCT_COLUMNS", 1)
    monkeypatch.setattr(convnp.ops.conv, "CHUNK_NUMBERS", 64)
    x, w, b, kw = conv_inputs(CONV_CASES[case], dtype)
    f, depth = w.shape[0] // kw["groups"], w.shape[1] * w.shape[2] * w.shape[3]
    monkeypatch.setattr(convnp.ops.conv, "SMALL_PRODUCT_MACS", macs * f * depth)  # tiles of <= macs columns
    y, _ = assert_parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b)
    columns, n, w_out = y._ctx.geometry.tile_columns, y.shape[0], y.shape[3]
    assert columns <= macs and (w_out * n) % columns == 0 and (columns % n == 0 or n % columns == 0)
    if macs == 1:
        assert columns == 1  # one image of one pixel a tile


@pytest.mark.parametrize("w_out, per_pixel, n, filters, small, columns", [
    (32, 144 * 128, 128, 16, True, 256),  # ResNet's 16 -> 16 layers: 2 pixels (590k MACs), not 4 (1.2M)
    (32, 288 * 128, 128, 32, True, 64),  # 32 -> 32: 128 columns would be 1.2M MACs: half a pixel's images
    (16, 576 * 128, 128, 64, True, 512),  # 64 filters: no tile of >= 64 columns fits; choose_tile_width
    (32, 144 * 128, 128, 16, False, 512),  # no small-matrix kernels: choose_tile_width
    (8, 150, 1, 16, True, 8),  # batch 1: whole rows
])
def test_tile_columns(w_out, per_pixel, n, filters, small, columns):
    from convnp.ops.conv import choose_tile_columns

    assert choose_tile_columns(w_out, per_pixel, n, 1, filters, small) == columns


@pytest.mark.parametrize("has_small_kernels, columns", [(True, 256), (False, 512)])
def test_tiles_follow_what_the_blas_has(has_small_kernels, columns, monkeypatch):
    """With SMALL_PRODUCTS left at None, a layer's tiles follow the BLAS's kernels: a ResNet 16 -> 16
    layer at batch 128 takes 2-pixel tiles (590k multiply-adds) only where small-matrix kernels exist."""
    import convnp.ops.conv as conv

    monkeypatch.setattr(conv, "SMALL_PRODUCTS", None)
    monkeypatch.setattr(conv, "blas_has_small_product_kernels", lambda: has_small_kernels)
    x = conv.batch_innermost(np.zeros((128, 16, 32, 32), np.float32))
    assert conv.conv_geometry(x, (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1).tile_columns == columns


@pytest.mark.parametrize("w_out, per_pixel, n, width", [
    (8, 150 * 128, 128, 4),  # LeNet-5's conv2 at batch 128: 4 of 8 columns = 76,800 numbers, 512 columns
    (24, 25, 1, 24),  # batch 1: whole rows
    (32, 288 * 128, 128, 4),  # 2 columns would fit 2^17 numbers, but 256 columns are too few: 4
    (31, 9 * 32 * 16, 16, 31),  # prime width, depthwise at batch 16: whole rows, not 1-column tiles
    (10, 1000, 64, 10),  # 10 columns fit (10,000 numbers): whole rows
])
def test_tile_width(w_out, per_pixel, n, width):
    from convnp.ops.conv import choose_tile_width

    assert choose_tile_width(w_out, per_pixel, n) == width


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_weight_non_contiguous(dtype):
    x, w, b, kw = conv_inputs(CONV_CASES["groups 2"], dtype)
    w = non_contiguous(w, "transposed")
    assert_parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel, dilation", [(3, 1), ((3, 5), 1), (3, 2), ((1, 3), (3, 2)), (4, 2)])
def test_conv2d_padding_strings(padding, kernel, dilation):
    r = rng()
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w, b = r.standard_normal((2, 3, 9, 8)), r.standard_normal((4, 3, kh, kw)), r.standard_normal(4)
    y, _ = assert_parity(lambda x, w, b: F.conv2d(x, w, b, padding=padding, dilation=dilation),
                         lambda x, w, b: TF.conv2d(x, w, b, padding=padding, dilation=dilation), x, w, b)
    if padding == "same":
        assert y.shape[2:] == x.shape[2:]


def test_conv2d_input_without_grad_matches_torch_weight_grads():
    x, w, b, kw = conv_inputs(CONV_CASES["groups 2 strided dilated"], np.float64)
    _, (xc, wc, bc) = assert_parity(lambda x, w, b: F.conv2d(x, w, b, **kw),
                                    lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b,
                                    requires_grad=[False, True, True])
    assert xc.grad is None and wc.grad is not None


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 2))
    f = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    # the smallest input that still gives one output, plus a little
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 5))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 5))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    layout = draw(st.sampled_from([None, "transposed", "sliced", "channels_last"]))
    seed = draw(st.integers(0, 2 ** 16))
    return (n, c, h, w, f, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups, bias, layout), seed


@settings(max_examples=40, deadline=None, derandomize=True)
@given(conv_configs())
def test_conv2d_randomized(config):
    case, seed = config
    x, w, b, kw = conv_inputs(case, np.float64, seed)
    assert_parity(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), x, w, b,
                  seed=seed)


# --- pooling -------------------------------------------------------------------------------------------

# (N, C, H, W, kernel, stride, padding, layout)
POOL_CASES = {
    "2x2": (2, 3, 8, 8, 2, None, 0, None),
    "odd size floors": (2, 2, 7, 9, 2, None, 0, None),
    "3x3 stride 2 pad 1": (2, 3, 7, 7, 3, 2, 1, None),
    "overlapping stride 1": (1, 2, 6, 5, 3, 1, 1, None),
    "overlapping stride 2 k 3": (2, 2, 9, 8, 3, 2, 0, None),
    "non-square": (2, 2, 7, 10, (2, 3), (1, 2), (1, 1), None),
    "non-square k stride 3": (1, 3, 11, 8, (3, 2), (3, 2), (1, 0), None),
    "gaps between windows (stride > kernel)": (2, 2, 8, 9, 2, 3, 0, None),
    "2x2 padded, odd size": (2, 2, 7, 5, 2, None, 1, None),
    "global window": (2, 2, 5, 4, (5, 4), 1, 0, None),
    "transposed input": (2, 3, 6, 7, 2, None, 0, "transposed"),
    "sliced input": (2, 2, 7, 7, 3, 2, 1, "sliced"),
    "channels-last input": (2, 3, 6, 7, 2, None, 0, "channels_last"),
    "channels-last overlapping padded": (2, 3, 7, 6, 3, 1, 1, "channels_last"),
}


def pool_input(case, dtype, seed=0):
    n, c, h, w, kernel, stride, padding, layout = case
    # a permutation of distinct values: no ties, so the first-maximum rule is not what is tested here
    x = (rng(seed).permutation(n * c * h * w).reshape(n, c, h, w) / (n * c * h * w) - 0.5).astype(dtype)
    if layout is not None:
        x = non_contiguous(x, layout)
    return x, dict(kernel_size=kernel, stride=stride, padding=padding)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(POOL_CASES.values()), ids=list(POOL_CASES))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d(kind, case, dtype):
    x, kw = pool_input(case, dtype)
    ours, theirs = getattr(F, f"{kind}_pool2d"), getattr(TF, f"{kind}_pool2d")
    assert_parity(lambda x: ours(x, **kw), lambda x: theirs(x, **kw), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 3, 1), ((2, 3), (2, 3), 0), (3, 1, 1), (3, 2, 1)])
def test_max_pool_ties_route_to_one_element(kernel, stride, padding, dtype):
    # constant blocks: every window is full of ties
    blocks = rng().integers(0, 3, size=(2, 3, 3, 4)).astype(dtype)
    x = np.repeat(np.repeat(blocks, 3, axis=2), 3, axis=3)[:, :, :8, :11]
    kw = dict(kernel_size=kernel, stride=stride, padding=padding)
    y, (xc,) = assert_parity(lambda x: F.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw), x)

    # the constant input: each window sends its whole gradient to exactly one element
    x = np.full((2, 3, 6, 6), 0.25, dtype=dtype)
    assert_parity(lambda x: F.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw), x)
    if stride == kernel and padding == 0:  # non-overlapping windows: check each one by hand
        kh, kw_ = (kernel, kernel) if isinstance(kernel, int) else kernel
        xt = Tensor(x, requires_grad=True)
        y = F.max_pool2d(xt, kernel)
        dy = rng(1).uniform(1, 2, y.shape).astype(dtype)
        y.backward(dy)
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                window = xt.grad[:, :, i * kh:(i + 1) * kh, j * kw_:(j + 1) * kw_].reshape(2, 3, -1)
                np.testing.assert_array_equal(window.sum(axis=2), dy[:, :, i, j])
                np.testing.assert_array_equal((window != 0).sum(axis=2), 1)
                np.testing.assert_array_equal(window[:, :, 0], dy[:, :, i, j])  # the FIRST element


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1)])
def test_max_pool_nan_wins_like_torch(kernel, stride):
    # torch: a NaN is the window's maximum, and the gradient goes to the LAST NaN of the window
    x = rng().standard_normal((1, 2, 5, 6))
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = x[0, 0, 2, 3] = x[0, 1, 4, 4] = np.nan
    xc, xt = Tensor(x, requires_grad=True), to_torch(x, True)
    y, yt = F.max_pool2d(xc, kernel, stride), TF.max_pool2d(xt, kernel, stride)
    np.testing.assert_array_equal(y.data, yt.detach().numpy())  # NaNs in the same places
    dy = rng(1).standard_normal(y.shape)
    y.backward(dy)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(xc.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, shape", [
    (2, 2, (1, 3, 8, 8)), (2, 2, (1, 2, 7, 9)),  # 2x2, and sizes that leave a row and a column out
    (3, 2, (1, 2, 9, 8)), ((3, 2), (1, 2), (1, 2, 6, 7)),  # overlapping windows, non-square
    (1, 1, (1, 2, 4, 5)), (1, 3, (1, 2, 7, 7)),  # one-element windows
])
@pytest.mark.parametrize("layout", [None, "channels_last", "transposed", "batch innermost"])
@pytest.mark.parametrize("batch", [1, 5])
def test_max_pool_without_gradient(kernel, stride, shape, layout, batch, dtype, monkeypatch):
    """Inference pools by the maxima of the window views (pool.max_of_window_views) for one image,
    and for windows of up to 4 elements at any batch: PyTorch's numbers, NaN included, in every
    layout, in slices of channels on two threads; with a gradient the separable passes run."""
    from convnp.ops import conv, pool

    calls = []
    original = pool.max_of_window_views
    monkeypatch.setattr(pool, "max_of_window_views", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(convnp.parallel, "STREAM_NUMBERS", 16)  # split even these small arrays
    shape = (batch,) + shape[1:]
    x = rng().standard_normal(shape).astype(dtype)
    if layout == "batch innermost":
        x, layout = conv.batch_innermost(x), None
    if layout is not None:
        x = non_contiguous(x, layout)
    x[0, 0, 0, 0] = x[0, -1, 2, 3] = np.nan  # NaN wins its windows, as in PyTorch
    expected = TF.max_pool2d(torch.from_numpy(np.ascontiguousarray(x)), kernel, stride).numpy()
    with convnp.num_threads(2), convnp.no_grad():
        y = F.max_pool2d(x, kernel, stride).data
    np.testing.assert_array_equal(y, expected)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    views = batch == 1 or kh * kw <= 4
    assert calls == ([1] if views else [])
    F.max_pool2d(Tensor(x, requires_grad=True), kernel, stride)  # a gradient to come: the usual passes
    assert calls == ([1] if views else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, shape", [
    (2, (3, 4, 8, 8)), (2, (2, 3, 7, 9)),  # 2x2, and sizes that leave a row and a column out
    ((2, 1), (2, 3, 5, 4)), ((1, 2), (2, 2, 4, 7)), (1, (2, 2, 3, 3)),  # other windows of up to 4
])
@pytest.mark.parametrize("values", ["distinct", "ties", "nan"])
def test_max_pool_training_of_batch_innermost_activations(kernel, shape, values, dtype, monkeypatch):
    """Training's max pooling of batch-innermost memory (a network's activations) with windows that tile
    the input runs as pool.max_pool_by_window_views: PyTorch's output and input gradient, ties going to
    the first element of the window and NaN to the last NaN, on two threads in slices of channels; an
    NCHW input of the same values takes the separable passes and gives the same numbers."""
    from convnp.ops import conv, pool
    from convnp.ops.windows import memory_order

    calls = []
    original = pool.max_pool_by_window_views
    monkeypatch.setattr(pool, "max_pool_by_window_views", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(convnp.parallel, "STREAM_NUMBERS", 16)  # split even these small arrays
    r = rng()
    x = r.standard_normal(shape).astype(dtype)
    if values == "ties":  # constant 3x3 blocks: most windows are full of ties
        x = np.repeat(np.repeat(r.integers(0, 3, size=shape[:2] + (3, 3)), 3, axis=2), 3, axis=3)
        x = x[:, :, :shape[2], :shape[3]].astype(dtype)
    if values == "nan":
        x[0, 0, 0, 0] = x[0, 0, 1, 0] = x[1, -1, 2, -1] = np.nan
    dy = r.standard_normal(TF.max_pool2d(torch.from_numpy(x), kernel).shape).astype(dtype)
    xt = to_torch(x, True)
    yt = TF.max_pool2d(xt, kernel)
    yt.backward(torch.from_numpy(dy))
    for layout in ["batch innermost", "NCHW"]:
        xc = Tensor(conv.batch_innermost(x) if layout == "batch innermost" else x.copy(), requires_grad=True)
        with convnp.num_threads(2):
            y = F.max_pool2d(xc, kernel)
            y.backward(dy)
        np.testing.assert_array_equal(y.data, yt.detach().numpy())
        np.testing.assert_array_equal(xc.grad, xt.grad.numpy())
        assert calls == [1], layout  # the batch-innermost input only
        if layout == "batch innermost":
            assert memory_order(xc.grad) == memory_order(xc.data) == (1, 2, 3, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, output_size", [((6, 6), 1), ((8, 6), (4, 3)), ((8, 8), 2), ((7, 7), 3),
                                               ((5, 5), (2, 3)), ((5, 7), (3, 4)), ((4, 4), 4), ((3, 5), (5, 7)),
                                               ((5, 6), (None, 4)), ((7, 5), (3, None))])
def test_adaptive_avg_pool2d(size, output_size, dtype):
    x = rng().standard_normal((2, 3) + size).astype(dtype)
    assert_parity(lambda x: F.adaptive_avg_pool2d(x, output_size), lambda x: TF.adaptive_avg_pool2d(x, output_size), x)


# --- activations -------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (F.relu, TF.relu),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "leaky_relu default": (F.leaky_relu, TF.leaky_relu),
    "tanh": (F.tanh, torch.tanh),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "Tensor.relu": (lambda x: x.relu(), torch.relu),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation(name, dtype):
    x = (rng().standard_normal((3, 4, 5)) * 3).astype(dtype)
    x[0, 0, :3] = 0.0  # the kink: torch's subgradient there is 0 for relu, slope for leaky
    ours, theirs = ACTIVATIONS[name]
    assert_parity(ours, theirs, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_saturate_without_overflow(dtype):
    x = np.array([-1000.0, -80.0, 0.0, 80.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow RuntimeWarning would fail the test
        for ours, theirs in [(F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh)]:
            y, (xc,) = assert_parity(ours, theirs, x)
            assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(xc.grad))
    np.testing.assert_array_equal(F.sigmoid(x).data[[0, -1]], [0.0, 1.0])


# --- linear ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, bias, dtype):
    r = rng()
    x, w = r.standard_normal(shape).astype(dtype), r.standard_normal((4, 7)).astype(dtype)
    b = r.standard_normal(4).astype(dtype) if bias else None
    assert_parity(F.linear, TF.linear, x, w, b)


def test_linear_non_contiguous_input():
    r = rng()
    x = non_contiguous(r.standard_normal((2, 3, 5, 7)), "transposed")
    w, b = r.standard_normal((4, 7)), r.standard_normal(4)
    assert_parity(F.linear, TF.linear, x, w, b)


# --- batch norm ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 6)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, affine, training, dtype):
    r = rng()
    c = shape[1]
    weight = r.uniform(0.5, 1.5, c).astype(dtype) if affine else None
    bias = r.standard_normal(c).astype(dtype) if affine else None
    mean_ours, var_ours = np.zeros(c, dtype), np.ones(c, dtype)
    mean_torch, var_torch = torch.from_numpy(np.zeros(c, dtype)), torch.from_numpy(np.ones(c, dtype))
    for step in range(4):  # several steps so the running statistics compound
        x = (r.standard_normal(shape) * (step + 1) + step).astype(dtype)
        assert_parity(
            lambda x, w, b: F.batch_norm(x, mean_ours, var_ours, w, b, training=training, momentum=0.1, eps=1e-5),
            lambda x, w, b: TF.batch_norm(x, mean_torch, var_torch, w, b, training=training, momentum=0.1, eps=1e-5),
            x, weight, bias, seed=step)
    assert_close(mean_ours, mean_torch, 1e-6 if dtype == np.float32 else 1e-12, 1e-6)
    assert_close(var_ours, var_torch, 1e-6 if dtype == np.float32 else 1e-12, 1e-6)
    if training:  # and they really moved: the unbiased variance after 4 steps is far from 1
        assert np.all(var_ours > 2)


def test_batch_norm_running_var_is_unbiased_by_hand():
    x = np.array([[1.0], [3.0]])  # mean 2, biased variance 1, unbiased variance 2
    running_mean, running_var = np.zeros(1), np.ones(1)
    F.batch_norm(x, running_mean, running_var, training=True, momentum=0.1)
    np.testing.assert_allclose(running_mean, [0.2])
    np.testing.assert_allclose(running_var, [0.9 * 1 + 0.1 * 2])


def test_batch_norm_training_without_running_stats():
    x = rng().standard_normal((6, 4, 3, 3))
    assert_parity(lambda x: F.batch_norm(x, None, None, training=True),
                  lambda x: TF.batch_norm(x, None, None, training=True), x)


def test_batch_norm_keeps_its_input_not_a_centred_copy():
    """Between forward and backward a batch norm keeps x itself (which the graph holds anyway) and
    recomputes x - mean in backward: no saved array of x's size is memory of its own (with the fused
    ReLU, the other is y, the output)."""
    data = rng().standard_normal((4, 6, 5, 5)).astype(np.float32).transpose(1, 2, 3, 0).copy().transpose(3, 0, 1, 2)
    for relu in (False, True):
        x = Tensor(data, requires_grad=True)
        batch_norm = F.batch_norm_relu if relu else F.batch_norm
        y = batch_norm(x, None, None, Tensor(np.ones(6, np.float32), requires_grad=True), None, training=True)
        big = [a for a in y._ctx.saved if isinstance(a, np.ndarray) and a.size == data.size]
        assert len(big) == (2 if relu else 1)
        assert all(np.shares_memory(a, x.data) or np.shares_memory(a, y.data) for a in big)


def test_batch_norm_of_a_large_mean_keeps_its_weight_gradient():
    """backward recomputes x - mean from x: with a mean 3000 times the spread, float32's dweight
    = sum(dy x_hat) stays within 3e-4 of the float64 truth's scale.  Measured while writing this
    test: 8.9e-5 (what is left is the float32 mean's own rounding); the shortcut
    sum(dy x) - mean sum(dy), which needs no x - mean, 7.2e-4."""
    r = np.random.default_rng(0)
    x = (r.standard_normal((32, 3, 8, 8)) + 3000).astype(np.float32)
    dy = r.standard_normal((32, 3, 8, 8)).astype(np.float32)
    weight = Tensor(np.ones(3, np.float32), requires_grad=True)
    F.batch_norm(Tensor(x), None, None, weight, None, training=True).backward(dy)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3), keepdims=True), x64.var(axis=(0, 2, 3), keepdims=True)
    truth = (dy * (x64 - mean) / np.sqrt(var + 1e-5)).sum(axis=(0, 2, 3))
    assert_close(weight.grad, truth, 0, 3e-4, "dweight")


# --- dropout --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_training(p, dtype):
    x0 = rng().uniform(1.0, 2.0, (200, 500)).astype(dtype)  # no zeros in x: a zero in y means "dropped"
    x = Tensor(x0, requires_grad=True)
    y = F.dropout(x, p, training=True, rng=np.random.default_rng(7))
    assert y.dtype == dtype
    dropped = y.data == 0
    n = dropped.size
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)  # 5 standard errors
    scale = dtype(1.0 / (1.0 - p))
    np.testing.assert_allclose(y.data[~dropped], x0[~dropped] * scale, rtol=1e-6)
    dy = rng(1).standard_normal(x0.shape).astype(dtype)
    y.backward(dy)
    np.testing.assert_allclose(x.grad, dy * (~dropped) * scale, rtol=1e-6)
    # the same seed gives the same mask; the default generator follows convnp.manual_seed
    again = F.dropout(x0, p, training=True, rng=np.random.default_rng(7)).data
    np.testing.assert_array_equal(again, y.data)
    convnp.manual_seed(3)
    first = F.dropout(x0, p).data
    convnp.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x0, p).data, first)


def test_dropout_eval_and_edge_probabilities():
    x0 = rng().standard_normal((4, 5))
    x = Tensor(x0, requires_grad=True)
    y = F.dropout(x, 0.5, training=False)
    np.testing.assert_array_equal(y.data, x0)
    (y * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(x0.shape, 3.0))
    np.testing.assert_array_equal(F.dropout(x0, 0.0).data, x0)
    np.testing.assert_array_equal(F.dropout(x0, 1.0).data, np.zeros_like(x0))
    # torch agrees in eval mode
    np.testing.assert_array_equal(TF.dropout(torch.from_numpy(x0), 0.5, training=False).numpy(), x0)


# --- softmax and losses --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [-1, 0, 1])
@pytest.mark.parametrize("kind", ["log_softmax", "softmax"])
def test_softmax(kind, dim, dtype):
    x = (rng().standard_normal((3, 4, 5)) * 5).astype(dtype)
    ours, theirs = getattr(F, kind), getattr(TF, kind)
    assert_parity(lambda x: ours(x, dim=dim), lambda x: theirs(x, dim=dim), x)


def test_log_softmax_huge_logits():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    y, (xc,) = assert_parity(F.log_softmax, lambda x: TF.log_softmax(x, dim=-1), x)
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(xc.grad))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, label_smoothing, dtype):
    r = rng()
    logits = (r.standard_normal((6, 5)) * 3).astype(dtype)
    target = r.integers(0, 5, 6)
    assert_parity(lambda x: F.cross_entropy(x, target, reduction=reduction, label_smoothing=label_smoothing),
                  lambda x: TF.cross_entropy(x, torch.from_numpy(target), reduction=reduction,
                                             label_smoothing=label_smoothing), logits)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_huge_logits_are_finite(label_smoothing, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, 1e4]], dtype=dtype)
    target = np.array([1, 0, 2])
    y, (xc,) = assert_parity(
        lambda x: F.cross_entropy(x, target, label_smoothing=label_smoothing),
        lambda x: TF.cross_entropy(x, torch.from_numpy(target), label_smoothing=label_smoothing), logits)
    assert np.isfinite(y.item()) and y.item() > 1000  # two confident mistakes of ~2e4 each
    assert np.all(np.isfinite(xc.grad))


def test_cross_entropy_by_hand():
    # uniform logits over K classes: loss = ln K; gradient = (1/K - onehot) / N
    logits = Tensor(np.zeros((2, 4)), requires_grad=True)
    loss = F.cross_entropy(logits, np.array([1, 3]))
    np.testing.assert_allclose(loss.item(), np.log(4))
    loss.backward()
    expected = np.full((2, 4), 0.25)
    expected[0, 1] -= 1
    expected[1, 3] -= 1
    np.testing.assert_allclose(logits.grad, expected / 2)


def test_cross_entropy_with_modules_and_int32_targets():
    r = rng()
    logits, target = r.standard_normal((5, 3)), r.integers(0, 3, 5).astype(np.int32)
    ours = convnp.nn.CrossEntropyLoss(label_smoothing=0.1)(Tensor(logits), target)
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(to_torch(logits), torch.from_numpy(target).long())
    assert_close(ours.data, theirs, 1e-12, 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction, dtype):
    r = rng()
    x, target = r.standard_normal((4, 3, 2)).astype(dtype), r.standard_normal((4, 3, 2)).astype(dtype)
    assert_parity(lambda x, t: F.mse_loss(x, t, reduction=reduction),
                  lambda x, t: TF.mse_loss(x, t, reduction=reduction), x, target)
    ours = convnp.nn.MSELoss(reduction)(Tensor(x), Tensor(target))
    assert_close(ours.data, TF.mse_loss(to_torch(x), to_torch(target), reduction=reduction), 1e-5, 1e-6)


# --- the same results whatever the gradient's layout, and with no graph at all ---------------------------

LAYOUT_OPS = {
    "conv2d": (lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=2),
               lambda x, w: TF.conv2d(x, w, stride=2, padding=1, groups=2), (6, 2, 3, 3)),
    "max_pool2d": (lambda x, w: F.max_pool2d(x, 3, 2, 1) * w, lambda x, w: TF.max_pool2d(x, 3, 2, 1) * w, (4, 1, 1)),
    "avg_pool2d": (lambda x, w: F.avg_pool2d(x, 2) * w, lambda x, w: TF.avg_pool2d(x, 2) * w, (4, 1, 1)),
    "batch_norm": (lambda x, w: F.batch_norm(x, None, None, w, None, training=True),
                   lambda x, w: TF.batch_norm(x, None, None, w, None, training=True), (4,)),
    "adaptive_avg_pool2d": (lambda x, w: F.adaptive_avg_pool2d(x, (3, 2)) * w,
                            lambda x, w: TF.adaptive_avg_pool2d(x, (3, 2)) * w, (4, 1, 1)),
}


@pytest.mark.parametrize("name", list(LAYOUT_OPS))
def test_gradient_arriving_in_another_layout(name):
    # the op's output is permuted and sliced downstream, so dy reaches its backward non-contiguous
    ours, theirs, w_shape = LAYOUT_OPS[name]
    r = rng()
    x, w = r.standard_normal((2, 4, 7, 6)), r.standard_normal(w_shape)
    assert_parity(lambda x, w: ours(x, w).permute(0, 2, 3, 1)[:, ::-1][..., 1:] * 1.5,
                  lambda x, w: theirs(x, w).permute(0, 2, 3, 1).flip(1)[..., 1:] * 1.5, x, w)


@pytest.mark.parametrize("layout", [None, "channels_last"])
@pytest.mark.parametrize("name", list(LAYOUT_OPS))
def test_no_grad_forward_matches(name, layout):
    # ops take shortcuts when no gradient is needed (nothing saved, no argmax bookkeeping)
    ours, theirs, w_shape = LAYOUT_OPS[name]
    r = rng()
    x, w = r.standard_normal((2, 4, 7, 6)), r.standard_normal(w_shape)
    x = x if layout is None else non_contiguous(x, layout)
    with convnp.no_grad():
        y = ours(Tensor(x), Tensor(w))
    assert not y.requires_grad
    assert_close(y.data, theirs(to_torch(x), to_torch(w)), 1e-10, 1e-10)
    assert_close(y.data, ours(Tensor(x, requires_grad=True), Tensor(w)).data, 1e-12, 1e-12)


def test_ops_keep_arrays_only_through_save_for_backward():
    """Every op's saved state goes through save_for_backward, so release() frees it and the op's memory
    cost is written in one place: after backward, no op on the tape still holds a float array."""
    r = rng()
    x = Tensor(r.standard_normal((2, 3, 8, 8)), requires_grad=True)
    w = Tensor(r.standard_normal((4, 3, 3, 3)), requires_grad=True)
    bn_w, bn_b = Tensor(np.ones(4), requires_grad=True), Tensor(np.zeros(4), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    y = F.batch_norm(y, np.zeros(4), np.ones(4), bn_w, bn_b, training=True)
    y = F.dropout(F.leaky_relu(F.relu(y) - F.sigmoid(y) * F.tanh(y)), 0.3)
    y = F.adaptive_avg_pool2d(F.avg_pool2d(F.max_pool2d(y, 2), 2, stride=1), 1)
    y = F.flatten(y, 1)
    v = Tensor(r.standard_normal((4, 3)), requires_grad=True)
    loss = F.cross_entropy(F.linear(y, v.T) / 2.0, np.array([0, 2])) + \
        F.mse_loss(F.softmax(y) ** 2, np.zeros((2, 4))) + F.log_softmax(y).mean()
    ops, stack = [], [loss]
    while stack:  # every op of the graph
        t = stack.pop()
        if t is not None and t._ctx is not None and t._ctx not in ops:
            ops.append(t._ctx)
            stack.extend(t._ctx.inputs)
    assert {type(op).__name__ for op in ops} >= {"Conv2d", "BatchNorm", "Dropout", "MaxPool2d", "AvgPool2d",
                                                  "AdaptiveAvgPool2d", "CrossEntropy", "Linear"}
    loss.backward()
    for op in ops:
        kept = [name for name, value in vars(op).items()
                if isinstance(value, np.ndarray) and value.dtype.kind == "f"]
        assert not kept, f"{type(op).__name__} keeps {kept} outside save_for_backward"


def _every_op_class():
    """Every Function subclass defined in the modules of convnp.ops, found by walking them."""
    import importlib
    import inspect as pyinspect
    import pkgutil

    import convnp.ops
    from convnp.function import Function
    found = set()
    for module_info in pkgutil.iter_modules(convnp.ops.__path__):
        module = importlib.import_module(f"convnp.ops.{module_info.name}")
        for _, cls in pyinspect.getmembers(module, pyinspect.isclass):
            if issubclass(cls, Function) and cls is not Function and cls.__module__ == module.__name__:
                found.add(cls)
    return found


def _graphs_of_every_op():
    """Small graphs, each through the public entry point (functional, Tensor method, convnp.*)."""
    r = rng()

    def t(*shape, positive=False):
        data = r.standard_normal(shape)
        return Tensor(np.abs(data) + 0.5 if positive else data, requires_grad=True)

    x4, x2 = t(2, 3, 6, 6), t(3, 4)
    labels, probs = np.array([0, 2, 1]), Tensor(r.uniform(0.1, 0.9, (3, 4)), requires_grad=True)
    return [
        F.conv2d(x4, t(4, 3, 3, 3), t(4), padding=1),
        F.batch_norm(x4, np.zeros(3), np.ones(3), t(3), t(3), training=True),
        F.dropout(x2, 0.3), F.dropout2d(x4, 0.3),
        F.relu(x2), F.leaky_relu(x2), F.tanh(x2), F.sigmoid(x2), F.gelu(x2), F.silu(x2), F.elu(x2),
        F.softplus(x2), F.hardtanh(x2),
        x2 + x2, x2 - x2, x2 * x2, x2 / t(3, 4, positive=True), -x2, x2 ** 2, x2.exp(),
        t(3, 4, positive=True).log(), x2.double(), x2.clone(), t(3, 4, positive=True) ** x2, x2.abs(),
        t(3, 4, positive=True).sqrt(), t(3, 4, positive=True).rsqrt(), t(3, 4, positive=True).log2(),
        x2.sign(), x2.clamp(-0.5, 0.5), convnp.where(x2.data > 0, x2, t(3, 4)),
        convnp.maximum(x2, t(3, 4)), convnp.minimum(x2, t(3, 4)),
        x2 @ t(4, 2), F.linear(x2, t(2, 4), t(2)),
        F.log_softmax(x2), F.softmax(x2), F.cross_entropy(x2, labels), F.mse_loss(x2, np.zeros((3, 4))),
        F.nll_loss(F.log_softmax(x2), labels, weight=np.ones(4)), F.binary_cross_entropy(probs, np.ones((3, 4))),
        F.binary_cross_entropy_with_logits(x2, np.ones((3, 4))), F.l1_loss(x2, np.zeros((3, 4))),
        F.smooth_l1_loss(x2, np.zeros((3, 4))), F.pad(x4, (1, 1, 1, 1)),
        F.max_pool2d(x4, 2), F.avg_pool2d(x4, 2), F.adaptive_avg_pool2d(x4, 1),
        F.max_pool2d(x4, 2, dilation=2), F.avg_pool2d(x4, 3, ceil_mode=True, count_include_pad=False),
        F.adaptive_max_pool2d(x4, 2), F.interpolate(x4, size=(9, 9), mode="bilinear"),
        x2.sum(), x2.mean(), x2.amax(), x2.max(dim=1).values, x2.var(), x2.prod(), x2.logsumexp(1),
        x2.norm(), x2.reshape(4, 3), x2.T, convnp.cat([x2, x2]), x2[np.array([0, 2])], x2[None].expand(2, 3, 4),
        x2.repeat(2, 1), x2.index_select(0, np.array([2, 0, 2])), x2.gather(1, np.array([[0], [3], [1]])),
    ]


def test_every_op_keeps_arrays_only_through_save_for_backward():
    """The walk of test_ops_keep_arrays_only_through_save_for_backward, for every op of convnp.ops: after
    forward, no attribute except ``saved`` (and the tape's ``inputs``) holds an array (float, bool or
    int), directly or inside a tuple, list or named tuple; shapes, flags and scalars may stay attributes.
    The graphs below must reach every Function subclass, so a new op without an entry fails here."""
    ops, stack = [], list(_graphs_of_every_op())
    while stack:
        node = stack.pop()
        if node is not None and node._ctx is not None and node._ctx not in ops:
            ops.append(node._ctx)
            stack.extend(node._ctx.inputs)
    inference_only = {cls for cls in _every_op_class() if cls.inference_only}  # never on a tape: run below
    assert {cls.__name__ for cls in inference_only} == {"Conv2dReLUMaxPool"}
    missing = {cls.__name__ for cls in _every_op_class() - inference_only} - {type(op).__name__ for op in ops}
    assert not missing, f"add a graph through these ops: {sorted(missing)}"
    fused = convnp.ops.conv.Conv2dReLUMaxPool()
    fused.needs_input_grad = (False, False, False)
    fused.forward(rng().standard_normal((2, 3, 8, 8)), rng().standard_normal((4, 3, 3, 3)), np.zeros(4))
    ops.append(fused)

    def holds_array(value):
        if isinstance(value, np.ndarray):
            return True
        return isinstance(value, (tuple, list)) and any(holds_array(item) for item in value)

    for op in ops:
        kept = [name for name, value in vars(op).items()
                if name not in ("saved", "inputs", "needs_input_grad") and holds_array(value)]
        assert not kept, f"{type(op).__name__} keeps {kept} outside save_for_backward"
