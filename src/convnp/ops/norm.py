"""Batch normalisation with PyTorch's semantics."""
from ..backend import get_array_module
from ..function import Function


class BatchNorm(Function):
    """x: (N, C) or (N, C, H, W); weight, bias: (C,) or None -> y: same shape as x

    Training:  mu, var = mean and biased variance of each channel over N (and H, W);
               x_hat = (x - mu) / sqrt(var + eps);  y = weight x_hat + bias.
               The running statistics are updated IN PLACE, with PyTorch's conventions:
               running = (1 - momentum) running + momentum * batch, using the UNBIASED variance
               (var * m / (m - 1), m = values per channel) for running_var.
    Evaluation: the running statistics stand in for mu and var (a fixed affine map).

    Backward (training), with m values per channel and g = dy * weight:
        dx = (1 / sqrt(var + eps)) * (g - mean(g) - x_hat * mean(g * x_hat))
        dweight = sum(dy * x_hat),  dbias = sum(dy)
    """

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
        xp = get_array_module(x)
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # broadcasts a (C,) vector against x
        if training:
            m = x.size // x.shape[1]
            if m < 2:
                raise ValueError(f"batch_norm: training needs more than one value per channel, got input "
                                 f"shape {x.shape}")
            mean = x.mean(axis=axes)
            centred = x - mean.reshape(shape)
            var = (centred * centred).mean(axis=axes)
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean.astype(running_mean.dtype)
                running_var *= 1 - momentum
                running_var += momentum * (var * (m / (m - 1))).astype(running_var.dtype)
        else:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
            centred = x - mean.reshape(shape)
        inv_std = 1 / xp.sqrt(var + x.dtype.type(eps))
        x_hat = centred * inv_std.reshape(shape)
        self.save_for_backward(x_hat, inv_std, weight)
        self.axes, self.shape, self.training = axes, shape, training
        y = x_hat if weight is None else x_hat * weight.reshape(shape)
        return y if bias is None else y + bias.reshape(shape)

    def backward(self, dy):
        x_hat, inv_std, weight = self.saved
        axes, shape = self.axes, self.shape
        dx = dweight = dbias = None
        if self.needs_input_grad[0]:
            g = dy if weight is None else dy * weight.reshape(shape)
            if self.training:
                g = g - g.mean(axis=axes).reshape(shape) - x_hat * (g * x_hat).mean(axis=axes).reshape(shape)
            dx = g * inv_std.reshape(shape)
        if self.needs_input_grad[1]:
            dweight = (dy * x_hat).sum(axis=axes)
        if self.needs_input_grad[2]:
            dbias = dy.sum(axis=axes)
        return dx, dweight, dbias
