"""LeNet-5: the shape of the data after every layer, and where its parameters are.

Run:  python examples/lenet_shapes.py

The shapes follow H_out = H - k + 1 for the 5x5 convolutions and H_out = H / 2 for the 2x2 pools:
    28x28 input:  28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4   ->  16 * 4 * 4 = 256 features
    32x32 input:  32 -conv5-> 28 -pool-> 14 -conv5-> 10 -pool-> 5  ->  16 * 5 * 5 = 400 features
Parameters (weights + biases), by hand:
    Conv2d(1, 6, 5)    1 * 6 * 25 + 6    =    156
    Conv2d(6, 16, 5)   6 * 16 * 25 + 16  =  2,416
    Linear(256, 120)   256 * 120 + 120   = 30,840     (classic: Linear(400, 120) = 48,120)
    Linear(120, 84)    120 * 84 + 84     = 10,164
    Linear(84, 10)     84 * 10 + 10      =    850
    total                                   44,426     (classic 32x32: 61,706)
ReLU, max pooling and Flatten have no parameters.
"""
import sys
from pathlib import Path

import numpy as np

try:
    import convnp
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convnp
from convnp import models, nn
from convnp.inspect import summary

HAND = {  # the arithmetic of the docstring
    "conv1": 1 * 6 * 25 + 6, "conv2": 6 * 16 * 25 + 16, "fc1": 256 * 120 + 120, "fc2": 120 * 84 + 84,
    "fc3": 84 * 10 + 10,
}
HAND_CLASSIC = dict(HAND, fc1=400 * 120 + 120)


def formula(module):
    """The parameter count of one layer, spelled out."""
    if isinstance(module, nn.Conv2d):
        c_in, c_out, (kh, kw) = module.in_channels, module.out_channels, module.kernel_size
        return f"{c_in} * {c_out} * {kh * kw} + {c_out}", c_in * c_out * kh * kw + c_out
    if isinstance(module, nn.Linear):
        n_in, n_out = module.in_features, module.out_features
        return f"{n_in} * {n_out} + {n_out}", n_in * n_out + n_out
    return "no parameters", 0


def trace_shapes(model, side):
    print(f"{type(model).__name__}: a (1, 1, {side}, {side}) batch through the network")
    s = summary(model, (1, side, side))
    for row in s.rows[1:]:
        print(f"   {row.name:<8} {row.type:<10} -> {row.output_shape}")
    return s


def torch_shapes(torch_twin, side):
    """The output shape after each layer of the PyTorch twin (a Sequential), or None without torch."""
    if torch_twin is None:
        return None
    import torch

    x, shapes = torch.zeros(1, 1, side, side), []
    with torch.no_grad():
        for layer in torch_twin:
            x = layer(x)
            shapes.append(tuple(x.shape))
    return shapes


def parameters(model, hand, torch_twin):
    print(f"   parameters of {type(model).__name__}:")
    total = 0
    for name, module in model.named_children():
        text, count = formula(module)
        if count:
            print(f"   {name:<8} {module!r:<55} {text:<20} = {count:>6,}")
            assert count == hand[name] == module.num_parameters()
            total += count
    print(f"   {'total':<85} = {total:>6,}")
    assert total == sum(hand.values()) == model.num_parameters()
    if torch_twin is not None:
        theirs = sum(p.numel() for p in torch_twin.parameters())
        assert theirs == total
        print(f"check: hand arithmetic = convnp's count = PyTorch's count ({theirs:,}): OK")
    else:
        print("check: hand arithmetic = convnp's count: OK (PyTorch not installed)")
    return total


def torch_lenet(flat):
    try:
        import torch.nn as tnn
    except ImportError:
        return None
    return tnn.Sequential(tnn.Conv2d(1, 6, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5), tnn.ReLU(),
                          tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(flat, 120), tnn.ReLU(), tnn.Linear(120, 84),
                          tnn.ReLU(), tnn.Linear(84, 10))


def main():
    convnp.manual_seed(0)
    lenet = models.LeNet5()
    s = trace_shapes(lenet, 28)
    expected = [(1, 6, 24, 24), (1, 6, 24, 24), (1, 6, 12, 12), (1, 16, 8, 8), (1, 16, 8, 8), (1, 16, 4, 4),
                (1, 256), (1, 120), (1, 120), (1, 84), (1, 84), (1, 10)]
    assert [r.output_shape for r in s.rows[1:]] == expected
    theirs = torch_shapes(torch_lenet(256), 28)
    if theirs is not None:
        assert theirs == expected
        print("check: PyTorch's LeNet-5 gives the same shape after every layer: OK")
    out = lenet(convnp.tensor(np.zeros((1, 1, 28, 28), np.float32)))
    assert out.shape == (1, 10)
    total = parameters(lenet, HAND, torch_lenet(256))
    assert total == 44_426

    print()
    classic = models.LeNet5Classic()
    s = trace_shapes(classic, 32)
    shapes = [r.output_shape for r in s.rows[1:]]
    assert shapes[:7] == [(1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14), (1, 16, 10, 10), (1, 16, 10, 10),
                          (1, 16, 5, 5), (1, 400)]
    theirs = torch_shapes(torch_lenet(400), 32)
    if theirs is not None:
        assert theirs == shapes
        print("check: PyTorch's 32x32 LeNet-5 gives the same shape after every layer: OK")
    total_classic = parameters(classic, HAND_CLASSIC, torch_lenet(400))
    assert total_classic == 61_706
    print(f"\nThe 32x32 input adds (400 - 256) * 120 = {(400 - 256) * 120:,} weights to fc1: "
          f"{total:,} -> {total_classic:,}.")
    print("check: shapes and parameter counts match the hand derivation: OK")


if __name__ == "__main__":
    main()
