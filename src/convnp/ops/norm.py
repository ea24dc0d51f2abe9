"""Batch normalisation with PyTorch's semantics."""
from ..backend import get_array_module
from ..function import Function
from ..parallel import over_slices


def channels_first_2d(x):
    """x: (N, C) or (N, C, H, W) -> (C, M) with M = N*H*W values per channel.  A free view for the
    batch-innermost (C, H, W, N) memory that convolutions return; a copy for other layouts."""
    axes = (1, 0) if x.ndim == 2 else (1, 2, 3, 0)
    return x.transpose(axes).reshape(x.shape[1], -1), axes


def from_channels_first_2d(y2d, shape, axes):
    """Undo ``channels_first_2d``: (C, M) -> a view of shape ``shape``."""
    inverse = [axes.index(axis) for axis in range(len(axes))]
    return y2d.reshape([shape[axis] for axis in axes]).transpose(inverse)


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
    The work is done on a (C, M) view, and y = (x - mu) * scale + shift with the per-channel
    scale = weight / sqrt(var + eps): two passes over the data instead of five.  backward keeps
    (x - mu), not x_hat, and folds every per-channel factor into one coefficient per term.
    """

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
        xp = get_array_module(x)
        x2d, axes = channels_first_2d(x)
        c, m = x2d.shape
        if training and m < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, got input shape {x.shape}")
        mean = xp.empty(c, dtype=x.dtype) if training else running_mean.astype(x.dtype)
        var = xp.empty(c, dtype=x.dtype) if training else running_var.astype(x.dtype)
        inv_std, scale = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
        centred, y2d = xp.empty((c, m), dtype=x.dtype), xp.empty((c, m), dtype=x.dtype)

        def normalise_channels(start, stop):  # every step is per channel: a slice of them per thread
            s = slice(start, stop)
            if training:
                mean[s] = x2d[s].mean(axis=1)
            xp.subtract(x2d[s], mean[s, None], out=centred[s])
            if training:
                var[s] = xp.einsum("cm,cm->c", centred[s], centred[s]) / m
            inv_std[s] = 1 / xp.sqrt(var[s] + x.dtype.type(eps))
            scale[s] = inv_std[s] if weight is None else inv_std[s] * weight[s]
            xp.multiply(centred[s], scale[s, None], out=y2d[s])
            if bias is not None:
                y2d[s] += bias[s, None]

        over_slices(normalise_channels, c, x2d.size)
        if training and running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += momentum * (var * (m / (m - 1))).astype(running_var.dtype)
        self.save_for_backward(centred, inv_std, scale)
        self.shape, self.axes, self.training = x.shape, axes, training
        return from_channels_first_2d(y2d, x.shape, axes)

    def backward(self, dy):
        xp = get_array_module(dy)
        centred, inv_std, scale = self.saved
        dy2d, _ = channels_first_2d(dy)
        c, m = dy2d.shape
        sum_dy, sum_dy_centred = xp.empty(c, dtype=dy.dtype), xp.empty(c, dtype=dy.dtype)
        dx2d = xp.empty((c, m), dtype=dy.dtype) if self.needs_input_grad[0] else None

        def backward_channels(start, stop):
            s = slice(start, stop)
            sum_dy[s] = dy2d[s].sum(axis=1)
            sum_dy_centred[s] = xp.einsum("cm,cm->c", dy2d[s], centred[s])  # = sum(dy x_hat) / inv_std
            if dx2d is None:
                return
            # dx = scale (dy - mean(dy) - (x - mu) inv_std^2 mean(dy (x - mu)));  scale = weight inv_std
            xp.multiply(dy2d[s], scale[s, None], out=dx2d[s])
            if self.training:
                dx2d[s] -= centred[s] * (scale[s] * inv_std[s] ** 2 * sum_dy_centred[s] / m)[:, None]
                dx2d[s] -= (scale[s] * sum_dy[s] / m)[:, None]

        over_slices(backward_channels, c, dy2d.size)
        dx = None if dx2d is None else from_channels_first_2d(dx2d, self.shape, self.axes)
        dweight = sum_dy_centred * inv_std if self.needs_input_grad[1] else None
        dbias = sum_dy if self.needs_input_grad[2] else None
        return dx, dweight, dbias
