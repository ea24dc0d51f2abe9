"""How well convnp's threads overlap NumPy calls of a given length, on this machine:

    python benchmarks/thread_overlap.py               # 2 threads
    python benchmarks/thread_overlap.py --threads 4

convnp's threads (``convnp.parallel``) run NumPy calls that release the GIL.  A call that returns
while another thread holds the GIL waits for it, and on some machines that hand-over costs tens of
microseconds (a virtual CPU that went idle must be woken).  So threads only pay off when each call
runs much longer than that: an op cut into many short calls can run slower on two threads than on
one.  For copies and GEMMs of growing size, this prints the time of one call on one thread and the
speed-up when every thread repeats the same call on arrays of its own (ideal: the thread count).
Medians of 5 rounds, one thread and all threads interleaved (docs/performance.md, 2026-12-03).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import convnp  # noqa: E402
from convnp.parallel import parallel_map  # noqa: E402

CALL_SECONDS = 0.05  # each thread's repetitions of a call last about this long


def copy_call(numbers):
    source = np.ones(numbers, dtype=np.float32)
    target = np.empty_like(source)
    return lambda: np.copyto(target, source)


def gemm_call(columns, filters=16, depth=144):  # a 16 -> 16 3x3 layer's tile product: (16, 144) @ (144, T)
    rng = np.random.default_rng(0)
    w = rng.random((filters, depth), dtype=np.float32)
    cols = rng.random((depth, columns), dtype=np.float32)
    out = np.empty((filters, columns), dtype=np.float32)
    return lambda: np.matmul(w, cols, out=out)


CALLS = [(f"copy {kb} KB", copy_call, kb * 256) for kb in (16, 64, 256, 1024, 4096)] + \
        [(f"GEMM 16x144 @ 144x{t}", gemm_call, t) for t in (64, 256, 1024, 4096)]


def measure(make, size, threads, rounds=5):
    """(microseconds a call on one thread, speed-up of ``threads`` threads each repeating it)."""
    calls = [make(size) for _ in range(threads)]  # arrays of each thread's own
    calls[0]()
    start = time.perf_counter()
    calls[0]()
    once = time.perf_counter() - start
    repeats = max(10, int(CALL_SECONDS / max(once, 1e-7)))

    def repeat(call):
        for _ in range(repeats):
            call()

    one, many = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        repeat(calls[0])
        one.append(time.perf_counter() - start)
        start = time.perf_counter()
        parallel_map(repeat, calls)  # one item a thread: every thread repeats its own call
        many.append(time.perf_counter() - start)
    one_s, many_s = float(np.median(one)), float(np.median(many))
    return one_s / repeats * 1e6, threads * one_s / many_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    convnp.set_num_threads(args.threads)  # convnp's threads, BLAS on one thread each
    convnp.keep_freed_memory_for_reuse()
    print(f"{args.threads} threads; speed-up of {args.threads} threads each repeating the call (ideal {args.threads})")
    print(f"{'call':24} {'us a call':>10} {'speed-up':>9}")
    for name, make, size in CALLS:
        micros, speedup = measure(make, size, args.threads)
        print(f"{name:24} {micros:10.1f} {speedup:9.2f}")


if __name__ == "__main__":
    main()
