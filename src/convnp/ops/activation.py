"""Activation functions.  Each saves the least it needs: ReLU keeps only its output's sign pattern,
tanh and sigmoid keep their output (their derivatives are functions of it)."""
from ..backend import get_array_module
from ..function import Function
from ..parallel import outer_parts, parallel_map


class ReLU(Function):
    """y = max(x, 0);  dx = dy where x > 0, else 0 (PyTorch's choice of 0 at x = 0)"""

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.empty_like(x)  # x's memory layout; filled in parts, on parallel threads for big arrays
        parallel_map(lambda part: xp.maximum(x[part], 0, out=y[part]), outer_parts(y))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        xp = get_array_module(dy)
        dx = xp.empty_like(dy)
        parallel_map(lambda part: xp.multiply(dy[part], y[part] > 0, out=dx[part]), outer_parts(dx))
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
