"""Shared test utilities: a PyTorch parity checker and tolerances.

``assert_parity(convnp_fn, torch_fn, *arrays)`` is the workhorse of the op tests (early tinygrad's
idea): the same computation is run once in convnp and once in PyTorch on identical inputs, then the
outputs AND the gradients of every input (for the same random upstream gradient dy) must agree.
"""
import numpy as np
import torch

import convnp

# The tests run small ops: extra BLAS threads only oversubscribe the cores (pytest -n, other jobs), and
# multi-threaded OpenBLAS can then be 100x slower on a small GEMM with a transposed operand.
torch.set_num_threads(1)
try:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn; without it, just slower
    pass

# (rtol, atol) per dtype; atol is scaled by max(1, max |expected|) so big reductions are judged fairly.
TOLERANCES = {np.dtype(np.float64): (1e-10, 1e-10), np.dtype(np.float32): (1e-4, 1e-5)}


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype)]


def assert_close(actual, expected, rtol, atol, what="value"):
    """allclose with an absolute tolerance relative to the expected array's scale."""
    actual = np.asarray(actual)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def to_torch(array, requires_grad=False):
    """A torch leaf holding a contiguous copy of ``array`` (dtype kept)."""
    t = torch.from_numpy(np.ascontiguousarray(array).copy())
    return t.requires_grad_(requires_grad)


def _wants_grad(array):
    return isinstance(array, np.ndarray) and array.dtype.kind == "f"


def assert_parity(convnp_fn, torch_fn, *arrays, requires_grad=None, rtol=None, atol=None, seed=0):
    """Run ``convnp_fn(*tensors)`` and ``torch_fn(*torch_tensors)`` on the same ``arrays`` and compare
    the outputs and the gradients of every input that requires grad (by default: every floating
    array).  ``None`` entries are passed through as None.  The upstream gradient dy is random (seeded),
    so a backward that mixes up output positions is caught.  Inputs may be non-contiguous views; they
    are handed to convnp as they are, and must not be modified by it.

    Returns (convnp output Tensor, list of convnp input Tensors) for further checks.
    """
    if requires_grad is None:
        requires_grad = [_wants_grad(a) for a in arrays]
    float_arrays = [a for a in arrays if _wants_grad(a)]
    dtype = float_arrays[0].dtype if float_arrays else np.float64
    default_rtol, default_atol = tolerance(dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    originals = [None if a is None else np.array(a, copy=True) for a in arrays]

    torch_inputs = [None if a is None else to_torch(a, rg and _wants_grad(a))
                    for a, rg in zip(arrays, requires_grad)]
    expected = torch_fn(*torch_inputs)
    inputs = [None if a is None else convnp.Tensor(a, requires_grad=bool(rg and _wants_grad(a)))
              for a, rg in zip(arrays, requires_grad)]
    actual = convnp_fn(*inputs)

    assert isinstance(actual, convnp.Tensor), f"convnp returned {type(actual).__name__}, not a Tensor"
    assert actual.dtype == expected.detach().numpy().dtype, \
        f"output dtype {actual.dtype} != torch's {expected.dtype}"
    assert_close(actual.data, expected, rtol, atol, "forward output")
    for a, original in zip(arrays, originals):
        if a is not None:
            np.testing.assert_array_equal(a, original, err_msg="convnp modified its input in place")

    if any(t is not None and t.requires_grad for t in torch_inputs):
        dy = np.random.default_rng(seed).standard_normal(actual.shape).astype(actual.dtype)
        expected.backward(torch.from_numpy(dy.copy()))
        actual.backward(dy)
        for index, (t, x) in enumerate(zip(torch_inputs, inputs)):
            if t is None or not t.requires_grad:
                continue
            assert x.grad is not None, f"input {index} got no gradient"
            assert x.grad.dtype == x.dtype, f"gradient of input {index} is {x.grad.dtype}, input is {x.dtype}"
            assert_close(x.grad, t.grad, rtol, atol, f"gradient of input {index}")
    return actual, inputs


def random_array(rng, shape, dtype=np.float64, low=None, high=None):
    """Standard-normal (or uniform in [low, high)) array of ``dtype``."""
    if low is not None:
        return rng.uniform(low, high, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def non_contiguous(array, how):
    """The same values as ``array`` held in a non-contiguous view: 'transposed' (a transposed copy
    viewed back), 'sliced' (every other element of a bigger array), 'channels_last' (NHWC memory) or
    'flipped' (negative strides)."""
    if how == "transposed":
        view = np.ascontiguousarray(array.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    elif how == "sliced":
        bigger = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
        bigger[..., ::2] = array
        view = bigger[..., ::2]
    elif how == "channels_last":  # NHWC memory seen as NCHW, as torch's channels_last format
        view = np.ascontiguousarray(array.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif how == "flipped":
        view = np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    else:
        raise ValueError(how)
    assert np.array_equal(view, array)
    assert min(array.shape) == 1 or not view.flags.c_contiguous  # (size-1 axes can make any layout contiguous)
    return view
