"""convnp splits copies and elementwise passes over channel slices on several threads.  Test sizes are
normally too small to be split, so these tests force the split (two threads, no minimum size) and
check every affected op against PyTorch, forward and backward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from convnp import functional as F, parallel
from helpers import assert_parity


@pytest.fixture(autouse=True)
def forced_threads(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_NUMBERS_PER_THREAD", 1)
    previous = parallel.num_threads()
    parallel.set_num_threads(3)
    yield
    parallel.set_num_threads(previous)


def test_over_slices_covers_every_index_once_from_several_threads():
    import threading

    seen, threads = [], set()

    def work(start, stop):
        threads.add(threading.get_ident())
        seen.extend(range(start, stop))

    parallel.over_slices(work, 10, numbers=10)
    assert sorted(seen) == list(range(10))
    assert len(threads) >= 2  # the calling thread took one slice, pool workers the others


def test_over_slices_reraises_a_worker_error():
    def work(start, stop):
        if start > 0:
            raise RuntimeError(f"slice {start}")

    with pytest.raises(RuntimeError, match="slice"):
        parallel.over_slices(work, 9, numbers=9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_pool_relu_chain_matches_torch_when_split(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 11, 10)).astype(dtype)
    w = rng.standard_normal((7, 5, 3, 3)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    assert_parity(lambda x, w, b: F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 3, 2, 1),
                  lambda x, w, b: TF.max_pool2d(TF.relu(TF.conv2d(x, w, b, padding=1)), 3, 2, 1), x, w, b)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1)])
def test_max_pool_ties_and_nan_when_split(kernel, stride):
    x = np.ones((2, 4, 6, 6))
    x[1, 2, 3, 3] = np.nan
    assert_parity(lambda x: F.max_pool2d(x, kernel, stride), lambda x: TF.max_pool2d(x, kernel, stride), x)


def test_batch_norm_matches_torch_when_split():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 5, 5))
    weight, bias = rng.standard_normal(6), rng.standard_normal(6)
    mean, var = np.zeros(6), np.ones(6)
    torch_mean, torch_var = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    assert_parity(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=True),
                  lambda x, w, b: TF.batch_norm(x, torch_mean, torch_var, w, b, training=True), x, weight, bias)
    np.testing.assert_allclose(var, torch_var.numpy(), rtol=1e-12)
