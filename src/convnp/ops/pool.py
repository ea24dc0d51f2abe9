"""Pooling, computed separably: a max (or sum) over a kh x kw window is a max over kh rows of the
max over kw columns in each row.  So each pool is two 1-D passes, first along W, then along H, each a
short loop over kernel offsets with one vectorised operation per offset.  Along W the strided
slices are long runs of memory, which is why this is several times faster than working on all
kh*kw window elements at once (docs/performance.md).
With the batch innermost in memory (a network's activations) every window view is read in runs of
N numbers, so there max pooling over windows of up to 4 elements that tile the input (the usual 2x2)
works on the kh*kw views at once, in inference (``max_of_window_views``) and in training
(``max_pool_by_window_views``, one winner code a window): ``tiles_batch_innermost`` decides.
No loop touches the batch or the pixels."""
from typing import NamedTuple

import numpy as np

from ..backend import get_array_module, is_device_array
from ..function import Function
from ..parallel import parallel_map, pieces_for, split
from .windows import empty_in_order, in_order, memory_order, output_size, pad2d, small_ufunc_buffer, window_slice


def first_max(candidates, track, out, winner):
    """Elementwise maximum of equally shaped arrays into ``out``, and (if ``track``) the index of the
    FIRST maximum into ``winner``: a later candidate must be strictly greater to take over, so ties go
    to the earliest.  NaN propagates to the maximum, and the index of a NaN result points at the LAST
    NaN candidate (PyTorch's rule: a NaN always takes over); that is fixed up after the loop, only if
    NaN occurred."""
    if not track:
        maximum_of(candidates, out)
        return
    xp = get_array_module(out)
    first, second = candidates[0], candidates[1] if len(candidates) > 1 else candidates[0]
    xp.greater(second, first, out=winner)  # the second candidate wins where it is strictly greater
    xp.maximum(first, second, out=out)
    for k, candidate in enumerate(candidates[2:], start=2):
        # where candidate > out, the winner becomes k; k grows with the loop, so that is a maximum
        # with k * (candidate > out): plain arithmetic, far faster than masked assignment here
        xp.maximum(winner, (candidate > out).astype(winner.dtype) * winner.dtype.type(k), out=winner)
        xp.maximum(out, candidate, out=out)
    if xp.isnan(out).any():
        for k, candidate in enumerate(candidates):
            xp.copyto(winner, k, where=xp.isnan(candidate))


def max_of_window_views(x, kernel, stride, out_size):
    """x: (N, C, H, W), unpadded -> y: (N, C, H_out, W_out) in x's memory layout, the elementwise maximum
    of the kh*kw strided views x[..., u::sh, v::sw] (kh*kw - 1 ``np.maximum`` calls, NaN propagating
    as in ``first_max``), in slices of channels on convnp's threads.  For inference (no winners to
    keep): with one image the separable passes' row buffer and bookkeeping cost more than the work
    (LeNet-5's two poolings at batch 1: 12.3 and 11.7 us that way, 5.3 and 4.6 this way), and for
    2x2 windows the row buffer's extra pass costs more than the views' (batch 512: 736 and 225 us
    that way, 597 and 143 on one thread this way; docs/performance.md, 2026-12-03)."""
    c = x.shape[1]
    pieces = 1 if x.shape[0] == 1 else pieces_for(x.size, c, streaming=True)
    if pieces == 1:  # one image, or a small batch: one thread
        return maximum_of(window_views(x, slice(None), kernel, stride, out_size))
    y = np.empty_like(x[:, :, :out_size[0], :out_size[1]])  # empty_like keeps x's memory layout
    parallel_map(lambda part: maximum_of(window_views(x, part, kernel, stride, out_size), y[:, part]),
                 split(c, pieces))
    return y


def window_views(x, channels, kernel, stride, out_size):
    """x: (N, C, H, W), unpadded -> the kh*kw strided views x[:, channels, u::sh, v::sw] of windows
    with no padding, each (N, channels, H_out, W_out), in row-major order of the offset (u, v)."""
    (kh, kw), (sh, sw), (h_out, w_out) = kernel, stride, out_size
    return [x[:, channels, window_slice(u, 1, sh, h_out), window_slice(v, 1, sw, w_out)]
            for u in range(kh) for v in range(kw)]


def max_pool_by_window_views(x, kernel, out_size):
    """x: (N, C, H, W), unpadded, batch innermost in memory; windows that tile x (stride == kernel)
    -> (y, winner): y: (N, C, H_out, W_out) in x's memory layout, and winner (uint8, y's shape) the
    index u kw + v of each window's first maximum in row-major order (PyTorch's tie and NaN rules:
    ``first_max``).  Training's path for the usual 2x2 pooling of a network's (C, H, W, N) activations:
    with the batch innermost every view x[..., u::kh, v::kw] is read in runs of N numbers, so the
    separable passes' row buffer and their second set of winners cost more than they save (LeNet-5's
    first pooling at batch 128: forward 345 -> 260 us, backward 380 -> 215 us; docs/performance.md,
    2026-12-04)."""
    xp = get_array_module(x)
    y = xp.empty_like(x[:, :, :out_size[0], :out_size[1]])  # empty_like keeps x's memory layout
    winner = xp.empty_like(y, dtype=np.uint8)

    def pool(channels):  # channels are independent: slices of them run on parallel threads
        with small_ufunc_buffer():  # views of runs of N numbers: buffers that stay in L1
            first_max(window_views(x, channels, kernel, kernel, out_size), True, y[:, channels], winner[:, channels])

    parallel_map(pool, split(x.shape[1], pieces_for(x.size, x.shape[1], streaming=True)))
    return y, winner


def route_to_window_views(dy, winner, dx, kernel):
    """The backward of ``max_pool_by_window_views``: dy, winner: (N, C, H_out, W_out) -> dx: (N, C, H, W)
    filled, each window's gradient at its winner and zeros elsewhere (rows and columns that no window
    covers included): kh*kw products ``dy * (winner == k)`` written straight into their strided views,
    in slices of channels on convnp's threads."""
    (kh, kw), (h_out, w_out) = kernel, dy.shape[2:]
    xp = get_array_module(dx)

    def route(channels):
        with small_ufunc_buffer():  # as in max_pool_by_window_views
            for k, view in enumerate(window_views(dx, channels, kernel, kernel, (h_out, w_out))):
                xp.multiply(dy[:, channels], winner[:, channels] == k, out=view)
        dx[:, channels, kh * h_out:] = 0  # rows and columns that no window reached
        dx[:, channels, :, kw * w_out:] = 0

    parallel_map(route, split(dx.shape[1], pieces_for(dx.size, dx.shape[1], streaming=True)))
    return dx


def maximum_of(views, out=None):
    """The elementwise maximum of equally shaped arrays (NaN propagating), into ``out`` (None: a new
    array in the views' memory layout): ``first_max`` when no winner is tracked."""
    xp = get_array_module(views[0])
    if len(views) == 1:
        return views[0].copy(order="K") if out is None else xp.copyto(out, views[0])
    out = xp.maximum(views[0], views[1], out=out)
    for view in views[2:]:
        xp.maximum(out, view, out=out)
    return out


def tiles_batch_innermost(x, kernel, stride, padding):
    """Whether training's max pooling runs as ``max_pool_by_window_views``: windows of at most 4
    elements that tile x (stride == kernel, no padding), x on the CPU with the batch innermost in
    memory (a network's activations).  In other layouts the views' runs are single numbers, and the
    separable passes, which read whole rows, are faster."""
    return (stride == kernel and padding == (0, 0) and kernel[0] * kernel[1] <= 4 and not is_device_array(x)
            and x.strides[0] == x.itemsize)


class PoolGeometry(NamedTuple):
    """What a pooling forward keeps for its backward, by name."""
    x_shape: tuple  # (N, C, H, W)
    dtype: object  # x's dtype: the input gradient's
    order: tuple  # x's memory order: the input gradient's
    kernel: tuple  # (kh, kw)
    stride: tuple  # (sh, sw)
    padding: tuple  # (ph, pw)


class MaxPool2d(Function):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out),  y[n, c, i, j] = max over the (kh, kw) window

    H_out = floor((H + 2 ph - kh) / sh) + 1; padding is -inf, so it never wins.
    Forward, separably:  row_max[., h, j] = max_v x_pad[., h, j sw + v]        (kept: which v won)
                         y[., i, j]       = max_u row_max[., i sh + u, j]      (kept: which u won)
    The winner of a window is the first maximum in row-major order, as in PyTorch (ties go to the
    upper row, then to the left column).  Backward routes each window's gradient to that ONE
    element, undoing the two passes in reverse order; on ties the other elements get nothing.
    Windows that tile a batch-innermost input take ``max_pool_by_window_views`` instead (the same
    numbers and winners, one pass less each way and no row buffer).
    """

    def forward(self, x, kernel_size, stride, padding):
        (kh, kw), (sh, sw) = kernel_size, stride
        xp = get_array_module(x)
        n, c, h, _ = x.shape
        h_out = output_size(h, kh, sh, padding[0])
        w_out = output_size(x.shape[3], kw, sw, padding[1])
        track = self.needs_input_grad[0]
        if not track and padding == (0, 0) and (n == 1 or kh * kw <= 4) and not is_device_array(x):
            return max_of_window_views(x, kernel_size, stride, (h_out, w_out))  # inference: see its docstring
        if track and tiles_batch_innermost(x, kernel_size, stride, padding):
            y, winner = max_pool_by_window_views(x, kernel_size, (h_out, w_out))  # see its docstring
            self.save_for_backward(winner)
            self.geometry = PoolGeometry(x.shape, x.dtype, memory_order(x), kernel_size, stride, padding)
            return y
        x_pad = pad2d(x, padding, value=-np.inf)
        index_type = np.uint8 if max(kh, kw) < 256 else np.int32
        row_cut, column_cut = window_slice(0, 1, sh, h_out), window_slice(0, 1, sw, w_out)
        y = xp.empty_like(x_pad[:, :, row_cut, column_cut])  # empty_like keeps x's memory layout
        column_winner = xp.empty_like(x_pad[:, :, :, column_cut], dtype=index_type) if track else None
        row_winner = xp.empty_like(y, dtype=index_type) if track else None

        def pool(channels):  # channels are independent: slices of them run on parallel threads
            part = (slice(None), channels)
            x_part = x_pad[part]
            row_max = xp.empty_like(x_part[:, :, :, column_cut])
            first_max([x_part[:, :, :, window_slice(v, 1, sw, w_out)] for v in range(kw)], track,
                      row_max, column_winner[part] if track else None)
            first_max([row_max[:, :, window_slice(u, 1, sh, h_out)] for u in range(kh)], track,
                      y[part], row_winner[part] if track else None)

        parallel_map(pool, split(c, 1 if is_device_array(x) else pieces_for(x_pad.size, c, streaming=True)))
        self.save_for_backward(row_winner, column_winner)
        if track:
            self.geometry = PoolGeometry(x.shape, x.dtype, memory_order(x), kernel_size, stride, padding)
        return y

    def backward(self, dy):
        geo = self.geometry
        (n, c, h, w), dtype, order = geo.x_shape, geo.dtype, geo.order
        (kh, kw), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
        xp = get_array_module(dy)
        dy = in_order(dy, order)
        dx_pad = empty_in_order((n, c, h + 2 * ph, w + 2 * pw), dtype, order, xp)
        if len(self.saved) == 1:  # forward ran max_pool_by_window_views
            return route_to_window_views(dy, self.saved[0], dx_pad, geo.kernel)
        row_winner, column_winner = self.saved
        h_out, w_out = dy.shape[2:]

        def route(channels):  # slices of channels run on parallel threads
            part = (slice(None), channels)
            d_row_max = empty_in_order((n, channels.stop - channels.start, h + 2 * ph, w_out), dtype, order, xp)
            undo_first_max(dy[part], row_winner[part], d_row_max, 2, kh, sh)
            undo_first_max(d_row_max, column_winner[part], dx_pad[part], 3, kw, sw)

        parallel_map(route, split(c, 1 if is_device_array(dy) else pieces_for(dx_pad.size, c, streaming=True)))
        return dx_pad[:, :, ph:ph + h, pw:pw + w]


def undo_first_max(dy, winner, dx, axis, kernel, stride):
    """The backward of one pass of ``first_max`` along ``axis`` (2: rows, 3: columns): window i's
    gradient dy[..., i, ...] goes to position i * stride + winner[..., i, ...] of dx along ``axis``.

    Windows that do not overlap (stride == kernel, as in the usual 2x2 pooling) write each position of
    dx at most once, so each kernel offset's share is written straight into its strided slice with no
    zero fill and no ``+=``; overlapping windows add up their shares into a zeroed dx.
    """
    xp = get_array_module(dx)
    count = dy.shape[axis]

    def along(s):  # an index that selects ``s`` along ``axis``
        return (slice(None),) * axis + (s,)

    if stride == kernel:
        for k in range(kernel):
            xp.multiply(dy, winner == k, out=dx[along(window_slice(k, 1, stride, count))])
        dx[along(slice(kernel * count, None))] = 0  # rows or columns that no window reached
        return
    dx[...] = 0
    for k in range(kernel):
        dx[along(window_slice(k, 1, stride, count))] += dy * (winner == k)


class AvgPool2d(Function):
    """x: (N, C, H, W) -> y: (N, C, H_out, W_out),  y = (sum of the zero-padded window) / (kh kw)

    PyTorch's default ``count_include_pad=True``: padded zeros count in the average.  Computed
    separably like max pooling (row sums along W, then along H).  Backward: every element of a window
    receives dy / (kh kw), spread back along H, then along W.
    """

    def forward(self, x, kernel_size, stride, padding):
        (kh, kw), (sh, sw) = kernel_size, stride
        h_out = output_size(x.shape[2], kh, sh, padding[0])
        w_out = output_size(x.shape[3], kw, sw, padding[1])
        x_pad = pad2d(x, padding)
        row_sum = x_pad[:, :, :, window_slice(0, 1, sw, w_out)].copy(order="K")
        for v in range(1, kw):
            row_sum += x_pad[:, :, :, window_slice(v, 1, sw, w_out)]
        y = row_sum[:, :, window_slice(0, 1, sh, h_out)].copy(order="K")
        for u in range(1, kh):
            y += row_sum[:, :, window_slice(u, 1, sh, h_out)]
        y *= x.dtype.type(1.0 / (kh * kw))
        self.geometry = PoolGeometry(x.shape, x.dtype, memory_order(x), kernel_size, stride, padding)
        return y

    def backward(self, dy):
        geo = self.geometry
        (n, c, h, w), dtype, order = geo.x_shape, geo.dtype, geo.order
        (kh, kw), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
        xp = get_array_module(dy)
        h_out, w_out = dy.shape[2:]
        share = dy * dy.dtype.type(1.0 / (kh * kw))
        d_row_sum = empty_in_order((n, c, h + 2 * ph, w_out), dtype, order, xp, fill=0)
        for u in range(kh):
            d_row_sum[:, :, window_slice(u, 1, sh, h_out)] += share
        dx_pad = empty_in_order((n, c, h + 2 * ph, w + 2 * pw), dtype, order, xp, fill=0)
        for v in range(kw):
            dx_pad[:, :, :, window_slice(v, 1, sw, w_out)] += d_row_sum
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
        a_h = xp.asarray(adaptive_bins(x.shape[2], output_size[0]), dtype=x.dtype)
        a_w = xp.asarray(adaptive_bins(x.shape[3], output_size[1]), dtype=x.dtype)
        self.save_for_backward(a_h, a_w)
        return a_h @ x @ a_w.T

    def backward(self, dy):
        a_h, a_w = self.saved
        return a_h.T @ dy @ a_w
