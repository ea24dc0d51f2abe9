"""Padding of the last dims (``F.pad``): constant, reflect and replicate."""
import numpy as np

from ..backend import get_array_module
from ..function import Function

NUMPY_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Pad(Function):
    """x -> y with ``widths[axis] = (before, after)`` extra entries on each axis: zeros (or ``value``),
    the mirror image without the edge ('reflect'), copies of the edge ('replicate') or the other end
    ('circular').  Padding is separable, so backward undoes it one axis at a time: every padded entry
    sends its gradient back to the entry it copies (reflect/replicate/circular add up), constant
    padding just drops the border."""

    def forward(self, x, widths, mode="constant", value=0.0):
        xp = get_array_module(x)
        self.shape, self.widths, self.mode = x.shape, widths, mode
        if mode == "constant":
            return xp.pad(x, widths, mode="constant", constant_values=value)
        return xp.pad(x, widths, mode=NUMPY_MODES[mode])

    def backward(self, dy):
        xp = get_array_module(dy)
        if self.mode == "constant":
            return dy[tuple(slice(before, before + n) for (before, _), n in zip(self.widths, self.shape))]
        dx = dy
        for axis, ((before, after), n) in enumerate(zip(self.widths, self.shape)):
            if before == after == 0:
                continue
            source = np.pad(np.arange(n), (before, after), mode=NUMPY_MODES[self.mode])
            summed = xp.zeros(dx.shape[:axis] + (n,) + dx.shape[axis + 1:], dtype=dx.dtype)
            xp.add.at(summed, (slice(None),) * axis + (source,), dx)
            dx = summed
        return dx
