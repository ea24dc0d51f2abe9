"""2-D convolution (really cross-correlation, as in every deep-learning library) via im2col + GEMM.

The naive version (``convnp.reference.conv2d_forward``) is six nested loops.  Here the same sum is
matrix multiplication:

1. im2col: ``windows`` gives a strided view of every receptive field, (N, C, H_out, W_out, kh, kw),
   without copying.  One reshape copies it into ``cols``: one ROW per (input channel, kernel row,
   kernel column) of a group (C/G*kh*kw rows) and one COLUMN per output pixel and image.
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

How the work is cut (all measured on LeNet-5 and a small VGG, see the benchmark suite):
- CHUNKS of whole output rows, at most CHUNK_NUMBERS im2col numbers each (so memory stays bounded
  however big the layer) and at least one per thread.  A chunk is ONE im2col copy and ONE batched
  matmul, so a thread working on a chunk makes two or three NumPy calls.  That matters: NumPy drops
  Python's GIL inside each call, but every call must take it back, and on a small virtual machine a
  thread that waits for the GIL sleeps and is woken ~50 us later.  Two threads making many short
  calls were slower than one; two threads making a few long calls are ~2x faster than one.
- TILES inside a chunk: the batched matmul multiplies one tile of ``tile_width`` output columns
  (all images) at a time, at most TILE_NUMBERS numbers of columns.  OpenBLAS is far faster on
  such cache-sized products when there are few filters: a (6, 25) @ (25, 16384) product (LeNet-5's
  conv1) runs at ~25 GFLOP/s, (25, 2048) pieces at 60-80.
- The columns are never kept for backward: it rebuilds them from the padded input, a chunk at a
  time, which is cheaper than keeping them and reading them back from memory (LeNet-5 step at
  batch 128, one thread: 10.4 ms keeping them, 8.4 ms rebuilding) and keeps memory at the input's
  size.

Backward is the same steps read backwards, a chunk at a time:
    dw    = sum over output rows of cols @ dy_mat^T   (C/G*kh*kw, F/G) per group, transposed at the end
                                   (this operand order is twice as fast in OpenBLAS as dy @ cols^T;
                                   whole rows, as the inner dimension of a dW product is the long one)
    dcols = w_mat^T @ dy_mat       a GEMM per tile, then col2im: a loop over the kh*kw kernel offsets,
                                   each one strided ``+=`` of a whole slab (positions in several
                                   windows add up)
    db    = dy summed over N, H_out, W_out
"""
from ..backend import get_array_module
from ..function import Function
from ..parallel import parallel_map, pieces_for, split
from .windows import empty_in_order, memory_order, output_size, pad2d, window_slice, windows

TILE_NUMBERS = 1 << 17  # 512 KB of float32 columns per GEMM: see "How the work is cut" above
TILE_COLUMNS = 512  # but at least this many columns per GEMM: see choose_tile_width
CHUNK_NUMBERS = 1 << 20  # 4 MB of columns copied at once
SLAB_NUMBERS = 1 << 15  # the smallest col2im slab worth a thread of its own: see Conv2d.backward


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
        if n == 0:  # an empty batch: an empty output; backward gives zero gradients
            self.empty_batch = (x.shape, w.shape, None if b is None else b.shape)
            return xp.zeros((0, f, h_out, w_out), dtype=xp.result_type(x, w))
        self.empty_batch = None
        per_pixel = c * kh * kw * n  # numbers in im2col's columns for one output pixel (all images)
        rows_per_chunk = max(1, CHUNK_NUMBERS // (per_pixel * w_out))
        rows_per_chunk = min(rows_per_chunk, -(-h_out // pieces_for(per_pixel * w_out * h_out, h_out)))
        self.chunks = [(r, min(r + rows_per_chunk, h_out)) for r in range(0, h_out, rows_per_chunk)]
        tile_width = choose_tile_width(w_out, per_pixel, n)
        self.geometry = (x.shape, x.dtype, memory_order(x), (kh, kw), stride, padding, dilation, groups,
                         (h_out, w_out), tile_width)

        x_pad = pad2d(x, padding)
        w_mat = w.reshape(groups, f // groups, c_group * kh * kw)
        b_col = None if b is None else b.reshape(groups, f // groups, 1)
        y_mat = xp.empty((groups, f // groups, h_out * w_out * n), dtype=xp.result_type(x, w))
        view = self.window_view(x_pad)

        def forward_chunk(rows):  # chunks write disjoint rows of y_mat, so they run on parallel threads
            y_tiles = self.tiles(y_mat, rows, tile_width)
            xp.matmul(w_mat, self.im2col(view, rows, tile_width), out=y_tiles)
            if b_col is not None:
                y_tiles += b_col

        parallel_map(forward_chunk, self.chunks)
        self.save_for_backward(x_pad if self.needs_input_grad[1] else None, w_mat)
        return y_mat.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)  # (F, H, W, N) memory

    def window_view(self, x_pad):
        """x_pad: (N, C, Hp, Wp) -> every window as a view (C, kh, kw, H_out, W_out, N), no copy."""
        _, _, _, kernel, stride, _, dilation, _, out_size, _ = self.geometry
        return windows(x_pad, kernel, stride, dilation, out_size).transpose(1, 4, 5, 2, 3, 0)

    def im2col(self, view, rows, tile_width):
        """view: ``window_view(x_pad)`` -> the columns of output rows ``rows`` = (first, stop), cut into
        tiles: (rows, W_out/T, G, C/G*kh*kw, T*N) for tile width T.  The one copy."""
        (n, c, *_), _, _, (kh, kw), _, _, _, g, (_, w_out), _ = self.geometry
        count = rows[1] - rows[0]
        tiled = view[:, :, :, rows[0]:rows[1]].reshape(g, c // g, kh, kw, count, w_out // tile_width, tile_width, n)
        return tiled.transpose(4, 5, 0, 1, 2, 3, 6, 7).reshape(count, w_out // tile_width, g, -1, tile_width * n)

    def tiles(self, matrix, rows, tile_width):
        """matrix: (G, M, H_out*W_out*N) -> the view (rows, W_out/T, G, M, T*N) of output rows
        ``rows``, tiled like ``im2col``'s columns."""
        (n, *_), *_, (h_out, w_out), _ = self.geometry
        g, m, _ = matrix.shape
        tiled = matrix.reshape(g, m, h_out, w_out // tile_width, tile_width * n)[:, :, rows[0]:rows[1]]
        return tiled.transpose(2, 3, 0, 1, 4)

    def backward(self, dy):
        if self.empty_batch is not None:
            xp = get_array_module(dy)
            return tuple(None if shape is None or not needed else xp.zeros(shape, dtype=dy.dtype)
                         for shape, needed in zip(self.empty_batch, self.needs_input_grad))
        x_pad, w_mat = self.saved
        x_shape, dtype, order, (kh, kw), stride, padding, dilation, g, (h_out, w_out), tile_width = self.geometry
        xp = get_array_module(dy)
        n, c, h, w_in = x_shape
        f = dy.shape[1]
        # (N, F, H_out, W_out) -> (G, F/G, H_out*W_out*N): a free view of a batch-innermost gradient
        dy_mat = dy.transpose(1, 2, 3, 0).reshape(g, f // g, h_out * w_out * n)
        dx = dw = db = None
        # The work is one list of independent jobs for convnp's threads: the input gradient of a part
        # of the channels (parts write disjoint channels of dx_pad), and the weight gradient of a
        # chunk of rows (partial sums, added below).  Threads take the next job as they become free,
        # so with dx in one long job (LeNet-5's conv2), one thread computes it while another takes dW.
        dx_jobs, dw_jobs = [], []
        if self.needs_input_grad[0]:
            dx_pad = empty_in_order((n, c, h + 2 * padding[0], w_in + 2 * padding[1]), dtype, order, xp)
            w_mat_t = xp.ascontiguousarray(w_mat.transpose(0, 2, 1))  # (G, C/G*kh*kw, F/G)
            per_part = 1 if g == 1 else c // g  # input channels per part: split channels, or whole groups
            kk = kh * kw

            def input_gradient(part):
                channels = slice(part.start * per_part, part.stop * per_part)
                dx_part = dx_pad[:, channels]
                dx_part[...] = 0
                for rows in self.chunks:  # dcols: (rows, W_out/T, channels*kh*kw, T*N), a GEMM per tile
                    dy_tiles = self.tiles(dy_mat, rows, tile_width)  # (rows, W_out/T, G, F/G, T*N)
                    if g == 1:
                        dcols = w_mat_t[0, channels.start * kk:channels.stop * kk] @ dy_tiles[:, :, 0]
                    else:
                        dcols = w_mat_t[part] @ dy_tiles[:, :, part]  # (rows, W_out/T, groups, C/G*kh*kw, T*N)
                    shape = dcols.shape[:2] + (-1, kh, kw, tile_width, n)
                    col2im(dcols.reshape(shape), dx_part, rows[0], stride, dilation)

            # Split the channels only when each part's col2im still adds slabs of >= SLAB_NUMBERS:
            # LeNet-5's conv2 (24k numbers a slab) ran slower cut in two than on one thread, VGG's 32->64
            # layer (64k) faster.
            parts = c if g == 1 else g
            slab = c * (self.chunks[0][1] - self.chunks[0][0]) * w_out * n
            dx_jobs = [(input_gradient, part) for part in split(parts, pieces_for(slab, parts, SLAB_NUMBERS))]
        if self.needs_input_grad[1]:
            view = self.window_view(x_pad)

            def weight_gradient(rows):  # one chunk's share of dW: (G, C/G*kh*kw, F/G), a GEMM per whole row
                partial = self.im2col(view, rows, w_out) @ self.tiles(dy_mat, rows, w_out).swapaxes(-1, -2)
                return partial.sum(axis=(0, 1))

            dw_jobs = [(weight_gradient, rows) for rows in self.chunks]
        jobs = dx_jobs + dw_jobs
        results = parallel_map(lambda job: job[0](job[1]), jobs)
        if self.needs_input_grad[0]:
            dx = dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w_in]
        if self.needs_input_grad[1]:
            dw_mat = sum(results[len(dx_jobs):])  # the weight gradient jobs' partial sums
            dw = dw_mat.transpose(0, 2, 1).reshape(f, c // g, kh, kw)
        if self.needs_input_grad[2]:
            db = dy_mat.sum(axis=2).reshape(f)
        return dx, dw, db


def choose_tile_width(w_out, per_pixel, n):
    """How many output columns a tile holds: a divisor of W_out (so all tiles are equal and one batched
    matmul multiplies them), the widest whose columns stay within TILE_NUMBERS numbers, but at least
    TILE_COLUMNS columns (W_out * N when the row is shorter): OpenBLAS wastes its time on narrower
    products (measured: a depthwise 3x3 layer on 31x31 maps at batch 16, prime W_out, 1 column a tile,
    was 30% slower)."""
    divisors = [d for d in range(1, w_out + 1) if w_out % d == 0]
    width = max(d for d in divisors if d == 1 or d * per_pixel <= TILE_NUMBERS)
    if width * n < TILE_COLUMNS:
        width = next((d for d in divisors if d * n >= TILE_COLUMNS), w_out)
    return width


def batch_innermost(x):
    """x: (N, C, H, W) in any memory layout -> the same values stored (C, H, W, N), as a view with
    x's shape.  Free when x is already stored that way (the output of an earlier convolution)."""
    if memory_order(x) == (1, 2, 3, 0):
        return x
    return get_array_module(x).ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def col2im(dcols, dx_pad, first_row, stride, dilation):
    """Add dcols: (rows, W_out/T, C, kh, kw, T, N), the gradient of im2col's columns for the output
    rows first_row, first_row + 1, ... (in tiles of T columns), into dx_pad: (N, C, Hp, Wp); the
    adjoint of im2col.

    Kernel offset (u, v) read x_pad[:, :, u dh + sh i, v dw + sw j] into the cols row (c, u, v); so its
    gradient slab goes back to the same strided positions, and positions that several windows share
    add up.  A loop over the kh*kw offsets, each one vectorised ``+=`` over (C, rows, W_out, N).
    """
    rows, tiles, c, kh, kw, tile_width, n = dcols.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx_pad_chwn = dx_pad.transpose(1, 2, 3, 0)  # (C, Hp, Wp, N) view, to match dcols' axis order
    for u in range(kh):
        row_slice = window_slice(u, dh, sh, rows, first=first_row)
        for v in range(kw):
            slab = dx_pad_chwn[:, row_slice, window_slice(v, dw, sw, tiles * tile_width)]
            slab = slab.reshape(c, rows, tiles, tile_width, n)  # splits the W_out axis: always a view
            slab += dcols[:, :, :, u, v].transpose(2, 0, 1, 3, 4)
