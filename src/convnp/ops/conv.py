"""2-D convolution (really cross-correlation, as in every deep-learning library) via im2col + GEMM.

The naive version (``convnp.reference.conv2d_forward``) is six nested loops.  Here the same sum is
one matrix multiply:

1. im2col: ``windows`` gives a strided view of every receptive field, (N, C, H_out, W_out, kh, kw),
   without copying.  One reshape copies it into ``cols``: one ROW per (input channel, kernel row,
   kernel column) of a group (C/G*kh*kw rows) and one COLUMN per output pixel (H_out*W_out*N).
2. GEMM: ``w_mat @ cols``, with one filter per row of w_mat (F/G, C/G*kh*kw), gives every output
   pixel of every filter at once.  Groups (and depthwise convolution, G = C) are a batch of G GEMMs.
3. The product is stored (F, H_out, W_out, N): the batch is the innermost axis.  We hand back an
   (N, F, H_out, W_out) *view* of it, so the API stays NCHW with no transposing copy.

Why batch-innermost memory (the layout of cuda-convnet)?  NumPy pays a fixed cost for every
contiguous run it copies or adds, and the runs of an NCHW tensor are only W_out numbers long (8 in
LeNet-5's second layer).  With N innermost, the im2col copy and col2im's ``+=`` move runs of
W_out*N numbers: measured on LeNet-5 at batch 128, im2col 0.73 -> 0.14 ms and col2im 1.6 -> 0.45 ms.
ReLU, pooling and every gradient keep whatever layout they are given, so the whole network runs in
it; an input in another layout (the images, NCHW) is copied into it once.

Backward is the same steps read backwards:
    dw    = (cols @ dy_mat^T)^T    (F/G, C/G*kh*kw): one GEMM per group (this operand order is
                                   twice as fast in OpenBLAS as dy_mat @ cols^T)
    dcols = w_mat^T @ dy_mat       then col2im: a loop over the kh*kw kernel offsets, each one strided
                                   ``+=`` of a whole slab (positions in several windows add up)
    db    = dy summed over N, H_out, W_out
"""
from ..backend import get_array_module
from ..function import Function
from .windows import empty_in_order, memory_order, output_size, pad2d, window_slice, windows


# im2col builds its columns a block of output rows at a time, each block at most BLOCK_NUMBERS
# numbers (4 MB of float32), so the copy and the GEMM that reads it stay in cache: measured on
# LeNet-5 at batch 512, conv1 takes 4.9 ms in 4 MB blocks and 7.7 ms in one 30 MB block.  The columns
# are kept for the weight gradient when they total at most KEEP_NUMBERS (16 MB); bigger layers keep
# only the padded input and backward rebuilds each block, so memory stays bounded.
BLOCK_NUMBERS = 1 << 20
KEEP_NUMBERS = 1 << 22


class Conv2d(Function):
    """x: (N, C, H, W), w: (F, C/G, kh, kw), b: (F,) or None -> y: (N, F, H_out, W_out)

        y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x_pad[n, g C/G + c, i sh + u dh, j sw + v dw]

    where g = f // (F/G) is the filter's group and H_out = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1.
    Arguments arrive validated and as pairs (``convnp.functional.conv2d`` does that).
    """

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        xp = get_array_module(x)
        x = batch_innermost(x)
        n, c, h, w_in = x.shape
        f, c_group, kh, kw = w.shape
        h_out = output_size(h, kh, stride[0], padding[0], dilation[0])
        w_out = output_size(w_in, kw, stride[1], padding[1], dilation[1])
        rows_per_block = max(1, BLOCK_NUMBERS // (c * kh * kw * w_out * n))
        self.blocks = [range(r, min(r + rows_per_block, h_out)) for r in range(0, h_out, rows_per_block)]
        self.geometry = (x.shape, x.dtype, memory_order(x), (kh, kw), stride, padding, dilation, groups,
                         (h_out, w_out))

        x_pad = pad2d(x, padding)
        w_mat = w.reshape(groups, f // groups, c_group * kh * kw)
        keep = self.needs_input_grad[1] and c * kh * kw * h_out * w_out * n <= KEEP_NUMBERS
        kept = []
        if len(self.blocks) == 1:
            cols = self.im2col(x_pad, self.blocks[0])
            y_mat = w_mat @ cols  # (G, F/G, H_out*W_out*N)
            kept.append(cols)
        else:
            y_mat = xp.empty((groups, f // groups, h_out * w_out * n), dtype=xp.result_type(x, w))
            for rows in self.blocks:
                cols = self.im2col(x_pad, rows)
                y_mat[:, :, self.span(rows)] = w_mat @ cols
                if keep:
                    kept.append(cols)
        rebuild = self.needs_input_grad[1] and not keep
        self.save_for_backward(kept if keep else None, x_pad if rebuild else None, w_mat)
        y = y_mat.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)  # (F, H, W, N) memory
        if b is not None:
            y += b.reshape(1, f, 1, 1)
        return y

    def im2col(self, x_pad, rows):
        """x_pad: (N, C, Hp, Wp) -> cols: (G, C/G*kh*kw, len(rows)*W_out*N) for the output ``rows``."""
        _, _, _, kernel, stride, _, dilation, groups, (h_out, w_out) = self.geometry
        view = windows(x_pad, kernel, stride, dilation, (h_out, w_out))[:, :, rows.start:rows.stop]
        return (view.transpose(1, 4, 5, 2, 3, 0)  # (C, kh, kw, rows, W_out, N), still a view
                .reshape(groups, -1, len(rows) * w_out * x_pad.shape[0]))  # the one copy

    def span(self, rows):
        """The columns of an (H_out, W_out, N)-ordered matrix that belong to output ``rows``."""
        per_row = self.geometry[-1][1] * self.geometry[0][0]
        return slice(rows.start * per_row, rows.stop * per_row)

    def backward(self, dy):
        kept, x_pad, w_mat = self.saved
        x_shape, dtype, order, (kh, kw), stride, padding, dilation, g, (h_out, w_out) = self.geometry
        xp = get_array_module(dy)
        n, c, h, w_in = x_shape
        f = dy.shape[1]
        # (N, F, H_out, W_out) -> (G, F/G, H_out*W_out*N): a free view of a batch-innermost gradient
        dy_mat = dy.transpose(1, 2, 3, 0).reshape(g, f // g, h_out * w_out * n)
        dx = dw = db = None
        if self.needs_input_grad[0]:
            dx_pad = empty_in_order((n, c, h + 2 * padding[0], w_in + 2 * padding[1]), dtype, order, xp, fill=0)
            w_mat_t = xp.ascontiguousarray(w_mat.transpose(0, 2, 1))
            for rows in self.blocks:
                dcols = w_mat_t @ dy_mat[:, :, self.span(rows)]  # (G, C/G*kh*kw, rows*W_out*N)
                col2im(dcols.reshape(c, kh, kw, len(rows), w_out, n), dx_pad, rows.start, stride, dilation)
            dx = dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w_in]
        if self.needs_input_grad[1]:  # (cols @ dy_mat^T)^T: twice as fast in OpenBLAS as dy_mat @ cols^T
            dw_mat = 0
            for index, rows in enumerate(self.blocks):
                cols = kept[index] if kept is not None else self.im2col(x_pad, rows)
                dw_mat = dw_mat + cols @ dy_mat[:, :, self.span(rows)].transpose(0, 2, 1)
            dw = dw_mat.transpose(0, 2, 1).reshape(f, c // g, kh, kw)
        if self.needs_input_grad[2]:
            db = dy_mat.sum(axis=2).reshape(f)
        return dx, dw, db


def batch_innermost(x):
    """x: (N, C, H, W) in any memory layout -> the same values stored (C, H, W, N), as a view with
    x's shape.  Free when x is already stored that way (the output of an earlier convolution)."""
    if memory_order(x) == (1, 2, 3, 0):
        return x
    return get_array_module(x).ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def col2im(dcols, dx_pad, first_row, stride, dilation):
    """Add dcols: (C, kh, kw, rows, W_out, N), the gradient of im2col's columns for the output rows
    first_row, first_row + 1, ..., into dx_pad: (N, C, Hp, Wp); the adjoint of im2col.

    Kernel offset (u, v) read x_pad[:, :, u dh + sh i, v dw + sw j] into the cols row (c, u, v); so its
    gradient slab goes back to the same strided positions, and positions that several windows share
    add up.  A loop over the kh*kw offsets, each one vectorised ``+=`` over (C, rows, W_out, N).
    """
    c, kh, kw, rows, w_out, n = dcols.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx_pad_chwn = dx_pad.transpose(1, 2, 3, 0)  # (C, Hp, Wp, N) view, to match dcols' axis order
    for u in range(kh):
        row_slice = window_slice(u, dh, sh, rows, first=first_row)
        for v in range(kw):
            dx_pad_chwn[:, row_slice, window_slice(v, dw, sw, w_out)] += dcols[:, u, v]
