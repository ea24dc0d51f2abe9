"""How fast this machine's BLAS multiplies the convolution's GEMM tiles, one thread, by tile width:

    python benchmarks/gemm_tiles.py                      # the shapes of the VGG-style and ResNet-20 layers
    python benchmarks/gemm_tiles.py 16x144 32x288        # F x K: filters x window numbers (C*kh*kw)

For each shape F x K and each tile width T (GEMM columns), the three products of ``ops/conv.py``,
over a chunk of about 2^20 window numbers cut into tiles of T columns (one batched matmul, as the
convolution calls it), best of 15 rounds taking turns:

    forward   (F, K) @ (K, T)     y = w @ windows          (and the input gradient by convolution)
    dweight   (K, T) @ (T, F)     dW += windows @ dy^T     (dy^T a transposed view)
    dcols     (K, F) @ (F, T)     col2im's columns = w^T @ dy

Each row prints GFLOP/s per tile width and M*N*K of the product in millions: where OpenBLAS has
small-matrix kernels (its SkylakeX kernel set, on AVX-512 CPUs) the forward products of <= 1M
multiply-adds run up to 1.5x faster than the packed ones (docs/performance.md, 2026-12-02); this is
what ``conv.choose_tile_columns`` sizes its tiles for.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from convnp import parallel  # noqa: E402

WIDTHS = (64, 128, 256, 512, 1024, 4096)
SHAPES = ("16x144", "32x144", "32x288", "64x288", "64x576", "128x576", "128x1152")


def products(f, k, width, total, rng):
    """The three tiled products of an (F, K) layer over ``total`` columns, as functions."""
    w = rng.random((f, k), dtype=np.float32)
    windows = rng.random((k, total), dtype=np.float32)
    dy = rng.random((f, total), dtype=np.float32)
    y = np.empty((f, total), np.float32)
    window_tiles = windows.reshape(k, total // width, width).transpose(1, 0, 2)  # (tiles, K, T)
    y_tiles = y.reshape(f, total // width, width).transpose(1, 0, 2)
    dy_tiles = dy.reshape(f, total // width, width).transpose(1, 0, 2)  # (tiles, F, T)
    w_t = np.ascontiguousarray(w.T)
    return {"forward": lambda: np.matmul(w, window_tiles, out=y_tiles),
            "dweight": lambda: np.matmul(window_tiles, dy_tiles.transpose(0, 2, 1)),
            "dcols": lambda: np.matmul(w_t, dy_tiles)}


def main(argv):
    shapes = [tuple(int(v) for v in shape.split("x")) for shape in (argv or SHAPES)]
    rng = np.random.default_rng(0)
    print(f"BLAS kernels: {parallel._blas.architectures() or 'unknown (no threadpoolctl)'}; one thread; GFLOP/s "
          f"by tile width (M*N*K in millions)")
    with parallel.num_threads(1, blas=1):
        for f, k in shapes:
            total = max(4096, (2 ** 20 // k) // 4096 * 4096)
            runs = {width: products(f, k, width, total, rng) for width in WIDTHS}
            best = {(form, width): float("inf") for width in WIDTHS for form in runs[width]}
            for _ in range(15):
                for width, forms in runs.items():
                    for form, product in forms.items():
                        start = time.perf_counter()
                        product()
                        best[form, width] = min(best[form, width], time.perf_counter() - start)
            for form in ("forward", "dweight", "dcols"):
                cells = [f"{width}: {2 * f * k * total / best[form, width] / 1e9:4.0f} ({f * k * width / 1e6:.2f}M)"
                         for width in WIDTHS]
                print(f"{form:8} {f:4} x {k:<5} " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
