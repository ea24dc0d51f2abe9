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
from ..parallel import get_num_threads, parallel_map, pieces_for, split
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
        total = c * kh * kw * h_out * w_out * n  # numbers in all of im2col's columns
        rows_per_block = max(1, BLOCK_NUMBERS // (c * kh * kw * w_out * n))
        rows_per_block = min(rows_per_block, -(-h_out // pieces_for(total, h_out)))  # a block per thread
        self.blocks = [range(r, min(r + rows_per_block, h_out)) for r in range(0, h_out, rows_per_block)]
        self.geometry = (x.shape, x.dtype, memory_order(x), (kh, kw), stride, padding, dilation, groups,
                         (h_out, w_out))

        x_pad = pad2d(x, padding)
        w_mat = w.reshape(groups, f // groups, c_group * kh * kw)
        b_col = None if b is None else b.reshape(groups, f // groups, 1)
        keep = self.needs_input_grad[1] and total <= KEEP_NUMBERS
        if len(self.blocks) == 1:
            cols = self.im2col(x_pad, self.blocks[0])
            y_mat = w_mat @ cols  # (G, F/G, H_out*W_out*N)
            if b_col is not None:
                y_mat += b_col
            kept = [cols]
        else:
            y_mat = xp.empty((groups, f // groups, h_out * w_out * n), dtype=xp.result_type(x, w))

            def one_block(rows):  # blocks write disjoint columns of y_mat, so they run on parallel threads
                cols = self.im2col(x_pad, rows)
                y_block = y_mat[:, :, self.span(rows)]
                xp.matmul(w_mat, cols, out=y_block)
                if b_col is not None:
                    y_block += b_col
                return cols if keep else None

            kept = parallel_map(one_block, self.blocks)
        rebuild = self.needs_input_grad[1] and not keep
        self.save_for_backward(kept if keep else None, x_pad if rebuild else None, w_mat)
        return y_mat.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)  # (F, H, W, N) memory

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
            dx_pad = empty_in_order((n, c, h + 2 * padding[0], w_in + 2 * padding[1]), dtype, order, xp)
            w_mat_t = xp.ascontiguousarray(w_mat.transpose(0, 2, 1))  # (G, C/G*kh*kw, F/G)
            per_part = 1 if g == 1 else c // g  # input channels per part: split channels, or whole groups
            kk = kh * kw

            def input_gradient(part):  # parts own disjoint channels of dx_pad: parallel threads
                channels = slice(part.start * per_part, part.stop * per_part)
                dx_part = dx_pad[:, channels]
                dx_part[...] = 0
                for rows in self.blocks:
                    if g == 1:
                        dcols = w_mat_t[0, channels.start * kk:channels.stop * kk] @ dy_mat[0, :, self.span(rows)]
                    else:
                        dcols = w_mat_t[part] @ dy_mat[part, :, self.span(rows)]
                    col2im(dcols.reshape(-1, kh, kw, len(rows), w_out, n), dx_part, rows.start, stride, dilation)

            parts = c if g == 1 else g
            parallel_map(input_gradient, split(parts, pieces_for(c * kk * h_out * w_out * n, parts)))
            dx = dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w_in]
        if self.needs_input_grad[1]:  # (cols @ dy_mat^T)^T: twice as fast in OpenBLAS as dy_mat @ cols^T

            def weight_gradient(piece):  # piece: (block index, its columns); partial sums, added below
                index, columns = piece
                cols = kept[index] if kept is not None else self.im2col(x_pad, self.blocks[index])
                first = self.span(self.blocks[index]).start
                dy_piece = dy_mat[:, :, first + columns.start:first + columns.stop]
                return cols[:, :, columns] @ dy_piece.transpose(0, 2, 1)

            dw_mat = sum(parallel_map(weight_gradient, self.weight_gradient_pieces(kept is not None)))
            dw = dw_mat.transpose(0, 2, 1).reshape(f, c // g, kh, kw)
        if self.needs_input_grad[2]:
            db = dy_mat.sum(axis=2).reshape(f)
        return dx, dw, db

    def weight_gradient_pieces(self, kept):
        """(block index, column slice) pieces whose partial weight gradients sum to dW: one per block,
        and kept blocks cut further when there are fewer blocks than threads."""
        numbers = self.geometry[0][1] * self.geometry[3][0] * self.geometry[3][1]  # rows of cols: C*kh*kw
        pieces = []
        for index, rows in enumerate(self.blocks):
            width = self.span(rows).stop - self.span(rows).start
            cuts = pieces_for(numbers * width, width) if kept and len(self.blocks) < get_num_threads() else 1
            pieces += [(index, columns) for columns in split(width, cuts)]
        return pieces


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
