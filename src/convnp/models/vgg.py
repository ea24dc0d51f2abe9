"""A small VGG-style network: stacks of 3x3 convolutions with batch norm, for 32x32 colour images."""
from .. import nn


class SmallVGG(nn.Module):
    """x: (N, in_channels, 32, 32) -> logits (N, num_classes)

    For each width w in ``widths``: [Conv2d(-, w, 3, padding=1, bias=False), BatchNorm2d(w), ReLU] x 2,
    then MaxPool2d(2); then global average pooling and Linear(widths[-1], num_classes).
    With the default widths (32, 64, 128): 32x32 -> 16x16 -> 8x8 -> 4x4 -> 1x1, 288,746 parameters.
    """

    def __init__(self, num_classes=10, in_channels=3, widths=(32, 64, 128)):
        super().__init__()
        self.num_classes, self.in_channels, self.widths = num_classes, in_channels, tuple(widths)
        layers, channels = [], in_channels
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))

    @property
    def input_shape(self):
        """The shape of one input example, (C, H, W) (any H, W >= 2**len(widths) work too)."""
        return (self.in_channels, 32, 32)
