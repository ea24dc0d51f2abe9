"""convnp: convolutional neural networks from scratch in NumPy.

Every op is written by hand, forward and backward, and verified against PyTorch and finite differences.

    import convnp
    from convnp import nn, functional as F
    model = convnp.models.LeNet5()
    loss = F.cross_entropy(model(convnp.tensor(images)), labels)
    loss.backward()

``convnp.summary(model, (1, 28, 28))`` prints shapes, parameters, FLOPs and receptive fields;
``convnp.viz`` draws filters, feature maps and training curves (it imports matplotlib on first use).
"""
import importlib

from . import data, functional, models, nn, optim, reference, utils, vision  # noqa: E402 - torch.utils.data and torchvision's shape

# The torch.* surface: creating and joining tensors, devices, dtypes, save/load.
from .backend import (
    DEFAULT_DTYPE,
    Generator,
    cuda,
    default_rng,
    device,
    get_array_module,
    keep_freed_memory_for_reuse,
    manual_seed,
)
from .dtypes import bool_, double, float16, float32, float64, half, int8, int16, int32, int64, long, short, uint8
from .gradcheck import gradcheck, rel_error
from .inspect import summary
from .interop.safetensors import load_safetensors, save_safetensors
from .parallel import get_num_threads, num_threads, set_num_threads
from .reference import col2im, im2col
from .serialization import load, save
from .tensor import Tensor, enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .tensor_functions import *  # noqa: F401,F403 - tensor, zeros, arange, cat, stack, where, flatten, ...
from .tensor_functions import __all__ as _tensor_functions_all

float, int, bool = float32, int32, bool_  # noqa: A001 - torch.float, torch.int, torch.bool (only names here)

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "functional", "nn", "optim", "models", "data",
           "reference", "im2col", "col2im", "gradcheck", "rel_error", "summary", "viz", "train", "checkpoint",
           "manual_seed",
           "default_rng", "get_array_module", "set_num_threads", "get_num_threads", "num_threads",
           "keep_freed_memory_for_reuse", "DEFAULT_DTYPE", "__version__",
           "interop", "onnx", "save_safetensors", "load_safetensors",
           "enable_grad", "set_grad_enabled", "inference_mode", "Generator", "cuda", "device", "save", "load",
           "utils", "vision", "float16", "float32", "float64", "half", "double", "int8", "int16", "int32",
           "int64", "long", "short", "uint8", "bool_", *_tensor_functions_all]

_LAZY = {"viz": ".inspect.viz", "train": ".train", "checkpoint": ".checkpoint", "interop": ".interop", "onnx": ".onnx"}


def __getattr__(name):
    """``convnp.viz``, ``convnp.train`` and ``convnp.checkpoint`` load on first use (viz needs matplotlib)."""
    if name in _LAZY:
        return importlib.import_module(_LAZY[name], __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
