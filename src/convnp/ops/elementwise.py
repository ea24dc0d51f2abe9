"""Elementwise arithmetic with NumPy broadcasting.

When an input was broadcast in the forward pass (a bias of shape (C, 1, 1) added to (N, C, H, W)),
its gradient must be summed back over the broadcast axes: ``unbroadcast`` does that.
"""
from ..backend import get_array_module
from ..function import Function


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: over leading axes NumPy added, and over axes that were 1."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


class Add(Function):
    """y = a + b"""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, dy):
        return unbroadcast(dy, self.shapes[0]), unbroadcast(dy, self.shapes[1])


class Sub(Function):
    """y = a - b"""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, dy):
        db = unbroadcast(-dy, self.shapes[1]) if self.needs_input_grad[1] else None
        return unbroadcast(dy, self.shapes[0]), db


class Mul(Function):
    """y = a * b;  da = dy * b,  db = dy * a"""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, dy):
        a, b = self.saved
        da = unbroadcast(dy * b, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(dy * a, b.shape) if self.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """y = a / b;  da = dy / b,  db = -dy * a / b^2"""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, dy):
        a, b = self.saved
        da = unbroadcast(dy / b, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(-dy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return da, db


class Neg(Function):
    """y = -x"""

    def forward(self, x):
        return -x

    def backward(self, dy):
        return -dy


class Pow(Function):
    """y = x ** p for a constant exponent p;  dx = dy * p * x^(p-1)"""

    def forward(self, x, exponent):
        self.exponent = exponent
        self.save_for_backward(x)
        return x ** exponent

    def backward(self, dy):
        (x,) = self.saved
        return dy * self.exponent * x ** (self.exponent - 1)


class Exp(Function):
    """y = e^x;  dx = dy * y"""

    def forward(self, x):
        y = get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy * y


class Log(Function):
    """y = ln x;  dx = dy / x"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, dy):
        (x,) = self.saved
        return dy / x


# --- more elementwise ops (the PyTorch Tensor surface) -----------------------------------------------
class Cast(Function):
    """y = x converted to ``dtype``;  dx = dy converted back to x's dtype (so float16/float64 copies of a
    float32 tensor stay on the tape, like ``Tensor.to(dtype)`` in PyTorch)"""

    def forward(self, x, dtype):
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, dy):
        return dy.astype(self.dtype)


class Clone(Function):
    """y = a copy of x (C-contiguous: also ``contiguous()``);  dx = dy"""

    def forward(self, x):
        return get_array_module(x).array(x, order="C", copy=True)

    def backward(self, dy):
        return dy


class PowTensor(Function):
    """y = a ** b with both as arrays (tensor exponents, ``2 ** x``);  da = dy b a^(b-1),
    db = dy y ln a (0 where a == 0 and b >= 0, as in PyTorch)"""

    def forward(self, a, b):
        y = a ** b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, dy):
        a, b, y = self.saved
        xp = get_array_module(dy)
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast(dy * b * a ** (b - 1), a.shape)
        if self.needs_input_grad[1]:
            with xp.errstate(divide="ignore", invalid="ignore"):
                log_a = xp.where((a == 0) & (b >= 0), 0, xp.log(a))
            db = unbroadcast(dy * y * log_a, b.shape)
        return da, db


class Abs(Function):
    """y = |x|;  dx = dy sign(x) (0 at x = 0, like PyTorch)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).abs(x)

    def backward(self, dy):
        (x,) = self.saved
        return dy * get_array_module(x).sign(x)


class Sqrt(Function):
    """y = sqrt(x);  dx = dy / (2 y)"""

    def forward(self, x):
        y = get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy / (2 * y)


class Rsqrt(Function):
    """y = 1 / sqrt(x);  dx = -dy y^3 / 2"""

    def forward(self, x):
        y = 1 / get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy * (-0.5 * y * y * y)


class Log2(Function):
    """y = log2 x;  dx = dy / (x ln 2)"""

    def forward(self, x):
        self.save_for_backward(x)
        return get_array_module(x).log2(x)

    def backward(self, dy):
        (x,) = self.saved
        return dy / (x * x.dtype.type(0.6931471805599453))


class Sign(Function):
    """y = sign(x) in {-1, 0, 1};  dx = 0 (a step function has no slope)"""

    def forward(self, x):
        return get_array_module(x).sign(x)

    def backward(self, dy):
        return get_array_module(dy).zeros_like(dy)


class Clamp(Function):
    """y = min(max(x, low), high) (either bound may be None);  dx = dy where low <= x <= high, else 0"""

    def forward(self, x, low=None, high=None):
        xp = get_array_module(x)
        inside = xp.ones(x.shape, dtype=bool)
        if low is not None:
            inside &= x >= low
        if high is not None:
            inside &= x <= high
        self.save_for_backward(inside)
        return xp.clip(x, low, high).astype(x.dtype, copy=False)

    def backward(self, dy):
        (inside,) = self.saved
        return dy * inside


class Where(Function):
    """y = a where condition else b (broadcast);  da = dy where condition, db = dy elsewhere.
    ``condition`` is a boolean array (no gradient)."""

    def forward(self, a, b, condition):
        xp = get_array_module(a, b)
        self.shapes = a.shape, b.shape
        self.save_for_backward(condition)
        return xp.where(condition, a, b)

    def backward(self, dy):
        (condition,) = self.saved
        xp = get_array_module(dy)
        zero = dy.dtype.type(0)
        da = unbroadcast(xp.where(condition, dy, zero), self.shapes[0]) if self.needs_input_grad[0] else None
        db = unbroadcast(xp.where(condition, zero, dy), self.shapes[1]) if self.needs_input_grad[1] else None
        return da, db


class Maximum(Function):
    """y = max(a, b) elementwise;  the gradient goes to the larger (half to each on ties, like PyTorch)"""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return get_array_module(a, b).maximum(a, b)

    def backward(self, dy):
        a, b = self.saved
        share_a = (a > b) + (a == b) * dy.dtype.type(0.5)
        return unbroadcast(dy * share_a, a.shape), unbroadcast(dy * (1 - share_a), b.shape)


class Minimum(Function):
    """y = min(a, b) elementwise;  the gradient goes to the smaller (half to each on ties)"""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return get_array_module(a, b).minimum(a, b)

    def backward(self, dy):
        a, b = self.saved
        share_a = (a < b) + (a == b) * dy.dtype.type(0.5)
        return unbroadcast(dy * share_a, a.shape), unbroadcast(dy * (1 - share_a), b.shape)
