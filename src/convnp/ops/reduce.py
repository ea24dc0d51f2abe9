"""Reductions: sum and mean over some axes (all axes by default)."""
from ..backend import get_array_module
from ..function import Function


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


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
