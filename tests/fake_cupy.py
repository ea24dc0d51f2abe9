"""A stand-in for CuPy that applies CuPy's rules on the CPU, so that CI (which has no GPU) checks that the
engine would run on one.  ``install()`` puts it in ``sys.modules['cupy']`` (the ``fake_cupy`` fixture of
tests/test_cupy_rules.py does that for one test and takes it out again).

The rules it enforces, as CuPy does:
- device arrays are of their own type, ``cupy.ndarray`` (``type(a).__module__ == 'cupy'``), holding a
  NumPy array that only ``.get()`` / ``cupy.asnumpy`` hand out (as a copy);
- no implicit conversion to NumPy: ``np.asarray(device_array)``, ``np.add(host, device)`` and
  ``device + host_array`` raise TypeError (Python and NumPy scalars mix freely, as in CuPy);
- reductions (``sum``, ``max``, ``argmax``...) return 0-d device arrays, never NumPy scalars;
- ``cupy.lib.stride_tricks.as_strided`` has no ``writeable`` argument;
- ``cupy.random`` is its own generator (seeded separately from NumPy's).

Everything else is NumPy underneath: results are exactly NumPy's, so tests compare them bit for bit.
"""
import contextlib
import os
import sys
import types

import numpy as np

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
            "array explicitly.")


def _host(value, where):
    """The NumPy array inside a device array; Python/NumPy scalars and containers pass; host arrays refuse."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, np.ndarray):
        raise TypeError(f"Unsupported type {type(value)} in {where}: a host (NumPy) array mixed with device "
                        f"(CuPy) arrays")
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v, where) for v in value)
    if isinstance(value, slice):
        return slice(_host(value.start, where), _host(value.stop, where), _host(value.step, where))
    return value


def _device(value):
    """NumPy results -> device arrays (NumPy scalars become 0-d device arrays, as CuPy's reductions return)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_device(v) for v in value)
    if isinstance(value, list):
        return [_device(v) for v in value]
    return value


class ndarray:  # noqa: N801 - CuPy's name
    """A device array: a NumPy array behind CuPy's rules."""

    __array_priority__ = 100  # like CuPy: below convnp's Tensor (1000), above NumPy's arrays

    def __init__(self, array):
        assert isinstance(array, np.ndarray)
        self._array = array

    # what CuPy refuses
    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy's ufuncs on device arrays (``np.exp(a)``, ``np.float32(2) * a``) run on the device, as
        in CuPy; a host array among the operands is refused."""
        outputs = kwargs.get("out", ())
        if any(isinstance(value, np.ndarray) for value in (*inputs, *outputs)):
            raise TypeError(f"Unsupported type numpy.ndarray in numpy.{ufunc.__name__}: {IMPLICIT}")
        if method != "__call__":
            return NotImplemented
        if outputs:
            kwargs["out"] = tuple(_host(value, ufunc.__name__) for value in outputs)
        return _device(ufunc(*_host(inputs, ufunc.__name__), **kwargs))

    def __iter__(self):
        return (_device(row) for row in self._array)

    def get(self):
        """The array on the host (a copy)."""
        return self._array.copy()

    # attributes
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    strides = property(lambda self: self._array.strides)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    flags = property(lambda self: self._array.flags)
    T = property(lambda self: ndarray(self._array.T))
    device = property(lambda self: "fake-cuda:0")

    def __len__(self):
        return len(self._array)

    def __repr__(self):
        return "fake_cupy." + repr(self._array)

    def __str__(self):
        return str(self._array)

    def __bool__(self):
        return bool(self._array)

    def __float__(self):
        return float(self._array)

    def __int__(self):
        return int(self._array)

    def __index__(self):
        return self._array.__index__()

    def __getitem__(self, key):
        return _device(self._array[_host(key, "indexing")])

    def __setitem__(self, key, value):
        self._array[_host(key, "indexing")] = _host(value, "assignment")

    def __getattr__(self, name):  # the methods: NumPy's, on host values, with device results
        if name.startswith("__") or name == "_array":  # copy/pickle probing a half-built object
            raise AttributeError(name)
        method = getattr(self._array, name)
        if name in ("tolist", "item"):
            return method
        if not callable(method):
            return _device(method)

        def device_method(*args, **kwargs):
            kwargs = {key: _host(value, f"ndarray.{name}") for key, value in kwargs.items()}
            return _device(method(*_host(args, f"ndarray.{name}"), **kwargs))
        return device_method

    def _binary(self, op, other, reverse=False):
        if not isinstance(other, (ndarray, np.ndarray, np.generic, bool, int, float, complex)):
            return NotImplemented
        other = _host(other, f"operator {op.__name__}")
        return _device(op(other, self._array) if reverse else op(self._array, other))

    def _in_place(self, op, other):
        op(self._array, _host(other, f"operator {op.__name__}"), out=self._array)
        return self


def _operators():
    import operator

    for name, op in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
                     ("floordiv", np.floor_divide), ("mod", np.mod), ("pow", np.power), ("matmul", np.matmul),
                     ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor)):
        setattr(ndarray, f"__{name}__", lambda self, other, op=op: self._binary(op, other))
        setattr(ndarray, f"__r{name}__", lambda self, other, op=op: self._binary(op, other, reverse=True))
        setattr(ndarray, f"__i{name}__", lambda self, other, op=op: self._in_place(op, other))
    for name, op in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                     ("gt", np.greater), ("ge", np.greater_equal)):
        setattr(ndarray, f"__{name}__", lambda self, other, op=op: self._binary(op, other))
    for name, op in (("neg", operator.neg), ("pos", operator.pos), ("abs", operator.abs), ("invert", operator.invert)):
        setattr(ndarray, f"__{name}__", lambda self, op=op: ndarray(np.asarray(op(self._array))))


_operators()
ndarray.__hash__ = None
ndarray.__module__ = "cupy"


# --- the module's functions ------------------------------------------------------------------------------------
def _function(name, numpy_function):
    def device_function(*args, **kwargs):
        args = _host(args, f"cupy.{name}")
        kwargs = {key: _host(value, f"cupy.{name}") for key, value in kwargs.items()}
        return _device(numpy_function(*args, **kwargs))
    device_function.__name__ = name
    return device_function


def asarray(a, dtype=None, order=None):
    """Host data (a NumPy array, a list, a number) or a device array -> a device array (a copy from the host)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return ndarray(np.array(_host_ok(a), dtype=dtype, order=order or "K"))


def _host_ok(a):
    if isinstance(a, (list, tuple)):
        return type(a)(v._array if isinstance(v, ndarray) else _host_ok(v) for v in a)
    return a


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._array, dtype=dtype, copy=True, order=order, ndmin=ndmin))
    return ndarray(np.array(_host_ok(a), dtype=dtype, order=order, ndmin=ndmin))


def asnumpy(a):
    return a._array.copy() if isinstance(a, ndarray) else np.asarray(a)


def as_strided(x, shape=None, strides=None):  # CuPy's: no writeable, no subok
    return ndarray(np.lib.stride_tricks.as_strided(x._array, shape=shape, strides=strides))


class Generator:
    """``cupy.random.default_rng(seed)``: its own stream (not NumPy's generator for the same seed)."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(None if seed is None else [seed, 0xC0FFEE])

    def random(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.random(size, dtype=dtype)))

    def standard_normal(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.standard_normal(size, dtype=dtype)))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.uniform(low, high, size)).astype(dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64):
        return ndarray(np.asarray(self._rng.integers(low, high, size, dtype=dtype)))


def _random_module():
    random = types.ModuleType("cupy.random")
    state = {"rng": Generator()}
    random.default_rng = Generator
    random.Generator = Generator

    def seed(value=None):
        state["rng"] = Generator(value)
    random.seed = seed
    random.random = lambda size=None, dtype=np.float64: state["rng"].random(size, dtype)
    random.rand = lambda *shape: state["rng"].random(shape or None)
    random.standard_normal = lambda size=None, dtype=np.float64: state["rng"].standard_normal(size, dtype)
    random.uniform = lambda low=0.0, high=1.0, size=None, dtype=np.float64: state["rng"].uniform(low, high, size, dtype)
    return random


def build():
    """A fresh ``cupy`` module object."""
    module = types.ModuleType("cupy")
    module.__fake__ = True

    def __getattr__(name):  # NumPy's functions, on device arrays only; dtypes and constants as they are
        value = getattr(np, name)
        if isinstance(value, type) or not callable(value):
            return value
        function = _function(name, value)
        setattr(module, name, function)
        return function

    module.__getattr__ = __getattr__
    module.ndarray = ndarray
    module.asarray = asarray
    module.array = array
    module.asnumpy = asnumpy
    module.get_array_module = lambda *args: module if any(isinstance(a, ndarray) for a in args) else np
    module.random = _random_module()
    lib = types.ModuleType("cupy.lib")
    lib.stride_tricks = types.SimpleNamespace(as_strided=as_strided)
    module.lib = lib
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    module.cuda = types.SimpleNamespace(runtime=runtime, Device=lambda index=0: types.SimpleNamespace(
        id=index, synchronize=lambda: None))  # the CPU has nothing queued
    return module


def install():
    """Put a fresh fake ``cupy`` in sys.modules -> the module; ``uninstall()`` takes it out."""
    module = build()
    sys.modules["cupy"] = module
    return module


def uninstall():
    sys.modules.pop("cupy", None)


REAL_CUPY = os.environ.get("CONVNP_REAL_CUPY") == "1"  # benchmarks/gpu_check.sh, on a machine with a GPU


@contextlib.contextmanager
def installed():
    """The ``cupy`` module of one test: the real one with CONVNP_REAL_CUPY=1 (skipped where it is missing),
    else a fresh fake in sys.modules, and whatever was there before put back afterwards."""
    if REAL_CUPY:
        import pytest

        yield pytest.importorskip("cupy")
        return
    previous = sys.modules.get("cupy")
    module = install()
    try:
        yield module
    finally:
        if previous is None:
            uninstall()
        else:
            sys.modules["cupy"] = previous
