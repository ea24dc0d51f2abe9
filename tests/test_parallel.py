"""convnp's own threads (convnp.parallel): the pool itself, and every op that splits its work, run
against PyTorch with the splitting forced on (3 threads, no minimum size) so that even small test
inputs are cut into pieces."""
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import convnp
import test_ops_parity as parity
import test_optim
import test_torch_api
from convnp import functional as F, parallel
from convnp.ops import activation, conv, norm, pool
from convnp.optim import optimizer

DTYPES = [np.float64, np.float32]


@pytest.fixture
def threaded(monkeypatch):
    """Three threads, and every op split however small: the parallel code paths on tiny inputs."""
    monkeypatch.setattr(parallel, "MIN_NUMBERS", 1)
    monkeypatch.setattr(parallel, "STREAM_NUMBERS", 1)
    monkeypatch.setattr(conv, "SLAB_NUMBERS", 1)
    monkeypatch.setattr(conv, "THREAD_NUMBERS", 1)
    with parallel.num_threads(3):  # restores convnp's and BLAS's thread counts afterwards
        yield


@pytest.fixture
def thread_names(monkeypatch):
    """The names of the threads that ran parallel_map's items.  Each item also sleeps for 20 ms, so
    that every thread has woken up and taken items before the caller could run them all itself."""
    names = set()
    parallel_map = parallel.parallel_map

    def spy(function, items):
        def recorded(item):
            names.add(threading.current_thread().name)
            time.sleep(0.02)
            return function(item)
        return parallel_map(recorded, items)

    monkeypatch.setattr(parallel, "parallel_map", spy)
    for module in (conv, pool, norm, activation):
        monkeypatch.setattr(module, "parallel_map", spy)
    return names


# --- the pool ---------------------------------------------------------------------------------------

def test_split_covers_the_range_in_nearly_equal_pieces():
    for length in range(1, 30):
        for pieces in range(1, 8):
            parts = parallel.split(length, pieces)
            assert [i for part in parts for i in range(part.start, part.stop)] == list(range(length))
            sizes = [part.stop - part.start for part in parts]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and len(parts) == min(length, pieces)


def test_parallel_map_keeps_order_and_uses_several_threads(threaded, thread_names):
    assert parallel.parallel_map(lambda i: i * i, range(10)) == [i * i for i in range(10)]
    assert threading.current_thread().name in thread_names and len(thread_names) > 1
    meeting = threading.Barrier(3, timeout=10)  # passes only if three threads run items AT THE SAME TIME
    assert parallel.parallel_map(lambda i: (meeting.wait(), i)[1], range(3)) == [0, 1, 2]


def test_parallel_map_raises_after_every_item_finished(threaded):
    finished = []

    def work(i):
        if i == 5:
            raise ValueError("item 5 failed")
        finished.append(i)

    with pytest.raises(ValueError, match="item 5 failed"):
        parallel.parallel_map(work, range(9))
    assert sorted(finished) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert parallel.parallel_map(lambda i: i + 1, range(4)) == [1, 2, 3, 4]  # the pool still works


def test_one_thread_runs_everything_on_the_caller(thread_names):
    previous = convnp.get_num_threads()
    convnp.set_num_threads(1)  # like torch.set_num_threads
    try:
        assert parallel.get_num_threads() == 1
        parallel.parallel_map(lambda i: i, range(10))
    finally:
        convnp.set_num_threads(previous)
    assert thread_names <= {threading.current_thread().name}


def test_set_num_threads_validates_and_gives_blas_its_threads_back():
    with pytest.raises(ValueError, match="int >= 1"):
        parallel.set_num_threads(0)
    if not parallel.blas_threads():
        pytest.skip("threadpoolctl finds no BLAS here")
    libraries = len(parallel.blas_threads())  # NumPy's OpenBLAS, and SciPy's when it is loaded
    with parallel.num_threads(1):
        parallel._blas.set_threads([2] * libraries)  # BLAS's own count, as OPENBLAS_NUM_THREADS=2 would give
        parallel.set_num_threads(3)
        assert parallel.get_num_threads() == 3 and parallel.blas_threads() == [1] * libraries
        parallel.set_num_threads(1)
        assert parallel.get_num_threads() == 1 and parallel.blas_threads() == [2] * libraries


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS's x86 kernel sets")
def test_small_product_kernels_follow_the_kernels_openblas_loaded():
    """OpenBLAS picks its kernel set when NumPy loads it (OPENBLAS_CORETYPE overrides the CPU's):
    with its AVX2 (Haswell) set there are no small-matrix kernels, so convnp must not size tiles for them."""
    if not parallel.blas_threads():
        pytest.skip("threadpoolctl finds no BLAS here")
    code = ("from convnp import parallel; "
            "print(parallel._blas.architectures(), parallel.blas_has_small_product_kernels())")
    environment = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if "Haswell" not in result.stdout:
        pytest.skip(f"this NumPy's BLAS does not take OPENBLAS_CORETYPE: {result.stdout.strip()}")
    assert result.stdout.split()[-1] == "False"
    assert parallel.blas_has_small_product_kernels() == any(
        name in parallel.SMALL_PRODUCT_ARCHITECTURES for name in parallel._blas.architectures())


def test_num_threads_governs_convnp_and_blas_together_and_restores_both():
    if not parallel.blas_threads():
        pytest.skip("threadpoolctl finds no BLAS here")
    before = parallel.get_num_threads(), parallel.blas_threads()
    own = parallel._blas.original or before[1]  # BLAS's count before convnp took it over, if it has
    one = [1] * len(before[1])
    with parallel.num_threads(2):
        assert parallel.get_num_threads() == 2 and parallel.blas_threads() == one
        with parallel.num_threads(1):  # one thread: BLAS gets its own count back
            assert parallel.get_num_threads() == 1 and parallel.blas_threads() == own
        with parallel.num_threads(1, blas=1):  # or one thread too
            assert parallel.get_num_threads() == 1 and parallel.blas_threads() == one
        assert parallel.get_num_threads() == 2 and parallel.blas_threads() == one
    assert (parallel.get_num_threads(), parallel.blas_threads()) == before
    with pytest.raises(ValueError, match="blas must be an int >= 1, got 0"):
        with parallel.num_threads(2, blas=0):
            pass
    assert (parallel.get_num_threads(), parallel.blas_threads()) == before


def _fresh_process(code, **env):
    """Run ``code`` in a new interpreter with convnp importable; its last line of stdout, as JSON."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    environment = {name: value for name, value in os.environ.items() if name != "CONVNP_NUM_THREADS"}
    environment.update(OPENBLAS_NUM_THREADS="2", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), **env)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


PROBE = """
import ctypes, json
calls = []
real_cdll = ctypes.CDLL
ctypes.CDLL = lambda *args, **kwargs: calls.append(args[:1]) or real_cdll(*args, **kwargs)
from threadpoolctl import threadpool_info
import numpy as np
def blas():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
before = blas()
calls.clear()  # from here on: what convnp does
import convnp
from convnp import parallel
def conv():
    x = convnp.tensor(np.ones((4, 3, 16, 16)), requires_grad=True)
    convnp.functional.conv2d(x, np.ones((8, 3, 3, 3))).sum().backward()
after_import = blas()
conv()
after_ops, threads_after_ops = blas(), convnp.get_num_threads()
with convnp.num_threads(2):
    during, threads_during = blas(), convnp.get_num_threads()
    conv()
print(json.dumps(dict(before=before, after_import=after_import, after_ops=after_ops, during=during,
                      after=blas(), threads=[threads_after_ops, threads_during, convnp.get_num_threads()],
                      malloc=[None] in [list(c) for c in calls])))
"""


def test_importing_convnp_and_running_ops_changes_nothing_outside_convnp():
    """In a fresh process: import convnp and run a convolution.  BLAS's thread count is untouched and
    glibc's malloc never asked to change (no ctypes.CDLL(None), how mallopt is reached); convnp's own
    threads are off.  ``num_threads(2)`` switches both on for a block and restores both."""
    seen = _fresh_process(PROBE)
    if not seen["before"]:
        pytest.skip("threadpoolctl finds no BLAS here")
    assert seen["before"] == seen["after_import"] == seen["after_ops"] == seen["after"] == [2]
    assert seen["during"] == [1] and seen["threads"] == [1, 2, 1] and not seen["malloc"]


def test_convnp_num_threads_in_the_environment_switches_the_threads_on_at_the_first_op():
    seen = _fresh_process(PROBE, CONVNP_NUM_THREADS="2")
    if not seen["before"]:
        pytest.skip("threadpoolctl finds no BLAS here")
    assert seen["after_import"] == [2]  # nothing at import
    assert seen["after_ops"] == [1] and seen["threads"][0] == 2  # asked for: like set_num_threads(2)


@pytest.mark.parametrize("layout", [None, "channels_last", "transposed"])
def test_outer_parts_cut_along_the_outermost_axis_in_memory(threaded, layout):
    x = np.arange(2 * 5 * 4 * 3, dtype=np.float32).reshape(2, 5, 4, 3)
    x = x if layout is None else parity.non_contiguous(x, layout)
    parts = parallel.outer_parts(x)
    assert len(parts) > 1
    covered = np.zeros(x.shape, dtype=int)
    for part in parts:
        covered[part] += 1
    assert (covered == 1).all()


# --- the split ops against PyTorch ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(parity.CONV_CASES), ids=list(parity.CONV_CASES))
def test_conv2d_threaded(threaded, case, dtype):
    parity.test_conv2d(parity.CONV_CASES[case], dtype)


@pytest.mark.parametrize("case", ["basic 3x3", "groups 2 strided dilated", "depthwise multiplier 2",
                                  "channels-last grouped dilated"])
def test_conv2d_threaded_in_chunks_and_tiles(threaded, thread_names, case, monkeypatch):
    parity.test_conv2d_in_chunks_and_tiles(case, np.float64, 150, monkeypatch)
    assert len(thread_names) > 1


@pytest.mark.parametrize("per_thread, chunks", [(1, [(0, 3), (3, 6), (6, 9)]),
                                                (2, [(0, 1), (1, 3), (3, 4), (4, 6), (6, 7), (7, 9)])])
def test_conv2d_splits_into_chunks_per_thread(threaded, thread_names, per_thread, chunks, monkeypatch):
    """9 output rows on 3 threads: 3 chunks, or with two a thread pieces of at most 2 rows (5), made 6,
    a multiple of the threads, with the rows shared evenly."""
    monkeypatch.setattr(conv, "CHUNKS_PER_THREAD", per_thread)
    monkeypatch.setattr(conv, "BALANCE_NUMBERS", 1)
    x = convnp.Tensor(np.random.default_rng(0).standard_normal((2, 3, 9, 9)), requires_grad=True)
    w = convnp.Tensor(np.random.default_rng(1).standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    assert list(y._ctx.geometry.chunks) == chunks
    assert conv.CHUNK_NUMBERS > 3 * 9 * 9 * 9 * 2  # split for the threads only
    y.sum().backward()
    assert len(thread_names) > 1


@pytest.mark.parametrize("shape, kernel, padding, chunks", [((128, 1, 28, 28), 5, 0, 1), ((128, 6, 12, 12), 5, 0, 1),
                                                             ((128, 3, 32, 32), 3, 1, 4), ((128, 32, 16, 16), 3, 1, 4)])
def test_small_layers_keep_one_chunk_a_thread(shape, kernel, padding, chunks):
    """On 2 threads, LeNet-5's conv1 and conv2 (1.8M and 1.2M im2col numbers, under THREAD_NUMBERS a
    thread) stay in one chunk on the calling thread; a VGG-style first layer (3.5M) and a 32-channel
    layer (9.4M) get 4, two a thread."""
    with convnp.num_threads(2):
        geometry = conv.conv_geometry(conv.batch_innermost(np.zeros(shape, np.float32)),
                                      (16, shape[1], kernel, kernel), (1, 1), (padding, padding), (1, 1), 1)
    assert len(geometry.chunks) == chunks


@pytest.mark.parametrize("threads, chunks", [(1, [4, 5, 4, 5, 4, 5, 5]), (2, [4] * 8),
                                             (3, [3, 4, 3, 4, 3, 4, 3, 4, 4])])
def test_chunks_are_a_multiple_of_the_threads_with_rows_shared_evenly(threads, chunks):
    """ResNet-20's 16 -> 16 layer at 32x32, batch 128: an output row copies 16*3*32*128 = 196,608
    numbers, so a chunk of CHUNK_NUMBERS (2^20) holds at most 5 rows: 7 chunks for 32 rows, sized
    like ``split``'s even shares; on two threads 8 of 4 rows (cut 5+5+5+5+5+5+2, one thread did 17
    rows while the other waited after 15), on three 9."""
    with convnp.num_threads(threads):
        geometry = conv.conv_geometry(conv.batch_innermost(np.zeros((128, 16, 32, 32), np.float32)),
                                      (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert [stop - first for first, stop in geometry.chunks] == chunks
    assert [first for first, _ in geometry.chunks[1:]] == [stop for _, stop in geometry.chunks[:-1]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(parity.POOL_CASES), ids=list(parity.POOL_CASES))
def test_max_pool2d_threaded(threaded, case, dtype):
    parity.test_pool2d("max", parity.POOL_CASES[case], dtype)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 1, 1)])
def test_max_pool_ties_threaded(threaded, kernel, stride, padding):
    parity.test_max_pool_ties_route_to_one_element(kernel, stride, padding, np.float64)


def test_max_pool_nan_threaded(threaded):
    parity.test_max_pool_nan_wins_like_torch(3, 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 6)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_threaded(threaded, shape, training, dtype):
    parity.test_batch_norm(shape, True, training, dtype)
    parity.test_batch_norm(shape, False, training, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_in_column_blocks(threaded, monkeypatch, training, dtype):
    """Blocks of 7 numbers: each thread's channels in uneven column blocks (sums added block by block)."""
    monkeypatch.setattr(norm, "BLOCK_NUMBERS", 7)
    assert [(b.start, b.stop) for b in norm.column_blocks(10, 2)] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    parity.test_batch_norm((4, 3, 5, 6), True, training, dtype)
    parity.test_batch_norm((4, 3, 5, 6), False, training, dtype)


def test_fused_batch_norm_relu_in_column_blocks(monkeypatch):
    """The ReLU's mask applied block by block gives PyTorch's numbers (and the unfused ones exactly)."""
    import test_fusion

    monkeypatch.setattr(norm, "BLOCK_NUMBERS", 5)
    test_fusion.test_fused_sequential_gives_the_two_ops_numbers_exactly_and_pytorchs(np.float64)


@pytest.fixture
def optimizer_pieces(threaded, monkeypatch):
    """Every parameter updated in pieces (one per row, up to the three threads), and the pieces seen."""
    monkeypatch.setattr(optimizer, "SPLIT_NUMBERS", 1)
    pieces = []

    def recording_parallel_map(function, items):
        pieces.append(len(items))
        return parallel.parallel_map(function, items)

    monkeypatch.setattr(optimizer, "parallel_map", recording_parallel_map)
    return pieces


@pytest.mark.parametrize("ours, theirs, kwargs", test_optim.OPTIMIZER_CASES, ids=test_optim.CASE_IDS)
def test_sgd_and_adam_in_pieces_match_torch(optimizer_pieces, ours, theirs, kwargs):
    test_optim.test_matches_torch_float64(ours, theirs, kwargs)
    assert max(optimizer_pieces) == 3  # the (3, 4) and (5,) parameters were split among three threads


@pytest.mark.parametrize("name, kwargs", test_torch_api.OPTIMIZERS)
def test_adadelta_rmsprop_and_adagrad_in_pieces_match_torch(optimizer_pieces, name, kwargs):
    test_torch_api.test_optimizers_follow_torch(name, kwargs)
    assert max(optimizer_pieces) == 3


@pytest.mark.parametrize("ours, theirs, kwargs", test_optim.OPTIMIZER_CASES, ids=test_optim.CASE_IDS)
def test_a_split_parameter_is_cut_into_more_pieces_than_threads(optimizer_pieces, ours, theirs, kwargs,
                                                                 monkeypatch):
    """With PIECE_NUMBERS = 1 a split parameter goes one row a piece, more pieces than the three
    threads (the (5,) parameter in five): still PyTorch's numbers.  At the real settings, the MNIST
    example's 9216 -> 128 weight goes in 9 pieces of about 2^17 numbers on two threads."""
    monkeypatch.setattr(optimizer, "PIECE_NUMBERS", 1)
    test_optim.test_matches_torch_float64(ours, theirs, kwargs)
    assert max(optimizer_pieces) == 5  # the (5,) parameter: five pieces on three threads
    monkeypatch.undo()
    with convnp.num_threads(2):
        pieces = []
        monkeypatch.setattr(optimizer, "parallel_map", lambda function, items: pieces.append(len(items)))
        optimizer.in_pieces(lambda rows: None, np.zeros((128, 9216), np.float32))
    assert pieces == [9]


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adadelta", "RMSprop", "Adagrad"])
def test_a_0d_parameter_is_updated_whole(optimizer_pieces, name):
    ours = convnp.nn.Parameter(np.array(0.5))
    theirs = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
    ours_opt, theirs_opt = getattr(convnp.optim, name)([ours]), getattr(torch.optim, name)([theirs])
    for g in (0.3, -1.2, 0.7):
        ours.grad, theirs.grad = np.array(g), torch.tensor(g, dtype=torch.float64)
        ours_opt.step()
        theirs_opt.step()
    assert ours.data.shape == () and optimizer_pieces == []
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_threaded(threaded, dtype):
    parity.test_activation("relu", dtype)


@pytest.mark.parametrize("name", ["max_pool2d", "batch_norm", "conv2d"])
def test_threaded_ops_take_gradients_in_another_layout(threaded, name):
    parity.test_gradient_arriving_in_another_layout(name)
    parity.test_no_grad_forward_matches(name, "channels_last")


def test_threaded_relu_takes_gradients_in_another_layout(threaded):
    x = parity.non_contiguous(parity.rng().standard_normal((3, 4, 5, 6)), "channels_last")
    parity.assert_parity(lambda x: F.relu(x).permute(1, 0, 3, 2)[:, ::-1] * 2.0,
                         lambda x: parity.torch.relu(x).permute(1, 0, 3, 2).flip(1) * 2.0, x)


def test_lenet_step_is_the_same_on_one_and_three_threads(threaded):
    """A whole training step (conv, pool, ReLU, linear, loss) gives the same gradients either way."""
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    labels = np.arange(4)
    gradients = []
    for threads in (1, 3):
        parallel.set_num_threads(threads)
        convnp.manual_seed(0)
        model = convnp.models.LeNet5().astype(np.float64)
        F.cross_entropy(model(convnp.Tensor(x)), labels).backward()
        gradients.append([p.grad for p in model.parameters()])
    for one, three in zip(*gradients):
        np.testing.assert_allclose(three, one, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_innermost", [False, True])
def test_a_big_linear_layer_splits_its_products_among_the_threads_with_pytorchs_numbers(batch_innermost):
    """PyTorch's MNIST example's 9216 -> 128 layer at batch 64: forward, dx and dW each above
    MIN_SPLIT_MACS, so each runs in pieces on two threads (split by rows or by columns, whichever
    side is longer); the same numbers as one thread and torch.  A batch-innermost x (a flattened
    convolution's memory) is multiplied as w @ x^T: y and dx come back batch-innermost too."""
    import torch

    from convnp.ops import linear

    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 9216)).astype(np.float32)
    if batch_innermost:
        x = np.ascontiguousarray(x.T).T
    w = (rng.standard_normal((128, 9216)) * 0.01).astype(np.float32)
    dy = rng.standard_normal((64, 128)).astype(np.float32)
    assert 64 * 9216 * 128 >= linear.MIN_SPLIT_MACS
    results = []
    for threads in (1, 2):
        with convnp.num_threads(threads):
            xt, wt = convnp.Tensor(x, requires_grad=True), convnp.Tensor(w, requires_grad=True)
            y = convnp.functional.linear(xt, wt)
            y.backward(dy)
            results.append((y.data, xt.grad, wt.grad))
            assert linear.batch_innermost_rows(y.data) == batch_innermost
            assert linear.batch_innermost_rows(xt.grad) == batch_innermost
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    yt = xt @ wt.T
    yt.backward(torch.from_numpy(dy))
    for mine, theirs in zip(results[1], (yt.detach(), xt.grad, wt.grad)):
        np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-4, atol=1e-4)
