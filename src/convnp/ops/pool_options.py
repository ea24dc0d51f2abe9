"""Pooling with the options of ``torch.nn.functional`` beyond the common case: dilation, ceil_mode and
return_indices for max pooling; ceil_mode, count_include_pad=False and divisor_override for average
pooling; adaptive max pooling.  ``convnp.functional`` uses the fast ops of ``pool.py`` when none of
these options is set, and these otherwise.

Both window ops work on the strided view of every window (``windows``): forward reduces its kh*kw
axis, backward adds each kernel offset's share back with one strided ``+=`` per offset.
"""
import numpy as np

from ..backend import get_array_module
from ..function import Function
from .windows import window_slice, windows


def pooled_size(size, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's output length: floor (or ceil) of (size + 2p - d(k-1) - 1) / s, plus 1; with ceil_mode
    the last window must start inside the input or the left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _padded(x, padding, out_size, kernel, stride, dilation, value):
    """x padded by ``padding`` on both sides, plus whatever ceil_mode's last windows need at the end."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    need = [(o - 1) * s + d * (k - 1) + 1 for o, k, s, d in zip(out_size, kernel, stride, dilation)]
    total = [max(nd, size + 2 * p) for nd, size, p in zip(need, (h, w), padding)]
    x_pad = xp.full((n, c, total[0], total[1]), value, dtype=x.dtype)
    x_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w] = x
    return x_pad


class MaxPool2dWindows(Function):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out), the maximum of each (dilated) window.
    ``indices_into``, a list, receives the flat index h * W + w of each maximum in x (what
    ``return_indices`` returns).  Ties go to the first maximum in row-major order; dx routes each dy
    to that one element."""

    def forward(self, x, kernel_size, stride, padding, dilation, ceil_mode, indices_into=None):
        h_out = pooled_size(x.shape[2], kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
        w_out = pooled_size(x.shape[3], kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
        x_pad = _padded(x, padding, (h_out, w_out), kernel_size, stride, dilation, -np.inf)
        view = windows(x_pad, kernel_size, stride, dilation, (h_out, w_out))
        flat = view.reshape(view.shape[:4] + (-1,))
        winner = flat.argmax(axis=-1)
        y = get_array_module(x).take_along_axis(flat, winner[..., None], axis=-1)[..., 0]
        kh, kw = kernel_size
        u, v = winner // kw, winner % kw
        rows = np.arange(h_out)[:, None] * stride[0] + u * dilation[0] - padding[0]
        columns = np.arange(w_out)[None, :] * stride[1] + v * dilation[1] - padding[1]
        if indices_into is not None:
            indices_into.append((rows * x.shape[3] + columns).astype(np.int64))
        self.geometry = (x.shape, x_pad.shape, kernel_size, stride, padding, dilation)
        self.save_for_backward(winner)
        return y

    def backward(self, dy):
        (n, c, h, w), padded_shape, (kh, kw), stride, padding, dilation = self.geometry
        (winner,) = self.saved
        xp = get_array_module(dy)
        h_out, w_out = dy.shape[2:]
        dx_pad = xp.zeros(padded_shape, dtype=dy.dtype)
        for u in range(kh):
            for v in range(kw):
                dx_pad[:, :, window_slice(u, dilation[0], stride[0], h_out),
                       window_slice(v, dilation[1], stride[1], w_out)] += dy * (winner == u * kw + v)
        return dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]


class AvgPool2dWindows(Function):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out), each window's sum divided by: ``divisor_override``
    if given, else the number of its positions inside the zero-padded input (count_include_pad=True)
    or inside the input itself (False).  Windows that ceil_mode adds past the padding count only
    their positions inside it, as in PyTorch.  dx: each window's dy / divisor to its positions."""

    def forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        xp = get_array_module(x)
        dilation = (1, 1)
        h_out = pooled_size(x.shape[2], kernel_size[0], stride[0], padding[0], 1, ceil_mode)
        w_out = pooled_size(x.shape[3], kernel_size[1], stride[1], padding[1], 1, ceil_mode)
        x_pad = _padded(x, padding, (h_out, w_out), kernel_size, stride, dilation, 0)
        sums = windows(x_pad, kernel_size, stride, dilation, (h_out, w_out)).sum(axis=(4, 5))
        if divisor_override:
            divisor = xp.asarray(float(divisor_override), dtype=x.dtype)
        else:
            counted = xp.zeros((1, 1) + x_pad.shape[2:], dtype=x.dtype)
            (ph, pw), (h, w) = padding, x.shape[2:]
            if count_include_pad:
                counted[:, :, :h + 2 * ph, :w + 2 * pw] = 1
            else:
                counted[:, :, ph:ph + h, pw:pw + w] = 1
            divisor = windows(counted, kernel_size, stride, dilation, (h_out, w_out)).sum(axis=(4, 5))
        self.save_for_backward(divisor)
        self.geometry = (x.shape, x_pad.shape, kernel_size, stride, padding)
        return (sums / divisor).astype(x.dtype, copy=False)

    def backward(self, dy):
        (n, c, h, w), padded_shape, (kh, kw), stride, padding = self.geometry
        xp = get_array_module(dy)
        h_out, w_out = dy.shape[2:]
        (divisor,) = self.saved
        share = (dy / divisor).astype(dy.dtype, copy=False)
        dx_pad = xp.zeros(padded_shape, dtype=dy.dtype)
        for u in range(kh):
            for v in range(kw):
                dx_pad[:, :, window_slice(u, 1, stride[0], h_out), window_slice(v, 1, stride[1], w_out)] += share
        return dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]


def adaptive_bounds(size, out):
    """PyTorch's adaptive bins along one axis: bin i is [floor(i size / out), ceil((i + 1) size / out))."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


class AdaptiveMaxPool2d(Function):
    """x: (N, C, H, W) -> y: (N, C, out_h, out_w), the maximum of each adaptive bin; ``indices_into``
    (a list) receives the flat h * W + w index of each maximum.  A loop over the out_h * out_w bins (outputs are small:
    1x1 to 7x7 in practice), each one vectorised over N and C; dx goes to each bin's first maximum."""

    def forward(self, x, output_size, indices_into=None):
        xp = get_array_module(x)
        n, c, h, w = x.shape
        out_h, out_w = output_size
        y = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
        indices = xp.empty((n, c, out_h, out_w), dtype=np.int64)
        for i, (top, bottom) in enumerate(adaptive_bounds(h, out_h)):
            for j, (left, right) in enumerate(adaptive_bounds(w, out_w)):
                block = x[:, :, top:bottom, left:right].reshape(n, c, -1)
                best = block.argmax(axis=-1)
                y[:, :, i, j] = xp.take_along_axis(block, best[..., None], axis=-1)[..., 0]
                indices[:, :, i, j] = (top + best // (right - left)) * w + left + best % (right - left)
        self.shape = x.shape
        self.save_for_backward(indices)
        if indices_into is not None:
            indices_into.append(indices)
        return y

    def backward(self, dy):
        (indices,) = self.saved
        xp = get_array_module(dy)
        n, c, h, w = self.shape
        dx = xp.zeros((n, c, h * w), dtype=dy.dtype)
        xp.add.at(dx, (xp.arange(n)[:, None, None], xp.arange(c)[None, :, None], indices.reshape(n, c, -1)),
                  dy.reshape(n, c, -1))
        return dx.reshape(self.shape)
