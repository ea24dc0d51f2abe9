"""The (C, H, W, N) memory a convolution returns stays that way through dropout, flatten and a linear
layer, forward and backward: their numbers are PyTorch's (or the definition's), and no gradient
arrives at a pooling layer in another layout (which would cost a transposing copy there)."""
import numpy as np
import pytest
import torch

import convnp
from convnp import functional as F, models
from convnp.ops import conv, pool
from convnp.ops.windows import memory_order
from helpers import assert_parity

BATCH_INNERMOST = (1, 2, 3, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_draws_in_memory_order_and_keeps_the_layout(dtype):
    p = 0.4
    x0 = np.random.default_rng(0).uniform(1.0, 2.0, (8, 3, 5, 4)).astype(dtype)
    x = convnp.Tensor(conv.batch_innermost(x0), requires_grad=True)
    y = F.dropout(x, p, training=True, rng=np.random.default_rng(7))
    assert memory_order(y.data) == BATCH_INNERMOST
    draws = np.random.default_rng(7).random((3, 5, 4, 8), dtype=dtype).transpose(3, 0, 1, 2)  # memory order
    scale = dtype(1.0 / (1.0 - p))
    np.testing.assert_allclose(y.data, np.where(draws >= p, x0 * scale, 0), rtol=1e-6)
    dy = np.random.default_rng(1).standard_normal(x0.shape).astype(dtype)
    y.backward(dy)
    np.testing.assert_allclose(x.grad, np.where(draws >= p, dy * scale, 0), rtol=1e-6)
    # an NCHW input draws in plain C order, as before
    plain = F.dropout(x0, p, training=True, rng=np.random.default_rng(7)).data
    np.testing.assert_allclose(plain, np.where(np.random.default_rng(7).random(x0.shape, dtype=dtype) >= p,
                                               x0 * scale, 0), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_gives_a_batch_innermost_input_its_gradient_in_that_layout(dtype):
    r = np.random.default_rng(2)
    x = np.asfortranarray(r.standard_normal((6, 20)).astype(dtype))  # a flattened (C, H, W, N) memory
    w, b = r.standard_normal((5, 20)).astype(dtype), r.standard_normal(5).astype(dtype)
    _, (xt, _, _) = assert_parity(F.linear, torch.nn.functional.linear, x, w, b)
    assert xt.grad.strides[0] < xt.grad.strides[1]  # batch innermost, like x
    _, (xc, _, _) = assert_parity(F.linear, torch.nn.functional.linear, np.ascontiguousarray(x), w, b)
    assert xc.grad.flags.c_contiguous


def test_the_small_cnns_gradient_reaches_its_pool_batch_innermost(monkeypatch):
    """PyTorch's MNIST example: conv, conv, pool, dropout, flatten, linear; backward, the pool's dy."""
    seen = []
    backward = pool.MaxPool2d.backward

    def recording_backward(self, dy):
        seen.append(memory_order(dy))
        return backward(self, dy)

    monkeypatch.setattr(pool.MaxPool2d, "backward", recording_backward)
    convnp.manual_seed(0)
    model = models.MnistCNN().train()
    x = convnp.Tensor(np.random.default_rng(3).random((4, 1, 28, 28), dtype=np.float32))
    F.cross_entropy(model(x), np.array([1, 2, 3, 4])).backward()
    assert seen == [BATCH_INNERMOST]


def test_batch_innermost_copies_only_when_the_memory_differs():
    """batch_innermost returns x itself when x's memory already is (C, H, W, N): a convolution's
    output, and a one-image batch stored NCHW (the same bytes); a batch of several NCHW images, or
    a sliced one, is copied into that layout."""
    one = np.random.default_rng(0).random((1, 3, 5, 4), dtype=np.float32)
    assert conv.batch_innermost(one) is one  # N = 1: NCHW and (C, H, W, N) are the same memory
    several = np.random.default_rng(1).random((2, 3, 5, 4), dtype=np.float32)
    stored = conv.batch_innermost(several)
    assert stored is not several and stored.transpose(1, 2, 3, 0).flags.c_contiguous
    np.testing.assert_array_equal(stored, several)
    assert conv.batch_innermost(stored) is stored
    sliced = one[:, :, ::2]  # one image, but not contiguous: copied
    got = conv.batch_innermost(sliced)
    assert got.transpose(1, 2, 3, 0).flags.c_contiguous
    np.testing.assert_array_equal(got, sliced)
    y = F.conv2d(one, np.ones((2, 3, 3, 3), np.float32), padding=1).data
    expected = torch.nn.functional.conv2d(torch.from_numpy(one), torch.ones(2, 3, 3, 3), padding=1).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5)
