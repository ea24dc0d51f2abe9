"""A forward pass small enough to do by hand: convolution, ReLU, max pooling, a linear layer.

Run:  python examples/hand_forward_pass.py

Input: a 4x4 patch with a bright 2x2 blob in the middle; kernel: 3x3, rows [-0.6]*3, [1.1]*3, [-0.6]*3
(a horizontal-bar detector: rewards the middle row, penalises the rows above and below).
No padding, stride 1 -> a 2x2 map; ReLU; 2x2 max pool -> one number; Linear with W = [[1.5], [-1.2]]
(out = 2, in = 1) and b = [0.1, -0.3] -> two outputs.

By hand.  Each output is -0.6 * (sum of the window's top row) + 1.1 * (middle row) - 0.6 * (bottom row):
  y[0,0] = -0.6*(0.05+0.08+0.06) + 1.1*(0.12+0.92+0.88) - 0.6*(0.08+0.90+0.93)
         = -0.6*0.19 + 1.1*1.92 - 0.6*1.91 = -0.114 + 2.112 - 1.146 = 0.852
  y[0,1] = -0.6*(0.08+0.06+0.07) + 1.1*(0.92+0.88+0.09) - 0.6*(0.90+0.93+0.11)
         = -0.6*0.21 + 1.1*1.89 - 0.6*1.94 = -0.126 + 2.079 - 1.164 = 0.789
  y[1,0] = -0.6*(0.12+0.92+0.88) + 1.1*(0.08+0.90+0.93) - 0.6*(0.06+0.07+0.09)
         = -0.6*1.92 + 1.1*1.91 - 0.6*0.22 = -1.152 + 2.101 - 0.132 = 0.817
  y[1,1] = -0.6*(0.92+0.88+0.09) + 1.1*(0.90+0.93+0.11) - 0.6*(0.07+0.09+0.05)
         = -0.6*1.89 + 1.1*1.94 - 0.6*0.21 = -1.134 + 2.134 - 0.126 = 0.874
  ReLU: all four are positive, nothing changes.   Max pool: max(0.852, 0.789, 0.817, 0.874) = 0.874
  Linear: out[0] = 1.5 * 0.874 + 0.1 = 1.311 + 0.1 = 1.411
          out[1] = -1.2 * 0.874 - 0.3 = -1.0488 - 0.3 = -1.3488
"""
import sys
from pathlib import Path

import numpy as np

try:
    import convnp
except ImportError:  # running from a checkout without installing: use ../src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import convnp
from convnp import functional as F

PATCH = np.array([[0.05, 0.08, 0.06, 0.07],
                  [0.12, 0.92, 0.88, 0.09],
                  [0.08, 0.90, 0.93, 0.11],
                  [0.06, 0.07, 0.09, 0.05]])
KERNEL = np.array([[-0.6, -0.6, -0.6],
                   [1.1, 1.1, 1.1],
                   [-0.6, -0.6, -0.6]])
W = np.array([[1.5], [-1.2]])   # (out, in) = (2, 1), PyTorch's layout
B = np.array([0.1, -0.3])

# The values derived by hand in the docstring.
HAND_CONV = np.array([[0.852, 0.789], [0.817, 0.874]])
HAND_POOL = 0.874
HAND_OUT = np.array([1.411, -1.3488])


def main():
    # float64 so the printed digits are the exact decimal arithmetic (float32 would agree to ~1e-7)
    x = convnp.tensor(PATCH[None, None])
    conv = F.conv2d(x, KERNEL[None, None])
    relu = F.relu(conv)
    pool = F.max_pool2d(relu, 2)
    flat = F.flatten(pool, 1)              # (1, 1): one feature
    out = F.linear(flat, W, B)             # (1, 2)

    np.set_printoptions(precision=4, suppress=True)
    print(f"input patch (4x4):\n{PATCH}\nkernel (3x3):\n{KERNEL}")
    print(f"conv (no padding, stride 1) -> {conv.shape[2:]}:\n{conv.data[0, 0]}")
    print(f"ReLU:\n{relu.data[0, 0]}")
    print(f"2x2 max pool -> {pool.data[0, 0, 0, 0]:.4f}")
    print(f"linear, W = {W.ravel().tolist()} (shape {W.shape}), b = {B.tolist()} -> {out.data[0]}")

    print("\nThe first conv output, term by term (window = rows 0..2, columns 0..2):")
    terms = KERNEL * PATCH[:3, :3]
    for (i, j), t in np.ndenumerate(terms):
        print(f"   k[{i},{j}] * x[{i},{j}] = {KERNEL[i, j]:>5} * {PATCH[i, j]:.2f} = {t:>7.4f}")
    print(f"   sum = {terms.sum():.4f}   (computed by convnp: {conv.data[0, 0, 0, 0]:.4f})")
    print("The first final output: ReLU and max pool pass 0.874 (the largest map value) on, then")
    print(f"   out[0] = W[0,0] * 0.874 + b[0] = 1.5 * 0.874 + 0.1 = {1.5 * 0.874:.4f} + 0.1 = "
          f"{out.data[0, 0]:.4f}")

    assert np.allclose(conv.data[0, 0], HAND_CONV, atol=1e-12)
    assert np.allclose(terms.sum(), 0.852, atol=1e-12)
    assert np.allclose(relu.data, conv.data)             # nothing negative to clip
    assert np.isclose(pool.data.item(), HAND_POOL, atol=1e-12)
    assert np.allclose(out.data[0], HAND_OUT, atol=1e-12)
    print("check: every intermediate equals the hand computation: OK")

    try:
        import torch
    except ImportError:
        print("check against PyTorch: skipped (torch is not installed)")
        return
    t = torch.nn.functional
    y = t.conv2d(torch.from_numpy(PATCH)[None, None], torch.from_numpy(KERNEL)[None, None])
    y = t.linear(t.max_pool2d(t.relu(y), 2).flatten(1), torch.from_numpy(W), torch.from_numpy(B))
    assert np.allclose(y.numpy()[0], out.data[0], atol=1e-12)
    print(f"check: PyTorch computes the same outputs {y.numpy()[0]}: OK")


if __name__ == "__main__":
    main()
