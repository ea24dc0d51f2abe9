"""Layers with PyTorch's names, arguments and default initialisation.

Every layer checks its arguments once, at construction (a ValueError naming the layer and the argument),
and its ``forward`` is one call of ``convnp.functional``, which checks the input and names the layer (its
repr) and the shape it expected.  The messages are built in ``convnp.ops.windows`` and
``convnp.functional``.
"""
import math

import numpy as np

from .. import functional as F
from ..backend import DEFAULT_DTYPE, default_rng
from ..functional import Size2
from ..ops.windows import check_int, check_window_args, pair
from ..tensor import Tensor, is_grad_enabled
from .module import Module, Parameter


def uniform_parameter(shape, bound, dtype=None, rng=None):
    """A Parameter drawn from U(-bound, bound): PyTorch's default for conv and linear layers, where
    kaiming_uniform_(a=sqrt(5)) works out to bound = 1/sqrt(fan_in) for weights and biases alike."""
    rng = default_rng() if rng is None else rng
    values = rng.uniform(-bound, bound, size=shape)
    return Parameter(values.astype(DEFAULT_DTYPE if dtype is None else dtype))


class Conv2d(Module):
    """(N, in_channels, H, W) -> (N, out_channels, H_out, W_out);
    H_out = floor((H + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.

    weight: (out_channels, in_channels / groups, kh, kw), bias: (out_channels,), both U(+-1/sqrt(fan_in))
    with fan_in = in_channels / groups * kh * kw, as in PyTorch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size2, stride: Size2 = 1,
                 padding: Size2 | str = 0, dilation: Size2 = 1, groups: int = 1, bias: bool = True, dtype=None):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            check_int(value, name, "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.dilation = pair(stride, "stride"), pair(dilation, "dilation")
        self.padding = F.conv_padding(padding, self.kernel_size, self.dilation, self.stride, "Conv2d")
        check_window_args(self.kernel_size, self.stride, self.padding, self.dilation, "Conv2d")
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1 / math.sqrt(fan_in)
        self.weight = uniform_parameter((out_channels, in_channels // groups) + self.kernel_size, bound, dtype)
        self.bias = uniform_parameter((out_channels,), bound, dtype) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, where=self)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class Linear(Module):
    """(..., in_features) -> (..., out_features);  y = x W^T + b, W: (out, in), U(+-1/sqrt(in)) init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        super().__init__()
        check_int(in_features, "in_features", "Linear")
        check_int(out_features, "out_features", "Linear")
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight = uniform_parameter((out_features, in_features), bound, dtype)
        self.bias = uniform_parameter((out_features,), bound, dtype) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias, where=self)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class MaxPool2d(Module):
    """(N, C, H, W) -> (N, C, H_out, W_out), window maxima; stride defaults to kernel_size.
    ``dilation``, ``return_indices``, ``ceil_mode`` as in PyTorch (see ``functional.max_pool2d``)."""

    def __init__(self, kernel_size: Size2, stride: Size2 | None = None, padding: Size2 = 0, dilation: Size2 = 1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = F.pool_args(kernel_size, stride, padding, type(self).__name__)
        self.options = dict(dilation=dilation, return_indices=return_indices, ceil_mode=ceil_mode)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, **self.options, where=self)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(MaxPool2d):
    """(N, C, H, W) -> (N, C, H_out, W_out), window means (padded zeros counted, like PyTorch);
    ``ceil_mode``, ``count_include_pad``, ``divisor_override`` as in PyTorch."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(kernel_size, stride, padding)
        self.options = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                            divisor_override=divisor_override)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, **self.options, where=self)


class AdaptiveAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, out_h, out_w); output_size=1 is global average pooling."""

    def __init__(self, output_size: int | tuple[int | None, int | None]):
        super().__init__()
        F.adaptive_output_size(output_size, "AdaptiveAvgPool2d")
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size, where=self)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class _BatchNorm(Module):
    expected_ndim = None

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=None):
        super().__init__()
        where = type(self).__name__
        check_int(num_features, "num_features", where)
        if not eps > 0:
            raise ValueError(f"{where}: eps must be > 0, got {eps!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{where}: momentum must be in [0, 1] or None (a cumulative average), got {momentum!r}")
        dtype = DEFAULT_DTYPE if dtype is None else dtype
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x):
        return self.normalise(x, relu=False)

    def forward_relu(self, x, residual=None):
        """``relu(self(x))`` as one fused op (``F.batch_norm_relu``): ``Sequential`` calls it for a batch
        norm followed by a ReLU while training (see ``fuses_with_relu``); ``relu(self(x) + residual)``
        with a residual (ResNet's blocks, ``relu_of_batch_norm``)."""
        return self.normalise(x, relu=True, residual=residual)

    def normalise(self, x, relu, residual=None):
        if x.ndim != self.expected_ndim or x.shape[1] != self.num_features:
            layout = "(N, C)" if self.expected_ndim == 2 else "(N, C, H, W)"
            raise ValueError(f"{self!r}: expected input {layout} with C = {self.num_features}, "
                             f"got shape {tuple(x.shape)}")
        use_batch_stats = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        momentum = self.momentum
        if momentum is None and self.training and self.track_running_stats:  # PyTorch's cumulative average
            momentum = 1.0 / int(self.num_batches_tracked)
        if relu:
            return F.batch_norm_relu(x, *running, self.weight, self.bias, training=use_batch_stats,
                                     momentum=momentum or 0.0, eps=self.eps, residual=residual)
        return F.batch_norm(x, *running, self.weight, self.bias, training=use_batch_stats, momentum=momentum or 0.0,
                            eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """(N, C) -> (N, C), normalised per feature over the batch."""
    expected_ndim = 2


class BatchNorm2d(_BatchNorm):
    """(N, C, H, W) -> same, normalised per channel over the batch and the spatial positions."""
    expected_ndim = 4


class ReLU(Module):
    def __init__(self, inplace=False):  # inplace: accepted, ignored (no in-place ops on the tape)
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) (dims start_dim..end_dim merged)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)


class Dropout(Module):
    """Zeroes elements with probability p while training (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


def fuses_with_relu(module, following):
    """Whether ``following(module(x))`` runs as one fused op: a plain batch norm (not a subclass such as
    SyncBatchNorm, whose forward is its own) followed by a plain ReLU, while
    training (where the fusion saves a pass over the data each way; evaluation is a cheap affine map
    either way), and neither module's forward replaced on the instance (by convnp.summary's or the
    exporter's tracing, or by the user), so that everything that watches a module still sees it run."""
    return (type(module) in (BatchNorm1d, BatchNorm2d) and type(following) is ReLU and module.training
            and "forward" not in vars(module) and "forward" not in vars(following))


def relu_of_batch_norm(batch_norm, relu, x, residual=None):
    """``relu(batch_norm(x))``, or ``relu(batch_norm(x) + residual)``, as one fused op when
    ``fuses_with_relu`` allows it."""
    if fuses_with_relu(batch_norm, relu):
        return batch_norm.forward_relu(x, residual)
    return relu(batch_norm(x)) if residual is None else relu(batch_norm(x) + residual)


def relu_commutes_with_pool(relu, pool):
    """Whether ``pool(relu(x))`` may run as ``relu(pool(x))``: a plain ReLU then a plain max pool (no
    indices), neither forward replaced on the instance (see ``fuses_with_relu``).  The two orders give
    the same numbers and the same gradients (max is monotone, and a window whose maximum is <= 0 sends
    no gradient either way), and the ReLU then runs on the pooled map: 4x fewer numbers for a 2x2 pool."""
    return (type(relu) is ReLU and type(pool) is MaxPool2d and not pool.options["return_indices"]
            and "forward" not in vars(relu) and "forward" not in vars(pool))


def pool_of_relu(pool, relu, x):
    """``pool(relu(x))``, computed as ``relu(pool(x))`` when ``relu_commutes_with_pool`` allows it."""
    return relu(pool(x)) if relu_commutes_with_pool(relu, pool) else pool(relu(x))


def conv_relu_pool_fuses(conv, relu, pool, x):
    """Whether ``pool(relu(conv(x)))`` runs as one op (``F.conv2d_relu_max_pool``): a plain Conv2d, ReLU
    and MaxPool2d (``relu_commutes_with_pool``, no forward replaced on any of them, see
    ``fuses_with_relu``) whose windows tile the convolution's output (stride = kernel, no padding,
    no dilation, floor sizes), and nothing that needs a gradient: inference, where the pooling
    then reads each chunk of the convolution's output while it is in the cache."""
    return (type(conv) is Conv2d and "forward" not in vars(conv) and relu_commutes_with_pool(relu, pool)
            and not pool.options["ceil_mode"] and pool.options["dilation"] in (1, (1, 1))
            and pool.padding == (0, 0) and pool.stride == pool.kernel_size  # pairs (F.pool_args)
            and isinstance(x, Tensor) and x.ndim == 4
            and not (is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, conv.weight, conv.bias))))


def pool_of_relu_of_conv(pool, relu, conv, x):
    """``pool(relu(conv(x)))``: one fused op in inference when ``conv_relu_pool_fuses`` allows it, else
    ``pool_of_relu`` of ``conv(x)``."""
    if conv_relu_pool_fuses(conv, relu, pool, x):
        return F.conv2d_relu_max_pool(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                                      conv.groups, pool.kernel_size, where=conv)
    return pool_of_relu(pool, relu, conv(x))


class Sequential(Module):
    """Chains modules: Sequential(a, b, c)(x) = c(b(a(x))).  Children are named '0', '1', ... (PyTorch's
    keys), or by the keys of an ``OrderedDict`` given as the one argument.  ``seq[i]`` is a child,
    ``seq[1:]`` a new Sequential of the same children, ``append(m)`` adds one at the end."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):  # Sequential(OrderedDict([...]))
            for name, module in modules[0].items():
                self._add(str(name), module)
        else:
            for index, module in enumerate(modules):
                self._add(str(index), module)

    def _add(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: child {name!r} is a {type(module).__name__}, not a Module")
        if hasattr(type(self), name) or name in vars(self) and not isinstance(vars(self)[name], Module):
            raise KeyError(f"{type(self).__name__}: {name!r} cannot name a child (it is an attribute)")
        setattr(self, name, module)

    def append(self, module):
        self._add(str(len(self)), module)
        return self

    def __iter__(self):
        return self.children()

    def __len__(self):
        return len(list(self.children()))

    def __getitem__(self, index):
        items = list(self.named_children())
        if isinstance(index, slice):
            return Sequential(dict(items[index]))  # the children keep their names, as in PyTorch
        return items[index][1]

    def __setitem__(self, index, module):
        name = list(self.named_children())[index][0]
        self._add(name, module)

    def forward(self, x):
        modules = list(self.children())
        index = 0
        while index < len(modules):
            module = modules[index]
            if index + 2 < len(modules) and conv_relu_pool_fuses(module, modules[index + 1], modules[index + 2], x):
                x = pool_of_relu_of_conv(modules[index + 2], modules[index + 1], module, x)  # inference: one op
                index += 3
            elif index + 1 < len(modules) and fuses_with_relu(module, modules[index + 1]):
                x = module.forward_relu(x)  # batch norm + ReLU as one op: one pass less each way
                index += 2
            elif index + 1 < len(modules) and relu_commutes_with_pool(module, modules[index + 1]):
                x = module(modules[index + 1](x))  # the ReLU after the pool, on fewer numbers
                index += 2
            else:
                x = module(x)
                index += 1
        return x


class ModuleList(Sequential):
    """A list of modules registered as children '0', '1', ... (no forward: the owner decides the order).

    ``ModuleList([a, b])`` as in PyTorch (``ModuleList(a, b)`` also works); ``append``, ``extend``,
    indexing and slicing (a ModuleList) like a list."""

    def __init__(self, modules=None, *more):
        if isinstance(modules, Module):
            modules = (modules,) + more
        super().__init__(*(() if modules is None else tuple(modules)))

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList([module for _, module in list(self.named_children())[index]])
        return super().__getitem__(index)

    def forward(self, *args):
        raise NotImplementedError("ModuleList has no forward(); iterate over it")
