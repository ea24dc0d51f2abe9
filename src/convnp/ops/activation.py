"""Activation functions.  Each saves the least it needs: ReLU keeps only its output's sign pattern,
tanh and sigmoid keep their output (their derivatives are functions of it)."""
from ..backend import get_array_module
from ..function import Function
from ..parallel import WHOLE, outer_parts, parallel_map


def zeros_along_innermost(x):
    """Zeros that broadcast against x, laid along the axis that is innermost in x's memory.

    ``maximum(x, 0)`` with a scalar 0 runs NumPy's slower scalar loop; against a contiguous row of
    zeros it takes the faster vectorised array-array loop (docs/performance.md)."""
    xp = get_array_module(x)
    if x.ndim < 2 or x.size < 1 << 16:  # small: not worth an allocation
        return x.dtype.type(0)
    innermost = min(range(x.ndim), key=lambda axis: abs(x.strides[axis]))
    return xp.zeros([size if axis == innermost else 1 for axis, size in enumerate(x.shape)], dtype=x.dtype)


class ReLU(Function):
    """y = max(x, 0);  dx = dy where x > 0, else 0 (PyTorch's choice of 0 at x = 0)"""

    def forward(self, x):
        xp = get_array_module(x)
        zeros, parts = zeros_along_innermost(x), outer_parts(x)
        if parts is WHOLE:  # small: one call (the output keeps x's memory layout)
            y = xp.maximum(x, zeros)
        else:  # big: in parts, on parallel threads
            y = xp.empty_like(x)
            parallel_map(lambda part: xp.maximum(x[part], zeros, out=y[part]), parts)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        xp = get_array_module(dy)
        parts = outer_parts(dy)
        if parts is WHOLE:
            return dy * (y > 0)
        dx = xp.empty_like(dy)
        parallel_map(lambda part: xp.multiply(dy[part], y[part] > 0, out=dx[part]), parts)
        return dx


class LeakyReLU(Function):
    """y = x if x > 0 else slope * x;  dx = dy if x > 0 else slope * dy"""

    def forward(self, x, negative_slope=0.01):
        xp = get_array_module(x)
        self.slope = negative_slope
        positive = x > 0
        self.save_for_backward(positive)
        return xp.where(positive, x, x * x.dtype.type(negative_slope))

    def backward(self, dy):
        (positive,) = self.saved
        xp = get_array_module(dy)
        return xp.where(positive, dy, dy * dy.dtype.type(self.slope))


class Tanh(Function):
    """y = tanh x;  dx = dy (1 - y^2)"""

    def forward(self, x):
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy * (1 - y * y)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x), computed without overflow for large |x|;  dx = dy y (1 - y)"""

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy * y * (1 - y)
