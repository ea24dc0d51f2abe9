"""Shape ops: reshape, transpose, flatten, concatenate, indexing.  They move numbers, never change
them, so each backward just moves the gradient back to where its number came from."""
from ..backend import get_array_module
from ..function import Function


class Reshape(Function):
    """x: (s1, ..., sk) -> y: ``shape`` (same number of elements);  dx = dy reshaped back"""

    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, dy):
        return dy.reshape(self.shape)


class Transpose(Function):
    """y = x.transpose(axes) (reversed axes by default);  dx = dy transposed by the inverse permutation"""

    def forward(self, x, axes=None):
        self.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, dy):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return dy.transpose(inverse)


def flatten(x, start_dim=1, end_dim=-1):
    """(N, C, H, W) -> (N, C*H*W) with the default start_dim=1 (dims start_dim..end_dim merged)."""
    ndim = x.ndim
    start, end = start_dim % ndim, end_dim % ndim
    merged = 1
    for n in x.shape[start:end + 1]:
        merged *= n
    return Reshape.apply(x, shape=x.shape[:start] + (merged,) + x.shape[end + 1:])


class Concatenate(Function):
    """xs[i]: shapes equal except along ``axis`` -> y: joined along ``axis``;  dx_i = dy's slice i"""

    def forward(self, *xs, axis=0):
        xp = get_array_module(*xs)
        self.axis = axis % xs[0].ndim
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, dy):
        xp = get_array_module(dy)
        bounds = list(xp.cumsum(self.sizes)[:-1]) if len(self.sizes) > 1 else []
        return tuple(xp.split(dy, [int(b) for b in bounds], axis=self.axis))


class GetItem(Function):
    """y = x[index] (basic or advanced indexing);  dx = zeros with dy scattered back (repeats add)"""

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, dy):
        xp = get_array_module(dy)
        dx = xp.zeros(self.shape, dtype=self.dtype)
        xp.add.at(dx, self.index, dy)
        return dx
