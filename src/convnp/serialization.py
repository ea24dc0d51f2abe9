"""``convnp.save(obj, f)`` / ``convnp.load(f)``: tensors and nested state_dicts in one ``.npz``, no pickle.

``torch.save(model.state_dict(), "model.pt")`` style code runs unchanged and stays safe: the file is a
NumPy zip archive (``np.savez``) holding every array as ``arr_0``, ``arr_1``, ... and one more member,
``structure``, a JSON description of the object with the arrays replaced by references.  So anything
built from dicts (string or integer keys), lists, tuples, numbers, strings, None, NumPy arrays and
Tensors round-trips (an optimizer's ``state_dict()`` too); other objects are refused with the path to
them.  Loading reads with ``allow_pickle=False``: a file can never run code.  Writing to a path is
atomic (temporary file, fsync, rename), so a crash never leaves half a file behind.

Differences from PyTorch, deliberately: Tensors come back as convnp Tensors (with their
``requires_grad``), arrays as arrays (``state_dict()`` values are arrays in convnp); ``map_location``
is accepted and must name the CPU; ``pickle_module`` and arbitrary Python objects are not supported.
"""
import json
import zipfile
from pathlib import Path

import numpy as np

from .backend import resolve_device
from .files import atomic_write
from .tensor import Tensor

STRUCTURE_KEY = "structure"
FORMAT = "convnp.save/1"
MAX_STRUCTURE_BYTES = 64 << 20  # the JSON member is read into memory: refuse absurd ones


def save(obj, f):
    """Write ``obj`` (a Tensor, an array, or dicts/lists/tuples of them and of plain values) to ``f``:
    a path (written atomically) or a binary file object."""
    arrays = []
    structure = {"format": FORMAT, "object": _encode(obj, arrays, "obj")}
    entries = {f"arr_{i}": array for i, array in enumerate(arrays)}
    entries[STRUCTURE_KEY] = np.frombuffer(json.dumps(structure).encode("utf-8"), dtype=np.uint8)
    if hasattr(f, "write"):
        np.savez(f, **entries)
        return
    atomic_write(Path(f), lambda file: np.savez(file, **entries))


def load(f, map_location=None, weights_only=True, mmap=None):
    """Read what ``save`` wrote (a path or a binary file object).  ``map_location`` must be None or the
    CPU; ``weights_only`` is always in effect (nothing but arrays and plain values is ever read)."""
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        resolve_device(map_location)
    name = getattr(f, "name", f)
    try:
        archive = np.load(f, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"convnp.load: {name} is not a file written by convnp.save ({error})") from None
    with archive:
        if STRUCTURE_KEY not in archive.files:
            raise ValueError(f"convnp.load: {name} has no '{STRUCTURE_KEY}' member; it was not written by "
                             f"convnp.save (members: {', '.join(archive.files[:5])})")
        info = archive.zip.getinfo(STRUCTURE_KEY + ".npy")
        if info.file_size > MAX_STRUCTURE_BYTES:
            raise ValueError(f"convnp.load: {name}: the structure member is {info.file_size} bytes, more than "
                             f"the {MAX_STRUCTURE_BYTES} allowed")
        try:
            structure = json.loads(archive[STRUCTURE_KEY].tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"convnp.load: {name}: unreadable structure member ({error})") from None
        if not isinstance(structure, dict) or structure.get("format") != FORMAT:
            raise ValueError(f"convnp.load: {name}: unknown format {structure.get('format')!r}, expected {FORMAT!r}")
        return _decode(structure["object"], archive, name)


def _encode(value, arrays, path):
    if isinstance(value, Tensor):
        arrays.append(np.asarray(value.data))
        return {"tensor": len(arrays) - 1, "requires_grad": bool(value.requires_grad)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"convnp.save: {path} is an array of dtype {value.dtype}; only numeric arrays are saved")
        arrays.append(value)
        return {"array": len(arrays) - 1}
    if isinstance(value, np.generic):
        arrays.append(np.asarray(value))
        return {"scalar": len(arrays) - 1}
    if value is None or isinstance(value, (bool, int, str)):
        return {"value": value}
    if isinstance(value, float):
        return {"float": repr(value)}  # inf and nan survive (JSON has no literal for them)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"convnp.save: {path} has a key {key!r} of type {type(key).__name__}; "
                                f"only str and int keys are saved")
            items.append([key, _encode(item, arrays, f"{path}[{key!r}]")])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_encode(item, arrays, f"{path}[{i}]") for i, item in enumerate(value)]}
    raise TypeError(f"convnp.save: {path} is a {type(value).__name__}; convnp.save stores tensors, arrays, "
                    f"numbers, strings, None and dicts/lists/tuples of them (no pickle)")


def _decode(node, archive, name):
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise ValueError(f"convnp.load: {name}: malformed structure entry {str(node)[:80]}")
    kind = next(iter(node))
    if kind == "tensor":
        return Tensor(_member(archive, node["tensor"], name), requires_grad=bool(node.get("requires_grad")))
    if kind == "array":
        return _member(archive, node["array"], name)
    if kind == "scalar":
        return _member(archive, node["scalar"], name)[()]
    if kind == "value":
        return node["value"]
    if kind == "float":
        return float(node["float"])
    if kind == "dict":
        return {key: _decode(item, archive, name) for key, item in node["dict"]}
    if kind == "list":
        return [_decode(item, archive, name) for item in node["list"]]
    if kind == "tuple":
        return tuple(_decode(item, archive, name) for item in node["tuple"])
    raise ValueError(f"convnp.load: {name}: unknown structure entry {kind!r}")


def _member(archive, index, name):
    key = f"arr_{int(index)}"
    if key not in archive.files:
        raise ValueError(f"convnp.load: {name}: the structure refers to a missing array {key}")
    return archive[key]


__all__ = ["save", "load"]
