"""Numerical gradient checking: the independent truth every hand-written backward is tested against.

For f: inputs -> y and a random upstream gradient dy, the scalar L = sum(y * dy) has

    dL/dx[i] ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)          (centred differences, error O(eps^2))

which must equal what ``backward(dy)`` accumulates in x.grad.  Weighting by a random dy (rather
than summing y) catches backward passes that mix up output positions.  Checks run in float64: with
eps = 1e-6 the truncation and round-off errors are both around 1e-10.

For big inputs, ``directions=k`` checks k random directions v instead of every element:
(L(x + eps v) - L(x - eps v)) / (2 eps) ~= <grad, v>  (Chainer's trick; cost independent of size).
"""
import numpy as np

from .backend import device_of, get_array_module, to_device, to_numpy
from .tensor import Tensor, no_grad


def rel_error(a, b):
    """max |a - b| / max(|a| + |b|, 1e-8): CS231n's relative error, elementwise then the worst case."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8), initial=0.0))


def _weighted_output(fn, inputs, dy):
    with no_grad():
        return float(np.sum(np.asarray(to_numpy(fn(*inputs).data), dtype=np.float64) * dy))


def numerical_gradients(fn, inputs, dy, eps=1e-6):
    """Centred-difference gradients of sum(fn(*inputs) * dy) for every input that requires grad."""
    grads = []
    for x in inputs:
        if not (isinstance(x, Tensor) and x.requires_grad):
            grads.append(None)
            continue
        grad = np.zeros(x.shape, dtype=np.float64)  # on the host, whatever the device of x
        flat = x.data.reshape(-1)  # a view: writes go into x.data (x is made contiguous first)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            plus = _weighted_output(fn, inputs, dy)
            flat[i] = original - eps
            minus = _weighted_output(fn, inputs, dy)
            flat[i] = original
            grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
        grads.append(grad)
    return grads


def gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, directions=None, seed=0):
    """Compare backward() with finite differences; raise AssertionError on a mismatch, return True.

    fn: callable taking the ``inputs`` (Tensors; those with requires_grad=True are checked) and
    returning a Tensor.  Inputs should be float64.  ``directions=k`` checks k random directions instead
    of every element (for large inputs).  Passes when |analytic - numeric| <= atol + rtol |numeric|.
    Inputs on the GPU stay there: dy and the directions are moved to them, the results back.
    """
    rng = np.random.default_rng(seed)
    for x in inputs:
        if isinstance(x, Tensor) and x.requires_grad:
            if x.dtype != np.float64:
                raise TypeError(f"gradcheck needs float64 inputs, got {x.dtype}")
            x.data = get_array_module(x.data).ascontiguousarray(x.data)
            x.grad = None
    y = fn(*inputs)
    dy = rng.standard_normal(y.shape)
    y.backward(to_device(dy, device_of(y.data)))
    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    analytic = [np.zeros(x.shape) if x.grad is None else to_numpy(x.grad) for x in checked]

    if directions is None:
        numeric = [g for g in numerical_gradients(fn, inputs, dy, eps) if g is not None]
        for index, (a, n) in enumerate(zip(analytic, numeric)):
            if not np.allclose(a, n, atol=atol, rtol=rtol):
                worst = np.unravel_index(np.argmax(np.abs(a - n)), a.shape)
                raise AssertionError(f"gradient of input {index} (shape {a.shape}) differs from finite "
                                     f"differences: at {worst} analytic {a[worst]:.8g} vs numeric {n[worst]:.8g}; "
                                     f"relative error {rel_error(a, n):.3g}")
        return True

    for k in range(directions):
        vs = [rng.standard_normal(x.shape) for x in checked]
        originals = [x.data for x in checked]
        for x, v, o in zip(checked, vs, originals):
            x.data = o + to_device(eps * v, device_of(o))
        plus = _weighted_output(fn, inputs, dy)
        for x, v, o in zip(checked, vs, originals):
            x.data = o - to_device(eps * v, device_of(o))
        minus = _weighted_output(fn, inputs, dy)
        for x, o in zip(checked, originals):
            x.data = o
        numeric = (plus - minus) / (2 * eps)
        predicted = float(sum(np.sum(a * v) for a, v in zip(analytic, vs)))
        if abs(predicted - numeric) > atol + rtol * abs(numeric):
            raise AssertionError(f"directional derivative {k}: analytic {predicted:.8g} vs numeric {numeric:.8g}")
    return True
