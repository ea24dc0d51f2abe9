"""The ``torch.*`` functions a PyTorch script calls at the top level: making tensors (``zeros``,
``arange``, ``randn``, ...), joining them (``cat``, ``stack``), ``where``, ``flatten`` and the
elementwise/reduction functions that mirror Tensor methods (``convnp.exp(x)`` is ``x.exp()``).

Python floats and random draws are float32 by default and integers int64, as in PyTorch; ``dtype=``
picks another (``convnp.float64`` is ``numpy.float64``: dtypes are NumPy's).  ``device=`` accepts the
CPU only (see ``convnp.device``).  Random functions draw from convnp's generator (seeded by
``convnp.manual_seed``) or from ``generator=``; the numbers are NumPy's, not the ones PyTorch draws
for the same seed.
"""
import numpy as np

from .backend import DEFAULT_DTYPE, resolve_device, rng_of
from .ops import shape as shape_ops
from .ops.elementwise import Where
from .tensor import Tensor, _array_of, _dim, _tensor_result_dtype

__all__ = [
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "arange", "linspace", "eye",
    "zeros_like", "ones_like", "full_like", "empty_like", "rand", "randn", "randint", "randperm",
    "rand_like", "randn_like", "cat", "concat", "stack", "where", "flatten", "numel", "is_tensor",
    "exp", "log", "log2", "sqrt", "rsqrt", "abs", "sign", "clamp", "clip", "sigmoid", "tanh", "relu",
    "sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "std", "var", "prod", "logsumexp",
    "norm", "matmul", "maximum", "minimum", "softmax", "log_softmax", "permute", "transpose", "reshape",
    "squeeze", "unsqueeze", "allclose", "equal", "gather", "index_select", "masked_fill", "pow",
]


def _make(array, dtype, device, requires_grad):
    if device is not None:
        resolve_device(device)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return Tensor(array, requires_grad=requires_grad)


def _shape(size):
    """zeros(2, 3) and zeros((2, 3)) alike."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (Python floats -> float32, ints -> int64, bools -> bool)."""
    if isinstance(data, Tensor):
        data = data.data
    array = np.array(data, copy=True)
    if dtype is None and array.dtype.kind == "f" and not isinstance(data, (np.ndarray, np.generic)):
        array = array.astype(DEFAULT_DTYPE)
    return _make(array, dtype, device, requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares ``data``'s memory when it already is an array of that dtype."""
    if isinstance(data, Tensor):
        return data if dtype is None else data.astype(dtype)
    if isinstance(data, np.ndarray):
        return _make(data, dtype, device, False)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A tensor sharing ``array``'s memory and dtype."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.zeros(_shape(size), dtype=dtype or DEFAULT_DTYPE), None, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.ones(_shape(size), dtype=dtype or DEFAULT_DTYPE), None, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.empty(_shape(size), dtype=dtype or DEFAULT_DTYPE), None, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """``fill_value`` everywhere; the dtype follows it like PyTorch's (float -> float32, int -> int64)."""
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else np.int64 if isinstance(fill_value, int) else DEFAULT_DTYPE
    return _make(np.full(tuple(size), fill_value, dtype=dtype), None, device, requires_grad)


def zeros_like(x, dtype=None, device=None, requires_grad=False):
    return _make(np.zeros(x.shape, dtype=dtype or x.dtype), None, device, requires_grad)


def ones_like(x, dtype=None, device=None, requires_grad=False):
    return _make(np.ones(x.shape, dtype=dtype or x.dtype), None, device, requires_grad)


def empty_like(x, dtype=None, device=None, requires_grad=False):
    return _make(np.empty(x.shape, dtype=dtype or x.dtype), None, device, requires_grad)


def full_like(x, fill_value, dtype=None, device=None, requires_grad=False):
    return _make(np.full(x.shape, fill_value, dtype=dtype or x.dtype), None, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """[start, end) in steps: int64 when every argument is an integer, else float32 (PyTorch's rule)."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = np.int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) else DEFAULT_DTYPE
    count = int(np.ceil((end - start) / step))
    count = count if count > 0 else 0  # (the builtin max is shadowed here by torch's max)
    values = start + step * np.arange(count, dtype=np.float64 if np.dtype(dtype).kind == "f" else np.int64)
    return _make(values.astype(dtype), None, device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _make(np.linspace(start, end, steps).astype(dtype or DEFAULT_DTYPE), None, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _make(np.eye(n, m, dtype=dtype or DEFAULT_DTYPE), None, device, requires_grad)


# --- random ---------------------------------------------------------------------------------------------
def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """U[0, 1) samples, float32 by default."""
    values = rng_of(generator).random(_shape(size))
    return _make(values.astype(dtype or DEFAULT_DTYPE), None, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal samples, float32 by default."""
    values = rng_of(generator).standard_normal(_shape(size))
    return _make(values.astype(dtype or DEFAULT_DTYPE), None, device, requires_grad)


def rand_like(x, dtype=None, generator=None):
    return rand(*x.shape, generator=generator, dtype=dtype or x.dtype)


def randn_like(x, dtype=None, generator=None):
    return randn(*x.shape, generator=generator, dtype=dtype or x.dtype)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None):
    """Integers in [low, high) (``randint(high, size)`` starts at 0), int64 by default."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    values = rng_of(generator).integers(low, high, size=tuple(size))
    return _make(values.astype(dtype or np.int64), None, device, False)


def randperm(n, generator=None, dtype=None, device=None):
    """A random permutation of 0..n-1 (int64)."""
    return _make(rng_of(generator).permutation(n).astype(dtype or np.int64), None, device, False)


# --- joining, selecting, reshaping --------------------------------------------------------------------------
def _tensors(tensors, where):
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError(f"{where}: expected a non-empty list of tensors")
    dtype = tensors[0].data.dtype
    for t in tensors[1:]:
        if t.data.dtype != dtype:
            dtype = _tensor_result_dtype(np.empty(1, dtype), np.empty(1, t.data.dtype))
    return [t if t.data.dtype == dtype else t.astype(dtype) for t in tensors]


def cat(tensors, dim=0):
    """Join along an existing axis ``dim`` (shapes must agree elsewhere)."""
    tensors = _tensors(tensors, "cat")
    axis = _dim(dim, tensors[0].ndim)
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or t.shape[:axis] + t.shape[axis + 1:] != \
                tensors[0].shape[:axis] + tensors[0].shape[axis + 1:]:
            raise ValueError(f"cat: shapes {tensors[0].shape} and {t.shape} differ outside dim {dim}")
    return shape_ops.Concatenate.apply(*tensors, axis=axis)


concat = cat


def stack(tensors, dim=0):
    """Join along a NEW axis ``dim`` (all shapes equal)."""
    tensors = _tensors(tensors, "stack")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: expects each tensor to be equal size, got {[t.shape for t in tensors]}")
    axis = _dim(dim, tensors[0].ndim + 1)
    return shape_ops.Concatenate.apply(*(t.unsqueeze(axis) for t in tensors), axis=axis)


def where(condition, x=None, y=None):
    """``x`` where ``condition`` else ``y`` (broadcast; numbers allowed); ``where(condition)`` alone
    gives the indices of the True entries, a tuple of int64 tensors, like ``torch.where``."""
    condition = _array_of(condition).astype(bool)
    if x is None and y is None:
        return tuple(Tensor(i.astype(np.int64)) for i in np.nonzero(condition))
    x = x if isinstance(x, Tensor) else None if x is None else Tensor(np.asarray(x))
    y = y if isinstance(y, Tensor) else None if y is None else Tensor(np.asarray(y))
    if x is None or y is None:
        raise TypeError("where(condition, x, y) needs both x and y (or neither)")
    if x.data.dtype != y.data.dtype:
        dtype = _tensor_result_dtype(x.data, y.data)
        x, y = (x if x.data.dtype == dtype else x.astype(dtype)), (y if y.data.dtype == dtype else y.astype(dtype))
    return Where.apply(x, y, condition=condition)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim; ``start_dim=0`` (everything) by default, like ``torch.flatten``."""
    return shape_ops.flatten(_as(x), start_dim, end_dim)


def numel(x):
    return _as(x).numel()


def is_tensor(x):
    return isinstance(x, Tensor)


def _as(x):
    return x if isinstance(x, Tensor) else Tensor(x)


# --- the Tensor methods as functions (torch.exp(x) is x.exp()) -------------------------------------------
def exp(x):
    return _as(x).exp()


def log(x):
    return _as(x).log()


def log2(x):
    return _as(x).log2()


def sqrt(x):
    return _as(x).sqrt()


def rsqrt(x):
    return _as(x).rsqrt()


def abs(x):  # noqa: A001 - torch's name
    return _as(x).abs()


def sign(x):
    return _as(x).sign()


def pow(x, exponent):  # noqa: A001
    return _as(x) ** exponent


def clamp(x, min=None, max=None):  # noqa: A002
    return _as(x).clamp(min, max)


clip = clamp


def sigmoid(x):
    return _as(x).sigmoid()


def tanh(x):
    return _as(x).tanh()


def relu(x):
    return _as(x).relu()


def sum(x, dim=None, keepdim=False, dtype=None):  # noqa: A001
    return _as(x).sum(dim, keepdim, dtype=dtype)


def mean(x, dim=None, keepdim=False, dtype=None):
    return _as(x).mean(dim, keepdim, dtype=dtype)


def max(x, dim=None, keepdim=False):  # noqa: A001
    return _as(x).max(dim, keepdim)


def min(x, dim=None, keepdim=False):  # noqa: A001
    return _as(x).min(dim, keepdim)


def amax(x, dim=None, keepdim=False):
    return _as(x).amax(dim, keepdim)


def amin(x, dim=None, keepdim=False):
    return _as(x).amin(dim, keepdim)


def argmax(x, dim=None, keepdim=False):
    return _as(x).argmax(dim, keepdim)


def argmin(x, dim=None, keepdim=False):
    return _as(x).argmin(dim, keepdim)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _as(x).std(dim, unbiased, keepdim, correction=correction)


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _as(x).var(dim, unbiased, keepdim, correction=correction)


def prod(x, dim=None, keepdim=False):
    return _as(x).prod(dim, keepdim)


def logsumexp(x, dim, keepdim=False):
    return _as(x).logsumexp(dim, keepdim)


def norm(x, p="fro", dim=None, keepdim=False):
    return _as(x).norm(p, dim, keepdim)


def matmul(a, b):
    return _as(a) @ b


def maximum(a, b):
    return _as(a).maximum(b)


def minimum(a, b):
    return _as(a).minimum(b)


def softmax(x, dim):
    return _as(x).softmax(dim)


def log_softmax(x, dim):
    return _as(x).log_softmax(dim)


def permute(x, dims):
    return _as(x).permute(dims)


def transpose(x, dim0, dim1):
    return _as(x).transpose(dim0, dim1)


def reshape(x, shape):
    return _as(x).reshape(shape)


def squeeze(x, dim=None):
    return _as(x).squeeze(dim)


def unsqueeze(x, dim):
    return _as(x).unsqueeze(dim)


def gather(x, dim, index):
    return _as(x).gather(dim, index)


def index_select(x, dim, index):
    return _as(x).index_select(dim, index)


def masked_fill(x, mask, value):
    return _as(x).masked_fill(mask, value)


def allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    return bool(np.allclose(_array_of(a), _array_of(b), rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(a, b):
    a, b = _array_of(a), _array_of(b)
    return a.shape == b.shape and bool((a == b).all())
