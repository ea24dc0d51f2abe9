"""Module: the base class of layers and models, with the ``torch.nn.Module`` API users know.

A module's parameters, buffers and sub-modules are simply its attributes: ``named_parameters`` walks
``vars(self)`` in assignment order (no ``__setattr__``/``__getattr__`` magic).  Buffers (running
statistics) are arrays whose attribute names are listed by ``register_buffer``.  ``state_dict`` keys
are dotted paths exactly like PyTorch's (``features.0.weight``, ``bn1.running_var``), and arrays keep
PyTorch's layouts, so weights move between the two libraries unchanged.
"""
import contextlib
from collections import namedtuple

import numpy as np

from ..backend import device_of, to_device, to_numpy
from ..tensor import Tensor

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor that is a learnable parameter of a Module (requires_grad=True)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    def __init__(self):
        self.training = True
        self._buffer_names = []

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- registration ---------------------------------------------------------------------------
    def register_buffer(self, name, array, persistent=True):
        """An array that is part of the state (saved, loaded) but not learned, e.g. running_mean.
        ``persistent=False`` keeps it out of ``state_dict`` (it still moves with ``to``/``astype``).
        A Tensor is stored as its array: convnp's buffers are arrays, PyTorch's are tensors."""
        if "_buffer_names" not in vars(self):
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        if isinstance(array, Tensor):
            array = array.data
        setattr(self, name, array)
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        transient = vars(self).setdefault("_non_persistent", set())
        if persistent:
            transient.discard(name)
        else:
            transient.add(name)

    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (module for _, module in self.named_children())

    def named_modules(self, prefix=""):
        """This module and every module inside it, depth first, with dotted names ('' for self)."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter, each shared parameter once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name in module._buffer_names:
                value = getattr(module, name)
                if value is not None:
                    yield (f"{module_name}.{name}" if module_name else name), value

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def num_parameters(self, trainable_only=False):
        return int(sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only))

    # --- modes and gradients ---------------------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def astype(self, dtype):
        """Cast every floating-point parameter and buffer to ``dtype`` in place (e.g. float64 for
        gradient checks); returns self."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
        for module in self.modules():
            for name in module._buffer_names:
                value = getattr(module, name)
                if value is not None and value.dtype.kind == "f":
                    setattr(module, name, value.astype(dtype))
        return self

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self):
        """{dotted name: NumPy array copy} of every parameter and buffer, with PyTorch's keys and layouts
        (host arrays from either device: a model on the GPU is copied back)."""
        state = {}
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, value in vars(module).items():
                if isinstance(value, Parameter):
                    state[prefix + name] = np.array(to_numpy(value.data), copy=True)
            for name in module._persistent_buffer_names():
                value = getattr(module, name)
                if value is not None:
                    state[prefix + name] = np.array(to_numpy(value), copy=True)
        return state

    def _persistent_buffer_names(self):
        transient = vars(self).get("_non_persistent", ())
        return [name for name in self._buffer_names if name not in transient]

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy arrays, or anything ``np.asarray`` takes, such as CPU torch tensors) into
        this module's parameters and buffers, keeping their dtypes.  With ``strict`` (the default), a
        missing or unexpected key is an error; a shape mismatch is always an error, naming the key.
        Nothing is modified unless every check passes."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and (missing or unexpected):
            if missing:
                problems.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected keys: {', '.join(unexpected)}")
        converted = {}
        for key in own:
            if key not in state_dict:
                continue
            value = state_dict[key]
            if hasattr(value, "detach"):  # a torch tensor, possibly one that requires grad (named_parameters)
                value = value.detach().cpu()
            try:
                value = np.asarray(value)
            except (TypeError, ValueError) as error:
                problems.append(f"{key}: not an array ({' '.join(str(error).split())})")
                continue
            target = own[key].dtype
            if value.shape != own[key].shape:
                problems.append(f"{key}: checkpoint has shape {value.shape}, this model has {own[key].shape}")
            elif value.dtype.kind not in ("fiu" if target.kind == "f" else "iu"):
                problems.append(f"{key}: dtype {value.dtype} cannot be loaded into a {target} "
                                f"{'weight' if target.kind == 'f' else 'counter'} (real numbers only)")
            else:  # every conversion is made before anything is assigned: all or nothing
                converted[key] = value.astype(target, copy=True)
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__} failed: " + "; ".join(problems))
        targets = dict(self._state_targets())
        for key, value in converted.items():
            module, name = targets[key]
            current = getattr(module, name)
            if isinstance(current, Parameter):
                current.data = to_device(value, device_of(current.data))  # onto the device it is on
            else:  # a buffer: written in place, so ops holding it see the new values
                current[...] = to_device(value, device_of(current))
        return IncompatibleKeys(missing, unexpected)

    def _state_targets(self):
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, value in vars(module).items():
                if isinstance(value, Parameter):
                    yield prefix + name, (module, name)
            for name in module._persistent_buffer_names():
                if getattr(module, name) is not None:
                    yield prefix + name, (module, name)

    # --- printing -----------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        if self.extra_repr():  # like PyTorch: a container's own extra_repr comes first
            lines += ["  " + line for line in self.extra_repr().split("\n")]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)

    # --- the rest of torch.nn.Module's everyday API (issue 12) -------------------------------------------
    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module, children first, then on this one (as PyTorch);
        e.g. ``model.apply(init_weights)``.  Returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter (False freezes them for fine-tuning)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def add_module(self, name, module):
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"add_module: {type(module).__name__} is not a Module")
        setattr(self, name, module)

    register_module = add_module

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter (or None), got {type(param).__name__}")
        setattr(self, name, param)

    def get_submodule(self, target):
        module = self
        for name in target.split(".") if target else []:
            child = vars(module).get(name)
            if not isinstance(child, Module):
                raise AttributeError(f"{type(module).__name__} has no submodule {name!r} (looking up {target!r})")
            module = child
        return module

    def to(self, *args, dtype=None, device=None, non_blocking=False):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``: parameters (with their gradients) and
        buffers are moved, floating-point ones cast, in place; 'cuda' needs CuPy and a GPU (see
        ``convnp.device``)."""
        from ..backend import resolve_device
        from ..tensor import to_arguments

        dtype, device = to_arguments(args, dtype, device)
        if device is not None:
            self._move_to(resolve_device(device))
        if dtype is not None:
            if np.dtype(dtype).kind != "f":
                raise TypeError(f"Module.to only accepts floating point dtypes, got {np.dtype(dtype)}")
            self.astype(dtype)
        return self

    def _move_to(self, where):
        for p in self.parameters():
            p.data = to_device(p.data, where)
            if p.grad is not None:
                p.grad = to_device(p.grad, where)
        for module in self.modules():
            for name in module._buffer_names:
                value = getattr(module, name)
                if value is not None:
                    setattr(module, name, to_device(value, where))

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def half(self):
        return self.astype(np.float16)

    def type(self, dst_type):
        return self.astype(dst_type)


def model_device(model):
    """The device of the model's first parameter (the CPU for a model without parameters): where its
    inputs must go (``Tensor(to_device(x, model_device(model)))``)."""
    for p in model.parameters():
        return device_of(p.data)
    return device_of(None)


def on_model_device(model, array):
    """``array`` (host data) as a Tensor on the device ``model`` lives on: what a tool hands a model that
    may be on the GPU (it copies the results back with ``backend.to_numpy`` at its edge)."""
    return Tensor(to_device(array, model_device(model)))


@contextlib.contextmanager
def eval_mode(model):
    """``with eval_mode(model):`` runs ``model`` in evaluation mode (dropout off, batch norm on its
    running statistics) and afterwards puts every submodule back in the mode it had, even on error.
    It does not turn off gradients: add ``no_grad()`` when no backward pass follows."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
