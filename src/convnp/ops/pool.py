"""Pooling.  Max and average pooling loop over the kh*kw kernel offsets; each step is one vectorised
operation over a strided slab of every window at once (no loop over the batch or the pixels)."""
import numpy as np

from ..backend import get_array_module
from ..function import Function
from .windows import empty_in_order, memory_order, output_size, pad2d, window_slice, windows


class MaxPool2d(Function):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out),  y[n, c, i, j] = max over the (kh, kw) window

    Padding is -inf (it never wins); H_out = floor((H + 2 ph - kh) / sh) + 1.  The maximum is built
    offset by offset, y = max(y, window element k), so NaN propagates like PyTorch.  When a gradient
    is needed, ``winner`` records the index k of the FIRST maximum (a later element must be strictly
    greater to replace it), and backward routes each window's gradient to that ONE element, as PyTorch
    does: on ties, e.g. a constant window, the other elements get nothing.
    """

    def forward(self, x, kernel_size, stride, padding):
        xp = get_array_module(x)
        (kh, kw), (sh, sw) = kernel_size, stride
        h_out = output_size(x.shape[2], kh, sh, padding[0])
        w_out = output_size(x.shape[3], kw, sw, padding[1])
        view = windows(pad2d(x, padding, value=-xp.inf), kernel_size, stride, (1, 1), (h_out, w_out))
        y = view[..., 0, 0].copy(order="K")  # keeps x's layout (channels-last stays channels-last)
        track = self.needs_input_grad[0]
        winner = xp.zeros(y.shape, dtype=xp.uint8 if kh * kw < 256 else xp.int32) if track else None
        for k in range(1, kh * kw):
            candidate = view[..., k // kw, k % kw]
            if track:
                # strictly greater keeps the FIRST maximum; a NaN always takes over (PyTorch's rule)
                xp.copyto(winner, k, where=(candidate > y) | xp.isnan(candidate))
            xp.maximum(y, candidate, out=y)
        self.save_for_backward(winner)
        self.geometry = (x.shape, x.dtype, memory_order(x), kernel_size, stride, padding)
        return y

    def backward(self, dy):
        (winner,) = self.saved
        (n, c, h, w), dtype, order, (kh, kw), (sh, sw), (ph, pw) = self.geometry
        xp = get_array_module(dy)
        h_out, w_out = dy.shape[2:]
        dx_pad = empty_in_order((n, c, h + 2 * ph, w + 2 * pw), dtype, order, xp, fill=0)
        non_overlapping = sh >= kh and sw >= kw
        for k in range(kh * kw):
            rows, cols = window_slice(k // kw, 1, sh, h_out), window_slice(k % kw, 1, sw, w_out)
            if non_overlapping:  # each input element belongs to at most one window: write, no add
                xp.multiply(dy, winner == k, out=dx_pad[:, :, rows, cols])
            else:
                dx_pad[:, :, rows, cols] += dy * (winner == k)
        return dx_pad[:, :, ph:ph + h, pw:pw + w]


class AvgPool2d(Function):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out),  y = (sum of the zero-padded window) / (kh kw)

    PyTorch's default ``count_include_pad=True``: padded zeros count in the average.
    Backward: every element of a window receives dy / (kh kw).
    """

    def forward(self, x, kernel_size, stride, padding):
        (kh, kw), (sh, sw) = kernel_size, stride
        h_out = output_size(x.shape[2], kh, sh, padding[0])
        w_out = output_size(x.shape[3], kw, sw, padding[1])
        view = windows(pad2d(x, padding), kernel_size, stride, (1, 1), (h_out, w_out))
        y = view[..., 0, 0].copy(order="K")
        for k in range(1, kh * kw):
            y += view[..., k // kw, k % kw]
        y *= x.dtype.type(1.0 / (kh * kw))
        self.geometry = (x.shape, x.dtype, memory_order(x), kernel_size, stride, padding)
        return y

    def backward(self, dy):
        (n, c, h, w), dtype, order, (kh, kw), (sh, sw), (ph, pw) = self.geometry
        xp = get_array_module(dy)
        h_out, w_out = dy.shape[2:]
        share = dy * dy.dtype.type(1.0 / (kh * kw))
        dx_pad = empty_in_order((n, c, h + 2 * ph, w + 2 * pw), dtype, order, xp, fill=0)
        for k in range(kh * kw):
            rows, cols = window_slice(k // kw, 1, sh, h_out), window_slice(k % kw, 1, sw, w_out)
            dx_pad[:, :, rows, cols] += share
        return dx_pad[:, :, ph:ph + h, pw:pw + w]


def adaptive_bins(size, out):
    """The averaging matrix A: (out, size) of adaptive pooling along one axis, PyTorch's bins:
    output i averages input [floor(i size / out), ceil((i + 1) size / out))."""
    matrix = np.zeros((out, size))
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class AdaptiveAvgPool2d(Function):
    """x: (N, C, H, W) -> y: (N, C, out_h, out_w), each output the mean of its adaptive bin.

    A mean over a rectangle is a mean over rows of means over columns, so with the per-axis averaging
    matrices A_h: (out_h, H) and A_w: (out_w, W):  y = A_h x A_w^T  and  dx = A_h^T dy A_w.
    This covers every case (global pooling, evenly dividing and uneven bins) with two small GEMMs.
    """

    def forward(self, x, output_size):
        xp = get_array_module(x)
        self.a_h = xp.asarray(adaptive_bins(x.shape[2], output_size[0]), dtype=x.dtype)
        self.a_w = xp.asarray(adaptive_bins(x.shape[3], output_size[1]), dtype=x.dtype)
        return self.a_h @ x @ self.a_w.T

    def backward(self, dy):
        return self.a_h.T @ dy @ self.a_w
