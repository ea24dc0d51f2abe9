"""Batch normalisation with PyTorch's semantics."""
from ..backend import get_array_module
from ..function import Function


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
        if training:
            if m < 2:
                raise ValueError(f"batch_norm: training needs more than one value per channel, got input "
                                 f"shape {x.shape}")
            mean = x2d.mean(axis=1)
            centred = x2d - mean[:, None]
            var = xp.einsum("cm,cm->c", centred, centred) / m
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean.astype(running_mean.dtype)
                running_var *= 1 - momentum
                running_var += momentum * (var * (m / (m - 1))).astype(running_var.dtype)
        else:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
            centred = x2d - mean[:, None]
        inv_std = 1 / xp.sqrt(var + x.dtype.type(eps))
        scale = inv_std if weight is None else inv_std * weight
        y2d = centred * scale[:, None]
        if bias is not None:
            y2d += bias[:, None]
        self.save_for_backward(centred, inv_std, weight)
        self.shape, self.axes, self.training = x.shape, axes, training
        return from_channels_first_2d(y2d, x.shape, axes)

    def backward(self, dy):
        xp = get_array_module(dy)
        centred, inv_std, weight = self.saved
        dy2d, _ = channels_first_2d(dy)
        m = dy2d.shape[1]
        dx = dweight = dbias = None
        sum_dy = dy2d.sum(axis=1)
        sum_dy_centred = xp.einsum("cm,cm->c", dy2d, centred)  # = sum(dy x_hat) / inv_std
        if self.needs_input_grad[0]:
            scale = inv_std if weight is None else inv_std * weight
            if self.training:  # dx = scale (dy - mean(dy) - (x - mu) inv_std^2 mean(dy (x - mu)))
                dx2d = dy2d * scale[:, None]
                dx2d -= centred * (scale * inv_std * inv_std * sum_dy_centred / m)[:, None]
                dx2d -= (scale * sum_dy / m)[:, None]
            else:
                dx2d = dy2d * scale[:, None]
            dx = from_channels_first_2d(dx2d, self.shape, self.axes)
        if self.needs_input_grad[1]:
            dweight = sum_dy_centred * inv_std
        if self.needs_input_grad[2]:
            dbias = sum_dy
        return dx, dweight, dbias
