"""The functional surface, named like ``torch.nn.functional``.

Each function checks its arguments (so a mistake is reported in words, naming the op and what it
expected) and then applies one op from ``convnp.ops``.  Layers in ``convnp.nn`` call these.
"""
import numpy as np

from .backend import check_same_device, default_rng
from .ops import activation, conv, dropout as dropout_ops, linear as linear_ops, loss, norm, pool, reduce, shape
from .ops.windows import check_pool_args, check_window_args, check_window_input, output_size, pair
from .tensor import Tensor

# Type hints of the public surface: an input is a Tensor or anything np.asarray takes; a window argument
# is an int or an (h, w) pair.
TensorLike = Tensor | np.ndarray | float
Size2 = int | tuple[int, int]

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "relu", "leaky_relu", "tanh", "sigmoid",
    "linear", "matmul", "add", "sub", "mul", "div", "sum", "mean", "reshape", "flatten", "concatenate",
    "batch_norm", "dropout", "log_softmax", "softmax", "cross_entropy", "mse_loss",
]


def _tensor(x):
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.data.dtype.kind not in "fiub":  # complex, strings, objects: refused at the door (one attribute check)
        raise TypeError(f"convnp ops take real numbers (float, int or bool arrays), got dtype {x.data.dtype}")
    return x


def _check_mean_of_empty(n, reduction, where):
    if reduction == "mean" and n == 0:
        raise ValueError(f"{where}: the batch is empty, so its mean loss is undefined (use reduction='sum')")


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


def conv2d(x: TensorLike, w: TensorLike, b: TensorLike | None = None, stride: Size2 = 1, padding: Size2 | str = 0,
           dilation: Size2 = 1, groups: int = 1, *, where: object = "conv2d") -> Tensor:
    """x: (N, C, H, W), w: (F, C/groups, kh, kw), b: (F,) -> (N, F, H_out, W_out)

    H_out = floor((H + 2 padding - dilation (kh - 1) - 1) / stride) + 1.  ``groups`` splits the channels
    into independent convolutions (groups = C with F = k C is depthwise).  See ``convnp.ops.conv``.
    ``where`` is the name errors start with (``nn.Conv2d`` passes itself).
    """
    x, w, b, stride, padding, dilation = _conv_call(x, w, b, stride, padding, dilation, groups, where)
    return conv.Conv2d.apply(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv_call(x, w, b, stride, padding, dilation, groups, where):
    """(x, w, b) as Tensors and the checked (stride, padding, dilation) pairs of a convolution call
    (``_check_conv_call``, once per shapes and arguments)."""
    x, w = _tensor(x), _tensor(w)
    b = None if b is None else _tensor(b)
    key = (x.shape, w.shape, None if b is None else b.shape, stride, padding, dilation, groups)
    checked = checked_once(_checked_conv_calls, key, _check_conv_call, x.shape, w.shape,
                           None if b is None else b.shape, stride, padding, dilation, groups, where)
    return (x, w, b, *checked)


def conv2d_relu_max_pool(x: TensorLike, w: TensorLike, b: TensorLike | None, stride: Size2, padding: Size2 | str,
                         dilation: Size2, groups: int, pool_kernel: Size2, *, where: object = "conv2d") -> Tensor:
    """relu(max_pool2d(conv2d(x, w, b, stride, padding, dilation, groups), pool_kernel)) for inference
    (nothing may need a gradient): one op, ``convnp.ops.conv.Conv2dReLUMaxPool``, the pooling windows
    tiling the convolution's output (stride = kernel, no padding).  ``nn.layers.pool_of_relu_of_conv``
    calls it; a convolution output smaller than one window goes the unfused way, to its error."""
    x, w, b, stride, padding, dilation = _conv_call(x, w, b, stride, padding, dilation, groups, where)
    kernel = pair(pool_kernel, "kernel_size")
    out_size = [output_size(x.shape[2 + i], w.shape[2 + i], stride[i], padding[i], dilation[i]) for i in (0, 1)]
    if out_size[0] < kernel[0] or out_size[1] < kernel[1]:
        return relu(max_pool2d(conv2d(x, w, b, stride, padding, dilation, groups, where=where), kernel))
    return conv.Conv2dReLUMaxPool.apply(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                                        pool_kernel=kernel)


_checked_conv_calls = {}  # conv2d's checked calls: (shapes and arguments) -> (stride, padding, dilation)


def checked_once(cache, key, check, *args):
    """``check(*args)``'s answer for ``key``, from ``cache`` when a call like this one was already checked.
    The checks of conv2d and max_pool2d depend only on shapes and arguments, and a layer makes the same
    call every step (batch-1 inference felt their cost).  An unhashable key (a list argument) is
    checked every time; the cache is emptied when it reaches 4096 entries."""
    try:
        checked = cache.get(key)
    except TypeError:  # an unhashable argument: checked every time
        return check(*args)
    if checked is None:
        checked = check(*args)
        if len(cache) >= 4096:
            cache.clear()
        cache[key] = checked
    return checked


def _check_conv_call(x_shape, w_shape, b_shape, stride, padding, dilation, groups, where):
    """conv2d's checks, raising a ValueError that names ``where``; -> the (stride, padding, dilation) pairs."""
    if len(w_shape) != 4:
        raise ValueError(f"{where}: weight must be (F, C/groups, kh, kw), got shape {w_shape}")
    f, c_group, kh, kw = w_shape
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    padding = conv_padding(padding, (kh, kw), dilation, stride, where)
    check_window_args((kh, kw), stride, padding, dilation, where)
    if not isinstance(groups, (int, np.integer)) or groups < 1 or f % groups:
        raise ValueError(f"{where}: groups={groups} must be >= 1 and divide the {f} output channels")
    check_window_input(x_shape, (kh, kw), stride, padding, dilation, where, channels=c_group * groups)
    if b_shape is not None and b_shape != (f,):
        raise ValueError(f"{where}: bias must have shape ({f},), got {b_shape}")
    return stride, padding, dilation


def pool_args(kernel_size, stride, padding, where):
    """(kernel_size, stride (None: the kernel size), padding) -> checked pairs."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    check_pool_args(kernel, stride, padding, where)
    return kernel, stride, padding


def max_pool2d(x: TensorLike, kernel_size: Size2, stride: Size2 | None = None, padding: Size2 = 0,
               dilation: Size2 = 1, ceil_mode: bool = False, return_indices: bool = False, *,
               where: object = "max_pool2d") -> Tensor:
    """x: (N, C, H, W) -> (N, C, H_out, W_out), the maximum of each window (stride defaults to the
    kernel size; -inf padding; floor sizes; gradient to the first maximum, like PyTorch).
    ``dilation``, ``ceil_mode`` and ``return_indices`` (then (y, indices)) as in PyTorch."""
    x = _tensor(x)
    if dilation != 1 or ceil_mode or return_indices:
        return _max_pool2d_options(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    key = (x.shape, kernel_size, stride, padding, type(kernel_size), type(stride), type(padding))  # 2.0 == 2
    kernel, stride, padding = checked_once(_checked_pool_calls, key, _check_pool_call, x.shape, kernel_size, stride,
                                           padding, where)
    return pool.MaxPool2d.apply(x, kernel_size=kernel, stride=stride, padding=padding)


_checked_pool_calls = {}  # max_pool2d's checked calls: (shape and arguments) -> (kernel, stride, padding)


def _check_pool_call(x_shape, kernel_size, stride, padding, where):
    """max_pool2d's checks, raising an error that names ``where``; -> the (kernel, stride, padding) pairs."""
    checked = pool_args(kernel_size, stride, padding, where)
    check_window_input(x_shape, *checked, (1, 1), where)
    return checked


def avg_pool2d(x: TensorLike, kernel_size: Size2, stride: Size2 | None = None, padding: Size2 = 0,
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None, *,
               where: object = "avg_pool2d") -> Tensor:
    """x: (N, C, H, W) -> (N, C, H_out, W_out), the mean of each zero-padded window
    (count_include_pad=True, PyTorch's default); ``ceil_mode``, ``count_include_pad=False`` and
    ``divisor_override`` as in PyTorch."""
    x = _tensor(x)
    if ceil_mode or not count_include_pad or divisor_override:
        return _avg_pool2d_options(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    kernel, stride, padding = pool_args(kernel_size, stride, padding, where)
    check_window_input(x.shape, kernel, stride, padding, (1, 1), where)
    return pool.AvgPool2d.apply(x, kernel_size=kernel, stride=stride, padding=padding)


def adaptive_avg_pool2d(x: TensorLike, output_size: int | tuple[int | None, int | None], *,
                        where: object = "adaptive_avg_pool2d") -> Tensor:
    """x: (N, C, H, W) -> (N, C, out_h, out_w) with PyTorch's adaptive bins (1 = global average)."""
    x = _tensor(x)
    out_h, out_w = adaptive_output_size(output_size, where)
    if x.ndim != 4:
        raise ValueError(f"{where}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    # like PyTorch, None in output_size keeps that input size: (None, 3)
    out_h = x.shape[2] if out_h is None else out_h
    out_w = x.shape[3] if out_w is None else out_w
    return pool.AdaptiveAvgPool2d.apply(x, output_size=(out_h, out_w))


def adaptive_output_size(value, where):
    """pair() for an output_size whose entries may be None: 3 -> (3, 3); (None, 3) -> (None, 3);
    entries that are not None must be >= 1."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        size = tuple(None if v is None else int(v) for v in value)
    else:
        size = pair(value, "output_size")
    if any(v is not None and v < 1 for v in size):
        raise ValueError(f"{where}: output_size must be >= 1, got {value}")
    return size


# --- activations ---------------------------------------------------------------------------------
def relu(x: TensorLike) -> Tensor:
    return activation.ReLU.apply(_tensor(x))


def leaky_relu(x: TensorLike, negative_slope: float = 0.01) -> Tensor:
    return activation.LeakyReLU.apply(_tensor(x), negative_slope=negative_slope)


def tanh(x: TensorLike) -> Tensor:
    return activation.Tanh.apply(_tensor(x))


def sigmoid(x: TensorLike) -> Tensor:
    return activation.Sigmoid.apply(_tensor(x))


# --- linear algebra, arithmetic, reductions, shapes ----------------------------------------------------
def linear(x: TensorLike, w: TensorLike, b: TensorLike | None = None, *, where: object = "linear") -> Tensor:
    """x: (..., in), w: (out, in), b: (out,) -> (..., out) = x w^T + b"""
    x, w = _tensor(x), _tensor(w)
    if w.ndim != 2:
        raise ValueError(f"{where}: weight must be (out_features, in_features), got shape {w.shape}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        got = x.shape[-1] if x.ndim else "no"
        raise ValueError(f"{where}: expected input with {w.shape[1]} features in its last axis, got {got} "
                         f"(input shape {tuple(x.shape)}), for a weight of shape {w.shape} (out, in)")
    if b is not None:
        b = _tensor(b)
        if b.shape != (w.shape[0],):
            raise ValueError(f"{where}: bias must have shape ({w.shape[0]},), got {b.shape}")
    return linear_ops.Linear.apply(x, w, b)


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


def flatten(x: TensorLike, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim: everything by default, like ``torch.flatten``; ``flatten(x, 1)``
    gives (N, C*H*W) from (N, C, H, W), as ``nn.Flatten()`` (whose start_dim is 1) does."""
    return shape.flatten(_tensor(x), start_dim, end_dim)


def concatenate(tensors, axis=0):
    return shape.Concatenate.apply(*(_tensor(t) for t in tensors), axis=axis)


# --- normalisation and regularisation -------------------------------------------------------------
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """x: (N, C) or (N, C, H, W).  Same signature and semantics as ``torch.nn.functional.batch_norm``;
    running_mean/running_var are arrays updated in place when training (or None to keep none)."""
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, relu=False)


def batch_norm_relu(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
                    residual=None):
    """``relu(batch_norm(x, ...))`` as one op (``convnp.ops.norm.BatchNorm`` with relu=True): the same
    numbers, one pass over the data less in forward and in backward.  With ``residual`` (x's shape):
    ``relu(batch_norm(x, ...) + residual)``, the end of a ResNet block, the add in the same pass."""
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, relu=True,
                       residual=residual)


def _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, relu, residual=None):
    x = _tensor(x)
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm: expected (N, C) or (N, C, H, W) input, got shape {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
    if residual is not None:
        residual = _tensor(residual)
        if residual.shape != x.shape:
            raise ValueError(f"batch_norm_relu: residual of shape {residual.shape} for input of shape {x.shape}; "
                             "expected the same shape")
    return norm.BatchNorm.apply(x, None if weight is None else _tensor(weight),
                                None if bias is None else _tensor(bias), residual, running_mean=_array(running_mean),
                                running_var=_array(running_var), training=training, momentum=momentum, eps=eps,
                                relu=relu)


def _array(x):
    return x.data if isinstance(x, Tensor) else x


def dropout(x: TensorLike, p: float = 0.5, training: bool = True, inplace: bool = False,
            rng: np.random.Generator | None = None) -> Tensor:
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
def log_softmax(x: TensorLike, dim: int = -1) -> Tensor:
    return loss.LogSoftmax.apply(_tensor(x), axis=dim)


def softmax(x: TensorLike, dim: int = -1) -> Tensor:
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


def cross_entropy(logits: TensorLike, target: TensorLike, reduction: str = "mean",
                  label_smoothing: float = 0.0, *, weight: TensorLike | None = None,
                  ignore_index: int = -100) -> Tensor:
    """logits: (N, K) raw scores, target: (N,) class indices -> mean (or sum, or (N,)) of
    -log softmax(logits)[target], with optional label smoothing; stable for huge logits.

    Also as in PyTorch: ``weight`` (K,) per class, ``ignore_index``, (N, K, d1, ...) logits with
    (N, d1, ...) targets, and class-probability targets (a float target shaped like the logits).
    (convnp's positional order is (logits, target, reduction, label_smoothing); PyTorch's is
    (input, target, weight, ...): pass weight by name.)"""
    logits = _tensor(logits)
    if weight is not None or ignore_index != -100 or logits.ndim != 2 or _is_probability_target(target, logits):
        return _cross_entropy_general(logits, target, weight, ignore_index, reduction, label_smoothing)
    target = check_class_targets(logits.shape, target)
    check_same_device("cross_entropy", logits.data, target)  # like PyTorch: move the labels yourself
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    _check_mean_of_empty(logits.shape[0] if logits.ndim else 1, reduction, "cross_entropy")
    return loss.CrossEntropy.apply(logits, target, reduction=reduction, label_smoothing=label_smoothing)


def mse_loss(x: TensorLike, target: TensorLike, reduction: str = "mean") -> Tensor:
    """mean (or sum, or elementwise) of (x - target)^2; shapes must match."""
    x, target = _tensor(x), _tensor(target)
    if x.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {x.shape} and target shape {target.shape} differ")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    _check_mean_of_empty(x.size, reduction, "mse_loss")
    return loss.MSELoss.apply(x, target, reduction=reduction)


# --- the rest of torch.nn.functional (issue 12) ---------------------------------------------------------------
from .ops import loss as loss_ops, padding as padding_ops, pool_options, resample  # noqa: E402
from .ops.elementwise import Clamp  # noqa: E402

__all__ += [
    "relu6", "elu", "gelu", "silu", "softplus", "hardtanh", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "l1_loss", "smooth_l1_loss", "dropout2d", "pad", "one_hot",
    "adaptive_max_pool2d", "interpolate", "normalize",
]


def relu6(x):
    return activation.Hardtanh.apply(_tensor(x), min_val=0.0, max_val=6.0)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    if min_val >= max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) must be below max_val ({max_val})")
    return activation.Hardtanh.apply(_tensor(x), min_val=min_val, max_val=max_val)


def elu(x, alpha=1.0):
    return activation.ELU.apply(_tensor(x), alpha=alpha)


def gelu(x, approximate="none"):
    """x Phi(x) (exact, with the error function), or the tanh approximation with approximate='tanh'."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return activation.GELU.apply(_tensor(x), approximate=approximate)


def silu(x):
    return activation.SiLU.apply(_tensor(x))


def softplus(x, beta=1.0, threshold=20.0):
    return activation.Softplus.apply(_tensor(x), beta=beta, threshold=threshold)


def dropout2d(x, p=0.5, training=True, inplace=False, rng=None):
    """(N, C, H, W): zero whole channels with probability p, scale the rest by 1/(1-p) (identity when
    not training).  Like PyTorch, a 3-D input (C, H, W) is one unbatched image."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout2d: p must be in [0, 1], got {p}")
    x = _tensor(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected (N, C, H, W) or (C, H, W) input, got shape {x.shape}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    if x.ndim == 3:
        return dropout2d(x.unsqueeze(0), p, training, rng=rng).squeeze(0)
    return dropout_ops.ChannelDropout.apply(x, p=p, rng=default_rng() if rng is None else rng)


_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, where):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{where}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _class_target(target, logits_shape, where, ignore_index=-100):
    """Integer class targets for (N, C) or (N, C, d1, ...) scores: shape (N, d1, ...), each in [0, C)
    or ignore_index."""
    target = np.asarray(_array(target))
    if target.dtype.kind not in "iu":
        raise TypeError(f"{where}: targets must be integer class indices (dtype int64), got dtype {target.dtype}")
    expected = (logits_shape[0],) + tuple(logits_shape[2:])
    if target.shape != expected:
        raise ValueError(f"{where}: expected targets of shape {expected} for scores of shape {tuple(logits_shape)}, "
                         f"got {target.shape}")
    bad = (target != ignore_index) & ((target < 0) | (target >= logits_shape[1]))
    if bad.any():
        raise ValueError(f"{where}: target {int(target[bad][0])} is out of range for {logits_shape[1]} classes "
                         f"(valid: 0..{logits_shape[1] - 1}, or ignore_index={ignore_index})")
    return target


def nll_loss(log_probs, target, weight=None, ignore_index=-100, reduction="mean"):
    """log_probs: (N, C) or (N, C, d1, ...), target: (N,) or (N, d1, ...) ->
    -weight[t] log_probs[t], averaged over the weights of the targets that are not ``ignore_index``."""
    log_probs = _tensor(log_probs)
    _check_reduction(reduction, "nll_loss")
    if log_probs.ndim < 2:
        raise ValueError(f"nll_loss: expected (N, C) or (N, C, d1, ...) log-probabilities, got shape {log_probs.shape}")
    target = _class_target(target, log_probs.shape, "nll_loss", ignore_index)
    weight = _class_weight(weight, log_probs.shape[1], "nll_loss")
    return loss_ops.NLLLoss.apply(log_probs, Tensor(target), weight=weight, ignore_index=ignore_index,
                                  reduction=reduction)


def _class_weight(weight, classes, where):
    if weight is None:
        return None
    weight = np.asarray(_array(weight))
    if weight.shape != (classes,):
        raise ValueError(f"{where}: weight must have one entry per class, shape ({classes},), got {weight.shape}")
    return weight


def _is_probability_target(target, logits):
    target = _array(target)
    return hasattr(target, "dtype") and target.dtype.kind == "f" and tuple(target.shape) == tuple(logits.shape)


def _cross_entropy_general(logits, target, weight, ignore_index, reduction, label_smoothing):
    """cross_entropy with weight / ignore_index / extra dims / probability targets, as PyTorch computes
    it, from log_softmax and nll_loss (both ops with their own backward)."""
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if logits.ndim < 2:
        raise ValueError(f"cross_entropy: expected (N, C) or (N, C, d1, ...) logits, got shape {logits.shape}")
    classes = logits.shape[1]
    log_probs = log_softmax(logits, dim=1)
    w = _class_weight(weight, classes, "cross_entropy")
    w_shape = (1, classes) + (1,) * (logits.ndim - 2)
    if _is_probability_target(target, logits):  # soft targets: -sum_c w_c q_c log p_c per sample
        q = _tensor(target).astype(logits.dtype)
        if label_smoothing:
            q = q * (1 - label_smoothing) + label_smoothing / classes
        per_class = log_probs * q if w is None else log_probs * q * Tensor(w.astype(logits.dtype).reshape(w_shape))
        loss = -per_class.sum(dim=1)
        if reduction == "mean":
            return loss.sum() / (loss.numel() if loss.ndim else 1)
        return loss.sum() if reduction == "sum" else loss
    target = _class_target(target, logits.shape, "cross_entropy", ignore_index)
    nll = nll_loss(log_probs, target, weight=w, ignore_index=ignore_index, reduction=reduction)
    if not label_smoothing:
        return nll
    keep = (target != ignore_index).astype(logits.dtype)
    weighted = log_probs if w is None else log_probs * Tensor(w.astype(logits.dtype).reshape(w_shape))
    smooth = -weighted.sum(dim=1) * Tensor(keep)  # PyTorch: sum over classes of -w_c log p_c, / C below
    if reduction == "mean":
        safe = np.where(target != ignore_index, target, 0)
        denominator = keep.sum() if w is None else (w[safe] * keep).sum()
        smooth = smooth.sum() / float(denominator)
    elif reduction == "sum":
        smooth = smooth.sum()
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def _same_shape(x, target, where):
    x, target = _tensor(x), _tensor(target)
    if x.shape != target.shape:
        raise ValueError(f"{where}: input shape {x.shape} and target shape {target.shape} differ")
    if target.dtype != x.dtype:
        target = target.astype(x.dtype)
    return x, target


def binary_cross_entropy(x, target, weight=None, reduction="mean"):
    """x: probabilities in [0, 1], target: same shape -> -w (t log x + (1-t) log(1-x)) (logs clamped at
    -100, like PyTorch).  Prefer binary_cross_entropy_with_logits: it is exact for extreme logits."""
    x, target = _same_shape(x, target, "binary_cross_entropy")
    _check_reduction(reduction, "binary_cross_entropy")
    if x.data.size and (x.data.min() < 0 or x.data.max() > 1):
        raise ValueError("binary_cross_entropy: all input values must be between 0 and 1 (probabilities); "
                         "for raw scores use binary_cross_entropy_with_logits")
    return loss_ops.BCELoss.apply(x, target, weight=None if weight is None else _array(weight).astype(x.dtype),
                                  reduction=reduction)


def binary_cross_entropy_with_logits(x, target, weight=None, reduction="mean", pos_weight=None):
    """x: logits, target: same shape -> BCE of sigmoid(x), computed stably; ``pos_weight`` (per class,
    broadcast over the last axis) weighs the positive term."""
    x, target = _same_shape(x, target, "binary_cross_entropy_with_logits")
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    return loss_ops.BCEWithLogitsLoss.apply(
        x, target, weight=None if weight is None else _array(weight).astype(x.dtype),
        pos_weight=None if pos_weight is None else _array(pos_weight).astype(x.dtype), reduction=reduction)


def l1_loss(x, target, reduction="mean"):
    x, target = _same_shape(x, target, "l1_loss")
    _check_reduction(reduction, "l1_loss")
    return loss_ops.L1Loss.apply(x, target, reduction=reduction)


def smooth_l1_loss(x, target, reduction="mean", beta=1.0):
    x, target = _same_shape(x, target, "smooth_l1_loss")
    _check_reduction(reduction, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    return loss_ops.SmoothL1Loss.apply(x, target, reduction=reduction, beta=beta)


def one_hot(target, num_classes=-1):
    """(...) integer classes -> (..., num_classes) int64 of 0/1 (num_classes=-1: max + 1)."""
    target = np.asarray(_array(target))
    if target.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor, got dtype {target.dtype}")
    if num_classes == -1:
        num_classes = int(target.max()) + 1 if target.size else 0
    if target.size and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"one_hot: class values must be in [0, {num_classes}), got {target.min()}..{target.max()}")
    return Tensor((target[..., None] == np.arange(num_classes)).astype(np.int64))


def pad(x, pad, mode="constant", value=0.0):  # noqa: A002 - torch's argument name
    """Pad the last len(pad) // 2 dims: pad = (left, right) for the last dim, then (top, bottom) for the
    one before, ... as in PyTorch.  mode: 'constant' (``value``), 'reflect', 'replicate', 'circular'."""
    x = _tensor(x)
    if mode not in padding_ops.NUMPY_MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(padding_ops.NUMPY_MODES)}, got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of pad sizes for at most {x.ndim} dims, got {tuple(pad)}")
    if any(int(n) < 0 for n in pad):
        raise ValueError(f"pad: negative padding {tuple(pad)} is not supported; crop with slicing instead")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        axis = x.ndim - 1 - i
        widths[axis] = (int(pad[2 * i]), int(pad[2 * i + 1]))
        if mode == "reflect" and max(widths[axis]) >= x.shape[axis]:
            raise ValueError(f"pad: reflect padding {widths[axis]} must be smaller than the size {x.shape[axis]} "
                             f"of dim {axis}")
    return padding_ops.Pad.apply(x, widths=tuple(widths), mode=mode, value=value)


def _max_pool2d_options(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    kernel, stride, padding = pool_args(kernel_size, stride, padding, "max_pool2d")
    dilation = pair(dilation, "dilation")
    check_window_input(x.shape, kernel, stride, padding, dilation, "max_pool2d")
    indices = []
    y = pool_options.MaxPool2dWindows.apply(x, kernel_size=kernel, stride=stride, padding=padding,
                                            dilation=dilation, ceil_mode=ceil_mode, indices_into=indices)
    return (y, Tensor(indices[0])) if return_indices else y


def _avg_pool2d_options(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    kernel, stride, padding = pool_args(kernel_size, stride, padding, "avg_pool2d")
    check_window_input(x.shape, kernel, stride, padding, (1, 1), "avg_pool2d")
    if divisor_override is not None and divisor_override <= 0:
        raise ValueError(f"avg_pool2d: divisor_override must be positive, got {divisor_override}")
    return pool_options.AvgPool2dWindows.apply(x, kernel_size=kernel, stride=stride, padding=padding,
                                               ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                               divisor_override=divisor_override)


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """x: (N, C, H, W) -> (N, C, out_h, out_w), the maximum of each adaptive bin (PyTorch's bins)."""
    x = _tensor(x)
    if x.ndim != 4:
        raise ValueError(f"adaptive_max_pool2d: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    out_h, out_w = adaptive_output_size(output_size, "adaptive_max_pool2d")
    out_h = x.shape[2] if out_h is None else out_h
    out_w = x.shape[3] if out_w is None else out_w
    if out_h < 1 or out_w < 1:
        raise ValueError(f"adaptive_max_pool2d: output_size must be >= 1, got {output_size}")
    indices = []
    y = pool_options.AdaptiveMaxPool2d.apply(x, output_size=(out_h, out_w), indices_into=indices)
    return (y, Tensor(indices[0])) if return_indices else y


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """x: (N, C, H, W) -> (N, C, out_h, out_w), resized to ``size`` or by ``scale_factor`` with
    'nearest' or 'bilinear' sampling (PyTorch's sample positions; align_corners for bilinear)."""
    x = _tensor(x)
    if x.ndim != 4:
        raise ValueError(f"interpolate: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"interpolate: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners only applies to mode='bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    h, w = x.shape[2:]
    if size is not None:
        out_h, out_w = pair(size, "size")
        scales = (None, None)
    else:
        factor_h, factor_w = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        out_h, out_w = int(np.floor(h * factor_h)), int(np.floor(w * factor_w))
        scales = (1 / factor_h, 1 / factor_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"interpolate: output size ({out_h}, {out_w}) must be >= 1")
    if mode == "nearest":
        rows, columns = resample.nearest_matrix(h, out_h, scales[0]), resample.nearest_matrix(w, out_w, scales[1])
    else:
        corners = bool(align_corners)
        rows = resample.linear_matrix(h, out_h, corners, None if corners else scales[0])
        columns = resample.linear_matrix(w, out_w, corners, None if corners else scales[1])
    return resample.Resample2d.apply(x, rows=rows, columns=columns)


def normalize(x, p=2.0, dim=1, eps=1e-12):
    """x / max(||x||_p along dim, eps), like ``torch.nn.functional.normalize``."""
    x = _tensor(x)
    norms = x.norm(p, dim=dim, keepdim=True)
    return x / Clamp.apply(norms, low=eps, high=None)
