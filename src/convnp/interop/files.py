"""What every interop format shares: atomic writes, lazy imports of optional packages, and the one
loader the command line uses for a model file of any kind (``load_model_file``)."""
from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from pathlib import Path

INSTALL_HINT = "pip install 'convnp[interop]'"


def require(package, what):
    """Import an optional package, or fail with one line naming the extra that provides it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(f"{what} needs the '{package}' package: {INSTALL_HINT}") from None


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file beside ``path``, fsync it, rename it over ``path``
    and fsync the folder: a failure at any point leaves the old file (or none), never a partial one."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes the file private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def load_model_file(path):
    """A model file of any kind convnp reads -> (model in eval mode, info dict).

    ``.onnx``: the graph imported by ``convnp.onnx.load``; info holds what the exporter recorded in the
    file's metadata (model name and arguments, preprocessing, epoch) plus ``path`` and ``model_class``.
    ``.safetensors``: the convnp model its header names, rebuilt and given the file's weights.
    Anything else: a convnp checkpoint, through ``convnp.checkpoint.load_model``.
    This is the one function the command line (evaluate, predict, viz, explore) loads models with.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        from .onnx import load_with_info

        model, info = load_with_info(path)
        model.eval()
        return model, info
    if suffix == ".safetensors":
        return _load_safetensors_model(path)
    checkpoint = importlib.import_module("convnp.checkpoint")  # looked up at call time (tests replace it)
    return checkpoint.load_model(path)


def _load_safetensors_model(path):
    from ..checkpoint import Checkpoint
    from ..models import MODELS, get_model
    from .safetensors import SafetensorsError, load_safetensors

    meta = load_safetensors(path).metadata
    name = meta.get("model")
    if name not in MODELS:
        raise SafetensorsError(f"{path} names no model convnp.models lists (model: {name!r}), so it cannot be "
                               f"rebuilt from the file; build the model and call load_safetensors(path, model)")
    try:
        model = get_model(name, **(meta.get("model_args") or {}))
    except (TypeError, ValueError) as error:
        raise SafetensorsError(f"{path}: cannot rebuild {name} from {meta.get('model_args')}: {error}") from None
    load_safetensors(path, model=model)
    prep = meta.get("preprocessing")
    info = Checkpoint(path=str(path), model=name, model_class=meta.get("model_class"),
                      model_args=meta.get("model_args"), preprocessing=prep, epoch=meta.get("epoch"), recipe=None,
                      history=None, extra={}, format="safetensors")
    for key in ("dataset", "input_size", "classes", "mean", "std"):
        info[key] = (prep or {}).get(key)
    return model.eval(), info
