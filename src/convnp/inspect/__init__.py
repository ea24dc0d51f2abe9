"""See inside a network: ``summary`` (shapes, parameters, MACs/FLOPs, memory, receptive fields) and
``viz`` (filters, feature maps, pooling, training curves, confusion matrix, saliency as PNG files).

``viz`` imports matplotlib, so it is loaded only when first used: ``convnp.inspect.viz``.
"""
import importlib

from .summary import Call, Row, Summary, summary, trace

__all__ = ["summary", "Summary", "Row", "trace", "Call", "viz"]


def __getattr__(name):
    if name == "viz":
        return importlib.import_module(".viz", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
