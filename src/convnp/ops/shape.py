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


def flatten(x, start_dim=0, end_dim=-1):
    """Dims start_dim..end_dim merged into one: (N, C, H, W) -> (N*C*H*W,) with the defaults, like
    ``torch.flatten``; start_dim=1 gives (N, C*H*W)."""
    ndim = max(x.ndim, 1)
    for dim in (start_dim, end_dim):
        if not -ndim <= dim < ndim:
            raise IndexError(f"flatten: dimension {dim} out of range for a tensor of shape {tuple(x.shape)}")
    start, end = start_dim % ndim, end_dim % ndim
    if x.ndim == 0:
        return Reshape.apply(x, shape=(1,))
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
        self.shape, self.dtype = x.shape, x.dtype
        self.save_for_backward(index)  # may hold index arrays (advanced indexing)
        return x[index]

    def backward(self, dy):
        (index,) = self.saved
        xp = get_array_module(dy)
        dx = xp.zeros(self.shape, dtype=self.dtype)
        xp.add.at(dx, index, dy)
        return dx


# --- more shape ops (the PyTorch Tensor surface) ---------------------------------------------------------
class Expand(Function):
    """x -> y = x broadcast to ``shape`` (a view, no copy);  dx = dy summed over the broadcast axes"""

    def forward(self, x, shape):
        self.shape = x.shape
        return get_array_module(x).broadcast_to(x, shape)

    def backward(self, dy):
        from .elementwise import unbroadcast
        return unbroadcast(dy, self.shape)


class Repeat(Function):
    """x: (s1, ..., sk) -> y: (r1 s1, ..., rk sk), x tiled ``repeats`` times along each axis
    (``Tensor.repeat``; extra leading repeats add axes);  dx = dy's tiles summed"""

    def forward(self, x, repeats):
        self.shape = (1,) * (len(repeats) - x.ndim) + x.shape
        self.repeats = tuple(repeats)
        self.original = x.shape
        return get_array_module(x).tile(x, repeats)

    def backward(self, dy):
        split = []
        for r, s in zip(self.repeats, self.shape):
            split += [r, s]
        summed = dy.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return summed.reshape(self.original)


class IndexSelect(Function):
    """x, index: (k,) ints -> y: x with only the entries ``index`` along ``axis`` (repeats allowed);
    dx = zeros with dy added back at those entries"""

    def forward(self, x, axis, index):
        xp = get_array_module(x)
        self.shape, self.axis = x.shape, axis
        self.save_for_backward(index)
        return xp.take(x, index, axis=axis)

    def backward(self, dy):
        (index,) = self.saved
        xp = get_array_module(dy)
        dx = xp.zeros(self.shape, dtype=dy.dtype)
        xp.add.at(dx, (slice(None),) * self.axis + (index,), dy)
        return dx


class Gather(Function):
    """x, index (ints, same ndim, no larger than x except along ``axis``) -> y: index's shape with
    y[i][j][k] = x[i][index[i][j][k]][k] for axis=1 (``torch.gather``);  dx = dy added back there"""

    def forward(self, x, axis, index):
        xp = get_array_module(x)
        self.shape, self.axis = x.shape, axis
        positions = list(xp.ogrid[tuple(slice(0, n) for n in index.shape)])
        positions[axis] = index
        positions = tuple(positions)
        self.save_for_backward(*positions)
        return x[positions]

    def backward(self, dy):
        xp = get_array_module(dy)
        dx = xp.zeros(self.shape, dtype=dy.dtype)
        xp.add.at(dx, self.saved, dy)
        return dx
