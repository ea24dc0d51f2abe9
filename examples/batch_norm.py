"""Batch normalisation: per-channel statistics of a batch before and after BatchNorm2d.

Run:  python examples/batch_norm.py

A (4, 6, 12, 12) batch whose channel c has mean about 2c - 5 and standard deviation about 0.5 + c goes
through BatchNorm2d(6) in training mode (weight 1, bias 0 at initialisation).  For each channel the
layer uses the batch's own mean and BIASED variance over N * H * W = 4 * 12 * 12 = 576 values:
    y = (x - mean_c) / sqrt(var_c + eps),  eps = 1e-5
so, by hand, every channel of y has mean 0 and standard deviation sqrt(var_c / (var_c + eps)) ~ 1.
It also updates the running statistics with momentum 0.1, using the UNBIASED variance (PyTorch's rule):
    running_mean = 0.9 * 0 + 0.1 * mean_c,   running_var = 0.9 * 1 + 0.1 * var_c * 576 / 575
"""
import sys
from pathlib import Path

import numpy as np

try:
    import convnp
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convnp
from convnp import nn


def main():
    rng = np.random.default_rng(0)
    c = np.arange(6)
    x = (rng.standard_normal((4, 6, 12, 12)) * (0.5 + c)[None, :, None, None]
         + (2 * c - 5)[None, :, None, None]).astype(np.float32)
    bn = nn.BatchNorm2d(6)
    bn.train()
    y = bn(convnp.tensor(x)).data

    mean_in, std_in = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    mean_out, std_out = y.mean(axis=(0, 2, 3)), y.std(axis=(0, 2, 3))
    print("channel   mean before   std before   ->   mean after   std after")
    for k in range(6):
        print(f"   {k}      {mean_in[k]:>9.4f}    {std_in[k]:>9.4f}    ->   {mean_out[k]:>10.2e}   {std_out[k]:>8.5f}")
    n = x.shape[0] * x.shape[2] * x.shape[3]
    print(f"values per channel: N * H * W = {n}")
    print(f"running_mean = 0.1 * batch mean        = {np.round(bn.running_mean, 4)}")
    print(f"running_var  = 0.9 + 0.1 * var * {n}/{n - 1} = {np.round(bn.running_var, 4)}")

    # By hand (docstring): mean 0, std sqrt(var / (var + eps)), running statistics from the batch's.
    var64 = x.astype(np.float64).var(axis=(0, 2, 3))
    assert np.allclose(mean_out, 0, atol=1e-5)
    assert np.allclose(std_out, np.sqrt(var64 / (var64 + 1e-5)), atol=1e-4)
    expected_y = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    assert np.allclose(y, expected_y, atol=1e-4)
    assert np.allclose(bn.running_mean, 0.1 * x.astype(np.float64).mean(axis=(0, 2, 3)), atol=1e-5)
    assert np.allclose(bn.running_var, 0.9 + 0.1 * var64 * n / (n - 1), atol=1e-4)
    print("check: every channel has mean 0 and std 1 after, and the running statistics follow the formulas: OK")

    try:
        import torch
    except ImportError:
        print("check against PyTorch: skipped (torch is not installed)")
        return
    twin = torch.nn.BatchNorm2d(6).train()
    theirs = twin(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, theirs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean, twin.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, twin.running_var.numpy(), rtol=1e-5, atol=1e-6)
    print("check: torch.nn.BatchNorm2d gives the same output and running statistics: OK")


if __name__ == "__main__":
    main()
