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
