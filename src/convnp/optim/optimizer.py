"""Optimizer: parameter groups, per-parameter state, zero_grad and state_dict, like torch.optim.

A subclass writes ``__init__`` (validate the hyperparameters, call ``super().__init__(params,
defaults)``) and ``step()`` (loop over ``self.param_groups``, update each ``p.data`` in place).
Updating in place matters: a model holds its parameters' arrays, so a new array assigned to
``p.data`` would still be seen, but a view or alias taken elsewhere would not.
"""
import copy

from ..backend import get_array_module, is_device_array
from ..parallel import MIN_NUMBERS, parallel_map, pieces_for, split
from ..tensor import Tensor

SPLIT_NUMBERS = MIN_NUMBERS  # a parameter this big or bigger is updated in pieces, one a thread
PIECE_NUMBERS = 1 << 17  # or more pieces, of about this many numbers: see in_pieces


def in_pieces(update, data):
    """``update(rows)`` for slices ``rows`` of the parameter array ``data``'s first axis, shared out
    among convnp's threads (once for a device array or a small one; a 0-d parameter as rows ``None``:
    its (1,) view, since NumPy's arithmetic on 0-d arrays returns scalars, which ``out=`` cannot take).

    An update is a dozen elementwise NumPy passes over the parameter and its state; on one thread the
    9216 -> 128 layer of PyTorch's MNIST example alone took 5 ms of a 60 ms Adadelta step.  Once split,
    a parameter is cut into pieces of about PIECE_NUMBERS numbers, so that a piece's passes over it
    and its state stay in the core's L2 cache (threads take the next piece as they become free): that
    layer's 1.18M numbers in 9 pieces rather than 2 took the whole Adadelta step from 2.5 to 2.0 ms
    on two threads (docs/performance.md, 2026-12-04).  Slices of rows are views whatever the layout,
    and every pass computes what it would on the whole array, so the numbers are the same."""
    if data.ndim == 0:
        return update(None)
    if is_device_array(data):
        return update(slice(None))
    rows = data.shape[0]
    pieces = pieces_for(data.size, rows, SPLIT_NUMBERS)
    if pieces > 1:
        pieces = max(pieces, min(rows, data.size // PIECE_NUMBERS))
    parallel_map(update, split(rows, pieces))


def penalised_gradient(p, group, rows=Ellipsis):
    """The gradient an update uses, on rows ``rows`` of parameter ``p``: negated with maximize, plus
    weight_decay * p (an L2 penalty).  SGD, Adadelta, RMSprop and Adagrad share it."""
    g = -p.grad[rows] if group["maximize"] else p.grad[rows]
    if group["weight_decay"] != 0:
        g = g + group["weight_decay"] * p.data[rows]
    return g


class Optimizer:
    """Base class.  ``params``: an iterable of Tensors, or of dicts (parameter groups).

    Each group is a dict ``{'params': [Tensor, ...], 'lr': ..., <hyperparameters>}``; options a
    group does not give are taken from ``defaults``, so

        SGD([{'params': backbone}, {'params': head, 'lr': 0.1}], lr=0.01, momentum=0.9)

    trains the head ten times faster than the backbone, both with momentum 0.9.
    ``self.state[p]`` is a dict of per-parameter state (momentum buffers, moment estimates),
    keyed by the parameter tensor itself.
    """

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError("params should be an iterable of Tensors or of dicts (parameter groups), "
                            "got a single Tensor; wrap it in a list")
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a dict ``{'params': ..., <options>}``; missing options come from ``self.defaults``."""
        if not isinstance(group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains the same parameter more than once")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        new_group = {**self.defaults, **group, "params": params}
        self.param_groups.append(new_group)

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient: ``p.grad = None`` (default), or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient.  Implemented by each optimizer."""
        raise NotImplementedError

    # --- saving and loading --------------------------------------------------------------------
    def state_dict(self):
        """A snapshot: ``{'state': {index: {name: array or number}}, 'param_groups': [...]}``.

        Parameters are numbered by their position across all groups (0, 1, ... in group order),
        as torch does, so the dict refers to no Tensor and loads into a freshly built optimizer
        over the same model.  Arrays are copies: later steps do not change a saved dict.
        """
        index = {}
        param_groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            param_groups.append(packed)
        state = {index[id(p)]: copy.deepcopy(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict):
        """Load a dict from ``state_dict()``: hyperparameters per group, and per-parameter state.

        The number of groups and of parameters in each must match this optimizer's, and every
        array in a parameter's state must have that parameter's shape (it is cast to its dtype).
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"expected a dict with keys 'state' and 'param_groups', got {keys}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter group(s), "
                             f"this optimizer has {len(self.param_groups)}")
        params_by_index = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {i} has {len(saved['params'])} parameters in the loaded "
                                 f"state dict and {len(group['params'])} in this optimizer")
            params_by_index.update(zip(saved["params"], group["params"]))

        new_state = {}
        for index, saved_state in state_dict["state"].items():
            if index not in params_by_index:
                raise ValueError(f"loaded state dict has state for parameter {index}, "
                                 f"which no parameter group lists")
            p = params_by_index[index]
            new_state[p] = {name: _cast_like(value, p, index, name) for name, value in saved_state.items()}

        self.param_groups = [{**copy.deepcopy({k: v for k, v in saved.items() if k != "params"}),
                              "params": group["params"]}
                             for saved, group in zip(saved_groups, self.param_groups)]
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            options = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {options}")
        return "\n".join(lines + [")"])


def _cast_like(value, p, index, name):
    """A copy of a saved state value; arrays must have p's shape and take p's dtype and array module."""
    if not hasattr(value, "shape") or value.ndim == 0:
        return copy.deepcopy(value)  # numbers, e.g. the step count
    if tuple(value.shape) != tuple(p.shape):
        raise ValueError(f"state '{name}' of parameter {index} has shape {tuple(value.shape)}, "
                         f"but the parameter has shape {tuple(p.shape)}")
    xp = get_array_module(p.data)
    return xp.array(value, dtype=p.data.dtype, copy=True)
