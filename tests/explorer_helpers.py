"""Models and inputs shared by the explorer tests (API and browser)."""
import numpy as np

import convnp
from convnp import models, nn
from convnp.recipes import LAYOUTS


class BranchyNet(nn.Module):
    """A user's own model class (not in convnp.models): strided and padded convolutions, average pooling,
    batch norm, a forward that is not a plain chain (the same ReLU module used three times)."""

    def __init__(self, num_classes=4, width=5):
        super().__init__()
        self.num_classes, self.width = num_classes, width
        self.stem = nn.Conv2d(1, width, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.body = nn.Conv2d(width, 2 * width, 3, padding=2, dilation=1)
        self.pool = nn.AvgPool2d(2)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        x = self.act(self.norm(self.stem(x)))
        x = self.pool(self.act(self.body(x)))
        return self.head(self.act(x))


MNIST_PREP = {"dataset": "mnist", "mean": [0.1307], "std": [0.3081], "input_size": [1, 28, 28], "channels": 1,
              "classes": [str(k) for k in range(10)], "layout": dict(LAYOUTS["mnist"])}


def make_model(name, seed=0):
    """(model, info, samples) for one of the five models the explorer is tested on."""
    convnp.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if name == "lenet5":
        model, prep = models.LeNet5(), dict(MNIST_PREP)
    elif name == "simplecnn":
        model, prep = models.SimpleCNN(), dict(MNIST_PREP)
    elif name == "tinycnn":
        model = models.TinyCNN()
        prep = {"dataset": "lines", "mean": [0.2], "std": [0.4], "input_size": [1, 8, 8],
                "classes": ["horizontal", "vertical", "diagonal"], "layout": dict(LAYOUTS["lines"])}
    elif name == "smallvgg":
        model = models.SmallVGG(widths=(8, 16))
        prep = {"dataset": "cifar10", "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "input_size": [3, 32, 32],
                "classes": ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
                "layout": dict(LAYOUTS["cifar10"])}
    elif name == "custom":
        model = BranchyNet()
        prep = {"dataset": None, "mean": [0.5], "std": [0.25], "input_size": [1, 20, 20],
                "classes": ["a", "b", "c", "d"], "layout": {"box": None, "centre": None, "invert": "auto"}}
    else:
        raise ValueError(name)
    model.eval()
    for module in model.modules():  # non-trivial running statistics, so batch norm does something
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean[:] = rng.normal(0, 0.1, module.running_mean.shape)
            module.running_var[:] = rng.uniform(0.5, 2, module.running_var.shape)
    x = rng.random((4, *prep["input_size"]), dtype=np.float32)
    return model, {"preprocessing": prep}, (x, np.arange(4) % len(prep["classes"]))


MODEL_NAMES = ("lenet5", "simplecnn", "tinycnn", "smallvgg", "custom")


def js_fmt(value):
    """The page's fmt(): 4 significant digits, no trailing zeros (for the numbers tests read as text)."""
    rounded = float(f"{value:.4g}")
    if rounded == int(rounded) and abs(rounded) < 1e15:
        return str(int(rounded))
    return repr(rounded)
