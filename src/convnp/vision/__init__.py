"""``convnp.vision``: torchvision's shape, so ``from torchvision import datasets, transforms`` becomes
``from convnp.vision import datasets, transforms``.  Pillow (the ``[tools]`` extra) is imported only
when an image is opened or converted."""
from . import datasets, transforms

__all__ = ["datasets", "transforms"]
