"""Matrix multiplication and the fully connected (linear) layer."""
from ..backend import get_array_module
from ..function import Function
from .elementwise import unbroadcast


class MatMul(Function):
    """a: (..., n, k) @ b: (..., k, m) -> y: (..., n, m), batch axes broadcast like ``np.matmul``.

    da = dy @ b^T,  db = a^T @ dy (summed over broadcast batch axes).  1-D operands are treated as a
    row (for ``a``) or a column (for ``b``) vector, and that axis is dropped again, as NumPy does.
    """

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, dy):
        a, b = self.saved
        xp = get_array_module(dy)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:  # restore b's dropped column axis first: for vector @ vector dy is 0-d
            dy = xp.expand_dims(dy, -1)
        if a.ndim == 1:
            dy = xp.expand_dims(dy, -2)
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast(dy @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            db = unbroadcast(xp.swapaxes(a2, -1, -2) @ dy, b2.shape).reshape(b.shape)
        return da, db


class Linear(Function):
    """x: (..., in) , w: (out, in), b: (out,) -> y: (..., out);   y = x w^T + b

    dx = dy w,   dw = dy^T x (summed over all leading axes),   db = dy summed over leading axes.
    """

    def forward(self, x, w, b=None):
        self.save_for_backward(x, w)
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, dy):
        x, w = self.saved
        dx = dy @ w if self.needs_input_grad[0] else None
        dw = db = None
        if self.needs_input_grad[1]:
            dw = dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            db = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
        return dx, dw, db
