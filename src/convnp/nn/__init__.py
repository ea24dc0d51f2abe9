"""Neural-network modules with the ``torch.nn`` API."""
from .layers import (
                     AdaptiveAvgPool2d,
                     AvgPool2d,
                     BatchNorm1d,
                     BatchNorm2d,
                     Conv2d,
                     Dropout,
                     Flatten,
                     LeakyReLU,
                     Linear,
                     MaxPool2d,
                     ModuleList,
                     ReLU,
                     Sequential,
                     Sigmoid,
                     Tanh,
)
from .losses import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, eval_mode

__all__ = ["Module", "Parameter", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Flatten", "Dropout",
           "Sequential", "ModuleList", "CrossEntropyLoss", "MSELoss", "eval_mode"]
