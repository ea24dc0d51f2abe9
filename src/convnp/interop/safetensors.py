"""safetensors files: weights in the format the wider ecosystem uses for safe weight files.

    save_safetensors(model, "lenet5.safetensors", preprocessing={...})
    weights = load_safetensors("lenet5.safetensors")      # Weights(state_dict, metadata)
    model.load_state_dict(weights.state_dict)

The format (https://github.com/huggingface/safetensors) is an 8-byte little-endian header length N,
N bytes of JSON ``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``, then the tensors' bytes, back to back.  It holds no code, so loading it
is safe.  This module reads and writes it with NumPy alone (the ``safetensors`` package reads what it
writes, and the tests check that); convnp's own metadata (model name, class, constructor arguments,
preprocessing) is one JSON string under ``__metadata__["convnp"]``.

Reading checks the header against the file before any tensor is read: every offset in bounds, the
byte count of each tensor equal to its shape times its dtype's size, the tensors tiling the data area
exactly.  A file that lies gets a ValueError naming the file and the tensor.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .files import atomic_write_creating_folder

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}
MAX_HEADER_BYTES = 100_000_000  # the safetensors package's own limit
METADATA_KEY = "convnp"


class Weights(NamedTuple):
    state_dict: dict   # {state_dict key: ndarray}
    metadata: dict     # convnp's metadata (model, model_class, model_args, preprocessing, ...) or {}


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file (truncated, lying header, missing tensor)."""


def _model_metadata(model):
    from ..models import model_config, model_name

    try:
        args = model_config(model)
    except ValueError:
        args = None
    return {"model": model_name(model), "model_class": type(model).__name__, "model_args": args}


def save_safetensors(model_or_state, path, preprocessing=None, **metadata):
    """Write a model's state_dict (or a {key: array} dict) to ``path`` atomically -> Path.

    With a model, its short name, class and constructor arguments go into the header;
    ``preprocessing`` and any other keyword must be JSON-able and are stored beside them.
    """
    from ..nn import Module

    if isinstance(model_or_state, Module):
        state = model_or_state.state_dict()
        meta = _model_metadata(model_or_state)
    else:
        state, meta = dict(model_or_state), {}
    meta.update(metadata)
    if preprocessing is not None:
        meta["preprocessing"] = preprocessing
    header, arrays, offset = {}, [], 0
    for key, value in state.items():
        array = np.asarray(value)
        if np.dtype(array.dtype.type) not in CODES:
            raise ValueError(f"save_safetensors: {key} has dtype {array.dtype}, which safetensors cannot hold "
                             f"(it holds {', '.join(str(np.dtype(d)) for d in DTYPES.values())})")
        array = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)  # (keeps 0-d shapes)
        header[key] = {"dtype": CODES[np.dtype(array.dtype.type)], "shape": list(array.shape),
                       "data_offsets": [offset, offset + array.nbytes]}
        arrays.append(array)
        offset += array.nbytes
    header["__metadata__"] = {METADATA_KEY: json.dumps(meta)}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data area starts 8-byte aligned, as the reference writer does

    def write(file):
        file.write(struct.pack("<Q", len(text)))
        file.write(text)
        for array in arrays:
            file.write(array.tobytes())

    return atomic_write_creating_folder(path, write)


def load_safetensors(path, model=None):
    """Read a safetensors file -> Weights(state_dict, metadata), checking it first (see the module doc).

    With ``model``, the weights are also loaded into it (strictly: a tensor the model needs and the file
    lacks is an error naming the file and the key; nothing is changed unless every tensor fits).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such safetensors file")
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path} is not a safetensors file: {size} bytes, shorter than its 8-byte "
                                   f"header size")
        (header_bytes,) = struct.unpack("<Q", head)
        if header_bytes > min(MAX_HEADER_BYTES, size - 8):
            raise SafetensorsError(f"{path} is not a safetensors file (or is truncated): its header claims "
                                   f"{header_bytes:,} bytes, the file has {size - 8:,} after the size field")
        try:
            header = json.loads(file.read(header_bytes).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SafetensorsError(f"{path} is not a safetensors file: its header is not JSON ({error})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: the safetensors header is not a JSON object")
        entries = _checked_entries(path, header, size - 8 - header_bytes)
        state = {}
        for key, (dtype, shape, begin, end) in entries.items():
            file.seek(8 + header_bytes + begin)
            data = file.read(end - begin)
            state[key] = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
    metadata = _convnp_metadata(path, header.get("__metadata__"))
    if model is not None:
        missing = [key for key in model.state_dict() if key not in state]
        if missing:
            raise SafetensorsError(f"{path} lacks tensor(s) {', '.join(missing)} that {type(model).__name__} needs")
        try:
            model.load_state_dict(state)
        except ValueError as error:
            raise SafetensorsError(f"{path} does not fit {type(model).__name__}: {error}") from None
    return Weights(state, metadata)


def _checked_entries(path, header, data_bytes):
    """{key: (dtype, shape, begin, end)} after checking every entry against the data area."""
    entries = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = DTYPES[entry["dtype"]], tuple(entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {key!r} has a malformed header entry {entry!r} (needs a "
                                   f"dtype among {', '.join(DTYPES)}, a shape and two data_offsets)") from None
        if not all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end)):
            raise SafetensorsError(f"{path}: tensor {key!r} has a negative or non-integer shape or offset")
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if end - begin != expected:
            raise SafetensorsError(f"{path}: tensor {key!r} of shape {list(shape)} {entry['dtype']} needs "
                                   f"{expected:,} bytes, its header gives it {end - begin:,} ({begin}..{end})")
        if end > data_bytes:
            raise SafetensorsError(f"{path}: tensor {key!r} ends at byte {end:,} but the file holds only "
                                   f"{data_bytes:,} bytes of data (truncated, or the header lies)")
        entries[key] = (dtype, shape, begin, end)
    position = 0
    for key, (_, _, begin, end) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            raise SafetensorsError(f"{path}: tensor {key!r} starts at byte {begin:,}, expected {position:,} "
                                   f"(tensors overlap or leave a gap)")
        position = end
    if position != data_bytes:
        raise SafetensorsError(f"{path}: the tensors cover {position:,} bytes of the {data_bytes:,} in the data area")
    return entries


def _convnp_metadata(path, metadata):
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    if METADATA_KEY not in metadata:
        return {}
    try:
        value = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise SafetensorsError(f"{path}: the convnp metadata is not JSON ({error})") from None
    return value if isinstance(value, dict) else {}
