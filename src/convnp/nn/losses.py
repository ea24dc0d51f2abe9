"""Loss modules (thin wrappers over ``convnp.functional``)."""
from .. import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """logits: (N, K), target: (N,) integer classes -> scalar loss (see ``functional.cross_entropy``)."""

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__()
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, self.reduction, self.label_smoothing)


class MSELoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, x, target):
        return F.mse_loss(x, target, self.reduction)
