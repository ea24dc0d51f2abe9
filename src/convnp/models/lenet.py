"""LeNet-5 (LeCun et al., 1998) in its modern form: ReLU and max pooling instead of the original
scaled tanh and trainable subsampling, as most tutorials and PyTorch examples write it."""
from .. import nn
from ..nn.layers import pool_of_relu_of_conv
from ..ops.windows import output_size


class LeNet5(nn.Module):
    """x: (N, 1, 28, 28) -> logits (N, num_classes)

    conv1 1->6 k5        (N, 6, 24, 24)    156 parameters
    pool  2              (N, 6, 12, 12)
    conv2 6->16 k5       (N, 16, 8, 8)     2,416
    pool  2              (N, 16, 4, 4)
    flatten              (N, 256)
    fc1 256->120, fc2 120->84, fc3 84->10  30,840 + 10,164 + 850   (44,426 in all)
    """

    input_size = 28

    @property
    def input_shape(self):
        """The shape of one input example, (C, H, W)."""
        return (self.in_channels, self.input_size, self.input_size)

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        flat = 16 * self.feature_side(self.input_size) ** 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(flat, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    @staticmethod
    def feature_side(side):
        """Side of conv2's pooled output for a side x side input: ((side - 4) // 2 - 4) // 2."""
        return output_size(output_size(output_size(output_size(side, 5, 1, 0), 2, 2, 0), 5, 1, 0), 2, 2, 0)

    def forward(self, x):
        side = self.input_size
        if x.ndim == 4 and x.shape[2:] != (side, side):
            h, w = x.shape[2:]
            got = 16 * max(self.feature_side(h), 0) * max(self.feature_side(w), 0)
            other = {28: "LeNet5", 32: "LeNet5Classic"}.get(h) if h == w else None
            hint = f" (use {other} for {h}x{w} images)" if other else ""
            raise ValueError(f"{type(self).__name__} expects {side}x{side} images, got {h}x{w}: its conv/pool "
                             f"stack would flatten them to {got} features, but fc1 = {self.fc1!r} takes "
                             f"{self.fc1.in_features}{hint}")
        x = pool_of_relu_of_conv(self.pool, self.relu, self.conv1, x)  # = pool(relu(conv1(x))): see its docstring
        x = pool_of_relu_of_conv(self.pool, self.relu, self.conv2, x)
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Classic(LeNet5):
    """The original geometry: x: (N, 1, 32, 32) -> logits; conv2's output pools to 16x5x5 = 400
    features, so fc1 is Linear(400, 120) (61,706 parameters in all)."""

    input_size = 32
