"""Naive loop versions of the layers, written the way tutorials (CS231n) write them.

This file is for reading and for testing: every function is a direct transcription of the
definition, with plain Python loops over the batch, the filters and the output pixels.  It is the
oracle the fast ops in ``convnp.ops`` are tested against, and never runs on a hot path.

Convolution is a ladder of three rungs, each runnable and tested against the one before:

1. ``conv2d_forward`` / ``conv2d_backward``: the six nested loops of the definition;
2. ``conv2d_forward_im2col`` / ``conv2d_backward_im2col``: ``im2col`` copies every window into a
   column, so the convolution is ONE matrix product (and its backward two, plus ``col2im``);
3. ``convnp.ops.conv.Conv2d``: rung 2 in batch-innermost memory, cut into chunks and tiles and run
   on several threads.

Beside the ladder, ``conv2d_forward_winograd`` is the same 3x3 stride-1 convolution by Winograd's
minimal filtering, a tile at a time: the plain version of ``convnp.ops.winograd``.

Conventions (PyTorch's): layout NCHW, convolution weights OIHW ``(F, C // groups, KH, KW)``,
linear weights ``(out, in)``.  ``stride``, ``padding`` and ``dilation`` take an int or an
``(h, w)`` pair.  Every output size is

    H_out = floor((H + 2p - d(k - 1) - 1) / s) + 1        (and the same for W)

which is the number of positions a kernel spanning ``d(k - 1) + 1`` pixels can take, stepping by
``s``, inside the padded input of size ``H + 2p``.
"""
import numpy as np


def _pair(value, name):
    """An int or an (h, w) pair -> a (h, w) tuple of ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _output_size(size, kernel, stride, padding, dilation, name, axis):
    """floor((size + 2p - d(k - 1) - 1) / s) + 1, with an error saying what is wrong when < 1."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * padding - span) // stride + 1
    if out < 1:
        raise ValueError(f"{name}: input {axis}={size} with padding {padding} is smaller than the "
                         f"kernel's extent {span} (kernel {kernel}, dilation {dilation}); "
                         f"the output {axis} would be {out}")
    return out


def _pad(x, ph, pw, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


# --- convolution ---------------------------------------------------------------------------------

def _conv2d_geometry(x, w, stride, padding, dilation, groups, name):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"{name}: expected x (N, C, H, W) and w (F, C // groups, KH, KW), "
                         f"got shapes {x.shape} and {w.shape}")
    N, C, H, W = x.shape
    F, C_per_group, KH, KW = w.shape
    if groups < 1 or C % groups or F % groups:
        raise ValueError(f"{name}: groups={groups} must divide both in_channels={C} and out_channels={F}")
    if C_per_group * groups != C:
        raise ValueError(f"{name}: weight {w.shape} expects {C_per_group * groups} input channels "
                         f"(C // groups = {C_per_group}, groups = {groups}), x has {C}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    H_out = _output_size(H, KH, sh, ph, dh, name, "H")
    W_out = _output_size(W, KW, sw, pw, dw, name, "W")
    return (sh, sw), (ph, pw), (dh, dw), H_out, W_out


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """x: (N, C, H, W), w: (F, C // groups, KH, KW), b: (F,) or None -> y: (N, F, H_out, W_out).

        y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x_pad[n, g*Cg + c, i*sh + u*dh, j*sw + v*dw]

    where x_pad is x with ``padding`` zeros on each side, Cg = C // groups input channels per group
    and g = f // (F // groups) is the group filter f belongs to.  (Cross-correlation, like every
    deep-learning "convolution".)  H_out = floor((H + 2p - d(k - 1) - 1) / s) + 1.
    """
    (sh, sw), (ph, pw), (dh, dw), H_out, W_out = _conv2d_geometry(
        x, w, stride, padding, dilation, groups, "conv2d_forward")
    N, C = x.shape[:2]
    F, C_per_group, KH, KW = w.shape
    F_per_group = F // groups
    x_pad = _pad(x, ph, pw)
    y = np.zeros((N, F, H_out, W_out), dtype=np.result_type(x, w))
    for n in range(N):
        for f in range(F):
            c0 = (f // F_per_group) * C_per_group
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, c0:c0 + C_per_group,
                                   i * sh:i * sh + dh * (KH - 1) + 1:dh,
                                   j * sw:j * sw + dw * (KW - 1) + 1:dw]
                    y[n, f, i, j] = np.sum(window * w[f])
            if b is not None:
                y[n, f] += b[f]
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """dy: (N, F, H_out, W_out), x: (N, C, H, W), w: (F, C // groups, KH, KW) -> (dx, dw, db).

    Each output pixel y[n, f, i, j] was a dot product of w[f] with one window of x_pad, so it sends
    dy[n, f, i, j] * w[f] back to that window and dy[n, f, i, j] * window to w[f]:

        dx_pad[n, window] += dy[n, f, i, j] * w[f]      dw[f] += dy[n, f, i, j] * window
        db[f] = sum_{n, i, j} dy[n, f, i, j]

    and dx is dx_pad with the padding cut off.  Shapes: dx like x, dw like w, db: (F,).
    """
    (sh, sw), (ph, pw), (dh, dw_), H_out, W_out = _conv2d_geometry(
        x, w, stride, padding, dilation, groups, "conv2d_backward")
    N, C, H, W = x.shape
    F, C_per_group, KH, KW = w.shape
    if dy.shape != (N, F, H_out, W_out):
        raise ValueError(f"conv2d_backward: dy has shape {dy.shape}, expected {(N, F, H_out, W_out)}")
    F_per_group = F // groups
    x_pad = _pad(x, ph, pw)
    dx_pad = np.zeros_like(x_pad, dtype=np.result_type(dy, w))
    dw = np.zeros_like(w, dtype=np.result_type(dy, x))
    for n in range(N):
        for f in range(F):
            c0 = (f // F_per_group) * C_per_group
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * sh, i * sh + dh * (KH - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw_ * (KW - 1) + 1, dw_)
                    window = x_pad[n, c0:c0 + C_per_group, rows, cols]
                    dw[f] += dy[n, f, i, j] * window
                    dx_pad[n, c0:c0 + C_per_group, rows, cols] += dy[n, f, i, j] * w[f]
    dx = dx_pad[:, :, ph:ph + H, pw:pw + W]
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


# --- convolution, rung 2: im2col + one GEMM ------------------------------------------------------
# The same sum as the six loops above, written as matrix multiplication the way CS231n's
# ``conv_forward_im2col`` and Chainer's ``utils/conv.py`` do, in plain NCHW.  ``convnp.ops.conv``
# is this rung plus a memory layout, chunks, tiles and threads.

def _window_rows(offset, dilation, stride, count):
    """The positions kernel offset ``offset`` reads for outputs 0 .. count-1: i*stride + offset*dilation."""
    start = offset * dilation
    return slice(start, start + stride * (count - 1) + 1, stride)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """x: (N, C, H, W) -> cols: (C*kh*kw, N*H_out*W_out), one row per (channel, kernel offset) and one
    column per output pixel:

        cols[(c, u, v), (n, i, j)] = x_pad[n, c, i*sh + u*dh, j*sw + v*dw]

    so a convolution is ``w.reshape(F, -1) @ cols``.  A loop over the kh*kw kernel offsets, each one
    strided slice of the padded input (no loop over pixels).
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(a, name) for a, name in (
        (kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"), (dilation, "dilation")))
    N, C, H, W = x.shape
    H_out = _output_size(H, kh, sh, ph, dh, "im2col", "H")
    W_out = _output_size(W, kw, sw, pw, dw, "im2col", "W")
    x_pad = _pad(x, ph, pw)
    cols = np.empty((C, kh, kw, N, H_out, W_out), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            patch = x_pad[:, :, _window_rows(u, dh, sh, H_out), _window_rows(v, dw, sw, W_out)]
            cols[:, u, v] = patch.transpose(1, 0, 2, 3)  # (N, C, H_out, W_out) -> (C, N, H_out, W_out)
    return cols.reshape(C * kh * kw, N * H_out * W_out)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """cols: (C*kh*kw, N*H_out*W_out) -> dx: x_shape = (N, C, H, W), the adjoint of ``im2col``: every
    column entry is added back to the input position it was read from, so positions that several
    windows share add up.  A loop over the kh*kw kernel offsets, each one strided ``+=``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(a, name) for a, name in (
        (kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"), (dilation, "dilation")))
    N, C, H, W = x_shape
    H_out = _output_size(H, kh, sh, ph, dh, "col2im", "H")
    W_out = _output_size(W, kw, sw, pw, dw, "col2im", "W")
    if cols.shape != (C * kh * kw, N * H_out * W_out):
        raise ValueError(f"col2im: cols has shape {cols.shape}, expected {(C * kh * kw, N * H_out * W_out)} "
                         f"for x of shape {tuple(x_shape)}")
    cols = cols.reshape(C, kh, kw, N, H_out, W_out)
    dx_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            dx_pad[:, :, _window_rows(u, dh, sh, H_out), _window_rows(v, dw, sw, W_out)] += \
                cols[:, u, v].transpose(1, 0, 2, 3)
    return dx_pad[:, :, ph:ph + H, pw:pw + W]


def conv2d_forward_im2col(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """x: (N, C, H, W), w: (F, C // groups, KH, KW), b: (F,) or None -> y: (N, F, H_out, W_out).

        cols = im2col(x)                       (C*KH*KW, N*H_out*W_out)
        y    = w_mat @ cols + b                w_mat = w.reshape(F, C*KH*KW): one filter per row

    With groups, the rows of cols (channel-major) and of w_mat split into G blocks: G GEMMs.
    """
    (sh, sw), (ph, pw), (dh, dw), H_out, W_out = _conv2d_geometry(
        x, w, stride, padding, dilation, groups, "conv2d_forward_im2col")
    N = x.shape[0]
    F, C_per_group, KH, KW = w.shape
    cols = im2col(x, (KH, KW), (sh, sw), (ph, pw), (dh, dw)).reshape(groups, C_per_group * KH * KW, -1)
    w_mat = w.reshape(groups, F // groups, C_per_group * KH * KW)
    y = (w_mat @ cols).reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b.reshape(1, F, 1, 1)
    return y


def conv2d_backward_im2col(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """dy: (N, F, H_out, W_out), x: (N, C, H, W), w: (F, C // groups, KH, KW) -> (dx, dw, db).

    The forward was one GEMM y_mat = w_mat @ cols, so its backward is two:

        dw    = dy_mat @ cols.T       (F, C*KH*KW), reshaped like w
        dcols = w_mat.T @ dy_mat      (C*KH*KW, N*H_out*W_out), then dx = col2im(dcols)
        db    = dy summed over N, H_out, W_out

    with dy_mat = dy as (F, N*H_out*W_out) (per group, like the forward).
    """
    (sh, sw), (ph, pw), (dh, dw_), H_out, W_out = _conv2d_geometry(
        x, w, stride, padding, dilation, groups, "conv2d_backward_im2col")
    N = x.shape[0]
    F, C_per_group, KH, KW = w.shape
    if dy.shape != (N, F, H_out, W_out):
        raise ValueError(f"conv2d_backward_im2col: dy has shape {dy.shape}, expected {(N, F, H_out, W_out)}")
    geometry = ((KH, KW), (sh, sw), (ph, pw), (dh, dw_))
    cols = im2col(x, *geometry).reshape(groups, C_per_group * KH * KW, -1)
    w_mat = w.reshape(groups, F // groups, C_per_group * KH * KW)
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(groups, F // groups, N * H_out * W_out)
    dw = (dy_mat @ cols.transpose(0, 2, 1)).reshape(w.shape)
    dcols = w_mat.transpose(0, 2, 1) @ dy_mat
    dx = col2im(dcols.reshape(-1, N * H_out * W_out), x.shape, *geometry)
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


def conv2d_input_gradient_as_convolution(dy, w, padding=0, dilation=1, groups=1):
    """dy: (N, F, H_out, W_out), w: (F, C // groups, KH, KW) of a STRIDE-1 convolution -> dx: (N, C, H, W).

    With stride 1, input pixel (i, j) met w[f, c, u, v] at output pixel (i + p - u d, j + p - v d), so

        dx[n, c] = sum_{f, u, v} dy_pad[n, f, i + d (KH - 1 - u), j + d (KW - 1 - v)] w[f, c, u, v]

    with dy padded by d (k - 1) - p: a convolution of dy with the filters flipped in space and their
    F and C axes swapped (per group), which is the transposed convolution of deep-learning libraries.
    ``convnp.ops.conv`` computes dx this way for 3x3 stride-1 layers.
    """
    (ph, pw), (dh, dw) = _pair(padding, "padding"), _pair(dilation, "dilation")
    F, C_per_group, KH, KW = w.shape
    flipped = w[:, :, ::-1, ::-1].reshape(groups, F // groups, C_per_group, KH, KW).transpose(0, 2, 1, 3, 4)
    w_transposed = flipped.reshape(groups * C_per_group, F // groups, KH, KW)
    return conv2d_forward_im2col(dy, w_transposed, None, 1, (dh * (KH - 1) - ph, dw * (KW - 1) - pw), (dh, dw), groups)


def conv2d_forward_winograd(x, w, padding=0):
    """x: (N, C, H, W), w: (F, C, 3, 3) -> y: (N, F, H + 2p - 2, W + 2p - 2): a 3x3 stride-1 convolution
    by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016), one 4x4 output tile at a time:

        y_tile = AT ( sum_c (G w[f, c] G^T) * (BT d[c] BT^T) ) AT^T

    with d[c] the tile's 6x6 input patch and ``*`` elementwise: 36 multiplications per tile, channel
    and filter instead of the definition's 16 * 9.  The plain version of ``convnp.ops.winograd``."""
    from .ops.winograd import FILTER_TRANSFORM, INPUT_TRANSFORM, OUTPUT_TRANSFORM
    bt, g, at = (np.array(m, dtype=np.float64) for m in (INPUT_TRANSFORM, FILTER_TRANSFORM, OUTPUT_TRANSFORM))
    n, c, h, w_in = x.shape
    h_out, w_out = _output_size(h, 3, 1, padding, 1, "conv2d", "H"), _output_size(w_in, 3, 1, padding, 1, "conv2d", "W")
    tiles_h, tiles_w = -(-h_out // 4), -(-w_out // 4)  # a ragged last tile is computed whole, then cropped
    x_pad = np.zeros((n, c, 4 * tiles_h + 2, 4 * tiles_w + 2))
    x_pad[:, :, padding:padding + h, padding:padding + w_in] = x
    u = g @ w @ g.T  # (F, C, 6, 6): every filter transformed once
    y = np.zeros((n, w.shape[0], 4 * tiles_h, 4 * tiles_w))
    for i in range(tiles_h):
        for j in range(tiles_w):
            v = bt @ x_pad[:, :, 4 * i:4 * i + 6, 4 * j:4 * j + 6] @ bt.T  # (N, C, 6, 6): the patches, transformed
            products = np.einsum("fcab,ncab->nfab", u, v)  # the 36 products, summed over the channels
            y[:, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4] = at @ products @ at.T
    return y[:, :, :h_out, :w_out].astype(np.result_type(x, w))


# --- pooling -------------------------------------------------------------------------------------

def _pool_geometry(x, kernel_size, stride, padding, name):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected x (N, C, H, W), got shape {x.shape}")
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "stride")
    ph, pw = _pair(padding, "padding")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: padding {(ph, pw)} must be at most half the kernel size {(kh, kw)}")
    H_out = _output_size(x.shape[2], kh, sh, ph, 1, name, "H")
    W_out = _output_size(x.shape[3], kw, sw, pw, 1, name, "W")
    return (kh, kw), (sh, sw), (ph, pw), H_out, W_out


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out), the maximum of each window.

        y[n, c, i, j] = max_{u < kh, v < kw} x_pad[n, c, i*sh + u, j*sw + v]

    x_pad is x padded with -inf (padding never wins), ``stride`` defaults to ``kernel_size`` and
    H_out = floor((H + 2p - k) / s) + 1.
    """
    (kh, kw), (sh, sw), (ph, pw), H_out, W_out = _pool_geometry(
        x, kernel_size, stride, padding, "max_pool2d_forward")
    N, C = x.shape[:2]
    x_pad = _pad(x, ph, pw, value=-np.inf)
    y = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    y[n, c, i, j] = np.max(x_pad[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw])
    return y


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0):
    """dy: (N, C, H_out, W_out), x: (N, C, H, W) -> dx: (N, C, H, W).

    Each window's gradient goes to ONE element: the first maximum in row-major window order
    (``np.argmax``), which is what PyTorch's CPU kernel does; ties, e.g. a constant input, do not
    split the gradient.  Overlapping windows (stride < kernel) accumulate into dx.
    """
    (kh, kw), (sh, sw), (ph, pw), H_out, W_out = _pool_geometry(
        x, kernel_size, stride, padding, "max_pool2d_backward")
    N, C, H, W = x.shape
    x_pad = _pad(x, ph, pw, value=-np.inf)
    dx_pad = np.zeros(x_pad.shape, dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    u, v = np.unravel_index(np.argmax(window), window.shape)
                    dx_pad[n, c, i * sh + u, j * sw + v] += dy[n, c, i, j]
    return dx_pad[:, :, ph:ph + H, pw:pw + W]


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out), the mean of each window.

        y[n, c, i, j] = sum_{u < kh, v < kw} x_pad[n, c, i*sh + u, j*sw + v] / (kh * kw)

    x_pad is x padded with zeros, and the divisor is always kh * kw, padding included
    (PyTorch's default ``count_include_pad=True``).  H_out = floor((H + 2p - k) / s) + 1.
    """
    (kh, kw), (sh, sw), (ph, pw), H_out, W_out = _pool_geometry(
        x, kernel_size, stride, padding, "avg_pool2d_forward")
    N, C = x.shape[:2]
    x_pad = _pad(x, ph, pw)
    y = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    y[n, c, i, j] = np.sum(x_pad[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]) / (kh * kw)
    return y


def avg_pool2d_backward(dy, x, kernel_size, stride=None, padding=0):
    """dy: (N, C, H_out, W_out), x: (N, C, H, W) -> dx: (N, C, H, W).

    Every element of a window received 1 / (kh * kw) of it, so each gets dy / (kh * kw) back;
    overlapping windows accumulate.
    """
    (kh, kw), (sh, sw), (ph, pw), H_out, W_out = _pool_geometry(
        x, kernel_size, stride, padding, "avg_pool2d_backward")
    N, C, H, W = x.shape
    dx_pad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    dx_pad[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw] += dy[n, c, i, j] / (kh * kw)
    return dx_pad[:, :, ph:ph + H, pw:pw + W]


# --- elementwise and dense -----------------------------------------------------------------------

def relu_forward(x):
    """x: any shape -> y: same shape,  y = max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(dy, x):
    """dy, x: same shape -> dx = dy where x > 0, else 0 (the gradient at exactly 0 is 0, like PyTorch)."""
    return dy * (x > 0)


def linear_forward(x, w, b=None):
    """x: (N, ..., in), w: (out, in), b: (out,) or None -> y: (N, ..., out).

        y[n, o] = sum_k x[n, k] * w[o, k] + b[o]        i.e.  y = x @ w.T + b
    """
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear_forward: x has {x.shape[-1]} features (shape {x.shape}), "
                         f"weight {w.shape} expects {w.shape[1] if w.ndim == 2 else '?'}")
    y = x @ w.T
    if b is not None:
        y = y + b
    return y


def linear_backward(dy, x, w):
    """dy: (N, ..., out), x: (N, ..., in), w: (out, in) -> (dx, dw, db).

        dx = dy @ w          dw = dy^T @ x  (summed over every leading axis)      db = sum of dy
    """
    out_features, in_features = w.shape
    dx = dy @ w
    dw = dy.reshape(-1, out_features).T @ x.reshape(-1, in_features)
    db = dy.reshape(-1, out_features).sum(axis=0)
    return dx, dw, db
