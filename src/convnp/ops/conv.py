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
from ..parallel import parallel_map, pieces_for, split
from .windows import empty_in_order, memory_order, output_size, pad2d, window_slice, windows


# The columns are built a TILE of output pixels at a time, at most TILE_NUMBERS numbers (512 KB of
# float32), and each tile is multiplied as soon as it is copied, so the copy and the GEMM that reads
# it happen in the core's own L2 cache.  A tile is a run of whole output rows, or a stretch of ONE
# row when a row is bigger than a tile.  Small convolutions gain the most: OpenBLAS runs a
# (6, 25) @ (25, 16384) product (LeNet-5's conv1) at ~25 GFLOP/s, but at 60-80 on (25, 2048) pieces.
# The columns are never kept for backward: it rebuilds them tile by tile from the padded input, which
# is cheaper than storing them and reading them back from memory (LeNet-5 step at batch 128, one
# thread: 10.4 ms keeping them, 8.4 ms rebuilding) and keeps memory at the size of the input.
# The input gradient is put back together a BLOCK of whole output rows at a time (at most
# BLOCK_NUMBERS numbers of columns, 4 MB), which keeps col2im's Python loop short.
TILE_NUMBERS = 1 << 17
BLOCK_NUMBERS = 1 << 20


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
        per_pixel = c * kh * kw * n  # numbers in im2col's columns for one output pixel (all images)
        total = per_pixel * h_out * w_out
        self.tiles = tiles(h_out, w_out, per_pixel, pieces_for(total, h_out * w_out))
        rows_per_block = max(1, BLOCK_NUMBERS // (per_pixel * w_out))
        rows_per_block = min(rows_per_block, -(-h_out // pieces_for(total, h_out)))  # a block per thread
        self.blocks = [(r, min(r + rows_per_block, h_out), 0, w_out) for r in range(0, h_out, rows_per_block)]
        self.geometry = (x.shape, x.dtype, memory_order(x), (kh, kw), stride, padding, dilation, groups,
                         (h_out, w_out))

        x_pad = pad2d(x, padding)
        w_mat = w.reshape(groups, f // groups, c_group * kh * kw)
        b_col = None if b is None else b.reshape(groups, f // groups, 1)
        y_mat = xp.empty((groups, f // groups, h_out * w_out * n), dtype=xp.result_type(x, w))
        view = self.window_view(x_pad)

        def one_tile(tile):  # tiles write disjoint columns of y_mat, so they run on parallel threads
            y_tile = y_mat[:, :, self.span(tile)]
            xp.matmul(w_mat, self.im2col(view, tile), out=y_tile)
            if b_col is not None:
                y_tile += b_col

        parallel_map(one_tile, self.tiles)
        self.save_for_backward(x_pad if self.needs_input_grad[1] else None, w_mat)
        return y_mat.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)  # (F, H, W, N) memory

    def window_view(self, x_pad):
        """x_pad: (N, C, Hp, Wp) -> every window as a view (C, kh, kw, H_out, W_out, N), no copy."""
        _, _, _, kernel, stride, _, dilation, _, out_size = self.geometry
        return windows(x_pad, kernel, stride, dilation, out_size).transpose(1, 4, 5, 2, 3, 0)

    def im2col(self, view, tile):
        """view: ``window_view(x_pad)`` -> cols: (G, C/G*kh*kw, pixels*N), the columns of the output
        pixels of ``tile`` (rows i0..i1-1, columns j0..j1-1)."""
        i0, i1, j0, j1 = tile
        view = view[:, :, :, i0:i1, j0:j1]  # (C, kh, kw, rows, columns, N)
        return view.reshape(self.geometry[7], -1, view[0, 0, 0].size)  # the one copy

    def span(self, tile):
        """The columns of an (H_out, W_out, N)-ordered matrix that belong to the pixels of ``tile``."""
        (n, *_), *_, (_, w_out) = self.geometry
        i0, i1, j0, j1 = tile
        return slice((i0 * w_out + j0) * n, ((i1 - 1) * w_out + j1) * n)

    def backward(self, dy):
        x_pad, w_mat = self.saved
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
                for block in self.blocks:
                    if g == 1:
                        dcols = w_mat_t[0, channels.start * kk:channels.stop * kk] @ dy_mat[0, :, self.span(block)]
                    else:
                        dcols = w_mat_t[part] @ dy_mat[part, :, self.span(block)]
                    rows = block[1] - block[0]
                    col2im(dcols.reshape(-1, kh, kw, rows, w_out, n), dx_part, block[0], stride, dilation)

            parts = c if g == 1 else g
            parallel_map(input_gradient, split(parts, pieces_for(c * kk * h_out * w_out * n, parts)))
            dx = dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w_in]
        if self.needs_input_grad[1]:  # (cols @ dy_mat^T)^T: twice as fast in OpenBLAS as dy_mat @ cols^T
            view = self.window_view(x_pad)

            def weight_gradient(tile):  # one tile's share of dW, its columns rebuilt (so in cache) here
                return self.im2col(view, tile) @ dy_mat[:, :, self.span(tile)].transpose(0, 2, 1)

            dw_mat = sum(parallel_map(weight_gradient, self.tiles))
            dw = dw_mat.transpose(0, 2, 1).reshape(f, c // g, kh, kw)
        if self.needs_input_grad[2]:
            db = dy_mat.sum(axis=2).reshape(f)
        return dx, dw, db


def tiles(h_out, w_out, per_pixel, pieces):
    """Cut the output pixels into tiles of at most TILE_NUMBERS im2col numbers (``per_pixel`` each),
    and at least ``pieces`` tiles (one per thread): each tile (i0, i1, j0, j1) is rows i0..i1-1 and
    columns j0..j1-1, either whole rows or a stretch of one row.  In row-major order, so a tile's
    columns in the (H_out, W_out, N)-ordered matrices are one contiguous span."""
    pixels = max(1, min(TILE_NUMBERS // per_pixel, -(-h_out * w_out // pieces)))
    if pixels >= w_out:
        rows = pixels // w_out
        return [(i, min(i + rows, h_out), 0, w_out) for i in range(0, h_out, rows)]
    return [(i, i + 1, j, min(j + pixels, w_out)) for i in range(h_out) for j in range(0, w_out, pixels)]


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
