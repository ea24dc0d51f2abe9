"""Reductions: sum and mean over some axes (all axes by default)."""
from ..backend import get_array_module
from ..function import Function


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):  # like PyTorch: no silent wrap-around to another axis
            raise IndexError(f"Dimension out of range (expected to be in range of [{-max(ndim, 1)}, "
                             f"{max(ndim, 1) - 1}], but got {a})")
    return tuple(a % ndim for a in axes) if ndim else ()


def _expand_back(dy, shape, axes, keepdims):
    """Undo a reduction's shape change: re-insert the reduced axes, then broadcast to ``shape``."""
    xp = get_array_module(dy)
    if not keepdims:
        dy = xp.expand_dims(dy, axes)
    return xp.broadcast_to(dy, shape)


class Sum(Function):
    """x: any shape -> y: x summed over ``axis``;  dx = dy broadcast back over the summed axes"""

    def forward(self, x, axis=None, keepdims=False):
        self.shape, self.keepdims = x.shape, keepdims
        self.axes = _normalize_axes(axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, dy):
        return _expand_back(dy, self.shape, self.axes, self.keepdims)


class Mean(Function):
    """x: any shape -> y: mean over ``axis``;  dx = dy / n broadcast back (n = elements averaged)"""

    def forward(self, x, axis=None, keepdims=False):
        self.shape, self.keepdims = x.shape, keepdims
        self.axes = _normalize_axes(axis, x.ndim)
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, dy):
        return _expand_back(dy / self.count, self.shape, self.axes, self.keepdims)


# --- more reductions (the PyTorch Tensor surface) -----------------------------------------------------
def _keep(y, axes, keepdims):
    """A reduction's result with the reduced axes present (size 1), whatever ``keepdims`` was."""
    return y if keepdims else get_array_module(y).expand_dims(y, axes)


class Amax(Function):
    """x -> y: maximum (or, with ``minimum``, minimum) over ``axis``;  dx = dy shared evenly among the
    elements equal to the extreme (PyTorch's rule for amax/amin and for max()/min() without a dim)"""

    def forward(self, x, axis=None, keepdims=False, minimum=False):
        self.axes, self.keepdims = _normalize_axes(axis, x.ndim), keepdims
        y = x.min(axis=self.axes, keepdims=keepdims) if minimum else x.max(axis=self.axes, keepdims=keepdims)
        self.save_for_backward(x, y)
        return y

    def backward(self, dy):
        x, y = self.saved
        hits = x == _keep(y, self.axes, self.keepdims)
        count = hits.sum(axis=self.axes, keepdims=True)
        return hits * (_keep(dy, self.axes, self.keepdims) / count).astype(dy.dtype, copy=False)


class TakeAlong(Function):
    """x, indices along ``axis`` -> y = x's entries at ``indices`` (``max(dim)``/``min(dim)`` values);
    dx = dy put back at those positions (zeros elsewhere).  ``indices`` is an int array shaped like y
    with ``axis`` kept (size 1)."""

    def forward(self, x, indices, axis, keepdims):
        xp = get_array_module(x)
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        self.save_for_backward(indices)
        y = xp.take_along_axis(x, indices, axis=axis)
        return y if keepdims else y.squeeze(axis)

    def backward(self, dy):
        (indices,) = self.saved
        xp = get_array_module(dy)
        dx = xp.zeros(self.shape, dtype=dy.dtype)
        xp.put_along_axis(dx, indices, dy if self.keepdims else xp.expand_dims(dy, self.axis), axis=self.axis)
        return dx


class Var(Function):
    """x -> y = sum((x - mean)^2) / (n - correction) over ``axis`` (correction=1: Bessel's, PyTorch's
    default);  dx = dy 2 (x - mean) / (n - correction)"""

    def forward(self, x, axis=None, correction=1, keepdims=False):
        self.axes, self.keepdims = _normalize_axes(axis, x.ndim), keepdims
        count = 1
        for a in self.axes:
            count *= x.shape[a]
        centred = x - x.mean(axis=self.axes, keepdims=True)
        self.divisor = max(count - correction, 0)
        self.save_for_backward(centred)
        with get_array_module(x).errstate(divide="ignore", invalid="ignore"):
            return (centred * centred).sum(axis=self.axes, keepdims=keepdims) / x.dtype.type(self.divisor)

    def backward(self, dy):
        (centred,) = self.saved
        return _keep(dy, self.axes, self.keepdims) * (centred * centred.dtype.type(2 / self.divisor))


class Prod(Function):
    """x -> y = product over ``axis``;  dx_i = dy * (product of all the other elements), computed with
    exclusive cumulative products, so zeros in x are handled exactly (no division by x)"""

    def forward(self, x, axis=None, keepdims=False):
        self.axes, self.keepdims = _normalize_axes(axis, x.ndim), keepdims
        self.save_for_backward(x)
        return x.prod(axis=self.axes, keepdims=keepdims)

    def backward(self, dy):
        (x,) = self.saved
        xp = get_array_module(x)
        rest = [a for a in range(x.ndim) if a not in self.axes]
        moved = x.transpose(rest + list(self.axes))
        flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
        ones = xp.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
        before = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        after = xp.cumprod(xp.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        others = (before * after).reshape(moved.shape)
        inverse = [0] * x.ndim
        for i, a in enumerate(rest + list(self.axes)):
            inverse[a] = i
        return _keep(dy, self.axes, self.keepdims) * others.transpose(inverse)


class LogSumExp(Function):
    """x -> y = log sum exp(x) over ``axis`` (the maximum subtracted first: no overflow);
    dx = dy exp(x - y) = dy softmax(x)"""

    def forward(self, x, axis=None, keepdims=False):
        xp = get_array_module(x)
        self.axes, self.keepdims = _normalize_axes(axis, x.ndim), keepdims
        m = x.max(axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        y = xp.log(xp.exp(x - m).sum(axis=self.axes, keepdims=True)) + m
        self.save_for_backward(x, y)
        return y if keepdims else y.squeeze(self.axes)

    def backward(self, dy):
        x, y = self.saved
        return _keep(dy, self.axes, self.keepdims) * get_array_module(x).exp(x - y)


class Norm(Function):
    """x -> y = (sum |x|^p)^(1/p) over ``axis`` (p = 2: the Euclidean/Frobenius norm);
    dx = dy sign(x) |x|^(p-1) / y^(p-1)  (0 where y = 0, PyTorch's subgradient)"""

    def forward(self, x, p=2, axis=None, keepdims=False):
        xp = get_array_module(x)
        self.axes, self.keepdims, self.p = _normalize_axes(axis, x.ndim), keepdims, p
        y = (xp.abs(x) ** p).sum(axis=self.axes, keepdims=keepdims) ** (1 / p)
        self.save_for_backward(x, y)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy):
        x, y = self.saved
        xp = get_array_module(x)
        y = _keep(y, self.axes, self.keepdims)
        with xp.errstate(divide="ignore", invalid="ignore"):
            scale = xp.where(y == 0, 0, _keep(dy, self.axes, self.keepdims) / y ** (self.p - 1))
        return (xp.sign(x) * xp.abs(x) ** (self.p - 1) * scale).astype(x.dtype, copy=False)
