"""2-D convolution (really cross-correlation, as in every deep-learning library): im2col + GEMM.

The math is ``convnp.reference.conv2d_forward_im2col`` / ``conv2d_backward_im2col`` (rung 2 of the
ladder in ``convnp.reference``): im2col copies every receptive field into a column, one GEMM
``w_mat @ cols`` gives every output pixel of every filter, and backward is ``dw = dy_mat @ cols^T``,
``dcols = w_mat^T @ dy_mat`` and col2im (a kh*kw loop of strided ``+=``).  This file computes exactly
that, and adds six things, each for a reason (the numbers are in docs/performance.md):

- LAYOUT: the output is stored (F, H_out, W_out, N), batch innermost (cuda-convnet's layout), and
  handed back as an (N, F, H_out, W_out) *view*.  NumPy pays a fixed cost for every contiguous run
  it copies or adds, and an NCHW row is only W_out numbers long; with N innermost, the copies and
  col2im's ``+=`` move runs of W_out*N numbers.  Pooling, ReLU, dropout and every gradient keep
  whatever layout they are given, so the whole network runs in it; an NCHW input is copied into it
  once.
- ROW WINDOWS instead of im2col's copy (``window_rows``): im2col writes every input number kh*kw
  times (9x the input for a 3x3 layer).  Here the copy holds each input row kw times, shifted by
  0 .. kw-1 columns, rows laid (row, channel, shift); then the kh*C*kw numbers of any window are
  kh neighbouring copy rows of C*kw lines each, all one stride apart, so im2col's column matrix for
  an output row is a strided VIEW of the copy, which BLAS reads as it is.  The copy is 3x the input
  for a 3x3 layer, and padding is written into it as zeros (x is never padded).
- CHUNKS of whole output rows, at most CHUNK_NUMBERS copied numbers each, so memory stays bounded
  however big the layer, and CHUNKS_PER_THREAD of them per thread, so that a thread that starts late
  takes fewer; a chunk is one copy and one batched matmul.  Their count is a multiple of the
  threads and the rows are shared evenly: ResNet-20's 16-channel layers were cut 5+5+5+5+5+5+2, so
  one of two threads did 17 rows while the other waited after 15.
- TILES inside a chunk: the matmul multiplies ``tile_columns`` GEMM columns (output pixels x images)
  at a time, because OpenBLAS runs cache-sized products with few filters much faster than one long
  product, and on AVX-512 CPUs its small-matrix kernels (no packing) faster still: choose_tile_columns.
- WINOGRAD: 3x3 stride-1 layers with at least 32 input channels (on AVX2 CPUs 64, unless the layer
  has more filters than channels: ``winograd.applies``) skip all of the above and run as
  Winograd's F(4x4, 3x3), 4x fewer multiplications (``convnp.ops.winograd``, chosen in ``forward``
  by ``winograd.applies``); their input gradient too, whatever the forward ran as.
- THREADS: chunks (forward), channel parts of dx and row chunks of dW (backward) are independent
  jobs for ``convnp.parallel``; each is a few long NumPy calls, which is what lets threads pay off
  (see ``convnp/parallel.py``).  A forward is threaded only with THREAD_NUMBERS im2col numbers a
  thread: below that a second thread saves nothing, and the half of the output it writes sits in
  the other core's cache when the next op reads it (LeNet-5's layers: the step 0.91x on one
  thread, docs/performance.md, 2026-12-04).

The copies are never kept for backward: it rebuilds them from the input a chunk at a time, which is
cheaper than reading kept columns back from memory and keeps memory at the input's size.
MEMORY: what is kept is the input itself: it is usually the previous layer's output, alive anyway
(a fused batch norm + ReLU keeps it for its mask), so keeping it costs nothing.
In backward, dW is computed as ``cols @ dy^T`` (kh*C/G*kw, F/G) per output row and summed, the
operand order OpenBLAS runs faster, one batched matmul per chunk of rows; the stride-1 input
gradient is a convolution of dy (``input_gradient_by_convolution``), the others col2im.
"""
import functools
from typing import NamedTuple

from ..backend import get_array_module, is_device_array
from ..function import Function
from ..parallel import (
    blas_has_small_product_kernels,
    blas_kernel_set_known,
    get_num_threads,
    parallel_map,
    pieces_for,
    split,
)
from . import winograd
from .activation import zeros_along_innermost
from .pool import max_of_window_views, maximum_of, window_views
from .windows import (
    empty_in_order,
    memory_order,
    output_size,
    pad2d,
    small_ufunc_buffer,
    strided_view,
    window_slice,
)

TILE_NUMBERS = 1 << 17  # 512 KB of float32 columns per GEMM: see TILES above
TILE_COLUMNS = 512  # but at least this many columns per GEMM: see choose_tile_width
SMALL_PRODUCT_MACS = 100 ** 3  # OpenBLAS's limit for its small-matrix kernels (M*N*K): choose_tile_columns
SMALL_PRODUCT_COLUMNS = 64  # the fewest columns a small-kernel tile may have (fewer: per-call overhead)
WEIGHT_TILE_COLUMNS = 1024  # the fewest columns (the products' K) a dW tile may have: choose_weight_tile_columns
SMALL_PRODUCTS = None  # whether the BLAS has small-matrix (AVX-512) kernels; None: ask it (small_product_kernels)
CHUNK_NUMBERS = 1 << 20  # 4 MB of columns copied at once
SMALL_IM2COL_NUMBERS = 1 << 15  # one image's columns up to this many numbers: plain_im2col_convolution
SLAB_NUMBERS = 1 << 15  # the smallest col2im slab worth a thread of its own: see input_gradient_jobs
CHUNKS_PER_THREAD = 2  # chunks a thread in a big threaded convolution, so a late thread takes fewer
BALANCE_NUMBERS = 1 << 20  # but no chunk under this many im2col numbers: small layers pay per chunk
THREAD_NUMBERS = 1 << 20  # im2col numbers a layer needs per thread before its forward is threaded: conv_geometry
TRANSPOSED_MIN_CHANNELS = 16  # input channels a group needs for dx by convolution: input_gradient_is_a_convolution
WINOGRAD = True  # 3x3 stride-1 layers with enough channels by Winograd F(4x4, 3x3): ops/winograd.py (tests switch it)


def small_product_kernels():
    """SMALL_PRODUCTS, or when it is None the BLAS's answer (``parallel.blas_has_small_product_kernels``:
    OpenBLAS's AVX-512 kernel sets).  Decides the forward's tiles (choose_tile_columns)."""
    return blas_has_small_product_kernels() if SMALL_PRODUCTS is None else SMALL_PRODUCTS


def winograd_from_32_channels():
    """Whether layers of 32 to 63 input channels that do not widen take Winograd (``winograd.applies``):
    with OpenBLAS's AVX-512 kernel sets (``small_product_kernels``), and when the kernel set is not
    known (no threadpoolctl, or a BLAS that does not say), as measured on Zen 4 and Sapphire Rapids;
    not with a known AVX2 set, where im2col ran them faster (docs/performance.md, 2026-12-03, second
    session).  SMALL_PRODUCTS, when a test sets it, decides this too."""
    return small_product_kernels() or (SMALL_PRODUCTS is None and not blas_kernel_set_known())


class ConvGeometry(NamedTuple):
    """Everything one convolution call works out in forward and backward reuses, by name."""
    x_shape: tuple  # (N, C, H, W)
    dtype: object  # x's dtype: the input gradient's
    order: tuple  # x's memory order (batch innermost): the input gradient's
    kernel: tuple  # (kh, kw)
    stride: tuple  # (sh, sw)
    padding: tuple  # (ph, pw)
    dilation: tuple  # (dh, dw)
    groups: int
    out_size: tuple  # (H_out, W_out)
    tile_columns: int  # GEMM columns a tile holds (a divisor of W_out*N): choose_tile_columns
    chunks: tuple  # ((first, stop), ...) output rows copied and multiplied at once
    weight_tile_columns: int  # GEMM columns (K) of a product of dW: choose_weight_tile_columns


def conv_geometry(x, w_shape, stride, padding, dilation, groups):
    """The ConvGeometry of x: (N, C, H, W) convolved with weights of w_shape (F, C/G, kh, kw): output
    size, chunks of whole output rows (at most CHUNK_NUMBERS copied numbers; one per thread when the
    layer has THREAD_NUMBERS im2col numbers a thread, up to CHUNKS_PER_THREAD a thread for big
    layers; when threaded, a multiple of the threads with the rows shared evenly) and the tiles'
    columns.  Worked out once per layer
    shape (``_conv_geometry`` is cached): a training run asks for the same few geometries thousands
    of times."""
    small_products = small_product_kernels()
    tuning = (get_num_threads(), CHUNK_NUMBERS, TILE_NUMBERS, TILE_COLUMNS, THREAD_NUMBERS, CHUNKS_PER_THREAD,
              BALANCE_NUMBERS, SMALL_PRODUCT_MACS, SMALL_PRODUCT_COLUMNS, WEIGHT_TILE_COLUMNS, small_products)
    return _conv_geometry(x.shape, x.dtype, memory_order(x), tuple(w_shape), stride, padding, dilation, groups,
                          is_device_array(x), tuning)


@functools.lru_cache(maxsize=512)
def _conv_geometry(x_shape, dtype, order, w_shape, stride, padding, dilation, groups, on_device, tuning):
    """conv_geometry's work, from hashable arguments.  ``tuning`` holds everything else it reads (the
    thread count and the size limits), so a changed setting is a new key, never a stale answer."""
    n, c, h, w_in = x_shape
    f, _, kh, kw = w_shape
    h_out = output_size(h, kh, stride[0], padding[0], dilation[0])
    w_out = output_size(w_in, kw, stride[1], padding[1], dilation[1])
    per_pixel = c * kh * kw * n  # numbers in a GEMM column for one output pixel (all images)
    rows_per_chunk = max(1, CHUNK_NUMBERS // copied_per_row(x_shape, (kh, kw), stride, dilation, w_out))
    work = per_pixel * w_out * h_out  # im2col's numbers for the whole layer
    pieces = pieces_for(work, h_out, THREAD_NUMBERS)  # one chunk a thread, when each is worth a thread
    if pieces > 1:  # up to CHUNKS_PER_THREAD a thread, each of >= BALANCE_NUMBERS (LeNet-5's stay 2)
        pieces = max(pieces, min(h_out, pieces * CHUNKS_PER_THREAD, work // BALANCE_NUMBERS))
    count = -(-h_out // min(rows_per_chunk, -(-h_out // pieces)))
    if pieces > 1:  # a multiple of the threads, rows shared evenly: no thread waits on one last chunk
        count = min(h_out, -(-count // tuning[0]) * tuning[0])
    chunks = tuple((rows.start, rows.stop) for rows in split(h_out, count))
    if on_device:  # the GPU's work policy: all rows at once, whole-row tiles, no convnp threads
        return ConvGeometry(x_shape, dtype, order, (kh, kw), stride, padding, dilation, groups,
                            (h_out, w_out), w_out * n, ((0, h_out),), w_out * n)
    small_products = tuning[-1]  # conv_geometry's answer: size tiles for small-matrix kernels
    columns = choose_tile_columns(w_out, per_pixel, n, groups, f // groups, small_products)
    weight_columns = choose_weight_tile_columns(w_out, per_pixel // (n * groups), n, f // groups, small_products)
    return ConvGeometry(x_shape, dtype, order, (kh, kw), stride, padding, dilation, groups,
                        (h_out, w_out), columns, chunks, weight_columns)


def copied_per_row(x_shape, kernel, stride, dilation, w_out):
    """The numbers ``window_rows``' copy holds for each output row a chunk adds: C*kw*W_out*N times the
    input rows a row steps over (sh; with dilation, its kh rows of its own)."""
    n, c = x_shape[:2]
    (kh, kw), (sh, _), (dh, _) = kernel, stride, dilation
    return c * kw * w_out * n * (sh if dh == 1 else kh)


class Conv2d(Function):
    """x: (N, C, H, W), w: (F, C/G, kh, kw), b: (F,) or None -> y: (N, F, H_out, W_out)

        y[n, f, i, j] = b[f] + sum_{c, u, v} w[f, c, u, v] * x_pad[n, g C/G + c, i sh + u dh, j sw + v dw]

    where g = f // (F/G) is the filter's group and H_out = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1.
    Arguments arrive validated and as pairs (``convnp.functional.conv2d`` does that).
    """

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        xp = get_array_module(x)
        x = batch_innermost(x)
        f, c_group, kh, kw = w.shape
        self.empty_batch = None
        if x.shape[0] == 0:  # an empty batch: an empty output; backward gives zero gradients
            self.empty_batch = (x.shape, w.shape, None if b is None else b.shape)
            h_out = output_size(x.shape[2], kh, stride[0], padding[0], dilation[0])
            w_out = output_size(x.shape[3], kw, stride[1], padding[1], dilation[1])
            return xp.zeros((0, f, h_out, w_out), dtype=xp.result_type(x, w))
        path = self.choose_path(x, w.shape, stride, padding, dilation, groups)
        self.save_for_backward(x if self.needs_input_grad[1] else None, w)  # unpadded: see MEMORY
        return self.convolve(path, x, w, b)

    def convolve(self, path, x, w, b):
        """y: (N, F, H_out, W_out) stored (F, H_out, W_out, N) for x (batch innermost, not empty) by the
        path ``choose_path`` returned (it set self.geometry)."""
        geo = self.geometry
        if path == "winograd":  # 4x fewer multiplications (ops/winograd.py)
            self.transformed = winograd.transformed_filters(w)
            return winograd.convolution(x, self.transformed, geo.padding[0], b)
        if path == "plain":
            return plain_im2col_convolution(x, w, b, geo)  # one image, a small layer: see its docstring
        xp = get_array_module(x)
        (h_out, w_out), f, n = geo.out_size, w.shape[0], x.shape[0]
        y_mat = xp.empty((geo.groups, f // geo.groups, h_out * w_out * n), dtype=xp.result_type(x, w))
        parallel_map(self.row_multiplier(x, w, b, y_mat), geo.chunks)  # disjoint rows of y_mat: parallel threads
        return y_mat.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)  # (F, H, W, N) memory

    def choose_path(self, x, w_shape, stride, padding, dilation, groups):
        """Set self.geometry and self.winograd for x (batch innermost, not empty) and say how the
        forward runs: "winograd" (``winograd.applies``), "plain" (one image of a small layer:
        ``plain_im2col_convolution``) or "row windows" (chunks of output rows, ``row_multiplier``)."""
        f, c_group, kh, kw = w_shape
        self.geometry = geo = conv_geometry(x, w_shape, stride, padding, dilation, groups)
        h_out, w_out = geo.out_size
        self.winograd = WINOGRAD and winograd.applies((kh, kw), stride, dilation, groups, padding, geo.out_size,
                                                      c_group, f, is_device_array(x), winograd_from_32_channels())
        if self.winograd:
            return "winograd"
        if (x.shape[0] == 1 and not is_device_array(x)
                and c_group * groups * kh * kw * h_out * w_out <= SMALL_IM2COL_NUMBERS):
            return "plain"
        return "row windows"

    def row_multiplier(self, x, w, b, y_mat):
        """The function that fills output rows (first, stop) of y_mat: (G, F/G, H_out*W_out*N) from x
        (batch innermost): the row windows' GEMMs tile by tile, plus the bias.  Calls for disjoint rows
        write disjoint memory, so they run on parallel threads."""
        xp = get_array_module(x)
        geo = self.geometry
        f, groups = w.shape[0], geo.groups
        w_rows = window_weights(w, groups)  # (G, F/G, kh*C/G*kw): the filters in window_rows' order
        b_col = None if b is None else b.reshape(groups, 1, 1, f // groups, 1)

        def multiply(rows):
            y_tiles = self.tiles(y_mat, rows, geo.tile_columns)
            if is_device_array(x):  # CuPy's matmul is not given a strided out=: one more copy on the GPU
                y_tiles[...] = xp.matmul(w_rows[:, None, None], self.window_rows(x, rows, geo.tile_columns))
            else:
                xp.matmul(w_rows[:, None, None], self.window_rows(x, rows, geo.tile_columns), out=y_tiles)
            if b_col is not None:
                y_tiles += b_col

        return multiply

    def backward(self, dy):
        if self.empty_batch is not None:
            xp = get_array_module(dy)
            return tuple(None if shape is None or not needed else xp.zeros(shape, dtype=dy.dtype)
                         for shape, needed in zip(self.empty_batch, self.needs_input_grad))
        """One list of independent jobs for convnp's threads: the input gradient of parts of the
        channels, and the weight gradient of chunks of rows.  Threads take the next job as they become
        free, so with dx in one long job (LeNet-5's conv2), one thread computes it while another takes dW."""
        x, w = self.saved
        geo = self.geometry
        if self.winograd:
            return self.winograd_backward(dy, x, w)
        n, c, h, w_in = geo.x_shape
        (ph, pw), (kh, kw), g = geo.padding, geo.kernel, geo.groups
        f = dy.shape[1]
        w_mat = w.reshape(g, f // g, c // g * kh * kw)  # rows in w's own (c, u, v) order
        # (N, F, H_out, W_out) -> (G, F/G, H_out*W_out*N): a free view of a batch-innermost gradient
        dy_mat = dy.transpose(1, 2, 3, 0).reshape(g, f // g, geo.out_size[0] * geo.out_size[1] * n)
        dx = dw = db = None
        dx_jobs = dw_jobs = []
        dx_by_winograd = self.needs_input_grad[0] and WINOGRAD and winograd.applies(  # dx's own convolution
            geo.kernel, geo.stride, geo.dilation, g, (2 - ph, 2 - pw), (h, w_in), f, c, is_device_array(dy),
            winograd_from_32_channels())
        by_convolution = self.needs_input_grad[0] and not dx_by_winograd and input_gradient_is_a_convolution(geo, f)
        if self.needs_input_grad[0] and not by_convolution and not dx_by_winograd:
            dx_pad = empty_in_order((n, c, h + 2 * ph, w_in + 2 * pw), geo.dtype, geo.order, get_array_module(dy))
            dx_jobs = self.input_gradient_jobs(dy_mat, w_mat, dx_pad)
        if self.needs_input_grad[1]:
            dw_jobs = self.weight_gradient_jobs(dy_mat, x)
        results = parallel_map(lambda job: job[0](job[1]), dx_jobs + dw_jobs)
        if dx_by_winograd:
            dx = winograd.input_gradient(batch_innermost(dy), w, ph).astype(geo.dtype, copy=False)
        elif by_convolution:
            dx = input_gradient_by_convolution(dy, w_mat, geo)
        elif self.needs_input_grad[0]:
            dx = dx_pad[:, :, ph:ph + h, pw:pw + w_in]
        if self.needs_input_grad[1]:
            dw_rows = sum(results[len(dx_jobs):])  # the weight gradient jobs' partial sums: (G, kh*C/G*kw, F/G)
            dw = dw_rows.reshape(g, kh, c // g, kw, f // g).transpose(0, 4, 2, 1, 3).reshape(f, c // g, kh, kw)
        if self.needs_input_grad[2]:
            db = dy_mat.sum(axis=2).reshape(f)
        return dx, dw, db

    def winograd_backward(self, dy, x, w):
        """The gradients of a Winograd forward (ops/winograd.py): dW, and dx by the adjoint of the forward
        (``winograd.gradients``, sharing dy's transform with dW) or as the Winograd convolution of dy
        with the flipped, transposed filters: ``adjoint_input_gradient`` chooses."""
        geo = self.geometry
        dy = batch_innermost(dy)
        f, c = w.shape[:2]
        pad = geo.padding[0]
        adjoint = self.needs_input_grad[0] and winograd.adjoint_input_gradient(c, f, pad)
        dx, dw, db = winograd.gradients(dy, x, self.transformed, pad, geo.x_shape, adjoint,
                                        self.needs_input_grad[1], self.needs_input_grad[2])
        if self.needs_input_grad[0] and not adjoint:
            dx = winograd.input_gradient(dy, w, pad)
        return dx, dw, db

    def input_gradient_jobs(self, dy_mat, w_mat, dx_pad):
        """dx_pad = col2im(w_mat^T @ dy_mat), as jobs that each fill a disjoint part of dx_pad's channels
        (one channel range when G = 1, whole groups otherwise): [(function, part), ...]."""
        geo = self.geometry
        (n, c, *_), (kh, kw), g = geo.x_shape, geo.kernel, geo.groups
        xp = get_array_module(dy_mat)
        w_mat_t = xp.ascontiguousarray(w_mat.transpose(0, 2, 1))  # (G, C/G*kh*kw, F/G)
        dtype = xp.result_type(w_mat, dy_mat)
        per_part = 1 if g == 1 else c // g  # input channels per part: split channels, or whole groups
        kk = kh * kw
        width = max(1, geo.tile_columns // n)  # the GEMM's tiles hold whole pixels: `width` output columns

        def input_gradient(part):
            channels = slice(part.start * per_part, part.stop * per_part)
            groups = slice(0, 1) if g == 1 else part  # this part's groups, and their rows of w^T:
            w_part = w_mat_t[:1, channels.start * kk:channels.stop * kk] if g == 1 else w_mat_t[part]
            dx_part = dx_pad[:, channels]
            dx_part[...] = 0
            for first, stop in geo.chunks:  # dcols: (groups, channels*kh*kw, rows, W_out/T, T*N), GEMM by tile
                dy_tiles = self.tiles(dy_mat, (first, stop), width * n)[groups]  # (groups, rows, W_out/T, F/G, T*N)
                dcols = xp.empty(w_part.shape[:2] + dy_tiles.shape[1:3] + dy_tiles.shape[-1:], dtype=dtype)
                tiles_out = dcols.transpose(0, 2, 3, 1, 4)  # the GEMMs' view: (groups, rows, W_out/T, ..., T*N)
                if is_device_array(dcols):  # CuPy's matmul is not given a strided out= (as in forward)
                    tiles_out[...] = xp.matmul(w_part[:, None, None], dy_tiles)
                else:
                    xp.matmul(w_part[:, None, None], dy_tiles, out=tiles_out)
                col2im(dcols.reshape(-1, kh, kw, stop - first, geo.out_size[1], n), dx_part, first, geo.stride,
                       geo.dilation)

        # Split the channels only when each part's col2im still adds slabs of >= SLAB_NUMBERS:
        # LeNet-5's conv2 ran slower cut in two than on one thread, VGG's 32->64 layer faster
        # (docs/performance.md).
        parts = c if g == 1 else g
        first, stop = geo.chunks[0]
        slab = c * (stop - first) * geo.out_size[1] * n
        pieces = 1 if is_device_array(dx_pad) else pieces_for(slab, parts, SLAB_NUMBERS)  # GPU: no threads
        return [(input_gradient, part) for part in split(parts, pieces)]

    def weight_gradient_jobs(self, dy_mat, x):
        """dW = sum over output rows i of window_rows(x)_i @ dy_i^T, as one job per chunk of rows
        returning its partial sum (G, kh*C/G*kw, F/G): one batched matmul of whole output rows (W_out*N
        columns each, or the tiles of ``choose_weight_tile_columns``), the operand order OpenBLAS runs
        faster (docs/performance.md)."""
        tile = self.geometry.weight_tile_columns

        def weight_gradient(rows):  # one chunk's share of dW: its row-window copy and one batched matmul
            products = self.window_rows(x, rows, tile) @ self.tiles(dy_mat, rows, tile).swapaxes(-1, -2)
            return products.sum(axis=(1, 2))

        return [(weight_gradient, rows) for rows in self.geometry.chunks]

    def window_rows(self, x, rows, tile_columns):
        """x: (N, C, H, W), unpadded -> the windows of output rows ``rows`` = (first, stop) as a view
        (G, rows, W_out*N/T, kh*C/G*kw, T) for tiles of T GEMM columns (a divisor of W_out*N): column
        k of tile t is output pixel j, image n, for t T + k = j N + n, and

            view[g, i, t, (u, c, v), k] = x_pad[n, g C/G + c, (first + i) sh + u dh, j sw + v dw]

        im2col's columns without its copy of every window: the copy holds each needed input row kw
        times, shifted by v (ROW WINDOWS in the module docstring), and the kh rows of a window are
        then neighbouring rows of the copy, so one stride walks all of (u, c, v).  Padding is written as zeros here;
        x is never padded.  With dilation dh > 1 the window's rows are not neighbours, and the copy
        holds every output row's kh rows (im2col's size)."""
        geo = self.geometry
        xp = get_array_module(x)
        (n, c, h, w_in), (kh, kw), (sh, sw), (ph, pw), (dh, dw), g = (
            geo.x_shape, geo.kernel, geo.stride, geo.padding, geo.dilation, geo.groups)
        w_out = geo.out_size[1]
        first, stop = rows
        if dh == 1:  # copy rows: the padded rows first*sh .. (stop-1)*sh + kh - 1, once each
            depth, step = (stop - 1 - first) * sh + kh, sh
            runs = [(slice(None), first * sh, 1, depth)]  # (copy rows, first padded row, row step, rows)
        else:  # copy row (i, u): padded row (first + i) sh + u dh
            depth, step = (stop - first) * kh, kh
            runs = [(slice(u, None, kh), first * sh + u * dh, sh, stop - first) for u in range(kh)]
        copy = xp.empty((g, depth, c // g, kw, w_out, n), dtype=x.dtype)
        source = x.transpose(1, 2, 3, 0).reshape(g, c // g, h, w_in, n)  # a view of batch-innermost memory
        if pw == 0:  # every shift's columns lie inside x: all kw shifts in one copy (batch 1 feels each call)
            st = source.strides
            shifts = strided_view(  # shifts[g, c, r, v, j, n] = x[n, g C/G + c, r, v dw + j sw]
                source, (g, c // g, h, kw, w_out, n), (*st[:3], dw * st[3], sw * st[3], st[4]))
        for copy_rows, start, row_step, count in runs:
            block = copy[:, copy_rows]  # (G, count, C/G, kw, W_out, N)
            k0, k1 = inside(start - ph, row_step, count, h)
            if k0 > 0 or k1 < count:  # zeros only where there is padding
                block[:, :k0] = 0
                block[:, k1:] = 0
            r = start - ph + k0 * row_step
            rows_inside = slice(r, r + (k1 - k0 - 1) * row_step + 1, row_step)
            if pw == 0:
                if k1 > k0:
                    block[:, k0:k1] = shifts[:, :, rows_inside].transpose(0, 2, 1, 3, 4, 5)
            else:  # shift by shift, each with its own columns inside x
                for v in range(kw):
                    j0, j1 = inside(v * dw - pw, sw, w_out, w_in)
                    target = block[:, k0:k1, :, v]  # (G, rows inside, C/G, W_out, N)
                    if j0 > 0 or j1 < w_out:
                        target[:, :, :, :j0] = 0
                        target[:, :, :, j1:] = 0
                    if k1 > k0 and j1 > j0:
                        q = v * dw - pw + j0 * sw
                        picked = source[:, :, rows_inside, q:q + (j1 - j0 - 1) * sw + 1:sw]
                        target[:, :, :, j0:j1] = picked.transpose(0, 2, 1, 3, 4)
        s_n = copy.itemsize  # the strides, from the shape (NumPy may give a length-1 axis any stride)
        s_v = w_out * n * s_n
        s_row = c // g * kw * s_v
        s_g = depth * s_row
        return strided_view(copy, (g, stop - first, w_out * n // tile_columns, kh * (c // g) * kw, tile_columns),
                            (s_g, step * s_row, tile_columns * s_n, s_v, s_n))

    def tiles(self, matrix, rows, tile_columns):
        """matrix: (G, M, H_out*W_out*N) -> the view (G, rows, W_out*N/T, M, T) of output rows
        ``rows``, tiled like ``window_rows``' columns."""
        n, (h_out, w_out) = self.geometry.x_shape[0], self.geometry.out_size
        g, m, _ = matrix.shape
        tiled = matrix.reshape(g, m, h_out, w_out * n // tile_columns, tile_columns)[:, :, rows[0]:rows[1]]
        return tiled.transpose(0, 2, 3, 1, 4)


class Conv2dReLUMaxPool(Function):
    """x: (N, C, H, W), w: (F, C/G, kh, kw), b: (F,) or None -> y: (N, F, H_p, W_p) stored batch innermost,

        y = relu(max_pool2d(conv2d(x, w, b, stride, padding, dilation, groups), pool_kernel))

    for pooling windows that tile the convolution's output (stride = kernel, no padding; H_p = H_out
    // ph, W_p = W_out // pw), in INFERENCE: ``nn.layers.conv_relu_pool_fuses`` chooses it only when
    nothing needs a gradient, so it has no backward.  LeNet-5's two blocks, convolution -> ReLU ->
    pooling (the ReLU moved after the pooling, ``relu_commutes_with_pool``), as one op: the
    convolution's row chunks, one a thread, each pooled as soon as its GEMMs have written it, while
    it is still in that core's cache (the separate pooling read it back from memory, half of it
    from the other core's), and the ReLU on the pooled rows in place; the conv rows no window
    reaches are not computed.  Batch 512: 1.52 -> 1.31 ms (1 -> 6) and 1.57 -> 1.35 (6 -> 16)
    (docs/performance.md, 2026-12-04, second session).  Layers that take another path (Winograd,
    one small image, the GPU, an empty batch) run it, then ``max_of_window_views`` and the ReLU,
    still as one op (batch 1 pays one op's bookkeeping instead of three)."""

    inference_only = True

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, pool_kernel=(2, 2)):
        if any(self.needs_input_grad):
            raise RuntimeError("Conv2dReLUMaxPool is for inference: no input may need a gradient "
                               "(nn.layers.conv_relu_pool_fuses chooses it)")
        xp = get_array_module(x)
        x = batch_innermost(x)
        conv = Conv2d()
        conv.needs_input_grad = (False, False, False)
        path = conv.choose_path(x, w.shape, stride, padding, dilation, groups) if x.shape[0] else "empty"
        if path != "row windows":  # the path chosen once: batch 1 feels every microsecond
            y = conv.forward(x, w, b, stride, padding, dilation, groups) if path == "empty" else conv.convolve(
                path, x, w, b)
            out_size = (y.shape[2] // pool_kernel[0], y.shape[3] // pool_kernel[1])
            pooled = max_of_window_views(y, pool_kernel, pool_kernel, out_size)
            return xp.maximum(pooled, pooled.dtype.type(0), out=pooled)
        geo = conv.geometry
        n, f = x.shape[0], w.shape[0]
        (h_out, w_out), (kh, kw) = geo.out_size, pool_kernel
        h_p, w_p = h_out // kh, w_out // kw
        y_mat = xp.empty((groups, f // groups, h_out * w_out * n), dtype=xp.result_type(x, w))
        y = y_mat.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)
        pooled = xp.empty((f, h_p, w_p, n), dtype=y_mat.dtype).transpose(3, 0, 1, 2)
        multiply = conv.row_multiplier(x, w, b, y_mat)

        def convolve_and_pool(pooled_rows):  # disjoint rows of y and of the pooled output: parallel threads
            rows = (pooled_rows.start * kh, pooled_rows.stop * kh)
            multiply(rows)
            out = pooled[:, :, pooled_rows]
            with small_ufunc_buffer():  # as in pool.max_pool_by_window_views: views of runs of N numbers
                maximum_of(window_views(y[:, :, rows[0]:rows[1]], slice(None), pool_kernel, pool_kernel,
                                        (pooled_rows.stop - pooled_rows.start, w_p)), out)
                xp.maximum(out, zeros, out=out)

        zeros = zeros_along_innermost(pooled)  # ReLU's fast array-array maximum (ops/activation.py)
        parallel_map(convolve_and_pool, split(h_p, pooled_chunks(geo, h_p, kh)))
        return pooled


def pooled_chunks(geometry, pooled_rows, pool_rows):
    """How many chunks Conv2dReLUMaxPool cuts its ``pooled_rows`` output rows into (``pool_rows`` conv
    rows each): as few as CHUNK_NUMBERS copied numbers allow, and one a thread when the layer is
    threaded (its forward has more than one chunk), not CHUNKS_PER_THREAD: with the pooling inside,
    LeNet-5's batch-512 layers ran fastest in one chunk a thread."""
    per_row = copied_per_row(geometry.x_shape, geometry.kernel, geometry.stride, geometry.dilation,
                             geometry.out_size[1])
    rows_per_chunk = max(1, CHUNK_NUMBERS // per_row // pool_rows)  # pooled rows
    pieces = -(-pooled_rows // rows_per_chunk)
    if len(geometry.chunks) > 1:
        pieces = -(-pieces // get_num_threads()) * get_num_threads()
    return min(pooled_rows, pieces)


def plain_im2col_convolution(x, w, b, geo):
    """x: (1, C, H, W) stored batch innermost, w: (F, C/G, kh, kw), b: (F,) or None -> y: (1, F, H_out,
    W_out) stored (F, H_out, W_out, 1): im2col's whole column matrix as one copy, then one GEMM
    (``reference.conv2d_forward_im2col``'s arithmetic).  For one image of a small layer the row
    windows' per-row GEMMs and their bookkeeping cost more than the work: LeNet-5's two layers at
    batch 1 took 21.6 and 28.1 us that way, 14.4 and 16.5 this way; at batch 8 the row windows are
    faster again (docs/performance.md, 2026-12-03).  Backward is the usual one (``Conv2d.backward``)."""
    n, c, _, _ = geo.x_shape
    f, c_group, kh, kw = w.shape
    (sh, sw), (dh, dw), g = geo.stride, geo.dilation, geo.groups
    h_out, w_out = geo.out_size
    x_pad = pad2d(x, geo.padding).transpose(1, 2, 3, 0)  # (C, Hp, Wp, N)
    s_c, s_h, s_w, s_n = x_pad.strides
    windows = strided_view(  # windows[c, u, v, i, j, n] = x_pad[n, c, i sh + u dh, j sw + v dw]
        x_pad, (c, kh, kw, h_out, w_out, n), (s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w, s_n))
    cols = windows.reshape(g, c_group * kh * kw, h_out * w_out * n)  # the copy: columns in (H_out, W_out, N) order
    y = w.reshape(g, f // g, c_group * kh * kw) @ cols
    if b is not None:
        y += b.reshape(g, f // g, 1)
    return y.reshape(f, h_out, w_out, n).transpose(3, 0, 1, 2)


def window_weights(w, groups):
    """w: (F, C/G, kh, kw) -> (G, F/G, kh*C/G*kw), the filter rows in ``window_rows``' (u, c, v) order."""
    f, c_group, kh, kw = w.shape
    rows = get_array_module(w).ascontiguousarray(w.transpose(0, 2, 1, 3))
    return rows.reshape(groups, f // groups, kh * c_group * kw)


def inside(offset, step, count, size):
    """(k0, k1): the k in range(count) with 0 <= offset + k*step < size are k0 .. k1 - 1."""
    k0 = min(count, max(0, -(offset // step)))
    return k0, max(k0, min(count, (size - 1 - offset) // step + 1))


def input_gradient_is_a_convolution(geometry, filters):
    """Whether backward computes dx as a convolution of dy (``input_gradient_by_convolution``) rather
    than col2im of ``w^T dy``, for a layer of ``filters`` filters: for stride 1 (the 3x3 layers of VGG
    and ResNet), when each group has at least TRANSPOSED_MIN_CHANNELS input channels (with fewer, dx's
    GEMM has too few rows for OpenBLAS: LeNet-5's 6-channel conv2 is faster through col2im) and no
    more filters than input channels (with more, col2im's GEMM has the long side, kh*kw*C rows against
    F, and runs faster: the MNIST example's 32 -> 64 layer, docs/performance.md).  The padding must be
    at most the dilated kernel's reach, so that dx's convolution has padding >= 0."""
    (kh, kw), (dh, dw), (ph, pw) = geometry.kernel, geometry.dilation, geometry.padding
    channels = geometry.x_shape[1] // geometry.groups
    return (geometry.stride == (1, 1) and ph <= dh * (kh - 1) and pw <= dw * (kw - 1)
            and TRANSPOSED_MIN_CHANNELS <= channels and filters // geometry.groups <= channels)


def input_gradient_by_convolution(dy, w_mat, geometry):
    """dy: (N, F, H_out, W_out), w_mat: (G, F/G, C/G*kh*kw) of a stride-1 convolution -> dx: (N, C, H, W)

        dx = conv2d(dy, w flipped in space with F and C swapped, padding d (k - 1) - p, dilation d)

    (``reference.conv2d_input_gradient_as_convolution``).  For stride 1, x's pixel (i, j) met w[u, v]
    at output pixel (i + p - u d, j + p - v d): a correlation of dy with the flipped filter.  This is
    one im2col copy of dy and one GEMM (the forward kernel, chunked and threaded), where col2im makes
    a kh*kw loop of ``+=`` over dx; faster for the 3x3 layers of VGG and ResNet (docs/performance.md).
    """
    (_, c, _, _), (kh, kw), g = geometry.x_shape, geometry.kernel, geometry.groups
    f = dy.shape[1]
    w_flipped = w_mat.reshape(g, f // g, c // g, kh, kw)[:, :, :, ::-1, ::-1]
    w_transposed = get_array_module(dy).ascontiguousarray(w_flipped.transpose(0, 2, 1, 3, 4)).reshape(c, f // g, kh, kw)
    (dh, dw), (ph, pw) = geometry.dilation, geometry.padding
    convolution = Conv2d()
    convolution.needs_input_grad = (False, False, False)
    dx = convolution.forward(dy, w_transposed, None, (1, 1), (dh * (kh - 1) - ph, dw * (kw - 1) - pw),
                             geometry.dilation, g)
    return dx if dx.dtype == geometry.dtype else dx.astype(geometry.dtype)


def choose_tile_columns(w_out, per_pixel, n, groups, filters, small_products):
    """How many GEMM columns (output pixels x images) a forward tile holds, for a layer of G groups of
    ``filters`` filters, per_pixel = C*kh*kw*N window numbers an output pixel reads, batch n: a divisor
    of W_out*N, either whole pixels (T*N) or part of one pixel's images (a divisor of N).

    With small-matrix kernels (``parallel.blas_has_small_product_kernels``), the widest tile whose
    product stays within SMALL_PRODUCT_MACS multiply-adds, if that leaves at least SMALL_PRODUCT_COLUMNS
    columns: OpenBLAS then skips packing, and a ResNet's 16- and 32-filter products run up to 1.5x
    faster (docs/performance.md, 2026-12-02).  Otherwise, and for wide layers, choose_tile_width's
    whole-pixel tiles."""
    if small_products:
        limit = SMALL_PRODUCT_MACS // (filters * (per_pixel // (n * groups)))  # M*K of one product
        pixels = [t * n for t in range(1, w_out + 1) if w_out % t == 0 and t * n <= limit]
        fitting = pixels or [d for d in range(1, n + 1) if n % d == 0 and d <= limit]
        if fitting and max(fitting) >= SMALL_PRODUCT_COLUMNS:
            return max(fitting)
    return choose_tile_width(w_out, per_pixel, n) * n


def choose_weight_tile_columns(w_out, window, n, filters, small_products):
    """How many GEMM columns (the products' K) each product of dW spans, for ``window`` = kh*C/G*kw
    numbers a column and ``filters`` = F/G: whole output rows (W_out*N), except that with
    small-matrix kernels a layer with few window numbers takes the narrowest whole-pixel tile of at
    least WEIGHT_TILE_COLUMNS columns whose (window, T) @ (T, filters) product stays within
    SMALL_PRODUCT_MACS, which OpenBLAS then runs unpacked: the VGG-style 3 -> 32 layer's dW (27 x
    4096 @ 4096 x 32 a row, packed) took 2.37 ms on two threads, in tiles of 1024 columns 1.47
    (docs/performance.md, 2026-12-04, second session).  Wider layers have no such tile and keep
    whole rows: their small-kernel products of 256 columns ran slower than packed rows."""
    row = w_out * n
    if small_products:
        fitting = [t * n for t in range(1, w_out + 1) if w_out % t == 0 and t * n >= WEIGHT_TILE_COLUMNS
                   and window * filters * t * n <= SMALL_PRODUCT_MACS]
        if fitting:
            return min(fitting)
    return row


def choose_tile_width(w_out, per_pixel, n):
    """How many output columns a tile holds: a divisor of W_out (so all tiles are equal and one batched
    matmul multiplies them), the widest whose columns stay within TILE_NUMBERS numbers, but at least
    TILE_COLUMNS columns (W_out * N when the row is shorter): OpenBLAS wastes its time on narrower
    products (docs/performance.md)."""
    divisors = [d for d in range(1, w_out + 1) if w_out % d == 0]
    width = max(d for d in divisors if d == 1 or d * per_pixel <= TILE_NUMBERS)
    if width * n < TILE_COLUMNS:
        width = next((d for d in divisors if d * n >= TILE_COLUMNS), w_out)
    return width


def batch_innermost(x):
    """x: (N, C, H, W) in any memory layout -> the same values stored (C, H, W, N), as a view with
    x's shape.  Free when x is already stored that way (the output of an earlier convolution), and
    for a batch of one image stored NCHW, whose memory is the same (NumPy's contiguity flags ignore
    the length-1 axis; ``memory_order`` would not: batch-1 inference copied every layer's input)."""
    if x.transpose(1, 2, 3, 0).flags.c_contiguous or memory_order(x) == (1, 2, 3, 0):
        return x
    return get_array_module(x).ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def col2im(dcols, dx_pad, first_row, stride, dilation):
    """Add dcols: (C, kh, kw, rows, W_out, N), the gradient of im2col's columns for the output rows
    first_row, first_row + 1, ..., into dx_pad: (N, C, Hp, Wp); the adjoint of im2col.

    Kernel offset (u, v) read x_pad[:, :, u dh + sh i, v dw + sw j] into the cols row (c, u, v); so its
    gradient slab goes back to the same strided positions, and positions that several windows share
    add up.  A loop over the kh*kw offsets, each one vectorised ``+=`` over (C, rows, W_out, N): with
    dcols in this order (the GEMMs write their tiles into it) each slab is read in runs of W_out*N
    numbers, not a tile's T*N, and the layers that take col2im ran their backward in 0.83-0.96 of the
    time (docs/performance.md, 2026-12-04).
    """
    c, kh, kw, rows, w_out, n = dcols.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx_pad_chwn = dx_pad.transpose(1, 2, 3, 0)  # (C, Hp, Wp, N) view, to match dcols' axis order
    with small_ufunc_buffer():  # runs of W_out*N numbers (sw = 1) added where they lie, not copied
        for u in range(kh):
            row_slice = window_slice(u, dh, sh, rows, first=first_row)
            for v in range(kw):
                dx_pad_chwn[:, row_slice, window_slice(v, dw, sw, w_out)] += dcols[:, u, v]
