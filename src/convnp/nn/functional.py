"""``convnp.nn.functional`` is ``convnp.functional`` under PyTorch's spelling
(``import convnp.nn.functional as F`` works like ``import torch.nn.functional as F``)."""
from ..functional import *  # noqa: F401,F403
from ..functional import __all__  # noqa: F401
