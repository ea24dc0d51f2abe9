"""Depthwise-separable versus standard convolution (the MobileNet trick): parameters and FLOPs.

Run:  python examples/depthwise_separable.py

A standard k x k convolution from C_in to C_out channels has C_in * C_out * k^2 weights.  The
depthwise-separable version splits it in two:
    depthwise  Conv2d(C_in, C_in, k, groups=C_in): one k x k filter per channel  ->  C_in * k^2
    pointwise  Conv2d(C_in, C_out, 1): mixes the channels                        ->  C_in * C_out
so (biases left out, as in the MobileNet paper)
    separable / standard = (C_in k^2 + C_in C_out) / (C_in C_out k^2) = 1 / C_out + 1 / k^2.
Both apply their weights once per output pixel, so the mult-adds (MACs) on an H x W map, and the
FLOPs = 2 x MACs, shrink by the same ratio.  E.g. C_in = 32, C_out = 64, k = 3:
    standard 32 * 64 * 9 = 18,432 weights; separable 32 * 9 + 32 * 64 = 2,336; ratio 1/64 + 1/9 = 0.1267.
"""
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

try:
    import convnp
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convnp
from convnp import nn
from convnp.inspect import summary

SIDE = 14  # the H x W of the feature map (a MobileNet-like middle stage)
CASES = [(3, 16, 3), (32, 64, 3), (64, 128, 3), (128, 128, 5), (256, 512, 3), (512, 512, 7)]


def standard(c_in, c_out, k):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False))


def separable(c_in, c_out, k):
    return nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False))


def main():
    convnp.manual_seed(0)
    try:
        import torch
    except ImportError:
        torch = None
    try:
        import torchinfo
    except ImportError:
        torchinfo = None
    print(f"feature map {SIDE}x{SIDE}, 'same' padding, no biases")
    print(f"{'C_in':>5} {'C_out':>5} {'k':>2}  {'standard params':>15} {'separable':>10}  {'standard FLOPs':>15} "
          f"{'separable':>12}  {'ratio':>7}  {'1/C_out + 1/k^2':>15}")
    for c_in, c_out, k in CASES:
        std, sep = standard(c_in, c_out, k), separable(c_in, c_out, k)
        s_std, s_sep = summary(std, (c_in, SIDE, SIDE)), summary(sep, (c_in, SIDE, SIDE))
        formula = Fraction(1, c_out) + Fraction(1, k * k)
        ratio = Fraction(s_sep.total_params, s_std.total_params)
        print(f"{c_in:>5} {c_out:>5} {k:>2}  {s_std.total_params:>15,} {s_sep.total_params:>10,}  "
              f"{s_std.flops:>15,} {s_sep.flops:>12,}  {float(ratio):>7.4f}  {float(formula):>15.4f}")
        # by hand
        assert s_std.total_params == c_in * c_out * k * k
        assert s_sep.total_params == c_in * k * k + c_in * c_out
        assert ratio == formula and Fraction(s_sep.flops, s_std.flops) == formula
        assert s_std.flops == 2 * c_in * c_out * k * k * SIDE * SIDE
        # the same output shape
        x = convnp.tensor(np.zeros((1, c_in, SIDE, SIDE), np.float32))
        with convnp.no_grad():
            assert std(x).shape == sep(x).shape == (1, c_out, SIDE, SIDE)
        if torch is not None:
            t_std = torch.nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
            t_sep = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),
                                        torch.nn.Conv2d(c_in, c_out, 1, bias=False))
            count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
            assert (count(t_std), count(t_sep)) == (s_std.total_params, s_sep.total_params)
            xt = torch.zeros(1, c_in, SIDE, SIDE)
            assert t_std(xt).shape == t_sep(xt).shape == (1, c_out, SIDE, SIDE)
            if torchinfo is not None:
                for ours, twin in ((s_std, t_std), (s_sep, t_sep)):
                    assert torchinfo.summary(twin, input_size=(1, c_in, SIDE, SIDE),
                                             verbose=0).total_mult_adds == ours.total_mult_adds
    print("check: counts equal C_in*C_out*k^2 and C_in*k^2 + C_in*C_out, the ratio is exactly 1/C_out + 1/k^2, "
          "and both versions give the same output shape: OK")
    if torch is not None:
        print("check: PyTorch's layers have the same parameter counts and output shapes: OK")
        if torchinfo is not None:
            print("check: torchinfo counts the same mult-adds for both versions: OK")
    else:
        print("check against PyTorch: skipped (torch is not installed)")
    print("The saving is dominated by 1/k^2 once C_out is large: about 9x for 3x3 kernels, 25x for 5x5.")


if __name__ == "__main__":
    main()
