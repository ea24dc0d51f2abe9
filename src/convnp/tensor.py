"""Tensor: an ndarray plus the bookkeeping reverse-mode autodiff needs.

A tensor made by an op remembers that op (``_ctx``, a ``Function`` holding its inputs).  ``backward()``
sorts the graph topologically (iteratively, so deep graphs cannot hit Python's recursion limit) and
walks it from the output back to the leaves, asking each op for the gradients of its inputs.
Gradients ACCUMULATE: a tensor used twice receives the sum of both contributions, and a leaf's
``.grad`` is added to, never overwritten, until ``zero_grad()`` clears it.
"""
import contextlib
import threading

import numpy as np

from .backend import DEFAULT_DTYPE, get_array_module

# Per thread, as in PyTorch: a server thread evaluating under no_grad() (convnp train --explore) must not
# switch off the graph of the training thread.
_grad_mode = threading.local()


def is_grad_enabled():
    return getattr(_grad_mode, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Context manager: ops inside it record no graph (for evaluation and parameter updates); per thread."""
    previous, _grad_mode.enabled = is_grad_enabled(), False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


def _as_array(data, dtype=None):
    if type(data) is np.ndarray and dtype is None:  # the common case (every op's output): as it is
        return data
    if isinstance(data, Tensor):
        data = data.data
    xp = get_array_module(data)
    if dtype is not None:
        return xp.asarray(data, dtype=dtype)
    if isinstance(data, (np.ndarray, np.generic)) or xp is not np:
        return xp.asarray(data)
    array = np.asarray(data)
    if array.dtype.kind == "f":  # Python floats and lists of them: float32, like torch.tensor
        array = array.astype(DEFAULT_DTYPE)
    return array


class Tensor:
    """An n-dimensional array that can take part in automatic differentiation.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is an array, a nested list or a
    number.  Python floats become float32 (like ``torch.tensor``); NumPy arrays keep their dtype.
    """

    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        if self.requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self._ctx = None  # the Function that produced this tensor, when it is part of a graph

    # --- array-like properties -------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.reshape(-1)[0].item()

    def detach(self):
        """A tensor sharing this one's data, cut from the graph."""
        return Tensor(self.data)

    def astype(self, dtype):
        return Tensor(self.data.astype(dtype), requires_grad=self.requires_grad)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(np.asarray(self.data), prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype}{grad})"

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False):
        """Backpropagate from this tensor, accumulating ``.grad`` on every leaf that requires it.

        ``gradient`` is dL/d(self); it may be omitted only for a one-element tensor (a loss).
        Unless ``retain_graph`` is set, each op's saved arrays are released once it has been
        differentiated, so intermediate memory is freed as the backward pass proceeds.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad "
                               "(no input of the computation had requires_grad=True, or it ran under no_grad())")
        xp = get_array_module(self.data)
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient argument needs a scalar (one-element) tensor, "
                                   f"this one has shape {self.shape}; pass gradient= of the same shape")
            gradient = xp.ones_like(self.data)
        else:
            gradient = _as_array(gradient, dtype=self.data.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"backward(): gradient has shape {gradient.shape}, expected {self.shape}")

        grads = {id(self): gradient}
        for node in reversed(self._topological_order()):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            ctx = node._ctx
            if ctx is None:  # a leaf: accumulate, never overwrite
                grad = xp.array(grad, dtype=node.data.dtype)  # a fresh array (never a NumPy scalar)
                node.grad = grad if node.grad is None else node.grad + grad
                continue
            if ctx.inputs is None:
                raise RuntimeError("backward() through a graph whose saved arrays were already released; "
                                   "call backward(retain_graph=True) the first time to go through it twice")
            input_grads = ctx.backward(grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, parent_grad in zip(ctx.inputs, input_grads):
                if parent is None or parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = parent_grad if key not in grads else grads[key] + parent_grad
            if not retain_graph:
                ctx.release()

    def _topological_order(self):
        """Tensors of the graph, each after all the tensors it was computed from (iterative DFS)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None and node._ctx.inputs is not None:
                for parent in node._ctx.inputs:
                    if parent is not None and parent.requires_grad and id(parent) not in visited:
                        stack.append((parent, False))
        return order

    # --- operators (the ops live in convnp.ops; imported lazily to keep this module first) ------
    def _binary(self, op, other, reverse=False):
        if not isinstance(other, Tensor):
            dtype = None
            if np.isscalar(other):  # a Python/NumPy number takes this tensor's dtype (no float64 upcast) ...
                dtype = self.data.dtype
                if self.data.dtype.kind != "f" and np.asarray(other).dtype.kind == "f":
                    dtype = DEFAULT_DTYPE  # ... except a float with an integer tensor: 0.5 must not become 0
            other = Tensor(_as_array(other, dtype=dtype))
        return op.apply(other, self) if reverse else op.apply(self, other)

    def __add__(self, other):
        from .ops.elementwise import Add
        return self._binary(Add, other)

    def __radd__(self, other):
        from .ops.elementwise import Add
        return self._binary(Add, other, reverse=True)

    def __sub__(self, other):
        from .ops.elementwise import Sub
        return self._binary(Sub, other)

    def __rsub__(self, other):
        from .ops.elementwise import Sub
        return self._binary(Sub, other, reverse=True)

    def __mul__(self, other):
        from .ops.elementwise import Mul
        return self._binary(Mul, other)

    def __rmul__(self, other):
        from .ops.elementwise import Mul
        return self._binary(Mul, other, reverse=True)

    def __truediv__(self, other):
        from .ops.elementwise import Div
        return self._binary(Div, other)

    def __rtruediv__(self, other):
        from .ops.elementwise import Div
        return self._binary(Div, other, reverse=True)

    def __matmul__(self, other):
        from .ops.linear import MatMul
        return self._binary(MatMul, other)

    def __rmatmul__(self, other):
        from .ops.linear import MatMul
        return self._binary(MatMul, other, reverse=True)

    def __neg__(self):
        from .ops.elementwise import Neg
        return Neg.apply(self)

    def __pow__(self, exponent):
        from .ops.elementwise import Pow
        return Pow.apply(self, exponent=exponent)

    def __getitem__(self, index):
        from .ops.shape import GetItem
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):  # x[idx_tensor, 0]: index arrays may come as Tensors too
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return GetItem.apply(self, index=index)

    def exp(self):
        from .ops.elementwise import Exp
        return Exp.apply(self)

    def log(self):
        from .ops.elementwise import Log
        return Log.apply(self)

    def sum(self, axis=None, keepdims=False):
        from .ops.reduce import Sum
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        from .ops.reduce import Mean
        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        from .ops.shape import Reshape
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    def flatten(self, start_dim=0, end_dim=-1):
        from .ops.shape import flatten
        return flatten(self, start_dim, end_dim)

    def transpose(self, *axes):
        from .ops.shape import Transpose
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose.apply(self, axes=axes or None)

    @property
    def T(self):
        return self.transpose()

    def relu(self):
        from .ops.activation import ReLU
        return ReLU.apply(self)

    def argmax(self, axis=None):
        return self.data.argmax(axis=axis)


def tensor(data, requires_grad=False, dtype=None):
    """Make a Tensor, like ``torch.tensor``."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
