"""convnp's own threads: how one op uses several CPU cores while staying pure NumPy.

NumPy releases the GIL inside its loops and inside BLAS, so plain Python threads that each run a big
array operation really do run at the same time, on different cores.  The heavy ops split their work
into independent pieces and hand them to ``parallel_map``:

    convolution   chunks of output rows (each: one im2col copy + one batched matmul); in backward,
                  the input gradient of channel parts and the weight gradient of row chunks
    pooling, batch norm, ReLU    channel slices or halves of memory, for big arrays only

What decides whether threads pay off is not the size of the work but the number of NumPy calls in
it.  Every call must take the GIL back when it returns; when the other thread holds it, the caller
sleeps and is woken later, and on a small virtual machine a wake-up costs ~50 us (measured: a round
trip to a worker thread, 60 us).  So two threads that each make many short calls are slower than one
(measured: 2 x 600 additions of 64k numbers, 7.2 ms on one thread, 7.4 ms on two), and two threads
that each make a few long calls are ~2x faster (a LeNet-5 conv layer chunked into one copy and one
batched matmul per thread: 0.83 -> 0.45 ms).  The ops are written for that: their pieces are few
long calls, and work too small to pay for a hand-off (MIN_NUMBERS, STREAM_NUMBERS) stays on the
calling thread.  Threads take the next piece as they become free, so a thread that wakes late does
less and the caller never waits for a thread that has nothing to do.

Why not leave the second core to OpenBLAS's own threads, as NumPy does by default?  Because most of a
CNN step is not matrix multiplication: im2col, col2im, pooling and batch norm would run on one core
while OpenBLAS threads only help inside the GEMMs, and between GEMMs those threads busy-wait for the
next one, taking the core from everything else.  So while convnp's threads are on, NumPy's OpenBLAS
is set to ONE thread and convnp splits its GEMMs itself.  ``set_num_threads(1)`` turns convnp's
threads off and gives OpenBLAS back its own thread count.

The number of threads comes from ``set_num_threads``, else the environment (CONVNP_NUM_THREADS, then
OMP_NUM_THREADS), else the number of CPUs this process may use.
"""
import ctypes
import itertools
import os
import queue
import threading

import numpy as np

# Work smaller than this many array elements (per piece) runs on the calling thread.  MIN_NUMBERS is
# for work with a matrix multiply in it (convolution chunks); STREAM_NUMBERS for memory-bound passes
# that do little arithmetic per number (pooling, ReLU): measured on a 2-core machine, max pooling
# and ReLU gained nothing from two threads below ~2M numbers (LeNet-5's conv1 output at batch 512,
# 1.8M) and 1.4-2x from 2M up (a small VGG's 4M).
MIN_NUMBERS = 1 << 18
STREAM_NUMBERS = 1 << 20


def _threads_from_environment():
    for name in ("CONVNP_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_threads = _threads_from_environment()
_workers = []  # started on first use
_tasks = queue.SimpleQueue()
_inside_worker = threading.local()
_lock = threading.Lock()


def get_num_threads():
    """How many threads convnp's ops use."""
    return _threads


def set_num_threads(count):
    """Use ``count`` threads in convnp's ops (like ``torch.set_num_threads``).  With more than one,
    NumPy's OpenBLAS runs single-threaded (see the module docstring); ``set_num_threads(1)`` restores
    OpenBLAS's own thread count."""
    global _threads
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected an int >= 1, got {count!r}")
    _threads = count
    if count == 1:
        _blas.restore()


def split(length, pieces):
    """Split range(length) into at most ``pieces`` contiguous, nearly equal slices (none empty)."""
    pieces = max(1, min(pieces, length))
    if pieces == 1:
        return [slice(0, length)]
    bounds = [length * i // pieces for i in range(pieces + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(pieces)]


def pieces_for(numbers, length, smallest=None, streaming=False):
    """How many pieces to cut work of ``numbers`` array elements into, along an axis of ``length``:
    one per thread, but none smaller than ``smallest`` (default MIN_NUMBERS, or STREAM_NUMBERS for
    ``streaming`` work)."""
    smallest = smallest or (STREAM_NUMBERS if streaming else MIN_NUMBERS)
    return max(1, min(_threads, length, numbers // smallest))


def parallel_map(function, items):
    """``[function(item) for item in items]``, with the items shared out among convnp's threads.

    Every thread, the calling one included, takes the next item that nobody has taken until none
    are left: a thread that is late to wake up, or draws quick items, simply runs fewer, and the
    caller never waits for a thread that has nothing left to do.  ``function`` must only write to
    memory that no other item writes.  An exception in any item is raised here, after every item
    has finished.
    """
    items = list(items)
    if len(items) < 2 or _threads < 2 or getattr(_inside_worker, "active", False):
        return [function(item) for item in items]
    _start()
    job = _Job(function, items)
    for _ in range(min(_threads - 1, len(items) - 1)):
        _tasks.put(job)
    _run(job)
    job.all_finished.get()  # put by whichever thread finishes the last item
    if job.errors:
        raise job.errors[0]
    return job.results


class _Job:
    """One ``parallel_map`` call: its items, their results, and two counters.  ``next()`` on an
    itertools.count is atomic in CPython, so no two threads take the same item."""

    def __init__(self, function, items):
        self.function, self.items = function, items
        self.results = [None] * len(items)
        self.errors = []
        self.taken = itertools.count()  # the index of the next item to take
        self.finished = itertools.count(1)  # how many items have finished, after next()
        self.all_finished = queue.SimpleQueue()


def _run(job):
    """Take and run ``job``'s items until none are left."""
    count = len(job.items)
    while True:
        index = next(job.taken)
        if index >= count:
            return
        try:
            job.results[index] = job.function(job.items[index])
        except BaseException as error:  # handed to the caller of parallel_map
            job.errors.append(error)
        if next(job.finished) == count:
            job.all_finished.put(None)


def _worker():
    _inside_worker.active = True
    while True:
        _run(_tasks.get())


def _start():
    """Start the worker threads this thread count needs, and make OpenBLAS single-threaded."""
    if len(_workers) >= _threads - 1 and _blas.settled:
        return
    with _lock:
        _blas.use_one_thread()
        while len(_workers) < _threads - 1:
            thread = threading.Thread(target=_worker, name=f"convnp-{len(_workers) + 1}", daemon=True)
            thread.start()
            _workers.append(thread)


class _OpenBLAS:
    """Set the thread count of the OpenBLAS that NumPy loaded, through its C API (what threadpoolctl
    does).  Does nothing when NumPy uses another BLAS (MKL, Accelerate) or none is found."""

    SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
    GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")

    def __init__(self):
        self.searched = False
        self.library = None
        self.original = None  # OpenBLAS's thread count before convnp set it to one

    @property
    def settled(self):
        """True once OpenBLAS runs on one thread for convnp, or when there is no OpenBLAS to set."""
        return self.searched and (self.library is None or self.original is not None)

    def find(self):
        if self.searched:
            return self.library
        self.searched = True
        np.ones((2, 2)) @ np.ones((2, 2))  # make sure BLAS is loaded
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
        except OSError:
            paths = set()
        for path in sorted(paths):
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(library, name) for name in self.SETTERS if hasattr(library, name)), None)
            getter = next((getattr(library, name) for name in self.GETTERS if hasattr(library, name)), None)
            if setter is not None and getter is not None:
                setter.argtypes, getter.restype = (ctypes.c_int,), ctypes.c_int
                self.library = (setter, getter)
                break
        return self.library

    def threads(self):
        """OpenBLAS's current thread count, or None when there is no OpenBLAS."""
        library = self.find()
        return library[1]() if library else None

    def use_one_thread(self):
        library = self.find()
        if library:
            if self.original is None:
                self.original = library[1]()
            library[0](1)

    def restore(self):
        if self.library and self.original is not None:
            self.library[0](self.original)
            self.original = None


_blas = _OpenBLAS()


WHOLE = [Ellipsis]  # the one part of an array that is not split: array[...]


def outer_parts(array):
    """Index tuples that cut ``array`` into one part per thread along the axis that is outermost in its
    memory (the channels of a convolution's batch-innermost output, the batch of an NCHW array), so
    each part is one contiguous stretch of memory.  A single part (the whole array) when it is small
    (below 2 * STREAM_NUMBERS: these parts feed memory-bound elementwise passes)."""
    if _threads < 2 or array.size < 2 * STREAM_NUMBERS:
        return WHOLE
    axis = max(range(array.ndim), key=lambda a: array.strides[a])
    parts = split(array.shape[axis], pieces_for(array.size, array.shape[axis], streaming=True))
    return [(slice(None),) * axis + (part,) for part in parts]
