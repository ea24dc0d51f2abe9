"""One 3x3 convolution layer, convnp or PyTorch, forward and forward + backward (dx and dW):

    python benchmarks/conv_layer.py convnp 32 32 32 128     # library, C, F, side, batch [stride kernel]
    python benchmarks/conv_layer.py torch 32 32 32 128

Run the two libraries in separate processes, alternating (docs/performance.md, 2026-12-02): medians
of 7 after 2, 2 threads each, the achieved GFLOP/s of the layer's GEMM work.  Each library gets x and
dy in the memory layout its networks hand a layer: NCHW for PyTorch, batch-innermost (C, H, W, N) for
convnp, whose convolutions, pooling, batch norm and gradients all return it (an NCHW x would add a
layout copy to every call that no network pays).
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def median_ms(function, repeats=7):
    function()
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main(argv):
    library = argv[0]
    c, f, side, n = map(int, argv[1:5])
    stride = int(argv[5]) if len(argv) > 5 else 1
    k = int(argv[6]) if len(argv) > 6 else 3
    x = np.random.default_rng(0).random((n, c, side, side), dtype=np.float32)
    if library == "torch":
        import torch

        torch.set_num_threads(2)
        layer = torch.nn.Conv2d(c, f, k, stride, k // 2, bias=False)
        tensor, no_grad = torch.from_numpy(x).requires_grad_(True), torch.no_grad
    else:
        import convnp
        from convnp.ops.conv import batch_innermost  # the layout convnp's layers pass along

        convnp.set_num_threads(2)
        convnp.keep_freed_memory_for_reuse()
        layer = convnp.nn.Conv2d(c, f, k, stride, k // 2, bias=False)
        tensor, no_grad = convnp.Tensor(batch_innermost(x), requires_grad=True), convnp.no_grad
    dy = np.ones(layer(tensor).shape, np.float32)
    dy = torch.from_numpy(dy) if library == "torch" else batch_innermost(dy)

    def forward():
        with no_grad():
            layer(tensor)

    def forward_backward():
        layer.zero_grad()
        tensor.grad = None
        layer(tensor).backward(dy)

    macs = n * f * (side // stride) ** 2 * c * k * k
    fwd, both = median_ms(forward), median_ms(forward_backward)
    print(f"{library:6} C{c} F{f} side {side} batch {n} stride {stride} k{k}: forward {fwd:7.2f} ms "
          f"({2 * macs / fwd / 1e6:5.1f} GFLOP/s), forward+backward {both:7.2f} ms "
          f"({6 * macs / both / 1e6:5.1f} GFLOP/s)")


if __name__ == "__main__":
    main(sys.argv[1:])
