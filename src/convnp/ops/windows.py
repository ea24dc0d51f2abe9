"""Shared helpers of the sliding-window ops (convolution and pooling): argument pairs, the output-size
formula, padding, the strided *view* of every window that im2col and pooling are built on, and the
ufunc buffer setting their strided ``+=`` run under."""
import contextlib
import operator

import numpy as np

from ..backend import get_array_module


def pair(value, name="argument"):
    """3 -> (3, 3); (3, 5) -> (3, 5).  Each must be an integer (NumPy's included): (2.5, 2) or ("a", 2) is a
    TypeError naming the argument, not a silently truncated or a bare int() error."""
    if isinstance(value, int):
        return (value, value)
    try:
        a, b = value
        return operator.index(a), operator.index(b)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None


def output_size(size, kernel, stride, padding, dilation=1):
    """floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1"""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_int(value, name, where, minimum=1):
    """Raise a ValueError naming ``where`` and the argument unless ``value`` is an int >= ``minimum``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")


def check_window_args(kernel, stride, padding, dilation, where):
    """Raise a ValueError naming ``where`` unless kernel, stride and dilation (pairs) are >= 1 and
    padding >= 0.  Layers call it once, at construction; the functional surface once per call."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if min(sh, sw, dh, dw) < 1 or min(kh, kw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{where}: kernel, stride and dilation must be >= 1 and padding >= 0, got "
                         f"kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation}")


def check_pool_args(kernel, stride, padding, where):
    """``check_window_args`` for pooling, which also needs padding <= kernel // 2 (PyTorch's rule: a
    window must never lie wholly in the padding)."""
    check_window_args(kernel, stride, padding, (1, 1), where)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{where}: padding {padding} must be at most half the kernel size {kernel}")


def check_window_input(x_shape, kernel, stride, padding, dilation, where, channels=None):
    """Raise a ValueError naming ``where`` (a name, or a layer: formatted only on error) when x is not
    (N, C, H, W) or a window does not fit.  The arguments were checked by ``check_window_args``.

    Returns (H_out, W_out).
    """
    if len(x_shape) != 4:
        hint = " (for one image use x[None])" if len(x_shape) == 3 else ""
        raise ValueError(f"{where}: expected a 4-D input (N, C, H, W), got shape {tuple(x_shape)}{hint}")
    if channels is not None and x_shape[1] != channels:
        if x_shape[3] == channels:
            raise ValueError(f"{where}: expected {channels} channels in axis 1 (N, C, H, W), got shape "
                             f"{tuple(x_shape)}, which looks channels-last (N, H, W, C); convnp is NCHW like "
                             f"PyTorch: use x.permute(0, 3, 1, 2) (a NumPy array: x.transpose(0, 3, 1, 2))")
        raise ValueError(f"{where}: expected {channels} input channels (N, {channels}, H, W), "
                         f"got shape {tuple(x_shape)} with {x_shape[1]} channels")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    h, w = x_shape[2], x_shape[3]
    h_out, w_out = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"{where}: input {h}x{w} padded to {h + 2 * ph}x{w + 2 * pw} is smaller than the "
                         f"(dilated) kernel {dh * (kh - 1) + 1}x{dw * (kw - 1) + 1}: output would be "
                         f"{h_out}x{w_out}")
    return h_out, w_out


def memory_order(x):
    """The axes of ``x`` from outermost to innermost in memory: (0, 1, 2, 3) for NCHW, (0, 2, 3, 1)
    for NHWC, (1, 0, 2, 3) for the (C, N, H, W) memory that convolution returns."""
    strides = x.strides  # sorted largest first; reverse=True keeps ties in axis order, as -stride did
    return tuple(sorted(range(len(strides)), key=strides.__getitem__, reverse=True))


def stored_in_order(make, shape, order):
    """``make(stored_shape)``, an array made C-ordered, seen with axes ``shape``: its axes are stored in
    ``order`` (see ``memory_order``)."""
    inverse = [order.index(axis) for axis in range(len(shape))]
    return make(tuple(shape[axis] for axis in order)).transpose(inverse)


def empty_in_order(shape, dtype, order, xp, fill=None):
    """An array of ``shape`` whose axes are stored in ``order`` (see ``memory_order``), optionally
    filled.  Gradients are allocated like this so that they flow backward in the layout the forward
    pass used, with no transposing copies."""
    array = stored_in_order(lambda stored: xp.empty(stored, dtype=dtype), shape, order)
    if fill is not None:
        array[...] = fill
    return array


def in_order(x, order):
    """``x`` itself when its axes are stored in ``order``, else a copy stored that way.  A backward pass
    calls it on a gradient that arrives in another layout than its forward pass kept (after a
    flatten, the gradient is NCHW; pooling kept the (C, H, W, N) memory of a convolution): one copy,
    instead of every elementwise step mixing two layouts, which is several times slower
    (docs/performance.md)."""
    if memory_order(x) == tuple(order):
        return x
    return empty_in_order(x.shape, x.dtype, order, get_array_module(x), fill=x)


def pad2d(x, padding, value=0.0):
    """x: (N, C, H, W) -> (N, C, H + 2 ph, W + 2 pw), the border filled with ``value`` (same layout as x)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    padded = empty_in_order((n, c, h + 2 * ph, w + 2 * pw), x.dtype, memory_order(x), get_array_module(x))
    padded[:, :, ph:ph + h, pw:pw + w] = x
    padded[:, :, :ph] = value  # only the border is filled: one pass over the array, not two
    padded[:, :, ph + h:] = value
    padded[:, :, ph:ph + h, :pw] = value
    padded[:, :, ph:ph + h, pw + w:] = value
    return padded


def strided_view(array, shape, strides):
    """A read-only view of ``array``'s memory with the given shape and strides (bytes), like
    ``as_strided``.  For a C-contiguous NumPy array it is built as ``np.ndarray(buffer=array)``,
    which also checks that every index stays inside the array, in 1 us instead of as_strided's
    4.6 (batch-1 inference of LeNet-5 makes four: docs/performance.md, 2026-12-02)."""
    xp = get_array_module(array)
    if xp is np and array.flags.c_contiguous:
        view = np.ndarray(shape, array.dtype, buffer=array, strides=strides)
        view.flags.writeable = False
        return view
    read_only = {"writeable": False} if xp is np else {}  # CuPy's as_strided has no such flag
    return xp.lib.stride_tricks.as_strided(array, shape=shape, strides=strides, **read_only)


def windows(x_padded, kernel, stride, dilation, out_size):
    """x_padded: (N, C, Hp, Wp) -> a read-only VIEW (N, C, H_out, W_out, kh, kw), no copy:

        view[n, c, i, j, u, v] = x_padded[n, c, i*sh + u*dh, j*sw + v*dw]

    Built with ``strided_view`` from x's own strides, so it works for non-contiguous inputs too.  The
    shape is derived from the output-size formula, so every index stays inside x_padded.
    """
    (kh, kw), (sh, sw), (dh, dw), (h_out, w_out) = kernel, stride, dilation, out_size
    n, c = x_padded.shape[:2]
    s_n, s_c, s_h, s_w = x_padded.strides
    return strided_view(x_padded, (n, c, h_out, w_out, kh, kw), (s_n, s_c, s_h * sh, s_w * sw, s_h * dh, s_w * dw))


SMALL_BUFSIZE = 2048  # NumPy's ufunc buffer (elements) inside small_ufunc_buffer: see there


@contextlib.contextmanager
def small_ufunc_buffer():
    """Run the block's ufuncs with NumPy's ufunc buffer at SMALL_BUFSIZE elements instead of 8192.
    NumPy (2.3 and later) copies an operand whose contiguous runs are at most half its buffer into
    the buffer and back, even when no cast needs it, and three operands' 8192-element buffers do not
    fit a 48 KB L1 cache: col2im's ``+=`` of 1024-number runs took 2x as long as with no buffer
    (LeNet-5's conv2: 504 against 265 us), and the max pooling of a network's activations, whose
    views are runs of N numbers, 5-10% longer (docs/performance.md, 2026-12-04, second session).
    With a 2048-element buffer, runs of 1024 and more are iterated where they lie, and shorter runs
    and casts go through buffers that stay in L1.  The setting is NumPy's and per thread (a context
    variable), so each ``parallel_map`` job that wants it enters this block itself; 1.5 us a time."""
    previous = np.setbufsize(SMALL_BUFSIZE)
    try:
        yield
    finally:
        np.setbufsize(previous)


def window_slice(offset, dilation, stride, count, first=0):
    """The padded positions that kernel offset ``offset`` touches for outputs first .. first+count-1:
    (first + i) * stride + offset * dilation, for the strided ``+=`` of col2im and pooling."""
    start = first * stride + offset * dilation
    return slice(start, start + stride * (count - 1) + 1, stride)
