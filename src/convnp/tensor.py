"""Tensor: an ndarray plus the bookkeeping reverse-mode autodiff needs.

A tensor made by an op remembers that op (``_ctx``, a ``Function`` holding its inputs).  ``backward()``
sorts the graph topologically (iteratively, so deep graphs cannot hit Python's recursion limit) and
walks it from the output back to the leaves, asking each op for the gradients of its inputs.
Gradients ACCUMULATE: a tensor used twice receives the sum of both contributions, and a leaf's
``.grad`` is added to, never overwritten, until ``zero_grad()`` clears it.

The methods are PyTorch's (``size()``, ``view``, ``permute``, ``transpose(dim0, dim1)``, reductions
with ``dim=``/``keepdim=``, comparisons, casts with ``to``/``float()``...), and so are the dtype rules
of arithmetic: a Python number never widens a tensor (float32 + 0.5 is float32), and a 0-d tensor does
not widen a dimensioned one of the same kind.  Differences, deliberately: ``.data`` and ``.grad`` are
NumPy arrays, and ops that would change a tensor in place refuse while it takes part in a graph.
Whether ops record the graph (``no_grad`` and friends) is a per-thread flag, as in PyTorch.
"""
from __future__ import annotations

import functools
import threading
from typing import TypeAlias, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .backend import DEFAULT_DTYPE, get_array_module, resolve_device

# The words of the annotations below.  Tensor has methods named int, float and bool (PyTorch's casts),
# which hide the builtins inside its class body, so its annotations say Axis, Count, Number and Flag.
Axis: TypeAlias = int  # one dimension; negative counts from the end
Count: TypeAlias = int  # a number of dimensions or elements
Dims: TypeAlias = int | tuple[int, ...] | None  # one dimension, several, or None for all of them
Sizes: TypeAlias = int | tuple[int, ...] | list[int]  # reshape(2, 3) or reshape((2, 3))
Number: TypeAlias = int | float
Flag: TypeAlias = bool
Operand: TypeAlias = Union["Tensor", np.ndarray, int, float]  # what arithmetic and comparisons accept


# Whether ops record a graph: a per-thread flag, like PyTorch's (a no_grad() in one thread, e.g. an
# evaluation thread, leaves training in another thread untouched).
class _ThreadGradMode(threading.local):
    """Each thread sees its own ``enabled`` (True until it changes it) and its own stack of modes to
    restore.  A class attribute default keeps ``is_grad_enabled`` a plain attribute read: it runs once
    per op."""

    enabled = True

    def __init__(self):
        self.stack = []


_grad_mode = _ThreadGradMode()


def is_grad_enabled():
    """True when ops record the graph for backward (the default); per thread."""
    return _grad_mode.enabled


def _set_grad_enabled(mode):
    _grad_mode.enabled = bool(mode)


class _GradMode:
    """Base of no_grad / enable_grad / inference_mode: a context manager and a decorator.

    ``__enter__`` remembers the thread's current mode on a per-thread stack and sets ``self.mode``;
    ``__exit__`` restores it, so nesting and one instance used by several threads both work.
    """

    mode = True

    def __enter__(self):
        _grad_mode.stack.append(_grad_mode.enabled)
        _set_grad_enabled(self._mode_inside())
        return self

    def _mode_inside(self):
        return self.mode

    def __exit__(self, *exc_info):
        _set_grad_enabled(_grad_mode.stack.pop())
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def run_in_mode(*args, **kwargs):
            with self:
                return func(*args, **kwargs)
        return run_in_mode


class no_grad(_GradMode):
    """``with no_grad():`` or ``@no_grad()``: ops inside record no graph (evaluation, parameter updates)."""

    mode = False


class enable_grad(_GradMode):
    """``with enable_grad():`` or ``@enable_grad()``: record the graph again inside a no_grad block."""

    mode = True


class inference_mode(_GradMode):
    """``inference_mode(mode=True)``: like ``no_grad`` when mode is True (convnp has no separate
    inference tensors, so it is exactly no_grad); ``inference_mode(False)`` leaves the mode as it is."""

    def __init__(self, mode=True):
        self.requested = bool(mode)

    def _mode_inside(self):
        return False if self.requested else is_grad_enabled()


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(mode)``: called plainly, sets this thread's mode at once (like PyTorch);
    as ``with set_grad_enabled(mode):`` or ``@set_grad_enabled(mode)`` it restores the previous mode
    afterwards."""

    def __init__(self, mode):
        self.mode = bool(mode)
        self.previous = is_grad_enabled()
        _set_grad_enabled(self.mode)

    def __enter__(self):
        _grad_mode.stack.append(self.previous)  # the mode before the call that already switched it
        _set_grad_enabled(self.mode)
        return self

    def __call__(self, func):
        _set_grad_enabled(self.previous)  # as a decorator: leave the mode alone until func runs
        mode = self.mode

        @functools.wraps(func)
        def run_in_mode(*args, **kwargs):
            previous = is_grad_enabled()
            _set_grad_enabled(mode)
            try:
                return func(*args, **kwargs)
            finally:
                _set_grad_enabled(previous)
        return run_in_mode


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

    def __len__(self):
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self) -> Number:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.reshape(-1)[0].item()

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the graph."""
        return Tensor(self.data)

    def astype(self, dtype: DTypeLike) -> Tensor:
        """This tensor converted to ``dtype``, on the tape (the gradient is converted back); a
        conversion to an integer or bool dtype leaves the graph, since those carry no gradient."""
        from .ops.elementwise import Cast
        dtype = np.dtype(dtype)
        if dtype.kind not in "fc":
            return Tensor(self.data.astype(dtype))
        return Cast.apply(self, dtype=dtype)

    def __repr__(self):
        from .backend import is_device_array, to_numpy
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(to_numpy(self.data), prefix="Tensor(")
        where = ", device='cuda'" if is_device_array(self.data) else ""
        return f"Tensor({body}{where}, dtype={self.dtype}{grad})"

    # --- autograd ----------------------------------------------------------------------------
    def backward(self, gradient: ArrayLike | Tensor | None = None, retain_graph: Flag = False) -> None:
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
        """Apply a two-input op with PyTorch's type promotion: a Python number takes this tensor's
        dtype (float32 + 0.5 stays float32), except that a float with an integer or bool tensor gives
        float32; between tensors a 0-d one does not widen a higher-dimensional one of the same kind
        (float32 (N,) + float64 () is float32), and an integer with a float tensor gives the float one."""
        if not isinstance(other, Tensor):
            if isinstance(other, (bool, int, float, np.number, np.bool_)):
                dtype = _scalar_result_dtype(self.data.dtype, other)
                a = self if dtype == self.data.dtype else self.astype(dtype)
                xp = np if type(self.data) is np.ndarray else get_array_module(self.data)  # a GPU scalar on the GPU
                b = Tensor(xp.asarray(other, dtype=dtype))
                return op.apply(b, a) if reverse else op.apply(a, b)
            other = Tensor(other)
        a, b = self, other
        if a.data.dtype is not b.data.dtype and a.data.dtype != b.data.dtype:  # (`is`: the fast common case)
            dtype = _tensor_result_dtype(a.data, b.data)
            a = a if a.data.dtype == dtype else a.astype(dtype)
            b = b if b.data.dtype == dtype else b.astype(dtype)
        return op.apply(b, a) if reverse else op.apply(a, b)

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
        return self._for_division(other)._binary(Div, other)

    def __rtruediv__(self, other):
        from .ops.elementwise import Div
        return self._for_division(other)._binary(Div, other, reverse=True)

    def _for_division(self, other):
        """True division gives floats, like PyTorch: int / int is float32; otherwise promotion decides."""
        other_is_float = (isinstance(other, (float, np.floating))
                          or isinstance(other, Tensor) and other.data.dtype.kind == "f")
        return self if other_is_float else self._float()

    def _float(self):
        """Integer and bool tensors as float32 (true division always gives floats, like PyTorch)."""
        return self if self.data.dtype.kind in "fc" else self.astype(DEFAULT_DTYPE)

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
        from .ops.elementwise import Pow, PowTensor
        if isinstance(exponent, Tensor):
            return self._binary(PowTensor, exponent)
        if self.data.dtype.kind in "iub" and isinstance(exponent, float):
            return self.astype(DEFAULT_DTYPE) ** exponent
        return Pow.apply(self, exponent=exponent)

    def __rpow__(self, base):
        from .ops.elementwise import PowTensor
        return self._binary(PowTensor, base, reverse=True)

    def __abs__(self):
        return self.abs()

    # comparisons: boolean tensors outside the graph (they have no gradient)
    def _compare(self, other, compare):
        if other is None:
            return NotImplemented
        return Tensor(compare(self.data, other.data if isinstance(other, Tensor) else other))

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    __hash__ = object.__hash__  # tensors are dict keys (optimizer state) by identity, as in PyTorch

    def eq(self, other: Operand) -> Tensor:
        return self == other

    def ne(self, other: Operand) -> Tensor:
        return self != other

    def lt(self, other: Operand) -> Tensor:
        return self < other

    def le(self, other: Operand) -> Tensor:
        return self <= other

    def gt(self, other: Operand) -> Tensor:
        return self > other

    def ge(self, other: Operand) -> Tensor:
        return self >= other

    def __invert__(self):
        return Tensor(~self.data)

    def __and__(self, other):
        return self._compare(other, np.logical_and if self.data.dtype == bool else np.bitwise_and)

    def __or__(self, other):
        return self._compare(other, np.logical_or if self.data.dtype == bool else np.bitwise_or)

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of a tensor with {self.data.size} values is ambiguous "
                               f"(shape {self.shape}); use .any() or .all()")
        return bool(self.data.reshape(-1)[0])

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __format__(self, spec):
        return format(self.item(), spec) if self.data.size == 1 and spec else format(repr(self), spec)

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(tensor)`` gives the data (no copy)."""
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self)))

    def all(self, dim: Axis | None = None, keepdim: Flag = False) -> Tensor:
        return Tensor(self.data.all(axis=dim, keepdims=keepdim))

    def any(self, dim: Axis | None = None, keepdim: Flag = False) -> Tensor:
        return Tensor(self.data.any(axis=dim, keepdims=keepdim))

    # --- indexing ---------------------------------------------------------------------------------
    def __getitem__(self, index):
        from .ops.shape import GetItem
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):  # x[idx_tensor, 0]: index arrays may come as Tensors too
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        elif isinstance(index, list):
            index = np.asarray(index)
        return GetItem.apply(self, index=index)

    def __setitem__(self, index, value):
        """In place, on a tensor outside any graph (``x[mask] = 0``); convnp's tape cannot record
        in-place changes, so a tensor that requires grad refuses (use ``where``/``masked_fill``)."""
        self._check_in_place("item assignment")
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        self.data[index] = value.data if isinstance(value, Tensor) else value

    def _check_in_place(self, what):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{what} on a tensor that requires grad: convnp records no in-place ops; "
                               f"do it under convnp.no_grad() (for parameters), or build a new tensor")

    def gather(self, dim: Axis, index: Tensor | ArrayLike) -> Tensor:
        from .ops.shape import Gather
        index = _array_of(index)
        return Gather.apply(self, axis=_dim(dim, self.ndim), index=index)

    def index_select(self, dim: Axis, index: Tensor | ArrayLike) -> Tensor:
        from .ops.shape import IndexSelect
        return IndexSelect.apply(self, axis=_dim(dim, self.ndim), index=_array_of(index).reshape(-1))

    def masked_fill(self, mask: Tensor | ArrayLike, value: Tensor | Number) -> Tensor:
        """``value`` where ``mask`` (bool, broadcast) is True, else this tensor's entries."""
        from .ops.elementwise import Where
        fill = value.astype(self.dtype) if isinstance(value, Tensor) else Tensor(np.asarray(value, dtype=self.dtype))
        return Where.apply(fill, self, condition=_array_of(mask).astype(bool))

    def where(self, condition: Tensor | ArrayLike, other: Operand) -> Tensor:
        """``x.where(condition, y)``: this tensor where ``condition``, else ``other`` (torch's order)."""
        from .tensor_functions import where
        return where(condition, self, other)

    # --- elementwise -------------------------------------------------------------------------------
    def exp(self) -> Tensor:
        from .ops.elementwise import Exp
        return Exp.apply(self._float())

    def log(self) -> Tensor:
        from .ops.elementwise import Log
        return Log.apply(self._float())

    def log2(self) -> Tensor:
        from .ops.elementwise import Log2
        return Log2.apply(self._float())

    def abs(self) -> Tensor:
        from .ops.elementwise import Abs
        return Abs.apply(self)

    def neg(self) -> Tensor:
        return -self

    def sqrt(self) -> Tensor:
        from .ops.elementwise import Sqrt
        return Sqrt.apply(self._float())

    def rsqrt(self) -> Tensor:
        from .ops.elementwise import Rsqrt
        return Rsqrt.apply(self._float())

    def pow(self, exponent: Operand) -> Tensor:
        return self ** exponent

    def sign(self) -> Tensor:
        from .ops.elementwise import Sign
        return Sign.apply(self)

    def clamp(self, min: Operand | None = None, max: Operand | None = None) -> Tensor:  # noqa: A002 - torch's argument names
        """Clip to [min, max] (numbers; either may be None);  gradient 1 inside, 0 where clipped."""
        from .ops.elementwise import Clamp
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return Clamp.apply(self, low=min, high=max)

    clip = clamp

    def maximum(self, other: Operand) -> Tensor:
        from .ops.elementwise import Maximum
        return self._binary(Maximum, other)

    def minimum(self, other: Operand) -> Tensor:
        from .ops.elementwise import Minimum
        return self._binary(Minimum, other)

    def sigmoid(self) -> Tensor:
        from .ops.activation import Sigmoid
        return Sigmoid.apply(self)

    def tanh(self) -> Tensor:
        from .ops.activation import Tanh
        return Tanh.apply(self)

    def relu(self) -> Tensor:
        from .ops.activation import ReLU
        return ReLU.apply(self)

    def softmax(self, dim: Axis) -> Tensor:
        from .ops.loss import Softmax
        return Softmax.apply(self, axis=dim)

    def log_softmax(self, dim: Axis) -> Tensor:
        from .ops.loss import LogSoftmax
        return LogSoftmax.apply(self, axis=dim)

    def matmul(self, other: Operand) -> Tensor:
        return self @ other

    mm = matmul

    # --- reductions: dim=/keepdim= like PyTorch (axis=/keepdims= also accepted) ------------------------
    def sum(self, dim: Dims = None, keepdim: Flag = False, *, axis: Dims = None, keepdims: Flag | None = None,
            dtype: DTypeLike | None = None) -> Tensor:
        from .ops.reduce import Sum
        x = self if dtype is None else self.astype(dtype)
        if x.data.dtype.kind in "biu" and dtype is None:
            x = x.astype(np.int64)  # like torch: integer and bool sums are int64
        return Sum.apply(x, axis=_pick(dim, axis), keepdims=_pick(keepdims, keepdim))

    def mean(self, dim: Dims = None, keepdim: Flag = False, *, axis: Dims = None, keepdims: Flag | None = None,
             dtype: DTypeLike | None = None) -> Tensor:
        from .ops.reduce import Mean
        x = self if dtype is None else self.astype(dtype)
        if x.data.dtype.kind not in "fc":
            raise RuntimeError(f"mean(): expected a floating point input, got {x.dtype}; use .float().mean()")
        return Mean.apply(x, axis=_pick(dim, axis), keepdims=_pick(keepdims, keepdim))

    def amax(self, dim: Dims = None, keepdim: Flag = False) -> Tensor:
        from .ops.reduce import Amax
        return Amax.apply(self, axis=_dims(dim), keepdims=keepdim)

    def amin(self, dim: Dims = None, keepdim: Flag = False) -> Tensor:
        from .ops.reduce import Amax
        return Amax.apply(self, axis=_dims(dim), keepdims=keepdim, minimum=True)

    def max(self, dim: Axis | Tensor | None = None, keepdim: Flag = False) -> Tensor | ValuesIndices:
        """``max()``: the largest value (0-d); ``max(dim)``: (values, indices) along dim;
        ``max(other)``: the elementwise maximum."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is None:
            return self.amax()
        return self._extreme_along(dim, keepdim, "max")

    def min(self, dim: Axis | Tensor | None = None, keepdim: Flag = False) -> Tensor | ValuesIndices:
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is None:
            return self.amin()
        return self._extreme_along(dim, keepdim, "min")

    def _extreme_along(self, dim, keepdim, which):
        from .ops.reduce import TakeAlong
        axis = _dim(dim, self.ndim)
        pick = np.argmax if which == "max" else np.argmin
        indices = np.expand_dims(pick(self.data, axis=axis), axis)
        values = TakeAlong.apply(self, indices=indices, axis=axis, keepdims=keepdim)
        return ValuesIndices(values, Tensor(indices if keepdim else indices.squeeze(axis)))

    def argmax(self, dim: Axis | None = None, keepdim: Flag = False, *, axis: Axis | None = None) -> Tensor:
        return _arg_extreme(self.data, np.argmax, _pick(dim, axis), keepdim)

    def argmin(self, dim: Axis | None = None, keepdim: Flag = False, *, axis: Axis | None = None) -> Tensor:
        return _arg_extreme(self.data, np.argmin, _pick(dim, axis), keepdim)

    def var(self, dim: Dims = None, unbiased: Flag | None = None, keepdim: Flag = False, *,
            correction: Number | None = None) -> Tensor:
        """Variance with Bessel's correction by default (``correction=1``, or ``unbiased=True``)."""
        from .ops.reduce import Var
        if isinstance(unbiased, bool) or unbiased is None:
            correction = (1 if unbiased is None or unbiased else 0) if correction is None else correction
        return Var.apply(self, axis=_dims(dim), correction=correction, keepdims=keepdim)

    def std(self, dim: Dims = None, unbiased: Flag | None = None, keepdim: Flag = False, *,
            correction: Number | None = None) -> Tensor:
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def prod(self, dim: Axis | None = None, keepdim: Flag = False) -> Tensor:
        from .ops.reduce import Prod
        return Prod.apply(self, axis=dim, keepdims=keepdim)

    def logsumexp(self, dim: Dims, keepdim: Flag = False) -> Tensor:
        from .ops.reduce import LogSumExp
        return LogSumExp.apply(self, axis=_dims(dim), keepdims=keepdim)

    def norm(self, p: Number | str = "fro", dim: Dims = None, keepdim: Flag = False) -> Tensor:
        """The p-norm over ``dim`` (all elements by default); p = 'fro' or 2, 1, any number, or inf."""
        from .ops.reduce import Norm
        if p == "fro":
            p = 2
        if p in (float("inf"), "inf"):
            return self.abs().amax(dim, keepdim)
        return Norm.apply(self, p=p, axis=_dims(dim), keepdims=keepdim)

    # --- shapes ---------------------------------------------------------------------------------------
    def size(self, dim: Axis | None = None) -> Size | Count:
        """The shape (a tuple, ``Size``), or its length along ``dim``, like PyTorch.  (Before convnp
        followed PyTorch here, ``size`` was NumPy's element count: that is ``numel()``.)"""
        return Size(self.data.shape) if dim is None else self.data.shape[_dim(dim, self.ndim)]

    def dim(self) -> Count:
        return self.data.ndim

    def numel(self) -> Count:
        return int(self.data.size)

    def reshape(self, *shape: Sizes) -> Tensor:
        from .ops.shape import Reshape
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=tuple(int(n) for n in shape))

    def view(self, *shape: Sizes) -> Tensor:
        """Same as ``reshape`` (NumPy copies when a view is impossible; convnp never raises for that)."""
        if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int)) and not hasattr(shape[0], "__index__"):
            return self.astype(shape[0])  # view(dtype): a reinterpretation in torch; a cast is the nearest
        return self.reshape(*shape)

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def flatten(self, start_dim: Axis = 0, end_dim: Axis = -1) -> Tensor:
        from .ops.shape import flatten
        return flatten(self, start_dim, end_dim)

    def unflatten(self, dim: Axis, sizes: Sizes) -> Tensor:
        dim = _dim(dim, self.ndim)
        sizes = list(sizes)
        if -1 in sizes:
            known = 1
            for n in sizes:
                known *= n if n != -1 else 1
            sizes[sizes.index(-1)] = self.shape[dim] // known
        return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

    def squeeze(self, dim: Dims = None) -> Tensor:
        """Remove axes of length 1 (only ``dim``'s, when given; a longer axis is left alone)."""
        if dim is None:
            dims = [i for i, n in enumerate(self.shape) if n == 1]
        else:
            dims = [_dim(d, self.ndim) for d in ((dim,) if isinstance(dim, int) else dim)]
            dims = [d for d in dims if self.shape[d] == 1]
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in dims))

    def unsqueeze(self, dim: Axis) -> Tensor:
        dim = _dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def permute(self, *dims: Sizes) -> Tensor:
        """Reorder the axes: ``x.permute(0, 2, 3, 1)`` (NCHW -> NHWC)."""
        from .ops.shape import Transpose
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if sorted(_dim(d, self.ndim) for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of the {self.ndim} axes of a "
                             f"tensor of shape {self.shape}")
        return Transpose.apply(self, axes=tuple(dims))

    def transpose(self, dim0: Axis, dim1: Axis) -> Tensor:
        """Swap two axes, like ``torch.transpose`` (``x.transpose(0, 1)``).  For a full reordering use
        ``permute`` (NumPy's ``transpose(axes)`` is ``permute`` here)."""
        axes = list(range(self.ndim))
        dim0, dim1 = _dim(dim0, self.ndim), _dim(dim1, self.ndim)
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(axes)

    swapaxes = transpose

    def t(self) -> Tensor:
        """Transpose of a matrix (a 0-d or 1-d tensor comes back as it is)."""
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self if self.ndim < 2 else self.transpose(0, 1)

    @property
    def T(self):
        """All axes reversed (PyTorch's .T)."""
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self):  # noqa: N802 - torch's name
        """The last two axes swapped (a batch of matrices transposed)."""
        return self.transpose(-2, -1)

    def expand(self, *sizes: Sizes) -> Tensor:
        """Broadcast to ``sizes`` without copying (-1 keeps an axis's size)."""
        from .ops.shape import Expand
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        lead = len(sizes) - self.ndim
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(sizes))
        return Expand.apply(self, shape=shape)

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(other.shape)

    def repeat(self, *sizes: Sizes) -> Tensor:
        from .ops.shape import Repeat
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if len(sizes) < self.ndim:
            raise RuntimeError(f"repeat: {len(sizes)} repeats for a tensor with {self.ndim} dimensions")
        return Repeat.apply(self, repeats=tuple(sizes))

    def contiguous(self) -> Tensor:
        from .ops.elementwise import Clone
        return self if self.data.flags.c_contiguous else Clone.apply(self)

    def clone(self) -> Tensor:
        from .ops.elementwise import Clone
        return Clone.apply(self)

    # --- dtypes and devices -----------------------------------------------------------------------------
    @property
    def device(self):
        from .backend import device_of
        return device_of(self.data)

    @property
    def is_cuda(self):
        from .backend import is_device_array
        return is_device_array(self.data)

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def requires_grad_(self, requires_grad: Flag = True) -> Tensor:
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def half(self) -> Tensor:
        return self.astype(np.float16)

    def long(self) -> Tensor:
        return self.astype(np.int64)

    def int(self) -> Tensor:
        return self.astype(np.int32)

    def bool(self) -> Tensor:
        return self.astype(np.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.astype(other.dtype)

    def to(self, *args, dtype: DTypeLike | None = None, device=None, copy: Flag = False,
           non_blocking: Flag = False) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)`` (its dtype), like PyTorch.
        Returns this tensor itself when nothing changes.  A move to another device ('cuda' needs CuPy
        and a GPU, see ``convnp.device``) gives a new leaf tensor (same requires_grad) holding a copy."""
        dtype, device = to_arguments(args, dtype, device)
        moved = self
        if device is not None:
            from .backend import device_of, to_device
            target = resolve_device(device)
            if target.type != device_of(self.data).type:
                moved = Tensor(to_device(self.data, target), requires_grad=self.requires_grad)
        if dtype is not None and np.dtype(dtype) != moved.data.dtype:
            return moved.astype(dtype)
        return moved.clone() if copy and moved is self else moved

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device=None) -> Tensor:
        return self.to("cuda" if device is None else device)

    def tolist(self) -> list | Number:
        return self.data.tolist()

    # --- in place, for tensors outside the graph (initialisation, manual updates under no_grad) ------------
    def zero_(self) -> Tensor:
        self._check_in_place("zero_()")
        self.data[...] = 0
        return self

    def fill_(self, value: Number) -> Tensor:
        self._check_in_place("fill_()")
        self.data[...] = value
        return self

    def copy_(self, source: Tensor | ArrayLike) -> Tensor:
        self._check_in_place("copy_()")
        self.data[...] = source.data if isinstance(source, Tensor) else source
        return self

    def add_(self, other: Operand, alpha: Number = 1) -> Tensor:
        self._check_in_place("add_()")
        self.data += (other.data if isinstance(other, Tensor) else other) * alpha
        return self

    def sub_(self, other: Operand, alpha: Number = 1) -> Tensor:
        return self.add_(other, -alpha)

    def mul_(self, other: Operand) -> Tensor:
        self._check_in_place("mul_()")
        self.data *= other.data if isinstance(other, Tensor) else other
        return self

    def div_(self, other: Operand) -> Tensor:
        self._check_in_place("div_()")
        self.data /= other.data if isinstance(other, Tensor) else other
        return self

    def clamp_(self, min: Number | None = None, max: Number | None = None) -> Tensor:  # noqa: A002
        self._check_in_place("clamp_()")
        np.clip(self.data, min, max, out=self.data)
        return self

    def uniform_(self, a: Number = 0.0, b: Number = 1.0, generator=None) -> Tensor:
        from .backend import rng_of
        self._check_in_place("uniform_()")
        self.data[...] = rng_of(generator).uniform(a, b, size=self.shape)
        return self

    def normal_(self, mean: Number = 0.0, std: Number = 1.0, generator=None) -> Tensor:
        from .backend import rng_of
        self._check_in_place("normal_()")
        self.data[...] = rng_of(generator).normal(mean, std, size=self.shape)
        return self


class Size(tuple):
    """A tensor's shape, as ``x.size()`` returns it: a tuple (``torch.Size`` is one too)."""

    def numel(self):
        count = 1
        for n in self:
            count *= n
        return count

    def __repr__(self):
        return f"Size({list(self)})"


class ValuesIndices(tuple):
    """``max(dim)`` / ``min(dim)``'s result: (values, indices), also as ``.values`` and ``.indices``."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _pick(preferred, alternative):
    """The torch-named argument unless only the NumPy-named one was given."""
    return alternative if preferred is None or preferred is False and alternative is not None else preferred


def _dim(dim, ndim):
    """A dim in [-ndim, ndim) as a non-negative axis; IndexError otherwise (no wrap-around)."""
    size = max(ndim, 1)
    if not -size <= dim < size:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-size}, {size - 1}], but got {dim})")
    return dim % size


def _dims(dim):
    return tuple(dim) if isinstance(dim, list) else dim


def _array_of(value):
    return value.data if isinstance(value, Tensor) else np.asarray(value)


def _arg_extreme(data, pick, dim, keepdim):
    if dim is None:
        index = np.asarray(pick(data), dtype=np.int64)
        return Tensor(index.reshape((1,) * data.ndim) if keepdim else index)
    axis = _dim(dim, data.ndim)
    return Tensor(np.asarray(pick(data, axis=axis, keepdims=keepdim), dtype=np.int64))


def _kind(dtype):
    return 0 if dtype.kind == "b" else 1 if dtype.kind in "iu" else 2


def _scalar_result_dtype(dtype, number):
    """The dtype of ``tensor <op> number`` (PyTorch: the number never widens the tensor's kind)."""
    number_kind = 0 if isinstance(number, (bool, np.bool_)) else 1 if isinstance(number, (int, np.integer)) else 2
    if number_kind <= _kind(dtype):
        return dtype
    return np.dtype(np.int64) if number_kind == 1 else np.dtype(DEFAULT_DTYPE)


def _tensor_result_dtype(a, b):
    """The dtype of ``a <op> b`` for arrays of different dtypes, with PyTorch's rules."""
    kind_a, kind_b = _kind(a.dtype), _kind(b.dtype)
    if kind_a != kind_b:
        return a.dtype if kind_a > kind_b else b.dtype
    if (a.ndim == 0) != (b.ndim == 0):  # a 0-d tensor does not widen a dimensioned one of its kind
        return b.dtype if a.ndim == 0 else a.dtype
    return np.promote_types(a.dtype, b.dtype)


def tensor(data, requires_grad=False, dtype=None):
    """Make a Tensor, like ``torch.tensor``."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def to_arguments(args, dtype=None, device=None):
    """The positional arguments of ``Tensor.to`` and ``Module.to`` -> (dtype, device): each is a device
    (or its name), a tensor (its dtype is taken) or a dtype, in any order, as in PyTorch."""
    from .backend import is_device

    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif is_device(arg):
            device = arg
        else:
            dtype = arg
    return dtype, device
