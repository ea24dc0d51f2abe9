"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016): 4x fewer multiplications than im2col's GEMM.

One output tile of 4x4 pixels of filter f needs a 6x6 patch d of each input channel c, and

    y_tile[f] = AT ( sum_c  U[f, c] * V[c] ) AT^T,    U[f, c] = G w[f, c] G^T,   V[c] = BT d[c] BT^T

with ``*`` elementwise on 6x6 arrays.  So for each of the 36 positions k of the 6x6 arrays the sum
over channels is a matrix product, U[k] (F, C) @ V[k] (C, tiles): 36 GEMMs of 36 F C multiply-adds
per tile, against im2col's 16 * 9 F C, and the transforms are small matrix products over the
patches (``reference.conv2d_forward_winograd`` is the same arithmetic one tile at a time).

The transforms come from the points 0, 1, -1, 1/2, -2 and infinity (Barabasz et al., "Error analysis
and improving the accuracy of Winograd convolution for deep neural networks", 2020): their float32
error is 2.7x smaller than that of the usual 0, +-1, +-2, and stays within PyTorch's parity
tolerances (docs/performance.md, 2026-12-02, fifth session).

- FORWARD (``convolution``): x stored (C, H, W, N) like every convolution here, padded once; chunks
  of tile rows and images (``chunks_of_tiles``), each one copy of its 6x6 patches, the input
  transform as two batched products with BT (``two_sided``), the 36 GEMMs as one batched matmul, the
  output transform as two with AT, written into y stored (F, H_out, W_out, N).  Chunks write
  disjoint tiles: independent jobs for convnp's threads.
- GRADIENTS (``gradients``): the adjoint of each step, per chunk: Z = AT^T dy_tile AT (36, F, tiles),
  dU[k] += Z[k] @ V[k]^T and dw = G^T dU G; dV[k] = U[k]^T @ Z[k] and dx's patches BT^T dV BT,
  added back where the patches overlap; db from Z at (1, 1).  Or dx as the Winograd convolution of
  dy with the filters flipped in space and F and C swapped, padding 2 - p (``input_gradient``);
  which one is faster depends on the channels (``adjoint_input_gradient``).  A bias is added to the
  products at (1, 1) before the output transform (``convolution``).

Used where it is faster than im2col (``applies``): 3x3 stride-1 layers with at least 32 channels
(64 on AVX2 CPUs, unless the layer widens), measured layer by layer (docs/performance.md, 2026-12-02,
fifth session, and 2026-12-03, AVX2 section).  The transforms move many numbers per multiplication
saved, so with 16 channels im2col's one long GEMM is faster.
"""
from ..backend import get_array_module
from ..parallel import get_num_threads, parallel_map, pieces_for, split
from .windows import strided_view

# F(4x4, 3x3) on the points 0, 1, -1, 1/2, -2, infinity (Toom-Cook; exact in binary but for G's thirds and fifteenths)
INPUT_TRANSFORM = ((1, -1.5, -2, 1.5, 1, 0),  # BT: 6x6 patch -> V = BT d BT^T
                   (0, -1, 0.5, 2.5, 1, 0),
                   (0, 1, -2.5, 0.5, 1, 0),
                   (0, -2, -1, 2, 1, 0),
                   (0, 0.5, -1, -0.5, 1, 0),
                   (0, 1, -1.5, -2, 1.5, 1))
FILTER_TRANSFORM = ((1, 0, 0),  # G: 3x3 filter -> U = G w G^T
                    (1 / 3, 1 / 3, 1 / 3),
                    (-1 / 3, 1 / 3, -1 / 3),
                    (-16 / 15, -8 / 15, -4 / 15),
                    (1 / 15, -2 / 15, 4 / 15),
                    (0, 0, 1))
OUTPUT_TRANSFORM = ((1, 1, 1, 1, 1, 0),  # AT: 6x6 product -> 4x4 output tile = AT m AT^T
                    (0, 1, -1, 0.5, -2, 0),
                    (0, 1, 1, 0.25, 4, 0),
                    (0, 1, -1, 0.125, -8, 1))
TILE = 4  # output pixels a tile spans in each direction
BIAS_POSITION = 1 * 6 + 1  # the product (a, b) = (1, 1): AT's column 1 is all ones (see convolution, gradients)
PATCH = 6  # input pixels a tile reads in each direction: TILE + 3 - 1
CHUNK_COLUMNS = 256  # tiles (GEMM columns) a chunk aims for: see chunks_of_tiles
GROUP_CHUNKS = 16  # chunks whose (36, F, C) shares of dU are held at once: see gradients
MIN_CHANNELS = 32  # input channels a layer needs for Winograd: see applies
WIDE_CHANNELS = 64  # without AVX-512 kernels, unless it has more filters than channels: see applies
MIN_FILTERS = 16  # and filters


def applies(kernel, stride, dilation, groups, padding, out_size, channels, filters, on_device, from_32_channels):
    """Whether a convolution of ``channels`` -> ``filters`` runs as Winograd F(4x4, 3x3) (forward, and
    its filter gradient): a 3x3 kernel, stride 1, no dilation, one group, equal padding of 0 to 2 (so
    that the input gradient's convolution, padding 2 - p, is one too), an output a whole number of
    tiles (a ragged last tile computes up to 3 rows and columns for nothing, plus a crop copy), on
    the CPU, at least MIN_CHANNELS input channels and MIN_FILTERS filters.  With 16 channels the 36
    GEMMs are too short (K = C) and transforming every patch costs more than the multiplications
    save: per layer, Winograd / im2col time at batch 128 is 0.5-0.6 from 64 channels, 0.6-0.9 at
    32, 1.3-1.7 at 16 (docs/performance.md, 2026-12-02, fifth session).

    Those 32-channel figures are from AVX-512 CPUs (Zen 4, Sapphire Rapids).  On an AVX2 CPU (a Zen 3
    VM, OpenBLAS's Haswell kernels) im2col was the faster one for 32 -> 32 layers: 0.81-0.89 of
    Winograd's time at 32x32, forward, dx and dW alike (docs/performance.md, 2026-12-03, second
    session).  So unless ``from_32_channels`` (``conv.winograd_from_32_channels``: AVX-512 kernels,
    or a BLAS that does not say), a layer needs WIDE_CHANNELS input channels, or more filters than
    channels (32 -> 64 stays Winograd there, 0.97 of im2col's time)."""
    enough_channels = channels >= (MIN_CHANNELS if from_32_channels or filters > channels else WIDE_CHANNELS)
    return (kernel == (3, 3) and stride == (1, 1) and dilation == (1, 1) and groups == 1
            and 0 <= padding[0] == padding[1] <= 2 and out_size[0] % TILE == 0 and out_size[1] % TILE == 0
            and not on_device and enough_channels and filters >= MIN_FILTERS)


def adjoint_input_gradient(channels, filters, padding):
    """Whether a Winograd layer's dx is the adjoint of its forward (``gradients``) rather than
    the Winograd convolution of dy with the flipped filters.  The adjoint shares dy's transform with
    dW but transforms and adds back 36 numbers per tile and input channel; the convolution of dy
    transforms dy's patches (filters) and writes 16.  Measured (backward, batch 128): adjoint / the
    other 0.84-0.94 with more filters than channels, 0.90-0.97 from 64 channels, 1.11-1.21 for
    32 -> 32; with padding 0 the other's output is ragged (the MNIST example's 32 -> 64: 0.72)."""
    return filters > channels or channels >= 64 or padding != 1


def filter_transform_matrix(dtype, xp):
    """kron(G, G): (36, 9), so that U[(a, b)] = sum over (u, v) of G[a, u] w[u, v] G[b, v] is ONE GEMM
    for all F*C filters (a batched matmul of 6x3 products per filter took 4 ms for 128 x 128)."""
    g = xp.asarray(FILTER_TRANSFORM, dtype=dtype)
    return xp.kron(g, g)


def transformed_filters(w):
    """w: (F, C, 3, 3) -> U: (36, F, C), U[(a, b)] = (G w[f, c] G^T)[a, b] for every f, c, in w's dtype."""
    xp = get_array_module(w)
    f, c = w.shape[:2]
    return (filter_transform_matrix(w.dtype, xp) @ w.reshape(f * c, 9).T).reshape(PATCH * PATCH, f, c)


def tile_counts(out_size):
    """(H_out, W_out) -> the tiles (rows, columns) that cover it: a ragged last tile is computed whole."""
    return -(-out_size[0] // TILE), -(-out_size[1] // TILE)


def padded_input(x, padding, tiles):
    """x: (N, C, H, W) stored batch innermost -> x_pad: (C, 4 T_h + 2, 4 T_w + 2, N), x at offset (p, p)
    and zeros around it (the padding, and the rows and columns a ragged last tile reads).  x's own
    memory when there is nothing to add (padding 0 and whole tiles: the MNIST example's 32 -> 64
    layer), else a copy, in slices of channels on convnp's threads when it is big: a layer's one
    long memory pass, which ran on the calling thread while the other waited."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    rows, cols = TILE * tiles[0] + 2, TILE * tiles[1] + 2
    x_chwn = x.transpose(1, 2, 3, 0)
    if padding == 0 and (rows, cols) == (h, w):
        return x_chwn
    x_pad = xp.empty((c, rows, cols, n), dtype=x.dtype)

    def pad(channels):  # slices of channels are disjoint: they run on parallel threads
        part = x_pad[channels]
        part[:, :padding] = 0
        part[:, padding + h:] = 0
        part[:, padding:padding + h, :padding] = 0
        part[:, padding:padding + h, padding + w:] = 0
        part[:, padding:padding + h, padding:padding + w] = x_chwn[channels]

    parallel_map(pad, split(c, pieces_for(x_pad.size, c, streaming=True)))
    return x_pad


def chunks_of_tiles(tiles, n):
    """The chunks a layer's tiles are cut into: ((first tile row, stop), (first image, stop)), each of
    about CHUNK_COLUMNS tiles (whole tile rows of all images when those are few, else one tile row of
    some of the images), at least one per thread when each is worth a thread."""
    rows, cols = tiles
    per_row = cols * n
    if per_row <= CHUNK_COLUMNS:
        step = max(1, CHUNK_COLUMNS // per_row)
        pieces = pieces_for(rows * per_row * PATCH * PATCH, rows)
        step = min(step, -(-rows // pieces))
        return [((r, min(r + step, rows)), (0, n)) for r in range(0, rows, step)]
    images = max(1, CHUNK_COLUMNS // cols)
    return [((r, r + 1), (i, min(i + images, n))) for r in range(rows) for i in range(0, n, images)]


def patches(x_pad, chunk):
    """The 6x6 input patches of a chunk's tiles, transformed: V (36, C, tiles), V[(a, b)] = (BT d BT^T)[a, b]
    with the tiles ordered (tile row, tile column, image)."""
    xp = get_array_module(x_pad)
    (r0, r1), (n0, n1) = chunk
    c, _, cols, _ = x_pad.shape
    tile_cols = (cols - 2) // TILE
    block = x_pad[:, TILE * r0:, :, n0:n1]
    s_c, s_h, s_w, s_n = block.strides
    d = strided_view(block, (PATCH, PATCH, c, r1 - r0, tile_cols, n1 - n0),
                     (s_h, s_w, s_c, TILE * s_h, TILE * s_w, s_n))
    d = xp.ascontiguousarray(d).reshape(PATCH, PATCH, -1)  # (a, b, (c, tiles))
    return two_sided(INPUT_TRANSFORM, d).reshape(PATCH * PATCH, c, -1)


def two_sided(matrix, arrays):
    """matrix: (m, k) (a nested tuple), arrays: (k, k, L) -> (m, m, L): matrix @ A @ matrix^T for each of
    the L (k, k) arrays A[:, :, l], as two batched matmuls, one along each axis, each k products of
    (m, k) @ (k, L).  One (m, k) @ (k, k*L) product instead ran 2.4x slower at the input transform's
    sizes (docs/performance.md)."""
    xp = get_array_module(arrays)
    m = xp.asarray(matrix, dtype=arrays.dtype)
    first = xp.matmul(m, arrays.transpose(1, 0, 2))  # (k: the second axis, m: the first one done, L)
    return xp.matmul(m, first.transpose(1, 0, 2))  # (m, m, L)


def tile_view(y_full, chunk):
    """y_full: (F, 4 T_h, 4 T_w, N) -> the writable view (4, 4, F, tile rows, tile columns, images) of a
    chunk's tiles (output tiles do not overlap: a reshape, no strides of its own)."""
    (r0, r1), (n0, n1) = chunk
    f, rows, cols, n = y_full.shape
    tiled = y_full.reshape(f, rows // TILE, TILE, cols // TILE, TILE, n).transpose(2, 4, 0, 1, 3, 5)
    return tiled[:, :, :, r0:r1, :, n0:n1]


def convolution(x, u, padding, b=None):
    """x: (N, C, H, W) stored batch innermost, u: (36, F, C) from ``transformed_filters``, padding p, b:
    (F,) or None -> y: (N, F, H + 2p - 2, W + 2p - 2) stored (F, H_out, W_out, N): a 3x3 stride-1
    convolution, plus b.  The bias goes in before the output transform, into the products at
    BIAS_POSITION: AT's column 1 is all ones, so AT m AT^T adds it to all 16 outputs of each tile,
    and it costs a pass over 1/36 of the products instead of one over y."""
    xp = get_array_module(x)
    n, _, h, w = x.shape
    f = u.shape[1]
    out_size = (h + 2 * padding - 2, w + 2 * padding - 2)
    tiles = tile_counts(out_size)
    x_pad = padded_input(x, padding, tiles)
    ragged = out_size[0] % TILE or out_size[1] % TILE
    full = (f, TILE * tiles[0], TILE * tiles[1], n) if ragged else (f, *out_size, n)
    y_full = xp.empty(full, dtype=x_pad.dtype)
    b_col = None if b is None else b.reshape(f, 1).astype(x_pad.dtype, copy=False)

    def tiles_of(chunk):  # chunks write disjoint tiles of y_full, so they run on parallel threads
        products = xp.matmul(u, patches(x_pad, chunk))  # (36, F, tiles): the 36 GEMMs
        if b_col is not None:
            products[BIAS_POSITION] += b_col
        out = tile_view(y_full, chunk)
        out[...] = two_sided(OUTPUT_TRANSFORM, products.reshape(PATCH, PATCH, -1)).reshape(out.shape)

    parallel_map(tiles_of, chunks_of_tiles(tiles, n))
    y = xp.ascontiguousarray(y_full[:, :out_size[0], :out_size[1]]) if ragged else y_full
    return y.transpose(3, 0, 1, 2)


def input_gradient(dy, w, padding):
    """dy: (N, F, H_out, W_out) stored batch innermost, w: (F, C, 3, 3) of a stride-1 layer with padding
    p -> dx: (N, C, H, W), the Winograd convolution of dy with the filters flipped in space and F and
    C swapped, padding 2 - p (``reference.conv2d_input_gradient_as_convolution``)."""
    flipped = get_array_module(w).ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return convolution(dy, transformed_filters(flipped), 2 - padding)


def gradients(dy, x, u, padding, x_shape, input_gradient=True, filter_gradient=True, bias_gradient=False):
    """dy: (N, F, H_out, W_out) and x: (N, C, H, W) (None without the filter gradient), both stored
    batch innermost, u: (36, F, C) -> (dx, dw, db) of ``convolution`` (each None when not wanted):
    dx: (N, C, H, W) stored batch innermost, dw: (F, C, 3, 3), db: (F,), the sum of Z[BIAS_POSITION]
    over the tiles (AT's all-ones column: the sum of each tile's dy; a ragged tile's extra rows and
    columns of dy are zeros).  Per chunk of tiles, the adjoint of each step of the forward:

        Z = AT^T dy_tile AT      (36, F, tiles): the gradient of the 36 products' outputs
        dU[k] += Z[k] @ V[k]^T    the filters' (V: the chunk's transformed input patches again)
        dV[k] = U[k]^T @ Z[k]     (36, C, tiles), and dd = BT^T dV BT: each 6x6 input patch's gradient

    then dw = G^T dU G, and the patches' gradients are added into dx where they overlap (a tile's
    patch reaches 2 rows and columns into the next tile's): the chunks of even and of odd blocks of
    tile rows run as two waves of jobs, so no two running chunks add to the same rows."""
    if not (input_gradient or filter_gradient or bias_gradient):
        return None, None, None
    xp = get_array_module(dy)
    n, c, h, w = x_shape
    f, h_out, w_out = dy.shape[1:]
    tiles = tile_counts((h_out, w_out))
    dy_mem = dy.transpose(1, 2, 3, 0)  # (F, H_out, W_out, N)
    if h_out % TILE or w_out % TILE:  # a ragged last tile: its missing outputs have zero gradient
        dy_full = xp.zeros((f, TILE * tiles[0], TILE * tiles[1], n), dtype=dy.dtype)
        dy_full[:, :h_out, :w_out] = dy_mem
    else:
        dy_full = dy_mem
    x_pad = padded_input(x, padding, tiles) if filter_gradient else None
    # dx of the padded input, 2 rows and columns more than the patches reach, so that every overlap
    # is a reshape of a slice (see add_patches)
    dx_pad = xp.zeros((c, TILE * tiles[0] + 4, TILE * tiles[1] + 4, n), dtype=dy.dtype) if input_gradient else None
    transposed_output_transform = tuple(zip(*OUTPUT_TRANSFORM))  # AT^T: (6, 4)
    transposed_input_transform = tuple(zip(*INPUT_TRANSFORM))  # BT^T

    def gradients_of(chunk):  # a chunk's shares of dU (36, F, C) and db (F,), each or None; adds to dx_pad
        dy_tiles = xp.ascontiguousarray(tile_view(dy_full, chunk)).reshape(TILE, TILE, -1)  # (a, b, (f, tiles))
        z = two_sided(transposed_output_transform, dy_tiles).reshape(PATCH * PATCH, f, -1)  # (36, F, tiles)
        if input_gradient:
            dv = xp.matmul(u.transpose(0, 2, 1), z)  # (36, C, tiles)
            add_patches(dx_pad, two_sided(transposed_input_transform, dv.reshape(PATCH, PATCH, -1)), chunk)
        du = xp.matmul(z, patches(x_pad, chunk).transpose(0, 2, 1)) if filter_gradient else None
        return du, z[BIAS_POSITION].sum(axis=1) if bias_gradient else None

    chunks = chunks_of_tiles(tiles, n)
    waves = [chunks]  # the filter gradient alone: the chunks' jobs are independent
    if input_gradient:
        block = chunks[0][0][1] - chunks[0][0][0]  # tile rows a chunk spans (all but the last chunk)
        waves = [[chunk for chunk in chunks if chunk[0][0] // block % 2 == parity] for parity in (0, 1)]
        pieces = get_num_threads()
        if min(len(waves[0]), len(waves[1]) or pieces) < pieces:  # fewer chunks than threads: split the images
            waves = [[(rows, (n0 + images.start, n0 + images.stop))
                      for rows, (n0, n1) in wave for images in split(n1 - n0, pieces)] for wave in waves]
    du = db = None  # the chunks' shares, summed a group at a time: memory for GROUP_CHUNKS of them, not all
    for wave in waves:
        for first in range(0, len(wave), GROUP_CHUNKS):
            shares = parallel_map(gradients_of, wave[first:first + GROUP_CHUNKS])
            if filter_gradient:
                du_sum = sum(share[0] for share in shares)
                du = du_sum if du is None else du + du_sum
            if bias_gradient:
                db_sum = sum(share[1] for share in shares)
                db = db_sum if db is None else db + db_sum
    dx = dw = None
    if input_gradient:
        dx = dx_pad[:, padding:padding + h, padding:padding + w].transpose(3, 0, 1, 2)
    if filter_gradient:  # dw = G^T dU G for every (f, c): one GEMM with kron(G, G)
        du = du.reshape(PATCH * PATCH, f * c)
        dw = (du.T @ filter_transform_matrix(du.dtype, xp)).reshape(f, c, 3, 3)
    return dx, dw, db


def add_patches(dx_pad, dd, chunk):
    """dx_pad: (C, 4 T_h + 4, 4 T_w + 4, N), dd: (6, 6, C * tiles) the gradients of a chunk's 6x6 input
    patches: add them where the patches lie, dx_pad[c, 4 i + a, 4 j + b, n] += dd[a, b, c, (i, j, n)].
    In four parts, (a < 4 or not) x (b < 4 or not): within one part no two tiles touch the same
    pixel, so each is one ``+=`` on a reshaped slice of dx_pad."""
    (r0, r1), (n0, n1) = chunk
    c, _, cols, _ = dx_pad.shape
    tile_rows, tile_cols = r1 - r0, (cols - 4) // TILE
    dd = dd.reshape(PATCH, PATCH, c, tile_rows, tile_cols, n1 - n0)
    for a0 in (0, TILE):
        for b0 in (0, TILE):
            target = dx_pad[:, TILE * r0 + a0:TILE * r1 + a0, b0:b0 + TILE * tile_cols, n0:n1]
            target = target.reshape(c, tile_rows, TILE, tile_cols, TILE, n1 - n0).transpose(2, 4, 0, 1, 3, 5)
            part = dd[a0:a0 + TILE, b0:b0 + TILE]  # (4 or 2, 4 or 2, ...)
            target[:part.shape[0], :part.shape[1]] += part
