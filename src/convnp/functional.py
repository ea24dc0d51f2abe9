"""The functional surface, named like ``torch.nn.functional``.

Each function checks its arguments (so a mistake is reported in words, naming the op and what it
expected) and then applies one op from ``convnp.ops``.  Layers in ``convnp.nn`` call these.
"""
import numpy as np

from .backend import default_rng
from .ops import activation, conv, dropout as dropout_ops, linear as linear_ops, loss, norm
from .ops import pool, reduce, shape
from .ops.windows import check_window_input, pair
from .tensor import Tensor

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu", "leaky_relu", "tanh", "sigmoid",
    "linear", "matmul", "add", "sub", "mul", "div", "sum", "mean", "reshape", "flatten", "concatenate",
    "batch_norm", "dropout", "log_softmax", "softmax", "cross_entropy", "mse_loss",
]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


# --- convolution and pooling ----------------------------------------------------------------------
def conv_padding(padding, kernel, dilation, stride, where):
    """Turn padding (int, pair, 'valid' or 'same') into a pair."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"{where}: padding='same' needs stride 1, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if any(t % 2 for t in totals):
            raise ValueError(f"{where}: padding='same' with an even (dilated) kernel {kernel} would need "
                             f"uneven padding; pad explicitly instead")
        return (totals[0] // 2, totals[1] // 2)
    return pair(padding, "padding")


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """x: (N, C, H, W), w: (F, C/groups, kh, kw), b: (F,) -> (N, F, H_out, W_out)

    H_out = floor((H + 2 padding - dilation (kh - 1) - 1) / stride) + 1.  ``groups`` splits the channels
    into independent convolutions (groups = C with F = k C is depthwise).  See ``convnp.ops.conv``.
    """
    x, w = _tensor(x), _tensor(w)
    if w.ndim != 4:
        raise ValueError(f"conv2d: weight must be (F, C/groups, kh, kw), got shape {w.shape}")
    f, c_group, kh, kw = w.shape
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    padding = conv_padding(padding, (kh, kw), dilation, stride, "conv2d")
    if groups < 1 or f % groups:
        raise ValueError(f"conv2d: groups={groups} must be >= 1 and divide the {f} output channels")
    check_window_input(x.shape, (kh, kw), stride, padding, dilation, "conv2d", channels=c_group * groups)
    if b is not None:
        b = _tensor(b)
        if b.shape != (f,):
            raise ValueError(f"conv2d: bias must have shape ({f},), got {b.shape}")
    return conv.Conv2d.apply(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _pool_args(kernel_size, stride, padding, where):
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{where}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> (N, C, H_out, W_out), the maximum of each window (stride defaults to the
    kernel size; -inf padding; floor sizes; gradient to the first maximum, like PyTorch)."""
    x = _tensor(x)
    kernel, stride, padding = _pool_args(kernel_size, stride, padding, "max_pool2d")
    check_window_input(x.shape, kernel, stride, padding, (1, 1), "max_pool2d")
    return pool.MaxPool2d.apply(x, kernel_size=kernel, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> (N, C, H_out, W_out), the mean of each zero-padded window
    (count_include_pad=True, PyTorch's default)."""
    x = _tensor(x)
    kernel, stride, padding = _pool_args(kernel_size, stride, padding, "avg_pool2d")
    check_window_input(x.shape, kernel, stride, padding, (1, 1), "avg_pool2d")
    return pool.AvgPool2d.apply(x, kernel_size=kernel, stride=stride, padding=padding)


def adaptive_avg_pool2d(x, output_size):
    """x: (N, C, H, W) -> (N, C, out_h, out_w) with PyTorch's adaptive bins (1 = global average)."""
    x = _tensor(x)
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    # like PyTorch, None in output_size keeps that input size: (None, 3)
    out_h, out_w = _pair_or_none(output_size)
    out_h = x.shape[2] if out_h is None else out_h
    out_w = x.shape[3] if out_w is None else out_w
    if out_h < 1 or out_w < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be >= 1, got {output_size}")
    return pool.AdaptiveAvgPool2d.apply(x, output_size=(out_h, out_w))


def _pair_or_none(value):
    """pair() for an output_size whose entries may be None: 3 -> (3, 3); (None, 3) -> (None, 3)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(None if v is None else int(v) for v in value)
    return pair(value, "output_size")


# --- activations ---------------------------------------------------------------------------------
def relu(x):
    return activation.ReLU.apply(_tensor(x))


def leaky_relu(x, negative_slope=0.01):
    return activation.LeakyReLU.apply(_tensor(x), negative_slope=negative_slope)


def tanh(x):
    return activation.Tanh.apply(_tensor(x))


def sigmoid(x):
    return activation.Sigmoid.apply(_tensor(x))


# --- linear algebra, arithmetic, reductions, shapes ----------------------------------------------------
def linear(x, w, b=None):
    """x: (..., in), w: (out, in), b: (out,) -> (..., out) = x w^T + b"""
    x, w = _tensor(x), _tensor(w)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input with {x.shape[-1] if x.ndim else '?'} features (shape {x.shape}) "
                         f"does not match weight of shape {w.shape} (out, in)")
    return linear_ops.Linear.apply(x, w, None if b is None else _tensor(b))


def matmul(a, b):
    return linear_ops.MatMul.apply(_tensor(a), _tensor(b))


def add(a, b):
    return _tensor(a) + b


def sub(a, b):
    return _tensor(a) - b


def mul(a, b):
    return _tensor(a) * b


def div(a, b):
    return _tensor(a) / b


def sum(x, axis=None, keepdims=False):  # noqa: A001 - the name torch uses
    return reduce.Sum.apply(_tensor(x), axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return reduce.Mean.apply(_tensor(x), axis=axis, keepdims=keepdims)


def reshape(x, shape_):
    return shape.Reshape.apply(_tensor(x), shape=tuple(shape_))


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim: everything by default, like ``torch.flatten``; ``flatten(x, 1)``
    gives (N, C*H*W) from (N, C, H, W), as ``nn.Flatten()`` (whose start_dim is 1) does."""
    return shape.flatten(_tensor(x), start_dim, end_dim)


def concatenate(tensors, axis=0):
    return shape.Concatenate.apply(*(_tensor(t) for t in tensors), axis=axis)


# --- normalisation and regularisation -------------------------------------------------------------
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """x: (N, C) or (N, C, H, W).  Same signature and semantics as ``torch.nn.functional.batch_norm``;
    running_mean/running_var are arrays updated in place when training (or None to keep none)."""
    x = _tensor(x)
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm: expected (N, C) or (N, C, H, W) input, got shape {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
    return norm.BatchNorm.apply(x, None if weight is None else _tensor(weight),
                                None if bias is None else _tensor(bias), running_mean=_array(running_mean),
                                running_var=_array(running_var), training=training, momentum=momentum, eps=eps)


def _array(x):
    return x.data if isinstance(x, Tensor) else x


def dropout(x, p=0.5, training=True, rng=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when not training)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = _tensor(x)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    return dropout_ops.Dropout.apply(x, p=p, rng=default_rng() if rng is None else rng)


# --- softmax and losses -----------------------------------------------------------------------------
def log_softmax(x, dim=-1):
    return loss.LogSoftmax.apply(_tensor(x), axis=dim)


def softmax(x, dim=-1):
    return loss.Softmax.apply(_tensor(x), axis=dim)


def check_class_targets(logits_shape, target, where="cross_entropy"):
    """Class targets must be integers in [0, K), one per row of logits: (N,)."""
    target = _array(target)
    if not hasattr(target, "dtype"):  # a list or a number
        target = np.asarray(target)
    if len(logits_shape) != 2:
        raise ValueError(f"{where}: expected logits of shape (N, K), got {tuple(logits_shape)}")
    n, k = logits_shape
    if target.dtype.kind not in "iu":
        raise TypeError(f"{where}: targets must be integer class indices (dtype int64), got dtype {target.dtype}"
                        f"{'; convert with target.astype(int)' if target.dtype.kind == 'f' else ''}")
    if target.shape != (n,):
        raise ValueError(f"{where}: expected {n} targets, shape ({n},), for logits of shape {tuple(logits_shape)}, "
                         f"got shape {target.shape}")
    if n and (target.min() < 0 or target.max() >= k):
        bad = target[(target < 0) | (target >= k)][0]
        raise ValueError(f"{where}: target {int(bad)} is out of range for {k} classes (valid: 0..{k - 1})")
    return target


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """logits: (N, K) raw scores, target: (N,) class indices -> mean (or sum, or (N,)) of
    -log softmax(logits)[target], with optional label smoothing; stable for huge logits."""
    logits = _tensor(logits)
    target = check_class_targets(logits.shape, target)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    return loss.CrossEntropy.apply(logits, target, reduction=reduction, label_smoothing=label_smoothing)


def mse_loss(x, target, reduction="mean"):
    """mean (or sum, or elementwise) of (x - target)^2; shapes must match."""
    x, target = _tensor(x), _tensor(target)
    if x.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {x.shape} and target shape {target.shape} differ")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return loss.MSELoss.apply(x, target, reduction=reduction)
