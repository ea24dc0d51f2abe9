"""Batch normalisation with PyTorch's semantics."""
from ..backend import get_array_module
from ..function import Function
from ..parallel import parallel_map, pieces_for, split

BLOCK_NUMBERS = 1 << 20  # numbers a thread's block of backward holds: its temporaries stay this small


def column_blocks(m, rows):
    """Slices of the m columns of a (rows, m) slice, each of at most about BLOCK_NUMBERS numbers."""
    width = max(1, BLOCK_NUMBERS // max(rows, 1))
    return [slice(start, min(start + width, m)) for start in range(0, m, width)]


def channels_first_2d(x):
    """x: (N, C) or (N, C, H, W) -> (C, M) with M = N*H*W values per channel.  A free view for the
    batch-innermost (C, H, W, N) memory that convolutions return; a copy for other layouts."""
    axes = (1, 0) if x.ndim == 2 else (1, 2, 3, 0)
    return x.transpose(axes).reshape(x.shape[1], -1), axes


def from_channels_first_2d(y2d, shape, axes):
    """Undo ``channels_first_2d``: (C, M) -> a view of shape ``shape``."""
    inverse = [axes.index(axis) for axis in range(len(axes))]
    return y2d.reshape([shape[axis] for axis in axes]).transpose(inverse)


def sums_of_products(a, b):
    """a, b: (C, M) -> (C,): sum over each row of a * b, as C BLAS dot products (one batched matmul of
    (1, M) rows by (M, 1) columns): three times faster than ``einsum('cm,cm->c')`` and no temporary
    (docs/performance.md).  Row sums are ``a @ ones`` for the same reason."""
    return (a[:, None, :] @ b[:, :, None])[:, 0, 0]


class BatchNorm(Function):
    """x: (N, C) or (N, C, H, W); weight, bias: (C,) or None -> y: same shape as x

    Training:  mu, var = mean and biased variance of each channel over its m = N (H W) values;
               x_hat = (x - mu) / sqrt(var + eps);  y = weight x_hat + bias.
               The running statistics are updated IN PLACE, with PyTorch's conventions:
               running = (1 - momentum) running + momentum * batch, using the UNBIASED variance
               var * m / (m - 1) for running_var.
    Evaluation: the running statistics stand in for mu and var (a fixed affine map).

    Backward (training), with g = dy * weight and means over each channel's m values:
        dx = (g - mean(g) - x_hat mean(g x_hat)) / sqrt(var + eps)
        dweight = sum(dy x_hat),  dbias = sum(dy)
    ``relu=True`` fuses a ReLU after it, y = max(weight x_hat + bias, 0), and backward masks dy by
    y > 0 first: one pass over the data less each way, done slice by slice while it is in the cache
    (``nn.Sequential`` and ResNet's blocks use it in training; ``batch_norm_relu``).  A ``residual``
    (x's shape, with relu=True) is added before the ReLU, y = max(weight x_hat + bias + residual, 0),
    the end of a ResNet block: its gradient is the masked dy, which backward writes once.
    The work is done on a (C, M) view, and y = (x - mu) * scale + shift with the per-channel
    scale = weight / sqrt(var + eps): two passes over the data instead of five.  backward folds
    every per-channel factor into one coefficient per term, in two passes over column blocks of at
    most BLOCK_NUMBERS (``column_blocks``): its temporaries stay a few MB however big the layer
    (docs/performance.md, 2026-12-02).
    MEMORY: what is kept is x and mu, not (x - mu): x is the previous op's output, which the graph
    keeps alive until this op's backward anyway, so backward recomputes x - mu a block at a time.
    Keeping (x - mu) held a second copy of every batch norm's input from forward to backward: 470 MB
    of the VGG-style step's 1.68 GB at batch 64 and 128x128 (docs/performance.md, 2026-12-03).
    """

    def forward(self, x, weight, bias, residual=None, running_mean=None, running_var=None, training=False,
                momentum=0.1, eps=1e-5, relu=False):
        xp = get_array_module(x)
        x2d, axes = channels_first_2d(x)
        residual2d = None if residual is None else channels_first_2d(residual)[0]  # only with relu (functional)
        c, m = x2d.shape
        if training and m < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, got input shape {x.shape}")
        if training:
            mean, var = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
        else:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        y2d, inv_std = xp.empty_like(x2d), xp.empty(c, dtype=x.dtype)
        zeros = xp.zeros(m, dtype=x.dtype) if relu else None  # a row: NumPy's fast array-array maximum

        ones = xp.ones(m, dtype=x.dtype) if training else None

        def normalise(rows):  # channels are independent: slices of them run on parallel threads
            if training:
                mean[rows] = (x2d[rows] @ ones) / m  # BLAS reductions (sums_of_products)
            centred = x2d[rows] - mean[rows, None]  # a temporary: see MEMORY
            if training:
                var[rows] = sums_of_products(centred, centred) / m
            inv_std[rows] = 1 / xp.sqrt(var[rows] + x.dtype.type(eps))
            scale = inv_std[rows] if weight is None else inv_std[rows] * weight[rows]
            xp.multiply(centred, scale[:, None], out=y2d[rows])
            if bias is not None:
                y2d[rows] += bias[rows, None]
            if residual2d is not None:
                y2d[rows] += residual2d[rows]
            if relu:  # fused: max(y, 0) while this slice is still in the cache, no array of its own
                xp.maximum(y2d[rows], zeros, out=y2d[rows])

        parallel_map(normalise, split(c, pieces_for(c * m, c)))
        if training and running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += momentum * (var * (m / (m - 1))).astype(running_var.dtype)
        self.save_for_backward(x2d, mean, inv_std, weight, y2d if relu else None)
        self.shape, self.axes, self.training, self.has_residual = x.shape, axes, training, residual is not None
        return from_channels_first_2d(y2d, x.shape, axes)

    def backward(self, dy):
        xp = get_array_module(dy)
        x2d, mean, inv_std, weight, relu_output = self.saved
        dy2d, _ = channels_first_2d(dy)
        c, m = dy2d.shape
        sum_dy, sum_dy_centred = xp.empty(c, dtype=dy.dtype), xp.empty(c, dtype=dy.dtype)
        dx2d = xp.empty_like(dy2d) if self.needs_input_grad[0] else None
        # the masked dy, g: the residual's gradient when there is one (in its own array), else kept in dx's memory
        g2d = xp.empty_like(dy2d) if self.has_residual else dx2d

        ones = xp.ones(min(m, BLOCK_NUMBERS), dtype=dy.dtype)

        def input_gradient(rows):  # per channel, so slices of channels run on parallel threads
            blocks = column_blocks(m, rows.stop - rows.start)
            mu = mean[rows, None]
            width = blocks[0].stop if blocks else 0  # no blocks: an empty batch
            block = xp.empty((rows.stop - rows.start, width), dtype=dy.dtype)  # x - mu, a block at a time

            def centred(cols):  # x - mu of one block, recomputed from x (MEMORY in the class docstring)
                return xp.subtract(x2d[rows, cols], mu, out=block[:, :cols.stop - cols.start])

            sum_dy[rows], sum_dy_centred[rows] = 0, 0
            for cols in blocks:  # pass 1: the sums, and g = dy through the ReLU kept in dx's memory
                g = dy2d[rows, cols]
                if relu_output is not None:
                    mask = relu_output[rows, cols] > 0
                    g = xp.multiply(g, mask, out=g2d[rows, cols]) if g2d is not None else g * mask
                sum_dy[rows] += g @ ones[:g.shape[1]]
                sum_dy_centred[rows] += sums_of_products(g, centred(cols))  # = sum(dy x_hat) / inv_std
            if dx2d is None:
                return
            scale = inv_std[rows] if weight is None else inv_std[rows] * weight[rows]
            # dx = scale (g - mean(g) - (x - mu) inv_std^2 mean(g (x - mu))), one coefficient a term
            centred_factor = (scale * inv_std[rows] ** 2 * sum_dy_centred[rows] / m)[:, None]
            offset = (scale * sum_dy[rows] / m)[:, None]
            for cols in blocks:  # pass 2, block by block
                g = dy2d[rows, cols] if relu_output is None else g2d[rows, cols]
                xp.multiply(g, scale[:, None], out=dx2d[rows, cols])
                if self.training:
                    terms = block if len(blocks) == 1 else centred(cols)  # one block: pass 1's x - mu is still there
                    terms *= centred_factor
                    dx2d[rows, cols] -= terms
                    dx2d[rows, cols] -= offset

        parallel_map(input_gradient, split(c, pieces_for(c * m, c)))
        dx = None if dx2d is None else from_channels_first_2d(dx2d, self.shape, self.axes)
        dweight = sum_dy_centred * inv_std if self.needs_input_grad[1] else None
        dbias = sum_dy if self.needs_input_grad[2] else None
        if self.has_residual:
            return dx, dweight, dbias, from_channels_first_2d(g2d, self.shape, self.axes)
        return dx, dweight, dbias
