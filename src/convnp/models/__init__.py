"""Ready-made models: LeNet-5 (28x28 and the classic 32x32), the small CNNs of classic tutorials, an MLP."""
from .lenet import LeNet5, LeNet5Classic
from .mlp import MLP
from .tutorial import SimpleCNN, TinyCNN

__all__ = ["LeNet5", "LeNet5Classic", "SimpleCNN", "TinyCNN", "MLP"]
