"""Finite-difference gradient checks of every op (float64), a demonstration that the checker catches
wrong backward passes, and the fast kernels against the naive loops of ``convnp.reference``."""
import numpy as np
import pytest

import convnp
from convnp import Tensor, functional as F, gradcheck, reference
from convnp.function import Function
from helpers import non_contiguous


def rng(seed=0):
    return np.random.default_rng(2000 + seed)


def leaf(array):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def randn(*shape, seed=0):
    return leaf(rng(seed).standard_normal(shape))


def away_from_zero(*shape, seed=0, margin=0.1):
    """Values with |x| >= margin: finite differences never straddle a kink (relu, leaky relu)."""
    r = rng(seed)
    return leaf(r.uniform(margin, 2.0, shape) * np.where(r.random(shape) < 0.5, -1.0, 1.0))


def distinct(*shape, seed=0):
    """A shuffled grid of values at least 0.01 apart: no near-ties for max pooling to flip between."""
    n = int(np.prod(shape))
    return leaf(rng(seed).permutation(n).reshape(shape) * 0.01)


# --- every op passes a full finite-difference check --------------------------------------------------

CONV_CONFIGS = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
    dict(padding=1, dilation=2),
    dict(groups=2, padding=1),
    dict(groups=4, stride=2),  # depthwise with channel multiplier 2 (F = 8 = 2 C)
]


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=str)
def test_conv2d(config):
    groups = config.get("groups", 1)
    x = randn(2, 4, 5, 6, seed=1)
    w = randn(8 if groups == 4 else 3 * groups, 4 // groups, 3, 2, seed=2)
    b = randn(w.shape[0], seed=3)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, **config), [x, w, b])


def test_conv2d_random_directions_on_a_bigger_layer():
    x, w, b = randn(4, 8, 16, 16, seed=1), randn(16, 4, 3, 3, seed=2), randn(16, seed=3)
    fn = lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2)  # noqa: E731
    assert gradcheck(fn, [x, w, b], directions=6)


def test_conv2d_only_some_inputs_checked():
    image, w = Tensor(rng(1).standard_normal((2, 3, 5, 5))), randn(2, 3, 3, 3)
    assert gradcheck(lambda x, w: F.conv2d(x, w, padding=1), [image, w])
    assert image.grad is None


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))])
def test_pooling(kernel, stride, padding):
    x = distinct(2, 2, 6, 7, seed=1)
    assert gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding), [x])
    assert gradcheck(lambda x: F.avg_pool2d(x, kernel, stride, padding), [x])


@pytest.mark.parametrize("size, out", [((6, 6), 1), ((7, 7), 3), ((5, 5), (2, 3)), ((4, 6), (4, 3))])
def test_adaptive_avg_pool2d(size, out):
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, out), [randn(2, 2, *size)])


UNARY = {
    "relu": (F.relu, away_from_zero),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), away_from_zero),
    "tanh": (F.tanh, randn),
    "sigmoid": (F.sigmoid, randn),
    "exp": (lambda x: x.exp(), randn),
    "log": (lambda x: (x * x + 0.5).log(), randn),
    "pow": (lambda x: x ** 3, randn),
    "neg": (lambda x: -x, randn),
    "log_softmax": (lambda x: F.log_softmax(x, dim=1), randn),
    "softmax": (lambda x: F.softmax(x, dim=0), randn),
    "sum": (lambda x: x.sum(axis=(0, 2), keepdims=True), randn),
    "mean": (lambda x: F.mean(x, axis=1), randn),
    "reshape": (lambda x: x.reshape(4, 6) * 2.0, randn),
    "transpose": (lambda x: x.permute(2, 0, 1) * 2.0, randn),
    "flatten": (lambda x: F.flatten(x, 1) * 2.0, randn),
    "getitem": (lambda x: x[np.array([0, 0, 1]), 1:, ::2], randn),
    "dropout": (lambda x: F.dropout(x, 0.4, rng=np.random.default_rng(5)), randn),  # fixed mask
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name):
    fn, make = UNARY[name]
    assert gradcheck(fn, [make(2, 3, 4, seed=4)])


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_with_broadcasting(op):
    a, b = randn(2, 3, 4, seed=1), leaf(rng(2).uniform(0.5, 2.0, (3, 1)))
    assert gradcheck(getattr(F, op), [a, b])


@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((2, 3, 4), (4,)), ((4,), (2, 4, 3)), ((4,), (4,))], ids=str)
def test_matmul(shapes):
    assert gradcheck(F.matmul, [randn(*shapes[0], seed=1), randn(*shapes[1], seed=2)])


def test_linear_and_concatenate():
    assert gradcheck(F.linear, [randn(2, 3, 5, seed=1), randn(4, 5, seed=2), randn(4, seed=3)])
    assert gradcheck(lambda a, b: F.concatenate([a, b, a], axis=1), [randn(2, 3, seed=1), randn(2, 1, seed=2)])


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training):
    c = shape[1]
    x, w, b = randn(*shape, seed=1), leaf(rng(2).uniform(0.5, 1.5, c)), randn(c, seed=3)
    running_mean, running_var = rng(4).standard_normal(c), rng(5).uniform(0.5, 2.0, c)

    def fn(x, w, b):  # fresh copies of the running statistics: the check reruns fn many times
        return F.batch_norm(x, running_mean.copy(), running_var.copy(), w, b, training=training)

    assert gradcheck(fn, [x, w, b])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_losses(reduction, label_smoothing):
    target = np.array([0, 3, 1, 3])
    assert gradcheck(lambda x: F.cross_entropy(x, target, reduction, label_smoothing), [randn(4, 5, seed=1)])
    assert gradcheck(lambda x, t: F.mse_loss(x, t, reduction), [randn(3, 4, seed=1), randn(3, 4, seed=2)])


def test_a_whole_small_network():
    model = convnp.models.TinyCNN().astype(np.float64)
    x = leaf(rng(1).standard_normal((2, 1, 8, 8)))
    target = np.array([0, 2])
    params = list(model.parameters())

    def fn(x, *params):
        return F.cross_entropy(model(x), target)

    # ReLU and max-pool kinks are measure-zero for random inputs; use random directions to keep it quick
    assert gradcheck(fn, [x] + params, directions=8)
    assert gradcheck(fn, [x] + params)


# --- the checker itself catches mistakes --------------------------------------------------------------

class WrongSquare(Function):
    """y = x^2 with a backward that forgets the factor 2."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, dy):
        (x,) = self.saved
        return dy * x


class ShuffledDouble(Function):
    """y = 2 x with a backward that sends each gradient to the wrong position (reversed).  Summing y
    would hide this (the total is the same); the random dy weighting of gradcheck exposes it."""

    def forward(self, x):
        return 2 * x

    def backward(self, dy):
        return 2 * dy[::-1]


class OffByEpsilon(Function):
    """y = x^3 with a backward off by a relative 1e-3: small, but far above finite-difference error."""

    def forward(self, x):
        self.save_for_backward(x)
        return x ** 3

    def backward(self, dy):
        (x,) = self.saved
        return dy * 3 * x ** 2 * (1 + 1e-3)


@pytest.mark.parametrize("broken", [WrongSquare, ShuffledDouble, OffByEpsilon])
@pytest.mark.parametrize("directions", [None, 3])
def test_gradcheck_catches_a_wrong_backward(broken, directions):
    x = leaf(rng(1).uniform(0.5, 1.5, 6))
    with pytest.raises(AssertionError):
        gradcheck(broken.apply, [x], directions=directions)


def test_gradcheck_passes_the_correct_version_and_needs_float64():
    class Square(WrongSquare):
        def backward(self, dy):
            (x,) = self.saved
            return 2 * dy * x

    assert gradcheck(Square.apply, [leaf(rng(1).uniform(0.5, 1.5, 6))])
    with pytest.raises(TypeError, match="float64"):
        gradcheck(Square.apply, [Tensor(np.ones(3, dtype=np.float32), requires_grad=True)])


def test_rel_error():
    assert convnp.rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    np.testing.assert_allclose(convnp.rel_error(np.array([1.0]), np.array([3.0])), 0.5)


# --- fast kernels against the naive loops ------------------------------------------------------------------

# (N, C, H, W, F, kernel, stride, padding, dilation, groups, bias, layout)
REFERENCE_CONV = [
    (2, 3, 6, 5, 4, 3, 1, 0, 1, 1, True, None),
    (2, 2, 7, 8, 3, (3, 2), 2, 1, 1, 1, True, None),
    (1, 2, 9, 7, 2, (2, 3), (3, 2), (2, 1), 1, 1, False, None),
    (2, 2, 8, 8, 2, 3, 1, 2, 2, 1, True, "transposed"),
    (2, 4, 7, 6, 6, (3, 1), (2, 1), (1, 0), (2, 1), 2, True, None),
    (2, 3, 6, 6, 6, 3, 2, 1, 1, 3, False, "sliced"),
    (2, 4, 7, 5, 4, (2, 3), 1, (1, 2), 1, 2, True, "channels_last"),
]


@pytest.mark.parametrize("case", REFERENCE_CONV, ids=str)
def test_conv2d_matches_reference(case):
    n, c, h, w_, f, kernel, stride, padding, dilation, groups, bias, layout = case
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    r = rng(7)
    x = r.standard_normal((n, c, h, w_))
    x = x if layout is None else non_contiguous(x, layout)
    w, b = r.standard_normal((f, c // groups, kh, kw)), (r.standard_normal(f) if bias else None)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    xt, wt = leaf(x), leaf(w)
    bt = None if b is None else leaf(b)
    y = F.conv2d(xt, wt, bt, **args)
    np.testing.assert_allclose(y.data, reference.conv2d_forward(x, w, b, **args), rtol=1e-11, atol=1e-11)
    dy = r.standard_normal(y.shape)
    y.backward(dy)
    dx, dw, db = reference.conv2d_backward(dy, x, w, **args)
    np.testing.assert_allclose(xt.grad, dx, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(wt.grad, dw, rtol=1e-11, atol=1e-11)
    if b is not None:
        np.testing.assert_allclose(bt.grad, db, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (3, 1), (1, 1))])
@pytest.mark.parametrize("ties", [False, True])
def test_pooling_matches_reference(kernel, stride, padding, ties):
    r = rng(8)
    x = r.integers(0, 3, (2, 3, 7, 8)).astype(np.float64) if ties else r.standard_normal((2, 3, 7, 8))
    for kind in ["max", "avg"]:
        xt = leaf(x)
        y = getattr(F, f"{kind}_pool2d")(xt, kernel, stride, padding)
        expected = getattr(reference, f"{kind}_pool2d_forward")(x, kernel, stride, padding)
        np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
        dy = r.standard_normal(y.shape)
        y.backward(dy)
        dx = getattr(reference, f"{kind}_pool2d_backward")(dy, x, kernel, stride, padding)
        np.testing.assert_allclose(xt.grad, dx, rtol=1e-12, atol=1e-12)


def test_relu_and_linear_match_reference():
    r = rng(9)
    x, w, b = r.standard_normal((2, 3, 5)), r.standard_normal((4, 5)), r.standard_normal(4)
    x[0, 0, :2] = 0.0
    xt = leaf(x)
    y = F.relu(xt)
    np.testing.assert_array_equal(y.data, reference.relu_forward(x))
    dy = r.standard_normal(y.shape)
    y.backward(dy)
    np.testing.assert_array_equal(xt.grad, reference.relu_backward(dy, x))

    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    y = F.linear(xt, wt, bt)
    np.testing.assert_allclose(y.data, reference.linear_forward(x, w, b), rtol=1e-12, atol=1e-12)
    dy = r.standard_normal(y.shape)
    y.backward(dy)
    for ours, expected in zip([xt.grad, wt.grad, bt.grad], reference.linear_backward(dy, x, w)):
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
