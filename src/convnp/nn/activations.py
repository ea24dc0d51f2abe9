"""Activation, softmax, identity and dropout modules of ``torch.nn`` beyond the basic ones in
layers.py: thin wrappers over ``convnp.functional``, with PyTorch's argument names and reprs.
``inplace=True`` is accepted for compatibility and ignored (convnp's tape records no in-place ops)."""
from .. import functional as F
from .module import Module


class Identity(Module):
    """y = x (a placeholder, e.g. to replace a model's head); any constructor arguments are ignored."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class ReLU6(Module):
    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.relu6(x)


class ELU(Module):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.silu(x)


class Softplus(Module):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if min_val >= max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) must be below max_val ({max_val})")
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"


class Softmax(Module):
    """softmax along ``dim`` (PyTorch's default of None is an error here: say which dim)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        if self.dim is None:
            raise ValueError("Softmax: give dim= (PyTorch's implicit dim choice is deprecated), e.g. Softmax(dim=1)")
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, x):
        if self.dim is None:
            raise ValueError("LogSoftmax: give dim=, e.g. LogSoftmax(dim=1)")
        return F.log_softmax(x, self.dim)


class Dropout2d(Module):
    """Zeroes whole channels of (N, C, H, W) with probability p while training; identity in eval."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout2d: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class AdaptiveMaxPool2d(Module):
    """(N, C, H, W) -> (N, C, out_h, out_w), the maximum of each adaptive bin."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x):
        return F.adaptive_max_pool2d(x, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Upsample(Module):
    """``F.interpolate`` as a layer: Upsample(scale_factor=2, mode='nearest')."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class ModuleDict(Module):
    """A dict of named child modules (keys become attribute names and state_dict prefixes, like
    PyTorch's): ``ModuleDict({'conv': Conv2d(...), 'act': ReLU()})``, ``d['conv']``, ``d.items()``."""

    def __init__(self, modules=None):
        super().__init__()
        for name, module in (dict(modules) if modules is not None else {}).items():
            self[name] = module

    def __setitem__(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: {name!r} is a {type(module).__name__}, not a Module")
        if name in ("training", "_buffer_names", "_non_persistent") or hasattr(type(self), name):
            raise KeyError(f"ModuleDict: {name!r} cannot be a key (it names an attribute of ModuleDict)")
        setattr(self, name, module)

    def __getitem__(self, name):
        value = vars(self).get(name)
        if not isinstance(value, Module):
            raise KeyError(name)
        return value

    def __delitem__(self, name):
        self[name]
        delattr(self, name)

    def __contains__(self, name):
        return isinstance(vars(self).get(name), Module)

    def __len__(self):
        return len(list(self.named_children()))

    def __iter__(self):
        return self.keys()

    def keys(self):
        return (name for name, _ in self.named_children())

    def values(self):
        return self.children()

    def items(self):
        return self.named_children()

    def update(self, modules):
        for name, module in dict(modules).items():
            self[name] = module

    def pop(self, name):
        module = self[name]
        del self[name]
        return module

    def forward(self, *args):
        raise NotImplementedError("ModuleDict has no forward(); pick a module by key")
