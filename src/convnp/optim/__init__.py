"""Optimizers and learning-rate schedulers with PyTorch's names, defaults and update rules.

    from convnp.optim import SGD, Adam, AdamW, Adadelta, RMSprop, Adagrad
    from convnp.optim.lr_scheduler import StepLR, MultiStepLR, LinearLR, CosineAnnealingLR, OneCycleLR
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .adaptive import Adadelta, Adagrad, RMSprop
from .lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, MultiStepLR, OneCycleLR, StepLR
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler", "LRScheduler", "StepLR", "MultiStepLR",
           "LinearLR", "CosineAnnealingLR", "OneCycleLR", "Adadelta", "Adagrad", "RMSprop"]
