"""torch.utils-shaped helpers: ``convnp.utils.data`` is ``torch.utils.data``."""
from . import data

__all__ = ["data"]
