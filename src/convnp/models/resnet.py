"""A CIFAR-style residual network: ResNet-20 of He et al. (2016), "Deep Residual Learning", section 4.2."""
from .. import nn
from ..nn.layers import relu_of_batch_norm


class BasicBlock(nn.Module):
    """x: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)

        relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    conv1 is 3x3 with ``stride``, conv2 3x3; the shortcut is x itself, or a 1x1 convolution with
    ``stride`` and batch norm when the shape changes (the paper's option B).
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = relu_of_batch_norm(self.bn1, self.relu, self.conv1(x))  # = relu(bn1(conv1(x))), fused
        return relu_of_batch_norm(self.bn2, self.relu, self.conv2(out), self.shortcut(x))  # the add fused too


class ResNet20(nn.Module):
    """x: (N, in_channels, 32, 32) -> logits (N, num_classes)

    A 3x3 stem convolution to widths[0] channels with batch norm and ReLU, then for each width a stage
    of ``blocks`` BasicBlocks (the first of each later stage has stride 2: 32x32 -> 16x16 -> 8x8),
    global average pooling and Linear(widths[-1], num_classes).  With the defaults (widths (16, 32, 64),
    3 blocks a stage: 1 + 3 * 3 * 2 + 1 = 20 weighted layers): 272,474 parameters.
    """

    def __init__(self, num_classes=10, in_channels=3, widths=(16, 32, 64), blocks=3):
        super().__init__()
        self.num_classes, self.in_channels, self.widths, self.blocks = num_classes, in_channels, tuple(widths), blocks
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, channels = [], widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                layers.append(BasicBlock(channels, width, stride=2 if stage > 0 and block == 0 else 1))
                channels = width
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.stages(self.stem(x)))))

    @property
    def input_shape(self):
        """The shape of one input example, (C, H, W) (any H, W >= 4 work too)."""
        return (self.in_channels, 32, 32)
