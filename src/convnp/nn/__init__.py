"""Neural-network modules with the ``torch.nn`` API."""
from . import functional, init  # noqa: E402 - torch.nn.functional, torch.nn.init
from .activations import (
                     ELU,
                     GELU,
                     AdaptiveMaxPool2d,
                     Dropout2d,
                     Hardtanh,
                     Identity,
                     LogSoftmax,
                     ModuleDict,
                     ReLU6,
                     SiLU,
                     Softmax,
                     Softplus,
                     Upsample,
)
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
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss
from .module import Module, Parameter, eval_mode, model_device, on_model_device
from .padding import ConstantPad2d, ReflectionPad2d, ReplicationPad2d, ZeroPad2d

__all__ = ["Module", "Parameter", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Flatten", "Dropout",
           "Sequential", "ModuleList", "CrossEntropyLoss", "MSELoss",
           "functional", "init", "Identity", "ReLU6", "ELU", "GELU", "SiLU", "Softplus", "Hardtanh", "Softmax",
           "LogSoftmax", "Dropout2d", "AdaptiveMaxPool2d", "Upsample", "ModuleDict", "NLLLoss", "BCELoss",
           "BCEWithLogitsLoss", "L1Loss", "SmoothL1Loss", "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d",
           "ReplicationPad2d", "eval_mode", "model_device", "on_model_device"]
