"""How fast NumPy copies rows of 16 KB (memmove, as the row-window copy of a convolution at batch 128
does) as a function of how far the destination lies past the source modulo 4 KB (docs/performance.md,
2026-12-03, third session):

    python benchmarks/copy_distance.py

On AMD Zen 3 with glibc 2.36, destinations 4 to 28 bytes past their source copy at about a tenth
of the speed (``rep movsb``); ``GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=100000000`` makes
glibc copy with vector loads instead and the dip goes away.  One thread, medians of 7 after a 0.05 s warm-up.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import convnp  # noqa: E402
from convnp.bench import median_time  # noqa: E402

PAGE = 4096


def memmove_rates(row_bytes=16384, rows=256, distances=(0, 4, 16, 28, 32, 64, 2048, -16)):
    """GB/s of ``dst[...] = src`` for rows of ``row_bytes``, rows 2 row_bytes apart in both."""
    pool = np.zeros(4 * rows * row_bytes + 3 * PAGE, np.uint8)
    base = (-pool.ctypes.data) % PAGE
    src = pool[base:base + 2 * rows * row_bytes].reshape(rows, -1)[:, :row_bytes]
    rates = {}
    for distance in distances:
        start = base + 2 * rows * row_bytes + PAGE + distance
        dst = pool[start:start + 2 * rows * row_bytes].reshape(rows, -1)[:, :row_bytes]
        seconds = median_time(lambda dst=dst: dst.__setitem__(Ellipsis, src), 7, warmup=0.05)
        rates[distance] = rows * row_bytes / seconds / 1e9
    return rates


def main():
    convnp.keep_freed_memory_for_reuse()
    with convnp.num_threads(1, blas=1):
        rates = memmove_rates()
        print("memmove of 16 KB rows, GB/s by bytes past the source (mod 4 KB): "
              + ", ".join(f"{d}: {r:.1f}" for d, r in rates.items()))


if __name__ == "__main__":
    main()
