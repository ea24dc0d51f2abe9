"""What every interop format shares: atomic writes into new folders, lazy imports of optional packages, and the one
loader the command line uses for a model file of any kind (``load_model_file``)."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..files import atomic_write

INSTALL_HINT = "pip install 'convnp[interop]'"


def require(package, what):
    """Import an optional package, or fail with one line naming the extra that provides it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(f"{what} needs the '{package}' package: {INSTALL_HINT}") from None


def atomic_write_creating_folder(path, write):
    """``convnp.files.atomic_write`` (temporary file, fsync, rename, folder fsync) after creating the
    folder of ``path``: an export may name a folder that does not exist yet."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)


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
