"""Shape arithmetic of convolution and pooling.

    H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1        (k kernel, p padding, s stride, d dilation)

Run:  python examples/shape_arithmetic.py

By hand (the truths the program checks):
* 3 channels of 16x16, 8 filters of 3x3 (each filter is 3x3x3: it spans all input channels):
  H_out = (16 - 3) / 1 + 1 = 14  ->  (8, 14, 14);  parameters 8 * 3 * 3 * 3 + 8 = 224.
* 3 channels of 8x8, 2 filters of 3x3, padding 1: (8 + 2 - 3) / 1 + 1 = 8  ->  (2, 8, 8) ("same").
* 2x2 max pooling, stride 2, halves each side: (8, 14, 14) -> (8, 7, 7); then 7 -> (7 - 2) / 2 + 1 = 3.5,
  floored to 3: the last row and column are never pooled.
* When (H + 2p - d(k-1) - 1) / s is not a whole number, the floor keeps only the windows that fit
  entirely: e.g. H = 6, k = 3, s = 2: (6 - 3) / 2 = 1.5 -> 1, so H_out = 2 and column 5 is ignored.
  PyTorch does the same (floor) for convolution and pooling; its pooling layers also offer
  ceil_mode=True, which adds a last, partial window (H_out = 3 here) -- convnp keeps the floor only.
"""
import math
import sys
from pathlib import Path

import numpy as np

try:
    import convnp
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convnp
from convnp import functional as F, nn

try:
    import torch
except ImportError:
    torch = None


def output_size(h, k, p=0, s=1, d=1):
    """The formula, written out: floor((H + 2p - d(k - 1) - 1) / s) + 1."""
    return math.floor((h + 2 * p - d * (k - 1) - 1) / s) + 1


def main():
    convnp.manual_seed(0)
    rng = np.random.default_rng(0)

    print("1. Multi-channel convolution")
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    conv = nn.Conv2d(3, 8, 3)
    y = conv(convnp.tensor(x))
    params = conv.num_parameters()
    print(f"   input (3, 16, 16), Conv2d(3, 8, 3): weight {conv.weight.shape}, output {y.shape[1:]}, "
          f"{params} parameters = 8*3*3*3 + 8")
    assert y.shape[1:] == (8, 14, 14) and params == 8 * 3 * 3 * 3 + 8 == 224

    x2 = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    conv2 = nn.Conv2d(3, 2, 3, padding=1)
    y2 = conv2(convnp.tensor(x2))
    print(f"   input (3, 8, 8), Conv2d(3, 2, 3, padding=1): output {y2.shape[1:]} (padding 1 keeps 8x8)")
    assert y2.shape[1:] == (2, 8, 8)

    print("2. Pooling")
    pooled = F.max_pool2d(y, 2)
    pooled_again = F.max_pool2d(pooled, 2)
    print(f"   (8, 14, 14) -> MaxPool2d(2) -> {pooled.shape[1:]} -> MaxPool2d(2) -> {pooled_again.shape[1:]} "
          f"(7/2 = 3.5, floored)")
    assert pooled.shape[1:] == (8, 7, 7) and pooled_again.shape[1:] == (8, 3, 3)

    print("3. The output-size formula, checked against convnp and PyTorch")
    cases = [  # (H, k, p, s, d), chosen so several do not divide evenly
        (28, 5, 0, 1, 1), (16, 3, 0, 1, 1), (8, 3, 1, 1, 1), (32, 3, 1, 2, 1), (7, 3, 0, 2, 1),
        (6, 3, 0, 2, 1), (224, 7, 3, 2, 1), (10, 3, 0, 3, 1), (15, 3, 2, 1, 2), (5, 2, 0, 2, 1),
    ]
    print(f"   {'H':>4} {'k':>2} {'p':>2} {'s':>2} {'d':>2}   (H+2p-d(k-1)-1)/s + 1   H_out  convnp  torch")
    for h, k, p, s, d in cases:
        exact = (h + 2 * p - d * (k - 1) - 1) / s + 1
        expected = output_size(h, k, p, s, d)
        ours = F.conv2d(np.zeros((1, 1, h, h), np.float32), np.zeros((1, 1, k, k), np.float32),
                        stride=s, padding=p, dilation=d).shape[2]
        theirs = "--"
        if torch is not None:
            theirs = torch.nn.functional.conv2d(torch.zeros(1, 1, h, h), torch.zeros(1, 1, k, k), stride=s,
                                                padding=p, dilation=d).shape[2]
            assert theirs == expected
        note = "" if exact == int(exact) else "  <- not whole: floor"
        print(f"   {h:>4} {k:>2} {p:>2} {s:>2} {d:>2}   {exact:>21g}   {expected:>5}  {ours:>6}  {theirs:>5}{note}")
        assert ours == expected
    print("check: the formula, convnp's conv2d" + (" and torch's conv2d" if torch is not None else "") +
          " agree on every case: OK")

    print("4. A size that does not divide: H = 6, k = 3, s = 2")
    x6 = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    ours = F.max_pool2d(x6, 3, stride=2).data[0, 0]
    print("   (6 - 3)/2 + 1 = 2.5 -> floor -> 2: windows start at columns 0 and 2; column 5 is never used.")
    print(f"   convnp max_pool2d(k=3, s=2) on arange(36) as 6x6 ->\n{ours}")
    assert ours.shape == (2, 2) and np.array_equal(ours, [[14, 16], [26, 28]])  # window maxima by hand
    if torch is not None:
        floor = torch.nn.functional.max_pool2d(torch.from_numpy(x6), 3, stride=2)[0, 0].numpy()
        ceil = torch.nn.functional.max_pool2d(torch.from_numpy(x6), 3, stride=2, ceil_mode=True)[0, 0].numpy()
        assert np.array_equal(ours, floor)
        print(f"   PyTorch (default floor) gives the same {floor.shape}; with ceil_mode=True it adds a partial "
              f"last window: {ceil.shape}\n{ceil}")
        assert ceil.shape == (3, 3)
        print("check: convnp's floor behaviour equals PyTorch's default: OK")
    else:
        print("check against PyTorch: skipped (torch is not installed)")


if __name__ == "__main__":
    main()
