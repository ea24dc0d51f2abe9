"""Inverted dropout.  On the GPU the masks come from ``cupy.random`` (seeded by ``convnp.manual_seed``),
never from a NumPy generator, whose masks would live on the host."""
import numpy as np

from ..backend import get_array_module
from ..function import Function
from .windows import memory_order, stored_in_order


def _uniform(rng, x, shape):
    """Uniform [0, 1) numbers of ``shape`` on x's device: from ``rng`` (NumPy) or ``cupy.random``."""
    xp = get_array_module(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64  # float32 draws: half the bytes to write
    return rng.random(shape, dtype=dtype) if xp is np else xp.random.random(shape, dtype=dtype)


class Dropout(Function):
    """x: any shape -> y: same shape.  In training, each element is zeroed with probability p and the
    survivors are scaled by 1 / (1 - p), so the expected value is unchanged and evaluation needs no
    rescaling.  dx = dy * mask / (1 - p).  ``rng`` is a numpy.random.Generator."""

    def forward(self, x, p, rng):
        # drawn in x's memory order (for NCHW x, the plain C order), so that the mask, y and the
        # gradients keep x's layout: after a convolution's (C, H, W, N) memory, a C-order mask made
        # every product mix two layouts and y, the next layer and all their gradients NCHW
        keep = stored_in_order(lambda stored: _uniform(rng, x, stored), x.shape, memory_order(x)) >= p
        scale = keep * x.dtype.type(1.0 / (1.0 - p))  # mask and scale in one array of x's dtype
        self.save_for_backward(scale)
        return x * scale

    def backward(self, dy):
        (scale,) = self.saved
        return dy * scale


class ChannelDropout(Function):
    """x: (N, C, ...) -> same shape: each whole channel (feature map) zeroed with probability p and the
    rest scaled by 1 / (1 - p) (``dropout2d``);  dx = dy * mask / (1 - p)"""

    def forward(self, x, p, rng):
        keep = _uniform(rng, x, x.shape[:2] + (1,) * (x.ndim - 2)) >= p
        scale = keep * x.dtype.type(1.0 / (1.0 - p))
        self.save_for_backward(scale)
        return x * scale

    def backward(self, dy):
        (scale,) = self.saved
        return dy * scale
