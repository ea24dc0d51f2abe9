"""Threads for the work between the matrix multiplies.

OpenBLAS already runs every GEMM on all cores.  The rest of a CNN's time goes to copies and
elementwise passes (im2col, col2im, pooling, ReLU, batch norm) that NumPy runs on one core.  NumPy
releases the GIL inside those loops, so one operation applied to separate slices of the channels
runs truly in parallel on Python threads, and in convnp's batch-innermost layout each channel's
numbers are one contiguous block.  ``over_slices(function, count, numbers)`` does that split; an op
calls it only with work big enough to pay for the hand-off (tens of microseconds per thread).

The thread count is ``CONVNP_NUM_THREADS`` if set, else the number of CPUs this process may use;
``set_num_threads(1)`` makes everything run on the calling thread.
"""
import os
from concurrent.futures import ThreadPoolExecutor

# Below this many numbers per thread, splitting costs more than it saves.
MIN_NUMBERS_PER_THREAD = 1 << 16

_threads = None
_pool = None


def default_num_threads():
    if os.environ.get("CONVNP_NUM_THREADS"):
        return max(1, int(os.environ["CONVNP_NUM_THREADS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def num_threads():
    global _threads
    if _threads is None:
        _threads = default_num_threads()
    return _threads


def set_num_threads(count):
    """Use ``count`` threads for convnp's own parallel loops (GEMM threads are OpenBLAS's business)."""
    global _threads, _pool
    if count < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {count}")
    _threads = int(count)
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def over_slices(function, count, numbers):
    """Call ``function(start, stop)`` for contiguous slices covering range(count), at the same time on up
    to num_threads() threads (the calling thread takes the first slice).  ``numbers`` is the total
    work, in array elements; small work runs as one call.  Slices must not write to shared elements."""
    global _pool
    parts = min(num_threads(), count, max(1, numbers // MIN_NUMBERS_PER_THREAD))
    if parts <= 1:
        function(0, count)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=num_threads() - 1, thread_name_prefix="convnp")
    bounds = [count * i // parts for i in range(parts + 1)]
    futures = [_pool.submit(function, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    function(bounds[0], bounds[1])
    for future in futures:
        future.result()  # re-raises any exception from a worker
