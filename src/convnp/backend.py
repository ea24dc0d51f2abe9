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


class Generator:
    """``torch.Generator``'s shape over a ``numpy.random.Generator``: ``Generator().manual_seed(0)``.

    Pass it as ``generator=`` to ``randperm``, ``random_split``, ``DataLoader``, ...; ``.rng`` is the
    NumPy generator it draws from."""

    def __init__(self, device="cpu"):
        self.device = resolve_device(device)
        self.rng = np.random.default_rng()

    def manual_seed(self, seed):
        self.rng = np.random.default_rng(seed)
        return self

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


def rng_of(generator):
    """The NumPy generator to draw from: ``generator``'s (a Generator or a numpy Generator), else convnp's."""
    if generator is None:
        return _rng
    return generator.rng if isinstance(generator, Generator) else generator


# --- devices: the one place that knows which devices exist -----------------------------------------------
class device:
    """``device("cpu")``, ``device("cuda:0")``, ``device("cuda", 0)``: where tensors live, named like
    ``torch.device``.  Naming any device is allowed (so ``device("cuda" if cuda.is_available() else
    "cpu")`` runs), but moving a tensor or module to one other than the CPU raises a RuntimeError while
    convnp has no GPU backend."""

    def __init__(self, type, index=None):  # noqa: A002 - torch's argument name
        if isinstance(type, device):
            type, index = type.type, type.index
        type = str(type)
        if ":" in type:
            type, _, number = type.partition(":")
            if not number.isdigit():
                raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {type}:{number!r}")
            index = int(number)
        if type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device: unknown device type {type!r}; expected 'cpu' (or 'cuda', 'mps')")
        self.type, self.index = type, index

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type={self.type!r}" + ("" if self.index is None else f", index={self.index}") + ")"


CPU = device("cpu")


def resolve_device(where):
    """``where`` (a device, 'cpu', 'cuda:0', ...) as a device convnp can compute on, else RuntimeError."""
    where = where if isinstance(where, device) else device(where)
    if where.type != "cpu":
        raise RuntimeError(f"device {str(where)!r}: convnp has no GPU backend yet (it computes with NumPy "
                           f"on the CPU); use device('cpu'), or pick it with "
                           f"convnp.device('cuda' if convnp.cuda.is_available() else 'cpu')")
    return where


def is_device(value):
    """True for a device or a device name ('cpu', 'cuda:1'), False for anything else (e.g. a dtype)."""
    if isinstance(value, device):
        return True
    return isinstance(value, str) and value.partition(":")[0] in ("cpu", "cuda", "mps")


class cuda:  # noqa: N801 - torch's spelling: convnp.cuda.is_available()
    """``convnp.cuda.is_available()`` is False: convnp has no GPU backend yet."""

    @staticmethod
    def is_available():
        return False

    @staticmethod
    def device_count():
        return 0

    @staticmethod
    def manual_seed(seed):
        return None

    manual_seed_all = manual_seed


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
