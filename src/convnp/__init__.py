"""convnp: convolutional neural networks from scratch in NumPy.

Every op is written by hand, forward and backward, and verified against PyTorch and finite differences.

    import convnp
    from convnp import nn, functional as F
    model = convnp.models.LeNet5()
    loss = F.cross_entropy(model(convnp.tensor(images)), labels)
    loss.backward()
"""
from . import functional, models, nn, optim, reference
from .backend import DEFAULT_DTYPE, default_rng, get_array_module, manual_seed
from .gradcheck import gradcheck, rel_error
from .tensor import Tensor, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "functional", "nn", "optim", "models",
           "reference", "gradcheck", "rel_error", "manual_seed", "default_rng", "get_array_module",
           "DEFAULT_DTYPE", "__version__"]
