"""The multilayer-perceptron baseline."""
from .. import nn


class MLP(nn.Module):
    """x: (N, C, H, W) or (N, in_features) -> logits (N, num_classes)

    flatten, then Linear(in_features, h) + ReLU for each width h in ``hidden``, then Linear(-, num_classes).
    MLP(784, 100, 10) is the classic two-layer net: 784*100 + 100 + 100*10 + 10 = 79,510 parameters.
    """

    def __init__(self, in_features=784, hidden=100, num_classes=10):
        super().__init__()
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        self.in_features, self.hidden, self.num_classes = in_features, hidden, num_classes
        layers = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    @property
    def input_shape(self):
        """The shape of one input example: (1, 28, 28) for the MNIST MLP, else (in_features,)."""
        return (1, 28, 28) if self.in_features == 784 else (self.in_features,)
