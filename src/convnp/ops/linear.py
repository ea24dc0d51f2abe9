"""Matrix multiplication and the fully connected (linear) layer."""
from ..backend import get_array_module, is_device_array
from ..function import Function
from ..parallel import parallel_map, pieces_for, split
from .elementwise import unbroadcast

MIN_SPLIT_MACS = 1 << 22  # a product smaller than this many multiply-adds stays in one piece


def threaded_matmul(a, b):
    """a: (n, k) @ b: (k, m) -> (n, m), the product's longer side (rows or columns) split among
    convnp's threads.

    While convnp's threads are on, BLAS runs on one thread (``convnp.parallel``), so a big linear
    layer (the 9216 -> 128 layer of PyTorch's MNIST example) would multiply on one core; each piece
    here is one long BLAS call, which is what lets threads pay off.  Cutting the longer side leaves
    each piece's product as wide as it can be (that layer's 9216 x 64 input gradient in halves of 32
    columns ran 1.3-1.6x slower than in halves of 4608 rows, docs/performance.md, 2026-12-02).
    Small products stay whole."""
    xp = get_array_module(a)
    n, k = a.shape
    m = b.shape[1]
    pieces = 1 if is_device_array(a) else pieces_for(n * k * m, max(n, m), MIN_SPLIT_MACS)
    if pieces == 1:
        return a @ b
    y = xp.empty((n, m), dtype=xp.result_type(a, b))
    if n > m:
        parallel_map(lambda part: xp.matmul(a[part], b, out=y[part]), split(n, pieces))
    else:
        parallel_map(lambda part: xp.matmul(a, b[:, part], out=y[:, part]), split(m, pieces))
    return y


def batch_innermost_rows(x):
    """Whether x is (N, in) stored batch-innermost, (in, N) in memory: a flattened convolution's
    (C, H, W, N) output.  Its linear layer multiplies ``w @ x^T``, whose operands are both C-ordered
    and whose product is y^T, so y stays batch-innermost: 1.5-1.6x faster than ``x @ w^T`` for the
    MNIST example's 9216 -> 128 layer (docs/performance.md, 2026-12-02)."""
    return x.ndim == 2 and x.strides[0] < x.strides[1]


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
        if batch_innermost_rows(x):  # y^T = w x^T: two C-ordered operands, y batch-innermost too
            y = threaded_matmul(w, x.T).T
        else:
            y = threaded_matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
        if b is not None:
            y += b
        return y

    def backward(self, dy):
        x, w = self.saved
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = None
        if self.needs_input_grad[0]:
            if batch_innermost_rows(x):  # dx laid out as x, (w^T dy^T)^T: the layers below keep their layout
                dx = threaded_matmul(w.T, dy2.T).T
            else:
                dx = threaded_matmul(dy2, w).reshape(x.shape)
        dw = db = None
        if self.needs_input_grad[1]:
            dw = threaded_matmul(dy2.T, x.reshape(-1, x.shape[-1]))
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            db = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
        return dx, dw, db
