"""Array backend, devices and random numbers.

Every op asks ``get_array_module(*arrays)`` for the array library of its inputs, so one code path
serves NumPy and (when given CuPy arrays) CuPy, the way Chainer does it.  convnp computes in float32
by default, like PyTorch; float64 works everywhere and is what gradient checks use.

Devices: ``model.to("cuda")`` / ``tensor.to("cuda")`` move arrays to the GPU with CuPy (the ``cuda``
extra) when ``cuda.is_available()``; everything that leaves the engine goes through ``to_numpy``.
Host and device arrays never mix silently: an op given both raises a RuntimeError naming the two devices
(``check_same_device``), as PyTorch does, and the caller moves its data (``labels.to(device)``).

The work policy per backend: on NumPy, convolution and pooling cut their work into chunks, cache-sized
GEMM tiles and convnp's threads (``convnp.parallel``); on CuPy none of that: no convnp threads, one
im2col and one GEMM per convolution (per group), pooling in one piece, dropout masks from
``cupy.random``.  tests/test_cupy_rules.py runs the engine on a stand-in that applies CuPy's rules on
the CPU; it has not been measured on a real GPU yet.
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
        if type(array) is np.ndarray:  # the common case, checked first: this runs several times per op
            continue
        if type(array).__module__.startswith("cupy"):
            import cupy

            return cupy
    return np


def manual_seed(seed):
    """Seed convnp's random number generator (initialisation, dropout, shuffling defaults), and
    ``cupy.random`` (dropout on the GPU) when CuPy is loaded."""
    global _rng
    _rng = np.random.default_rng(seed)
    if "cupy" in sys.modules:
        sys.modules["cupy"].random.seed(np.random.default_rng(seed).integers(2**32))
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
    "cpu")`` runs), but moving a tensor or module to 'cuda' raises a RuntimeError unless CuPy is
    installed and sees a GPU (``cuda_problem()`` says which is missing)."""

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
    """``where`` (a device, 'cpu', 'cuda:0', ...) as a device convnp can compute on, else RuntimeError.
    'cuda' needs CuPy (the ``cuda`` extra) and a GPU."""
    where = where if isinstance(where, device) else device(where)
    if where.type == "cuda" and cuda.is_available():
        return where
    if where.type != "cpu":
        raise RuntimeError(f"device {str(where)!r}: convnp has no GPU backend here (it computes on 'cuda' with "
                           f"CuPy, which is not installed or sees no GPU: pip install 'convnp[cuda]'); use "
                           f"device('cpu'), or pick it with "
                           f"convnp.device('cuda' if convnp.cuda.is_available() else 'cpu')")
    return where


def _cupy():
    """The cupy module, or None when it cannot be imported."""
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def cuda_problem():
    """Why convnp cannot compute on 'cuda' here, with the fix, in one line; None when it can."""
    cupy = _cupy()
    if cupy is None:
        return "CuPy is not installed (pip install 'convnp[cuda]', on a machine with an NVIDIA GPU)"
    if cuda.device_count() == 0:
        return "CuPy is installed but sees no GPU (is the NVIDIA driver loaded? nvidia-smi shows it)"
    return None


def is_device_array(array):
    """True for a CuPy (GPU) array."""
    return type(array) is not np.ndarray and type(array).__module__.startswith("cupy")


def device_of(array):
    """The device an array lives on: the CPU for NumPy arrays, 'cuda' for CuPy's."""
    return device("cuda") if is_device_array(array) else CPU


def to_numpy(array):
    """``array`` on the host: a NumPy array as it is, a CuPy array copied from the GPU.  Everything that
    leaves the engine (state_dict, checkpoints, summaries, repr, the explorer's JSON) goes through it."""
    if type(array) is np.ndarray:
        return array
    if is_device_array(array):
        return array.get()
    return np.asarray(array)


def to_device(array, where):
    """``array`` on device ``where`` (a device from resolve_device): NumPy for the CPU, CuPy for 'cuda'.
    Returns ``array`` itself when it is there already."""
    if where.type == "cpu":
        return to_numpy(array)
    return _cupy().asarray(array)


def check_same_device(where, *arrays):
    """RuntimeError naming both devices when the arrays are not all on one (no silent copies)."""
    devices = {str(device_of(array)) for array in arrays if array is not None}
    if len(devices) > 1:
        raise RuntimeError(f"{where}: expected all arrays on the same device, found {' and '.join(sorted(devices))}")


def is_device(value):
    """True for a device or a device name ('cpu', 'cuda:1'), False for anything else (e.g. a dtype)."""
    if isinstance(value, device):
        return True
    return isinstance(value, str) and value.partition(":")[0] in ("cpu", "cuda", "mps")


class cuda:  # noqa: N801 - torch's spelling: convnp.cuda.is_available()
    """``convnp.cuda.is_available()``: True when CuPy imports and sees a GPU (convnp then computes there
    with CuPy as its array module)."""

    @staticmethod
    def is_available():
        return cuda.device_count() > 0

    @staticmethod
    def device_count():
        cupy = _cupy()
        if cupy is None:
            return 0
        try:
            return int(cupy.cuda.runtime.getDeviceCount())
        except Exception:  # noqa: BLE001 - CuPy without a driver or a GPU raises its own error types
            return 0

    @staticmethod
    def manual_seed(seed):
        cupy = _cupy()
        if cupy is not None:
            cupy.random.seed(seed)

    manual_seed_all = manual_seed


def keep_freed_memory_for_reuse():
    """Ask glibc's malloc to keep freed memory for reuse (Linux only), for the whole process: call it
    once in a program that trains (the ``convnp`` command and the benchmarks do; ``import convnp``
    does not, since it changes nothing outside convnp).

    A training step allocates and frees the same large arrays (im2col columns, activations,
    gradients) every time.  By default glibc hands big freed blocks straight back to the operating
    system and the next step page-faults them in again, page by page: a third of LeNet-5's step at
    batch 128 (docs/performance.md).  Two settings keep that memory in the process instead (it is
    still freed at exit and counts once in the peak): blocks of up to 32 MB (the most glibc allows)
    come from the heap rather than from their own mmap, and the heap is never trimmed while
    the freed memory at its top is under 2 GB (the largest threshold mallopt takes).  With a
    smaller trim threshold (256 MB) a ResNet-20 step at batch 128, whose activations are freed
    together at the end of backward, was trimmed in some processes and not in others: 50,000 page
    faults and 1.4x the time a step in those (docs/performance.md, 2026-12-02).  Set
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
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))
