"""Resizing feature maps (``F.interpolate``) as two small matrix products, like adaptive pooling."""
import numpy as np

from ..backend import get_array_module
from ..function import Function


def nearest_matrix(size, out, scale=None):
    """R: (out, size), PyTorch's 'nearest': output i copies input floor(i * scale), scale = size / out."""
    scale = size / out if scale is None else scale
    source = np.minimum(np.floor(np.arange(out) * scale).astype(np.int64), size - 1)
    matrix = np.zeros((out, size))
    matrix[np.arange(out), source] = 1.0
    return matrix


def linear_matrix(size, out, align_corners=False, scale=None):
    """R: (out, size) of PyTorch's (bi)linear interpolation along one axis.

    align_corners=False: output i samples input position (i + 0.5) * scale - 0.5 (clamped at 0),
    scale = size / out; align_corners=True: position i (size - 1) / (out - 1).  Each row mixes the
    two neighbouring inputs with weights 1 - frac and frac."""
    if align_corners:
        position = np.arange(out) * ((size - 1) / (out - 1) if out > 1 else 0.0)
    else:
        scale = size / out if scale is None else scale
        position = np.maximum((np.arange(out) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(position).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = position - low
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.arange(out), low), 1 - frac)
    np.add.at(matrix, (np.arange(out), high), frac)
    return matrix


class Resample2d(Function):
    """x: (N, C, H, W) -> y: (N, C, out_h, out_w) = R_h x R_w^T for per-axis resampling matrices
    R_h: (out_h, H), R_w: (out_w, W) (nearest or bilinear);  dx = R_h^T dy R_w"""

    def forward(self, x, rows, columns):
        xp = get_array_module(x)
        rows = xp.asarray(rows, dtype=x.dtype)
        columns = xp.asarray(columns, dtype=x.dtype)
        self.save_for_backward(rows, columns)
        return rows @ x @ columns.T

    def backward(self, dy):
        rows, columns = self.saved
        return rows.T @ dy @ columns
