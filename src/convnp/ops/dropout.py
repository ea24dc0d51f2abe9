"""Inverted dropout."""
from ..function import Function


class Dropout(Function):
    """x: any shape -> y: same shape.  In training, each element is zeroed with probability p and the
    survivors are scaled by 1 / (1 - p), so the expected value is unchanged and evaluation needs no
    rescaling.  dx = dy * mask / (1 - p).  ``rng`` is a numpy.random.Generator."""

    def forward(self, x, p, rng):
        keep = rng.random(x.shape) >= p
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
        keep = rng.random(x.shape[:2] + (1,) * (x.ndim - 2)) >= p
        scale = keep * x.dtype.type(1.0 / (1.0 - p))
        self.save_for_backward(scale)
        return x * scale

    def backward(self, dy):
        (scale,) = self.saved
        return dy * scale
