"""ONNX files, the public spelling of ``convnp.interop.onnx``:

    convnp.onnx.export(model, example_input, "model.onnx", opset=17, dynamic_batch=True)
    model = convnp.onnx.load("model.onnx")

Needs the ``onnx`` package (``pip install 'convnp[interop]'``), imported on first use.
"""
from __future__ import annotations

from .interop.onnx import export, load

__all__ = ["export", "load"]
