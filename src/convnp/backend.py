"""Array backend and random numbers.

Every op asks ``get_array_module(*arrays)`` for the array library of its inputs, so one code path
serves NumPy and (when given CuPy arrays) CuPy, the way Chainer does it.  convnp computes in float32
by default, like PyTorch; float64 works everywhere and is what gradient checks use.
"""
import numpy as np

DEFAULT_DTYPE = np.float32

_rng = np.random.default_rng()


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for array in arrays:
        module = type(array).__module__
        if module.startswith("cupy"):
            import cupy

            return cupy
    return np


def manual_seed(seed):
    """Seed convnp's random number generator (initialisation, dropout, shuffling defaults)."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def default_rng():
    """The generator convnp draws from when no explicit ``rng`` is given."""
    return _rng
