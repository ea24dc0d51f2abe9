"""How arrays travel in the explorer's JSON: ``{"dtype": "float32", "shape": [...], "data": BASE64}``.

The bytes are little-endian, C order, so the page's ``Float32Array`` holds convnp's float32 values
exactly (no decimal round trip).  Requests may also send ``uint8`` arrays (a drawn canvas) or plain
nested lists of numbers (a typed kernel).
"""
import base64
import binascii

import numpy as np

from ..backend import to_numpy

DTYPES = {"float32": "<f4", "uint8": "u1"}
MAX_ELEMENTS = 4_000_000


class RequestError(ValueError):
    """A request the explorer cannot answer; its message goes back to the page (HTTP 400)."""


def encode(array):
    """ndarray (host or device: a GPU array is copied to the host here) -> {"dtype": "float32", "shape": [...],
    "data": base64 of the little-endian bytes}."""
    values = np.ascontiguousarray(to_numpy(array), dtype="<f4")
    return {"dtype": "float32", "shape": list(values.shape), "data": base64.b64encode(values.tobytes()).decode("ascii")}


def decode(value, what, ndim=None):
    """An encoded array or a nested list of numbers -> float32 ndarray (uint8 stays uint8).

    Raises RequestError naming ``what`` when the value is malformed, has the wrong number of
    dimensions (``ndim``: an int or a tuple of allowed ones), or holds NaN/infinity.
    """
    if isinstance(value, dict):
        dtype = DTYPES.get(value.get("dtype"))
        if dtype is None:
            raise RequestError(f"{what}: dtype must be one of {', '.join(DTYPES)}, got {value.get('dtype')!r}")
        shape = value.get("shape")
        if not isinstance(shape, list) or not all(isinstance(n, int) and 0 < n <= MAX_ELEMENTS for n in shape):
            raise RequestError(f"{what}: shape must be a list of positive integers, got {shape!r}")
        if int(np.prod(shape)) > MAX_ELEMENTS:
            raise RequestError(f"{what}: {int(np.prod(shape)):,} values is more than the {MAX_ELEMENTS:,} accepted")
        try:
            raw = base64.b64decode(value.get("data", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise RequestError(f"{what}: data is not valid base64") from None
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(raw) != expected:
            raise RequestError(f"{what}: shape {shape} needs {expected} bytes of {value['dtype']}, got {len(raw)}")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        array = array.astype(np.uint8) if dtype == "u1" else array.astype(np.float32)
    elif isinstance(value, list):
        try:
            array = np.array(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise RequestError(f"{what}: expected a rectangular list of lists of numbers, "
                               f"got {str(value)[:60]}") from None
        if array.dtype == object or array.size == 0:
            raise RequestError(f"{what}: expected a non-empty rectangular list of numbers")
    else:
        raise RequestError(f"{what}: expected an array ({{dtype, shape, data}}) or a list of numbers, "
                           f"got {type(value).__name__}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and array.ndim not in allowed:
        raise RequestError(f"{what}: expected {' or '.join(f'{n}-D' for n in allowed)} values, got shape "
                           f"{list(array.shape)}")
    if array.dtype == np.float32 and not np.isfinite(array).all():
        raise RequestError(f"{what}: holds NaN or infinite values")
    return array
