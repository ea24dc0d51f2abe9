"""Models in and out of convnp.

    convnp.onnx.export(model, example_input, "model.onnx")     # ONNX (onnx package: convnp[interop])
    model = convnp.onnx.load("model.onnx")                     # ONNX graph -> a trainable convnp Module
    torch_model = convnp.interop.to_torch(model)               # a real torch.nn.Module, same state_dict keys
    model = convnp.interop.from_torch(torch_model)             # and back
    convnp.save_safetensors(model, "model.safetensors")        # weights for the wider ecosystem
    model, info = convnp.interop.load_model_file(path)         # a checkpoint or an .onnx file

``trace.py`` records one forward pass through ``Function.apply`` (every op goes through it) and the
module calls around it; ``onnx.py`` and ``torch.py`` turn that record into an ONNX graph and into
PyTorch source code.  Nothing in the engine imports this package.
"""
from __future__ import annotations

import importlib

from .files import load_model_file
from .safetensors import Weights, load_safetensors, save_safetensors

__all__ = ["to_torch", "from_torch", "torch_source", "save_safetensors", "load_safetensors", "Weights",
           "load_model_file", "onnx_export", "onnx_load"]

_LAZY = {"to_torch": ("convnp.interop.torch", "to_torch"), "from_torch": ("convnp.interop.torch", "from_torch"),
         "torch_source": ("convnp.interop.torch", "torch_source"),
         "onnx_export": ("convnp.interop.onnx", "export"), "onnx_load": ("convnp.interop.onnx", "load")}


def __getattr__(name):
    """to_torch/from_torch import torch, the ONNX functions onnx, only when first used."""
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
