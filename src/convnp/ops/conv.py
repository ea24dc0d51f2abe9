"""2-D convolution (really cross-correlation, as in every deep-learning library) via im2col + GEMM.

The naive version (``convnp.reference.conv2d_forward``) is six nested loops.  Here the same sum is
one matrix multiply:

1. im2col: ``windows`` gives a strided view of every receptive field, (N, C, H_out, W_out, kh, kw),
   without copying.  One reshape copies it into ``cols``: one ROW per (input channel, kernel row,
   kernel column) of a group (C/G*kh*kw rows) and one COLUMN per output pixel (N*H_out*W_out).
2. GEMM: ``w_mat @ cols``, with one filter per row of w_mat (F/G, C/G*kh*kw), gives every output
   pixel of every filter at once.  Groups (and depthwise convolution, G = C) are a batch of G GEMMs.
3. The product is (F, N, H_out, W_out) in memory; we hand back an (N, F, H_out, W_out) *view* of it.
   The API stays NCHW and no transposing copy is made: ReLU, pooling and the gradients keep this
   layout, and the next im2col reads it fast, because every copy then moves whole rows of W_out
   contiguous numbers (the layout was chosen by measuring: see benchmarks/).

Backward is the same steps read backwards:
    dw    = (cols @ dy_mat^T)^T    (F/G, C/G*kh*kw): one GEMM per group
    dcols = w_mat^T @ dy_mat       then col2im: a loop over the kh*kw kernel offsets, each one strided
                                   ``+=`` of a whole slab (positions in several windows add up)
    db    = dy summed over N, H_out, W_out
"""
from ..backend import get_array_module
from ..function import Function
from .windows import empty_in_order, memory_order, output_size, pad2d, window_slice, windows


class Conv2d(Function):
    """x: (N, C, H, W), w: (F, C/G, kh, kw), b: (F,) or None -> y: (N, F, H_out, W_out)

        y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x_pad[n, g C/G + c, i sh + u dh, j sw + v dw]

    where g = f // (F/G) is the filter's group and H_out = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1.
    Arguments arrive validated and as pairs (``convnp.functional.conv2d`` does that).
    """

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        n, c, h, w_in = x.shape
        f, c_group, kh, kw = w.shape
        g = groups
        h_out = output_size(h, kh, stride[0], padding[0], dilation[0])
        w_out = output_size(w_in, kw, stride[1], padding[1], dilation[1])
        self.geometry = (x.shape, x.dtype, memory_order(x), (kh, kw), stride, padding, dilation, groups, (h_out, w_out))

        view = windows(pad2d(x, padding), (kh, kw), stride, dilation, (h_out, w_out))
        cols = (view.transpose(1, 4, 5, 0, 2, 3)  # (C, kh, kw, N, H_out, W_out), still a view
                .reshape(g, c_group * kh * kw, n * h_out * w_out))  # the one copy
        w_mat = w.reshape(g, f // g, c_group * kh * kw)
        self.save_for_backward(cols if self.needs_input_grad[1] else None, w_mat)

        y = (w_mat @ cols).reshape(f, n, h_out, w_out).transpose(1, 0, 2, 3)  # (F, N, ...) memory
        if b is not None:
            y += b.reshape(1, f, 1, 1)
        return y

    def backward(self, dy):
        cols, w_mat = self.saved
        x_shape, dtype, order, (kh, kw), stride, padding, dilation, g, (h_out, w_out) = self.geometry
        n, c, h, w_in = x_shape
        f = dy.shape[1]
        # (N, F, H_out, W_out) -> (G, F/G, N*H_out*W_out): a free view of a gradient in (F, N, ...) memory
        dy_mat = dy.transpose(1, 0, 2, 3).reshape(g, f // g, n * h_out * w_out)
        dx = dw = db = None
        if self.needs_input_grad[0]:
            xp = get_array_module(dy)
            dcols = xp.ascontiguousarray(w_mat.transpose(0, 2, 1)) @ dy_mat  # (G, C/G*kh*kw, N*H_out*W_out)
            dcols = dcols.reshape(c, kh, kw, n, h_out, w_out)
            dx = col2im(dcols, x_shape, dtype, order, stride, padding, dilation)
        if self.needs_input_grad[1]:  # (cols @ dy_mat^T)^T: twice as fast in OpenBLAS as dy_mat @ cols^T
            dw = (cols @ dy_mat.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(f, c // g, kh, kw)
        if self.needs_input_grad[2]:
            db = dy_mat.sum(axis=2).reshape(f)
        return dx, dw, db


def col2im(dcols, x_shape, dtype, order, stride, padding, dilation):
    """dcols: (C, kh, kw, N, H_out, W_out) -> dx: (N, C, H, W) stored in memory ``order``; the adjoint
    of im2col.

    Kernel offset (u, v) read x_pad[:, :, u dh + sh i, v dw + sw j] into the cols row (c, u, v); so its
    gradient slab goes back to the same strided positions, and positions that several windows share
    add up.  A loop over the kh*kw offsets, each one vectorised ``+=`` over (C, N, H_out, W_out).
    """
    c, kh, kw, n, h_out, w_out = dcols.shape
    h, w = x_shape[2], x_shape[3]
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    xp = get_array_module(dcols)
    dx_pad = empty_in_order((n, c, h + 2 * ph, w + 2 * pw), dtype, order, xp, fill=0)
    dx_pad_cn = dx_pad.transpose(1, 0, 2, 3)  # (C, N, Hp, Wp) view, to match dcols' axis order
    for u in range(kh):
        rows = window_slice(u, dh, sh, h_out)
        for v in range(kw):
            dx_pad_cn[:, :, rows, window_slice(v, dw, sw, w_out)] += dcols[:, u, v]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]
