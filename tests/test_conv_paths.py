"""Every fast path of convolution against the plain rungs of convnp.reference and against PyTorch:
the input gradient computed as a convolution of dy (stride 1, >= 16 channels a group) and the col2im
one it replaces, forward and backward, float32 and float64, odd sizes, padding, dilation, groups and
non-contiguous inputs.  (Winograd's path has its own file, tests/test_winograd.py.)"""
import numpy as np
import pytest
import torch

import convnp
from convnp import functional as F, reference
from convnp.ops import conv, windows
from helpers import assert_close, assert_parity, tolerance

# (N, C, H, W, F, kernel, padding, dilation, groups)
CASES = [
    (3, 16, 9, 7, 5, 3, 1, 1, 1),      # odd sizes, few filters
    (2, 32, 8, 8, 32, 3, 1, 1, 1),     # a VGG layer
    (2, 16, 10, 9, 8, 3, 0, 1, 1),     # no padding
    (2, 16, 7, 7, 4, 3, 2, 1, 1),      # padding = the kernel's reach
    (2, 16, 11, 10, 6, 3, 2, 2, 1),    # dilation 2
    (2, 32, 6, 7, 8, 3, 1, 1, 2),      # two groups of 16 channels
    (1, 16, 9, 9, 3, 5, 2, 1, 1),      # a 5x5 kernel
    (2, 16, 6, 5, 4, (3, 1), (1, 0), 1, 1),  # a non-square kernel
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("case", CASES)
def test_the_convolution_path_is_taken_and_matches_the_reference_rungs(case, monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD", False)  # the VGG layer would run as Winograd (tests/test_winograd.py)
    n, c, h, w_in, f, k, p, d, g = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w_in))
    w = rng.standard_normal((f, c // g) + _pair(k))
    x_batch_innermost = conv.batch_innermost(x)
    geometry = conv.conv_geometry(x_batch_innermost, w.shape, (1, 1), _pair(p), _pair(d), g)
    assert conv.input_gradient_is_a_convolution(geometry, f)
    y = reference.conv2d_forward_im2col(x, w, None, 1, p, d, g)
    dy = rng.standard_normal(y.shape)
    dx_loops, _, _ = reference.conv2d_backward(dy, x, w, 1, p, d, g)
    dx_rung = reference.conv2d_input_gradient_as_convolution(dy, w, p, d, g)
    np.testing.assert_allclose(dx_rung, dx_loops, rtol=1e-10, atol=1e-10)
    xt = convnp.Tensor(x, requires_grad=True)
    out = F.conv2d(xt, convnp.Tensor(w), padding=p, dilation=d, groups=g)
    out.backward(dy)
    np.testing.assert_allclose(xt.grad, dx_loops, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_forward_and_every_gradient_match_pytorch(case, dtype):
    n, c, h, w_in, f, k, p, d, g = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w_in)).astype(dtype)
    w = (rng.standard_normal((f, c // g) + _pair(k)) * 0.2).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    rtol, atol = tolerance(dtype)
    assert_parity(lambda x, w, b: F.conv2d(x, w, b, padding=p, dilation=d, groups=g),
                  lambda x, w, b: torch.nn.functional.conv2d(x, w, b, padding=p, dilation=d, groups=g),
                  x, w, b, rtol=rtol, atol=atol)


def test_non_contiguous_inputs_and_a_gradient_in_another_layout():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16, 12, 14)).astype(np.float32)[::2, :, 1:-1, ::-1]  # a strided view
    x_nhwc = np.ascontiguousarray(rng.standard_normal((2, 9, 9, 16)).astype(np.float32)).transpose(0, 3, 1, 2)
    w = (rng.standard_normal((8, 16, 3, 3)) * 0.2).astype(np.float32)
    for array in (x, x_nhwc):
        assert_parity(lambda x, w: F.relu(F.conv2d(x, w, padding=1)).sum(axis=(2, 3)),
                      lambda x, w: torch.relu(torch.nn.functional.conv2d(x, w, padding=1)).sum(dim=(2, 3)),
                      array, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride, channels, filters", [((2, 2), 16, 6), ((1, 1), 8, 6), ((2, 1), 32, 6),
                                                      ((1, 1), 16, 32)])  # more filters than channels
def test_layers_the_rule_leaves_on_col2im_still_match_the_loops(stride, channels, filters):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, channels, 9, 8))
    w = rng.standard_normal((filters, channels, 3, 3))
    geometry = conv.conv_geometry(conv.batch_innermost(x), w.shape, stride, (1, 1), (1, 1), 1)
    assert not conv.input_gradient_is_a_convolution(geometry, filters)
    y = reference.conv2d_forward(x, w, None, stride, 1)
    dy = rng.standard_normal(y.shape)
    xt = convnp.Tensor(x, requires_grad=True)
    F.conv2d(xt, convnp.Tensor(w), stride=stride, padding=1).backward(dy)
    assert_close(xt.grad, reference.conv2d_backward(dy, x, w, stride, 1)[0], 1e-10, 1e-10, "dx")


def test_threads_split_the_convolution_path_the_same_way(monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD", False)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 32, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) * 0.1).astype(np.float32)
    dy = rng.standard_normal((8, 32, 16, 16)).astype(np.float32)
    grads = []
    for threads in (1, 2):
        with convnp.num_threads(threads):
            xt = convnp.Tensor(x, requires_grad=True)
            F.conv2d(xt, convnp.Tensor(w), padding=1).backward(dy)
            grads.append(xt.grad)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    expected = reference.conv2d_backward_im2col(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                                               1, 1)[0]
    assert_close(grads[1], expected, 1e-4, 1e-5, "dx")


# (N, C, H, W, kernel, stride, padding, dilation, groups, rows): the window_rows copy of each kind of layer
WINDOW_ROW_CASES = [
    (2, 3, 7, 6, 3, 1, 1, 1, 1, (0, 7)),        # 3x3 same padding, all rows
    (2, 3, 7, 6, 3, 1, 1, 1, 1, (2, 5)),        # a chunk in the middle: no padding rows in it
    (3, 4, 9, 8, 3, 2, 1, 1, 2, (1, 4)),        # stride 2, two groups
    (2, 2, 11, 10, (3, 2), (2, 3), (2, 0), (2, 3), 1, (0, 4)),  # dilation (a copy row per window row)
    (2, 5, 6, 6, 1, 1, 0, 1, 1, (0, 6)),        # 1x1: each row copied once
    (1, 2, 4, 4, 3, 1, 3, 1, 1, (0, 8)),        # padding wider than the kernel's reach: zero rows/columns
    (2, 3, 12, 12, 5, 1, 0, 1, 1, (0, 8)),      # 5x5 unpadded (LeNet-5): all kw shifts in one copy
    (2, 4, 8, 9, 3, (1, 2), (1, 0), (1, 2), 2, (0, 8)),  # padded rows only, column stride and dilation
]


@pytest.mark.parametrize("case", WINDOW_ROW_CASES)
def test_window_rows_holds_im2cols_columns(case):
    """The view convolution multiplies is im2col's columns (reference rung 2), rows in (u, c, v) order,
    in every tile width, for the chunk of output rows asked for; padding is zeros, x is unpadded."""
    n, c, h, w_in, k, s, p, d, g, (first, stop) = case
    k, s, p, d = (_pair(a) for a in (k, s, p, d))
    x = np.random.default_rng(5).standard_normal((n, c, h, w_in))
    x_batch_innermost = conv.batch_innermost(x)
    op = conv.Conv2d()
    op.geometry = geometry = conv.conv_geometry(x_batch_innermost, (2 * g, c // g) + k, s, p, d, g)
    h_out, w_out = geometry.out_size
    cols = reference.im2col(x, k, s, p, d).reshape(g, c // g, k[0], k[1], n, h_out, w_out)
    expected = cols[:, :, :, :, :, first:stop].transpose(0, 5, 6, 2, 1, 3, 4)  # (G, rows, W_out, u, c, v, N)
    for tile in (t for t in range(1, w_out * n + 1) if w_out * n % t == 0):  # whole pixels or part of one
        view = op.window_rows(x_batch_innermost, (first, stop), tile)  # (G, rows, W_out*N/T, K, T)
        got = view.transpose(0, 1, 3, 2, 4).reshape(g, stop - first, k[0], c // g, k[1], w_out, n)
        got = got.transpose(0, 1, 5, 2, 3, 4, 6)  # (G, rows, W_out, u, c, v, N)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
def test_strided_view_is_as_strideds_view_read_only(layout):
    """ops.windows.strided_view (np.ndarray over a contiguous array's buffer, as_strided otherwise)
    gives as_strided's numbers, never a writeable view, and refuses a view outside the array."""
    base = np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5)
    array = {"contiguous": base, "transposed": base.transpose(2, 0, 1), "sliced": base[1:, ::2]}[layout]
    s0, s1, s2 = array.strides
    shape, strides = (array.shape[0] - 1, 2, array.shape[1], array.shape[2]), (s0, s0, s1, s2)  # overlapping rows
    view = windows.strided_view(array, shape, strides)
    np.testing.assert_array_equal(view, np.lib.stride_tricks.as_strided(array, shape, strides))
    np.testing.assert_array_equal(view[2, 1], array[3])
    assert not view.flags.writeable
    if layout == "contiguous":
        with pytest.raises(ValueError):
            windows.strided_view(array, (array.shape[0], 2) + array.shape[1:], strides)  # one row past the end


def test_small_ufunc_buffer_is_set_inside_and_restored_after_even_on_an_error():
    """ops.windows.small_ufunc_buffer sets NumPy's ufunc buffer for its block only (col2im and max
    pooling run their strided ufuncs under it), on the calling thread, and restores it on the way out."""
    before = np.getbufsize()
    with windows.small_ufunc_buffer():
        assert np.getbufsize() == windows.SMALL_BUFSIZE != before
    assert np.getbufsize() == before
    with pytest.raises(RuntimeError), windows.small_ufunc_buffer():
        raise RuntimeError("an op failed inside the block")
    assert np.getbufsize() == before
    dcols = np.random.default_rng(6).standard_normal((3, 2, 2, 4, 5, 2))  # (C, kh, kw, rows, W_out, N)
    dx_pad = np.zeros((2, 3, 5, 6))  # (N, C, Hp, Wp): 4 output rows of a 2x2 stride-1 window
    conv.col2im(dcols, dx_pad, 0, (1, 1), (1, 1))
    assert np.getbufsize() == before
    expected = np.zeros_like(dx_pad)
    for u in range(2):
        for v in range(2):
            expected[:, :, u:u + 4, v:v + 5] += dcols[:, u, v].transpose(3, 0, 1, 2)
    np.testing.assert_allclose(dx_pad, expected)


def test_weight_gradient_tiles_give_the_whole_rows_numbers(monkeypatch):
    """choose_weight_tile_columns: with small-matrix kernels, the narrowest whole-pixel tile of at least
    WEIGHT_TILE_COLUMNS whose product fits SMALL_PRODUCT_MACS (the VGG-style 3 -> 32 layer: 1024 of 4096
    columns), else whole rows (16 -> 16: no such tile; no small kernels); and dW in such tiles equals
    the loops' (WEIGHT_TILE_COLUMNS lowered so a small layer is cut into tiles of 2 pixels)."""
    assert conv.choose_weight_tile_columns(32, 27, 128, 32, True) == 1024
    assert conv.choose_weight_tile_columns(32, 144, 128, 16, True) == 4096
    assert conv.choose_weight_tile_columns(32, 27, 128, 32, False) == 4096
    assert conv.choose_weight_tile_columns(24, 25, 128, 6, True) == 1024  # LeNet-5's conv1: 1024 of 3072
    monkeypatch.setattr(conv, "SMALL_PRODUCTS", True)
    monkeypatch.setattr(conv, "WEIGHT_TILE_COLUMNS", 6)
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((3, 2, 9, 10)), rng.standard_normal((4, 2, 3, 3))
    geometry = conv.conv_geometry(conv.batch_innermost(x), w.shape, (1, 1), (1, 1), (1, 1), 1)
    assert geometry.weight_tile_columns == 6 < 10 * 3  # two pixels of three images a product
    dy = rng.standard_normal((3, 4, 9, 10))
    wt = convnp.Tensor(w, requires_grad=True)
    F.conv2d(convnp.Tensor(x), wt, padding=1).backward(dy)
    assert_close(wt.grad, reference.conv2d_backward(dy, x, w, 1, 1)[1], 1e-10, 1e-10, "dw")
