"""The small CNNs of classic tutorials."""
from .. import nn


class SimpleCNN(nn.Sequential):
    """x: (N, 1, 28, 28) -> logits (N, 10)

    conv 1->4 k3 pad 1 (N, 4, 28, 28), ReLU, max-pool 2 (N, 4, 14, 14),
    conv 4->8 k3 pad 1 (N, 8, 14, 14), ReLU, max-pool 2 (N, 8, 7, 7), flatten 392, linear 392->10.
    """

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 7 * 7, num_classes),
        )
        self.num_classes, self.in_channels = num_classes, in_channels

    @property
    def input_shape(self):
        """The shape of one input example, (C, H, W)."""
        return (self.in_channels, 28, 28)


class TinyCNN(nn.Sequential):
    """x: (N, 1, 8, 8) -> logits (N, 3)

    conv 1->3 k3 (N, 3, 6, 6), ReLU, max-pool 2 (N, 3, 3, 3), flatten 27, linear 27->3 (30 + 84 parameters).
    """

    def __init__(self, num_classes=3, in_channels=1):
        super().__init__(
            nn.Conv2d(in_channels, 3, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(27, num_classes),
        )
        self.num_classes, self.in_channels = num_classes, in_channels

    @property
    def input_shape(self):
        """The shape of one input example, (C, H, W)."""
        return (self.in_channels, 8, 8)


class MnistCNN(nn.Sequential):
    """x: (N, 1, 28, 28) -> logits (N, 10): the network of PyTorch's MNIST example (pytorch/examples,
    mnist/main.py), trained there with Adadelta(lr=1.0).

    conv 1->32 k3 (N, 32, 26, 26), ReLU, conv 32->64 k3 (N, 64, 24, 24), ReLU, max-pool 2 (N, 64, 12, 12),
    dropout 0.25, flatten 9216, linear 9216->128, ReLU, dropout 0.5, linear 128->10 (1,199,882 parameters).
    """

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )
        self.num_classes, self.in_channels = num_classes, in_channels

    @property
    def input_shape(self):
        """The shape of one input example, (C, H, W)."""
        return (self.in_channels, 28, 28)
