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
    file's metadata (model name and arguments, preprocessing) plus ``path``, ``epoch`` (None) and
    ``model_class``.  Anything else: a convnp checkpoint, through ``convnp.checkpoint.load_model``.
    This is the one function the command line (evaluate, predict, viz, explore) loads models with.
    """
    if str(path).lower().endswith(".onnx"):
        from .onnx import load_with_info

        model, info = load_with_info(path)
        model.eval()
        return model, info
    checkpoint = importlib.import_module("convnp.checkpoint")  # looked up at call time (tests replace it)
    return checkpoint.load_model(path)
