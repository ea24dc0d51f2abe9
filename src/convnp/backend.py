"""Array backend and random numbers.

Every op asks ``get_array_module(*arrays)`` for the array library of its inputs, so one code path
serves NumPy and (when given CuPy arrays) CuPy, the way Chainer does it.  convnp computes in float32
by default, like PyTorch; float64 works everywhere and is what gradient checks use.
"""
import ctypes
import os
import sys

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


def keep_freed_memory_for_reuse():
    """Ask glibc's malloc to keep freed blocks of up to 32 MB for reuse (Linux only), for the whole
    process: call it once in a program that trains (the ``convnp`` command and the benchmarks do;
    ``import convnp`` does not, since it changes nothing outside convnp).

    A training step allocates and frees the same large arrays (im2col columns, activations,
    gradients) every time.  By default glibc hands big freed blocks straight back to the operating
    system and the next step page-faults them in again, page by page: a third of LeNet-5's step at
    batch 128 (docs/performance.md).  Raising the mmap and trim thresholds keeps that memory in the
    process instead (it is still freed at exit and counts once in the peak).  Set
    CONVNP_MALLOC_TUNING=0 to make this a no-op.  Returns True when the settings took effect.
    """
    if os.environ.get("CONVNP_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc; other C libraries may not have it
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))
