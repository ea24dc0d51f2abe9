"""convnp's own threads: how one op uses several CPU cores while staying pure NumPy.

NumPy releases the GIL inside its loops and inside BLAS, so plain Python threads that each run a big
array operation really do run at the same time, on different cores.  The heavy ops split their work
into independent pieces and hand them to ``parallel_map``:

    convolution   chunks of output rows (each: one im2col copy + one batched matmul); in backward,
                  the input gradient of channel parts and the weight gradient of row chunks
    pooling, batch norm, ReLU    channel slices or halves of memory, for big arrays only

What decides whether threads pay off is not the size of the work but the number of NumPy calls in
it.  Every call must take the GIL back when it returns; when the other thread holds it, the caller
sleeps and is woken later, and on a small virtual machine a wake-up costs tens of microseconds.  So
two threads that each make many short calls are slower than one, and two threads that each make a
few long calls are up to 2x faster (docs/performance.md).  The ops are written for that: their pieces are few
long calls, and work too small to pay for a hand-off (MIN_NUMBERS, STREAM_NUMBERS) stays on the
calling thread.  Threads take the next piece as they become free, so a thread that wakes late does
less and the caller never waits for a thread that has nothing to do.

Why not leave the second core to OpenBLAS's own threads, as NumPy does by default?  Because most of a
CNN step is not matrix multiplication: im2col, col2im, pooling and batch norm would run on one core
while OpenBLAS threads only help inside the GEMMs, and between GEMMs those threads busy-wait for the
next one, taking the core from everything else.  So while convnp's threads work, BLAS runs on ONE
thread and convnp splits its GEMMs itself.

Process-wide state is explicit.  ``import convnp`` changes nothing outside convnp, and until you
switch convnp's threads on, its ops run on the calling thread and BLAS keeps NumPy's own setting.
One switch governs convnp's threads and the BLAS threads together:

    convnp.set_num_threads(n)      for the whole process from now on (like torch.set_num_threads):
                                   with n > 1, BLAS runs on one thread; n = 1 gives BLAS its own back
    with convnp.num_threads(n):    the same for one block; convnp's and BLAS's counts are restored after
    CONVNP_NUM_THREADS=n           in the environment: set_num_threads(n) at the first threaded op

The ``convnp`` command, its benchmark workers and the experiments switch them on (the command and the
workers own their processes), with ``available_threads()``: CONVNP_NUM_THREADS, else OMP_NUM_THREADS,
else the CPUs this process may use.  BLAS is reached through ``threadpoolctl`` (the tools extra);
without it convnp leaves BLAS alone.  Measurements: docs/performance.md.
"""
import contextlib
import functools
import itertools
import os
import queue
import threading

# Work smaller than this many array elements (per piece) runs on the calling thread.  MIN_NUMBERS is
# for work with a matrix multiply in it (convolution chunks); STREAM_NUMBERS for memory-bound passes
# that do little arithmetic per number (pooling, ReLU, the Winograd input's padding), which gained
# from two threads from ~2M numbers up on the machines of 2026-12-02 and from ~1M on the 2.6 GHz Xeon
# (the MNIST example's step 0.976 at 2^19, LeNet-5's batch-512 inference 0.962, the others
# 0.99-1.00; docs/performance.md, 2026-12-04, second session).
MIN_NUMBERS = 1 << 18
STREAM_NUMBERS = 1 << 19


def available_threads():
    """The threads convnp would use: CONVNP_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this
    process may use."""
    for name in ("CONVNP_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _requested_in_environment():
    value = os.environ.get("CONVNP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


_threads = 1  # off until switched on: set_num_threads, num_threads, or CONVNP_NUM_THREADS
_environment_pending = _requested_in_environment() is not None  # applied at the first threaded op
_workers = []  # started on first use
_tasks = queue.SimpleQueue()
_inside_worker = threading.local()
_lock = threading.Lock()


def get_num_threads():
    """How many threads convnp's ops use."""
    return _threads


def set_num_threads(count):
    """Use ``count`` threads in convnp's ops from now on, for the whole process (like
    ``torch.set_num_threads``), and set BLAS to match: one thread while convnp's threads split the
    GEMMs (count > 1), its own thread count back with count == 1 (see the module docstring)."""
    global _threads, _blas_owned, _environment_pending
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"set_num_threads: expected an int >= 1, got {count!r}")
    _environment_pending = False  # an explicit count wins over CONVNP_NUM_THREADS
    _threads = count
    if count > 1:
        _blas.use_one_thread()
        _blas_owned = True
    else:
        _blas.restore()
        _blas_owned = False


@contextlib.contextmanager
def num_threads(count, blas=None):
    """``with num_threads(n):`` runs the block with n convnp threads and BLAS set to match (as
    ``set_num_threads``), then restores both: convnp's count and BLAS's.  ``blas``: a BLAS thread
    count for the block instead (``num_threads(1, blas=1)``: everything on one thread)."""
    global _threads, _blas_owned, _environment_pending
    if blas is not None and (not isinstance(blas, int) or isinstance(blas, bool) or blas < 1):
        raise ValueError(f"num_threads: blas must be an int >= 1, got {blas!r}")
    saved = _threads, _blas_owned, _blas.threads(), _blas.original, _environment_pending
    set_num_threads(count)
    if blas is not None:
        _blas.set_threads([blas] * len(_blas.find()))
        _blas_owned = True
    try:
        yield count
    finally:
        _threads, _blas_owned, _environment_pending = saved[0], saved[1], saved[4]
        _blas.set_threads(saved[2])
        _blas.original = saved[3]


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
    if _environment_pending:
        set_num_threads(_requested_in_environment() or 1)
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
    """Start the worker threads this thread count needs."""
    if len(_workers) >= _threads - 1:
        return
    with _lock:
        while len(_workers) < _threads - 1:
            thread = threading.Thread(target=_worker, name=f"convnp-{len(_workers) + 1}", daemon=True)
            thread.start()
            _workers.append(thread)


class _BLAS:
    """The thread counts of the BLAS libraries NumPy loaded, through threadpoolctl.  Does nothing when
    threadpoolctl is not installed (the tools extra) or finds no BLAS."""

    def __init__(self):
        self.libraries = None  # threadpoolctl's controllers, found on first use
        self.original = None  # the counts before set_num_threads first took them over

    def find(self):
        if self.libraries is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                self.libraries = []
            else:
                self.libraries = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        return self.libraries

    def architectures(self):
        """The CPU kernel set each BLAS library chose at load time (OpenBLAS's core name, 'SkylakeX'...)."""
        return [library.info().get("architecture") for library in self.find()]

    def threads(self):
        """The current thread count of each BLAS library (a list; empty when none is reachable)."""
        return [library.get_num_threads() for library in self.find()]

    def set_threads(self, counts):
        for library, count in zip(self.find(), counts):
            if count is not None:
                library.set_num_threads(count)

    def use_one_thread(self):
        if self.original is None:
            self.original = self.threads()
        self.set_threads([1] * len(self.find()))

    def restore(self):
        if self.original is not None:
            self.set_threads(self.original)
            self.original = None


_blas = _BLAS()
_blas_owned = False  # True after set_num_threads(n > 1): BLAS stays on one thread


def blas_threads():
    """The thread count of each BLAS library NumPy uses, as threadpoolctl sees it ([] without it)."""
    return _blas.threads()


# OpenBLAS's kernel sets with small-matrix kernels (AVX-512: Skylake-X and later Intel, Zen 4 and 5):
# a product of M*N*K <= 100^3 multiply-adds skips the packing of its operands (docs/performance.md).
SMALL_PRODUCT_ARCHITECTURES = ("SkylakeX", "Cooperlake", "SapphireRapids")


@functools.lru_cache(maxsize=1)
def blas_has_small_product_kernels():
    """Whether NumPy's BLAS is an OpenBLAS that multiplies small matrices (M*N*K <= 100^3) without
    packing them, where they run up to 1.5x faster than in its packed kernels (False when threadpoolctl,
    the tools extra, is not there to ask).  Decides the convolution's tile widths (ops/conv.py)."""
    return any(name in SMALL_PRODUCT_ARCHITECTURES for name in _blas.architectures())


@functools.lru_cache(maxsize=1)
def blas_kernel_set_known():
    """Whether threadpoolctl could name the kernel set NumPy's BLAS chose (False without the tools
    extra, or for a BLAS that does not say, as MKL does not)."""
    return any(_blas.architectures())


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
