"""Batch norm + ReLU fused into one op while training (convnp.ops.norm.BatchNorm with relu=True): the
same numbers as the two ops one after the other, PyTorch's numbers, and nothing that watches a module
(convnp.summary's tracing, a replaced forward) misses the ReLU."""
import numpy as np
import pytest
import torch

import convnp
from convnp import functional as F, models, nn
from convnp.ops.norm import BatchNorm
from helpers import assert_close, to_torch


def unfused_and_fused(model, x, dy):
    """(output, input gradient, parameter gradients) of ``model`` with the fusion switched off and on."""
    results = []
    for fuse in (False, True):
        state = {k: v.copy() for k, v in model.state_dict().items()}
        original = nn.layers.fuses_with_relu
        if not fuse:
            nn.layers.fuses_with_relu = lambda module, following: False
        try:
            xt = convnp.Tensor(x, requires_grad=True)
            model.zero_grad()
            out = model(xt)
            out.backward(dy)
        finally:
            nn.layers.fuses_with_relu = original
        results.append((out.data, xt.grad, [p.grad.copy() for p in model.parameters()], out))
        model.load_state_dict(state)  # the running statistics back, for the second pass
    return results


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_sequential_gives_the_two_ops_numbers_exactly_and_pytorchs(dtype):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    model = model.astype(dtype) if dtype != np.float32 else model
    x = rng.standard_normal((4, 3, 7, 6)).astype(dtype)
    dy = rng.standard_normal((4, 8, 7, 6)).astype(dtype)
    (y0, dx0, g0, _), (y1, dx1, g1, out) = unfused_and_fused(model, x, dy)
    assert type(out._ctx) is BatchNorm  # the last op of the fused forward is the batch norm itself
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    for a, b in zip(g1, g0):
        np.testing.assert_array_equal(a, b)
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU()).to(
        torch.float64 if dtype == np.float64 else torch.float32)
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v).copy()) for k, v in model.state_dict().items()})
    xt = to_torch(x, requires_grad=True)
    twin(xt).backward(torch.from_numpy(dy))
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-10)
    assert_close(y1, twin(to_torch(x)).detach(), rtol, atol, "output")  # (a second step: same statistics)
    assert_close(dx1, xt.grad, rtol, atol, "dx")
    assert_close(g1[2], twin[1].weight.grad, rtol, atol, "batch-norm weight gradient")


def test_resnet_blocks_fuse_and_match_the_unfused_run():
    convnp.manual_seed(0)
    model = models.ResNet20(widths=(4, 8, 8), blocks=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 3, 12, 12)).astype(np.float32)
    dy = rng.standard_normal((3, 10)).astype(np.float32)
    (y0, dx0, g0, _), (y1, dx1, g1, _) = unfused_and_fused(model, x, dy)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    for a, b in zip(g1, g0):
        np.testing.assert_array_equal(a, b)


def test_no_fusion_in_evaluation_or_when_a_forward_is_replaced():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU())
    bn, relu = model[0], model[1]
    assert nn.layers.fuses_with_relu(bn, relu)
    model.eval()
    assert not nn.layers.fuses_with_relu(bn, relu)
    model.train()
    seen = []
    relu.forward = lambda x: seen.append(x.shape) or F.relu(x)  # a user's (or a tracer's) wrapper
    assert not nn.layers.fuses_with_relu(bn, relu)
    model(convnp.Tensor(np.random.default_rng(0).standard_normal((2, 2, 3, 3)).astype(np.float32)))
    assert seen == [(2, 2, 3, 3)]
    assert not nn.layers.fuses_with_relu(nn.BatchNorm2d(2), nn.LeakyReLU())


def test_summary_of_a_training_model_still_lists_every_relu():
    model = models.SmallVGG()
    assert model.training
    table = convnp.summary(model, (3, 32, 32))
    assert sum(row.type == "ReLU" for row in table.leaf_rows()) == 6
    assert model.training  # summary restores the mode


def test_relu_then_max_pool_runs_as_pool_then_relu_with_the_same_numbers_and_gradients():
    """Windows whose maximum is negative, zero, tied, or positive, and a padded pool."""
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 3, size=(2, 3, 8, 8)).astype(np.float64)  # small integers: ties and zeros
    x[0, 0, :2, :2] = -1.0  # a window with only negative values
    for pool in (nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1)):
        model = nn.Sequential(nn.ReLU(), pool)
        dy = rng.standard_normal(model(convnp.Tensor(x)).shape)
        results = []
        for swap in (False, True):
            original = nn.layers.relu_commutes_with_pool
            if not swap:
                nn.layers.relu_commutes_with_pool = lambda relu, pool: False
            try:
                xt = convnp.Tensor(x, requires_grad=True)
                out = model(xt)
                out.backward(dy)
            finally:
                nn.layers.relu_commutes_with_pool = original
            results.append((out.data, xt.grad, type(out._ctx).__name__))
        (y0, dx0, last0), (y1, dx1, last1) = results
        assert (last0, last1) == ("MaxPool2d", "ReLU")  # the swap really happened
        np.testing.assert_array_equal(y1, y0)
        np.testing.assert_array_equal(dx1, dx0)
        xt = to_torch(x, requires_grad=True)
        torch_pool = torch.nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding)
        torch_pool(torch.relu(xt)).backward(torch.from_numpy(dy))
        np.testing.assert_allclose(dx1, xt.grad.numpy(), rtol=1e-12, atol=1e-12)  # overlapping windows: sums


def test_lenet5_swaps_only_when_nothing_watches_its_modules():
    model = models.LeNet5()
    x = np.random.default_rng(4).standard_normal((2, 1, 28, 28)).astype(np.float32)
    swapped = model(convnp.Tensor(x)).data
    table = convnp.summary(model, (1, 28, 28))  # tracing: the written order, pool after relu
    calls = [row.type for row in table.leaf_rows()]
    assert calls[:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    model.relu.forward = lambda x: F.relu(x)  # watched: the written order, the same numbers
    np.testing.assert_array_equal(model(convnp.Tensor(x)).data, swapped)


@pytest.mark.parametrize("layout", ["batch-innermost", "nchw"])
def test_batch_norm_relu_with_a_residual_matches_pytorch(layout):
    """relu(batch_norm(x) + residual) as one op (the end of a ResNet block): PyTorch's output and the
    gradients of x, weight, bias and the residual, whatever the residual's memory layout."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 3, 4, 6))
    residual = rng.standard_normal((5, 3, 4, 6))
    if layout == "batch-innermost":
        residual = np.ascontiguousarray(residual.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    weight, bias, dy = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal((5, 3, 4, 6))
    ours = [convnp.Tensor(a, requires_grad=True) for a in (x, weight, bias, residual)]
    out = F.batch_norm_relu(ours[0], np.zeros(3), np.ones(3), ours[1], ours[2], training=True, residual=ours[3])
    out.backward(dy)
    assert type(out._ctx) is BatchNorm
    theirs = [to_torch(a, requires_grad=True) for a in (x, weight, bias, residual)]
    expected = torch.relu(torch.nn.functional.batch_norm(theirs[0], torch.zeros(3, dtype=torch.float64),
                                                         torch.ones(3, dtype=torch.float64), theirs[1], theirs[2],
                                                         training=True) + theirs[3])
    expected.backward(torch.from_numpy(dy))
    assert_close(out.data, expected.detach(), 1e-10, 1e-10, "output")
    for name, a, b in zip(("dx", "dweight", "dbias", "dresidual"), ours, theirs):
        assert_close(a.grad, b.grad, 1e-10, 1e-10, name)


def test_a_residual_of_another_shape_is_refused():
    x = convnp.Tensor(np.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"residual of shape \(2, 3, 4, 3\).*expected the same shape"):
        F.batch_norm_relu(x, None, None, training=True, residual=np.ones((2, 3, 4, 3)))


def test_a_resnet_block_ends_in_one_batch_norm_op_while_training():
    block = models.resnet.BasicBlock(4, 4)
    x = convnp.Tensor(np.random.default_rng(2).standard_normal((2, 4, 5, 5)).astype(np.float32))
    assert type(block(x)._ctx) is BatchNorm  # bn2, the shortcut's add and the ReLU in one op
    block.eval()
    assert type(block(x)._ctx) is not BatchNorm  # evaluation: the plain modules


def fused_calls(monkeypatch):
    """A list that records every run of the fused convolution + ReLU + pooling op."""
    calls = []
    original = convnp.ops.conv.Conv2dReLUMaxPool.forward

    def recording(self, *args, **kwargs):
        calls.append(args[0].shape)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(convnp.ops.conv.Conv2dReLUMaxPool, "forward", recording)
    return calls


@pytest.mark.parametrize("threads", [1, 2])
def test_conv_relu_pool_runs_as_one_op_in_inference_with_the_unfused_numbers(threads, monkeypatch):
    """LeNet-5 and a Sequential (conv, ReLU, pool) in evaluation under no_grad: one fused op a block,
    bit-identical to the three ops, with several row chunks (odd sizes: a conv row and column that no
    window reaches); in training, with a replaced forward or overlapping windows, the three ops."""
    monkeypatch.setattr(convnp.ops.conv, "THREAD_NUMBERS", 1)  # threaded even at these sizes
    monkeypatch.setattr(convnp.ops.conv, "CHUNK_NUMBERS", 512)  # and cut into several chunks
    calls = fused_calls(monkeypatch)
    rng = np.random.default_rng(5)
    lenet = models.LeNet5().eval()
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()).eval()
    cases = [(lenet, rng.standard_normal((6, 1, 28, 28)).astype(np.float32)),
             (seq, rng.standard_normal((5, 3, 9, 11)).astype(np.float32))]
    with convnp.num_threads(threads):
        for model, x in cases:
            with convnp.no_grad():
                fused = model(convnp.Tensor(x)).data
                count = len(calls)
                with monkeypatch.context() as patch:
                    patch.setattr(nn.layers, "conv_relu_pool_fuses", lambda *args: False)
                    unfused = model(convnp.Tensor(x)).data
            assert len(calls) == count == (2 if model is lenet else 1)
            np.testing.assert_array_equal(fused, unfused)
            calls.clear()
            model.train()
            model(convnp.Tensor(x))  # training (parameters need gradients): never fused
            model.eval()
            assert calls == []
    watched = models.LeNet5().eval()
    watched.relu.forward = lambda x: F.relu(x)
    overlapping = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, stride=2)).eval()
    with convnp.no_grad():
        watched(convnp.Tensor(cases[0][1]))
        overlapping(convnp.Tensor(cases[0][1]))
    assert calls == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c, f, side, k, stride, padding, dilation, groups", [
    (4, 3, 6, 13, 3, 1, 1, 1, 1),     # odd size: floor pooling
    (3, 4, 6, 15, 3, 2, 0, 1, 2),     # stride 2, two groups
    (2, 2, 4, 14, 3, 1, 2, 2, 1),     # dilation
    (1, 1, 6, 28, 5, 1, 0, 1, 1),     # one image: the plain im2col path, then the pooling
    (2, 32, 32, 8, 3, 1, 1, 1, 1),    # a Winograd layer, then the pooling
])
def test_conv2d_relu_max_pool_matches_pytorch(n, c, f, side, k, stride, padding, dilation, groups, dtype,
                                              monkeypatch):
    monkeypatch.setattr(convnp.ops.conv, "SMALL_PRODUCTS", True)  # the 32 -> 32 layer takes Winograd on any CPU
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, c, side, side)).astype(dtype)
    w = (rng.standard_normal((f, c // groups, k, k)) / np.sqrt(c * k * k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    with convnp.no_grad():
        got = F.conv2d_relu_max_pool(x, w, b, stride, padding, dilation, groups, 2).data
    expected = torch.relu(torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(
        to_torch(x), to_torch(w), to_torch(b), stride, padding, dilation, groups), 2)).numpy()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert got.shape == expected.shape and got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def test_conv2d_relu_max_pool_refuses_to_run_where_a_gradient_is_needed():
    x = convnp.Tensor(np.ones((1, 1, 6, 6), np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="for inference"):
        F.conv2d_relu_max_pool(x, np.ones((2, 1, 3, 3), np.float32), None, 1, 0, 1, 1, 2)
