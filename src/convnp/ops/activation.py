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


# --- more activations (torch.nn.functional's) -----------------------------------------------------------
class GELU(Function):
    """y = x Phi(x) (Phi: the standard normal CDF), or with approximate='tanh'
    y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
    dx = dy (Phi(x) + x phi(x))  or  dy (1/2 (1 + tanh u) + x/2 (1 - tanh^2 u) du/dx)"""

    def forward(self, x, approximate="none"):
        xp = get_array_module(x)
        self.approximate = approximate
        self.save_for_backward(x)
        if approximate == "tanh":
            u = x.dtype.type(0.7978845608028654) * (x + x.dtype.type(0.044715) * x * x * x)
            return x * (1 + xp.tanh(u)) / 2
        return (x * (1 + _erf(x / x.dtype.type(1.4142135623730951))) / 2).astype(x.dtype, copy=False)

    def backward(self, dy):
        (x,) = self.saved
        xp = get_array_module(x)
        if self.approximate == "tanh":
            c = x.dtype.type(0.7978845608028654)
            t = xp.tanh(c * (x + x.dtype.type(0.044715) * x * x * x))
            du = c * (1 + x.dtype.type(3 * 0.044715) * x * x)
            return dy * ((1 + t) / 2 + x / 2 * (1 - t * t) * du)
        cdf = (1 + _erf(x / x.dtype.type(1.4142135623730951))) / 2
        pdf = xp.exp(-x * x / 2) * x.dtype.type(0.3989422804014327)
        return (dy * (cdf + x * pdf)).astype(x.dtype, copy=False)


def _erf(x):
    """The error function, elementwise, NumPy only, to about 1e-15: its Taylor series for |x| < 2.5 and
    erf = 1 - erfc with erfc's continued fraction (evaluated bottom-up) beyond."""
    xp = get_array_module(x)
    z = xp.abs(x).astype(xp.float64)
    small = z < 2.5
    zs = xp.where(small, z, 0)
    term, total = zs.copy(), zs.copy()  # erf(z) = 2/sqrt(pi) sum_n (-1)^n z^(2n+1) / (n! (2n+1))
    for n in range(1, 50):
        term = term * (-zs * zs) / n
        total = total + term / (2 * n + 1)
    series = total * 1.1283791670955126
    zl = xp.where(small, 2.5, z)  # erfc(z) = e^-z^2 / sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
    fraction = zl
    for n in range(80, 0, -1):
        fraction = zl + (n / 2) / fraction
    large = 1 - xp.exp(-zl * zl) / (1.7724538509055159 * fraction)
    return (xp.sign(x) * xp.where(small, series, large)).astype(x.dtype, copy=False)


class SiLU(Function):
    """y = x sigmoid(x) (swish);  dx = dy s (1 + x (1 - s)), s = sigmoid(x)"""

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(-xp.abs(x))
        s = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.save_for_backward(x, s)
        return x * s

    def backward(self, dy):
        x, s = self.saved
        return dy * s * (1 + x * (1 - s))


class ELU(Function):
    """y = x if x > 0 else alpha (e^x - 1);  dx = dy if x > 0 else dy (y + alpha)"""

    def forward(self, x, alpha=1.0):
        xp = get_array_module(x)
        self.alpha = x.dtype.type(alpha)
        y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))
        self.save_for_backward(x, y)
        return y

    def backward(self, dy):
        x, y = self.saved
        return get_array_module(dy).where(x > 0, dy, dy * (y + self.alpha))


class Softplus(Function):
    """y = log(1 + e^(beta x)) / beta, and y = x where beta x > threshold (as PyTorch);
    dx = dy sigmoid(beta x) (1 past the threshold)"""

    def forward(self, x, beta=1.0, threshold=20.0):
        xp = get_array_module(x)
        bx = x * x.dtype.type(beta)
        linear = bx > threshold
        self.save_for_backward(bx, linear)
        soft = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / x.dtype.type(beta)
        return xp.where(linear, x, soft)

    def backward(self, dy):
        bx, linear = self.saved
        xp = get_array_module(dy)
        e = xp.exp(-xp.abs(bx))
        s = xp.where(bx >= 0, 1 / (1 + e), e / (1 + e))
        return xp.where(linear, dy, dy * s)


class Hardtanh(Function):
    """y = clip(x, min_val, max_val) (ReLU6 is Hardtanh(0, 6));  dx = dy strictly inside, else 0"""

    def forward(self, x, min_val=-1.0, max_val=1.0):
        xp = get_array_module(x)
        self.save_for_backward((x > min_val) & (x < max_val))
        return xp.clip(x, min_val, max_val).astype(x.dtype, copy=False)

    def backward(self, dy):
        (inside,) = self.saved
        return dy * inside
