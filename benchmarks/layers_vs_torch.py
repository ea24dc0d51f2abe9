"""ResNet-20's layer shapes, forward + backward, convnp against PyTorch in ONE process, taking turns
(docs/performance.md, 2026-12-03, third session):

    python benchmarks/layers_vs_torch.py --threads 1 --turns 5
    python benchmarks/layers_vs_torch.py --threads 2
    python benchmarks/layers_vs_torch.py --network vgg      # the VGG-style network's shapes

Separate processes (``conv_layer.py``) see the machine at different minutes; here each turn runs
every shape in both libraries, in alternating order, so the drift falls on both.  A 20 ms pause
before each timing lets the other library's OpenMP threads stop spinning (it also costs both a cold
start, and convnp's worker thread must be woken: the numbers are above a network's, where layers run
back to back, most for short ops such as batch norm at 32-64 channels on two threads).  Each library
gets its own layout: NCHW for PyTorch, batch-innermost for convnp (as their networks hand a layer).
Batch norm is convnp's fused op (``batch_norm_relu``, with the residual where a block ends) against
PyTorch's BatchNorm2d, add and ReLU.  The line gives both medians (ms) and the median per-turn ratio
convnp / PyTorch with its range.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import convnp  # noqa: E402
from convnp.ops.conv import batch_innermost  # noqa: E402

BATCH = 128
CONVOLUTIONS = (  # name, C, F, side, stride, kernel: ResNet-20's shapes (bench.torch_resnet20)
    ("3 -> 16 at 32x32", 3, 16, 32, 1, 3),
    ("16 -> 16 at 32x32", 16, 16, 32, 1, 3),
    ("16 -> 32 stride 2", 16, 32, 32, 2, 3),
    ("16 -> 32 1x1 stride 2", 16, 32, 32, 2, 1),
    ("32 -> 32 at 16x16", 32, 32, 16, 1, 3),
    ("32 -> 64 stride 2", 32, 64, 16, 2, 3),
    ("64 -> 64 at 8x8", 64, 64, 8, 1, 3),
)
BATCH_NORMS = ((16, 32), (32, 16), (64, 8))  # channels, side
VGG_CONVOLUTIONS = (  # --network vgg: the VGG-style network's shapes (bench.torch_vgg)
    ("3 -> 32 at 32x32", 3, 32, 32, 1, 3),
    ("32 -> 32 at 32x32", 32, 32, 32, 1, 3),
    ("32 -> 64 at 16x16", 32, 64, 16, 1, 3),
    ("64 -> 64 at 16x16", 64, 64, 16, 1, 3),
    ("64 -> 128 at 8x8", 64, 128, 8, 1, 3),
    ("128 -> 128 at 8x8", 128, 128, 8, 1, 3),
)
VGG_BATCH_NORMS = ((32, 32), (64, 16), (128, 8))


def convolution_pair(torch, c, f, side, stride, k):
    """(torch step, convnp step): one layer's forward and backward (dx unless the input is the image)."""
    x = np.random.default_rng(0).random((BATCH, c, side, side), dtype=np.float32)
    needs_dx = c != 3
    torch_layer = torch.nn.Conv2d(c, f, k, stride, k // 2, bias=False)
    torch_x = torch.from_numpy(x).requires_grad_(needs_dx)
    layer = convnp.nn.Conv2d(c, f, k, stride, k // 2, bias=False)
    convnp_x = convnp.Tensor(batch_innermost(x), requires_grad=needs_dx)
    dy = np.ones(layer(convnp_x).shape, np.float32)
    torch_dy, convnp_dy = torch.from_numpy(dy), batch_innermost(dy)

    def torch_step():
        torch_layer.zero_grad()
        torch_x.grad = None
        torch_layer(torch_x).backward(torch_dy)

    def convnp_step():
        layer.zero_grad()
        convnp_x.grad = None
        layer(convnp_x).backward(convnp_dy)
    return torch_step, convnp_step


def batch_norm_pair(torch, c, side, residual):
    """(torch step, convnp step): batch norm + ReLU (+ the residual add), training, forward and backward."""
    rng = np.random.default_rng(0)
    x, r = (rng.random((BATCH, c, side, side), dtype=np.float32) for _ in range(2))
    torch_norm, norm = torch.nn.BatchNorm2d(c), convnp.nn.BatchNorm2d(c)
    torch_x, torch_r = (torch.from_numpy(a).requires_grad_(True) for a in (x, r))
    convnp_x, convnp_r = (convnp.Tensor(batch_innermost(a), requires_grad=True) for a in (x, r))
    torch_dy, convnp_dy = torch.ones_like(torch_x), batch_innermost(np.ones_like(x))

    def torch_step():
        torch_x.grad = torch_r.grad = None
        y = torch_norm(torch_x)
        torch.relu(y + torch_r if residual else y).backward(torch_dy)

    def convnp_step():
        convnp_x.grad = convnp_r.grad = None
        convnp.functional.batch_norm_relu(convnp_x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                          True, residual=convnp_r if residual else None).backward(convnp_dy)
    return torch_step, convnp_step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--network", choices=("resnet", "vgg"), default="resnet", help="whose layer shapes")
    args = parser.parse_args(argv)
    convolutions, batch_norms = (CONVOLUTIONS, BATCH_NORMS) if args.network == "resnet" else (
        VGG_CONVOLUTIONS, VGG_BATCH_NORMS)
    import torch

    torch.set_num_threads(args.threads)
    convnp.keep_freed_memory_for_reuse()
    with convnp.num_threads(args.threads, blas=1 if args.threads == 1 else None):
        cases = [(name, convolution_pair(torch, *shape)) for name, *shape in convolutions]
        cases += [(f"batch norm + ReLU{' + add' if residual else ''}, {c} channels",
                   batch_norm_pair(torch, c, side, residual)) for c, side in batch_norms
                  for residual in ((False, True) if args.network == "resnet" else (False,))]
        times = {name: ([], []) for name, _ in cases}
        for _, steps in cases:
            for step in steps:
                step()
        for turn in range(args.turns):
            for name, steps in cases:
                for library in ((0, 1) if turn % 2 == 0 else (1, 0)):
                    time.sleep(0.02)
                    start = time.perf_counter()
                    steps[library]()
                    steps[library]()
                    times[name][library].append((time.perf_counter() - start) / 2 * 1e3)
    print(f"{args.threads} thread(s), {args.turns} turns, batch {BATCH}: forward + backward, ms")
    for name, (torch_ms, convnp_ms) in times.items():
        ratios = sorted(b / a for a, b in zip(torch_ms, convnp_ms))
        print(f"{name:38s} PyTorch {np.median(torch_ms):7.2f}  convnp {np.median(convnp_ms):7.2f}  "
              f"convnp / PyTorch {np.median(ratios):.3f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]")


if __name__ == "__main__":
    main()
