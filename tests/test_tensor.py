"""Autograd: the Tensor API, gradient accumulation, graph shapes, no_grad, dtypes, and the basic
operators (arithmetic with broadcasting, reductions, shape ops, indexing, matmul) against PyTorch."""
import sys

import numpy as np
import pytest
import torch

import convnp
from convnp import Tensor, functional as F, no_grad
from convnp.function import Function
from convnp.ops import conv as conv_ops
from helpers import assert_close, assert_parity, to_torch

RNG_SEED = 1234


def rng(offset=0):
    return np.random.default_rng(RNG_SEED + offset)


# --- the Tensor API ----------------------------------------------------------------------------------

def test_properties():
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = Tensor(data, requires_grad=True)
    assert x.data is data or np.shares_memory(x.data, data)
    assert x.grad is None and x.requires_grad is True
    assert x.shape == (2, 3) and x.dtype == np.float32 and x.ndim == 2 and len(x) == 2
    assert x.numel() == 6 and x.size() == (2, 3)
    assert np.shares_memory(x.numpy(), data) and isinstance(x.numpy(), np.ndarray)
    assert Tensor(np.array([[2.5]])).item() == 2.5 and isinstance(Tensor(np.array(3.0)).item(), float)
    with pytest.raises(ValueError, match="one element"):
        x.item()
    d = x.detach()
    assert np.shares_memory(d.data, x.data) and d.requires_grad is False and d._ctx is None
    y = (x * 2).detach()
    assert not y.requires_grad and y._ctx is None
    assert not Tensor(data).requires_grad


def test_construction_dtypes():
    assert Tensor([1.0, 2.0]).dtype == np.float32  # Python floats -> float32, like torch.tensor
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1, 2]).dtype.kind == "i"
    assert Tensor(np.ones(2)).dtype == np.float64  # NumPy arrays keep their dtype
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert convnp.tensor([[1.0]], requires_grad=True).requires_grad
    with pytest.raises(TypeError, match="floating"):
        Tensor([1, 2], requires_grad=True)


# --- accumulation and graph shapes ----------------------------------------------------------------------

def test_tensor_used_twice_gets_both_contributions():
    x0 = np.array([1.0, -2.0, 3.0])
    x = Tensor(x0, requires_grad=True)
    y = (x * x + x).sum()  # dy/dx = 2x + 1
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * x0 + 1)
    z = (x + x + x).sum()  # the same tensor three times in one op chain
    x.grad = None
    z.backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0, 3.0])


def test_backward_twice_on_fresh_graphs_accumulates():
    x0 = np.array([0.5, 1.5])
    x = Tensor(x0, requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x0)
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x0 + 3.0)
    first = x.grad
    (x * 1.0).sum().backward()
    np.testing.assert_allclose(first, 2 * x0 + 3.0)  # the previous .grad array was not modified in place


def test_diamond_graph_matches_torch():
    #        x
    #      /   \
    #   a=x*w  b=exp(x)
    #      \   /
    #   c = a*b + a/b    (a and b are each used twice)
    x0, w0 = rng().standard_normal((3, 4)), rng(1).standard_normal((4,))

    def graph(x, w, exp):
        a = x * w
        b = exp(x)
        return (a * b + a / b).sum()

    x, w = Tensor(x0, requires_grad=True), Tensor(w0, requires_grad=True)
    xt, wt = to_torch(x0, True), to_torch(w0, True)
    loss = graph(x, w, lambda t: t.exp())
    loss_t = graph(xt, wt, torch.exp)
    loss.backward()
    loss_t.backward()
    assert_close(loss.data, loss_t, 1e-12, 1e-12)
    assert_close(x.grad, xt.grad, 1e-12, 1e-12)
    assert_close(w.grad, wt.grad, 1e-12, 1e-12)


def test_deep_chain_does_not_hit_recursion_limit():
    depth = 5000
    assert depth > sys.getrecursionlimit() // 2
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(depth):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** depth] * 2, rtol=1e-10)


def test_backward_nonscalar_needs_gradient():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\)"):
        y.backward(np.ones(3))
    dy = np.arange(6.0).reshape(2, 3)
    y.backward(dy)
    np.testing.assert_allclose(x.grad, 2 * dy)


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor(np.ones(2)) * 2).sum().backward()


def test_graph_is_released_unless_retained():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * np.array([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_non_leaf_gets_no_grad_and_leaf_without_requires_grad_stays_none():
    x = Tensor(np.ones(3), requires_grad=True)
    c = Tensor(np.ones(3))
    h = x * 2
    (h * c).sum().backward()
    assert h.grad is None and c.grad is None
    np.testing.assert_allclose(x.grad, [2.0, 2.0, 2.0])


def test_scalar_leaf_grad_is_an_array():
    x = Tensor(np.array(2.0), requires_grad=True)
    (x * Tensor(np.ones(3))).sum().backward()
    assert isinstance(x.grad, np.ndarray) and x.grad.shape == () and x.grad == 3.0


# --- no_grad and needs_input_grad -----------------------------------------------------------------------

def test_no_grad_records_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not convnp.is_grad_enabled()
        y = (x * 2 + 1).sum()
        with no_grad():
            pass
        assert not convnp.is_grad_enabled()  # nesting restores the outer state
    assert convnp.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(RuntimeError):
        y.backward()
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("boom")
    assert convnp.is_grad_enabled()  # restored after an exception too


def test_no_grad_saves_nothing():
    seen = []

    class Spy(Function):
        def forward(self, x):
            self.save_for_backward(x)
            seen.append(self)
            return x * 2

        def backward(self, dy):
            return dy * 2

    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        Spy.apply(x)
    assert seen[-1].needs_input_grad == (False,) and seen[-1].saved == () and seen[-1].inputs is None
    Spy.apply(x)
    assert seen[-1].needs_input_grad == (True,) and len(seen[-1].saved) == 1


def test_needs_input_grad_skips_the_image_gradient(monkeypatch):
    calls = []
    original = conv_ops.col2im
    monkeypatch.setattr(conv_ops, "col2im", lambda *a, **k: calls.append(1) or original(*a, **k))
    r = rng()
    image = Tensor(r.standard_normal((2, 3, 6, 6)))  # does not require grad
    w = Tensor(r.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = Tensor(r.standard_normal(4), requires_grad=True)
    F.conv2d(image, w, b).sum().backward()
    assert image.grad is None and w.grad is not None and b.grad is not None
    assert calls == []  # dx was never computed
    x = Tensor(r.standard_normal((2, 3, 6, 6)), requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert calls == [1] and x.grad.shape == x.shape


def test_needs_input_grad_per_input():
    seen = []

    class Spy(Function):
        def forward(self, a, b, c=None):
            seen.append(self.needs_input_grad)
            return a + b

        def backward(self, dy):
            return dy, dy, None

    Spy.apply(Tensor(np.ones(2)), Tensor(np.ones(2), requires_grad=True), None)
    assert seen[-1] == (False, True, False)


# --- dtypes --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved_through_ops(dtype):
    r = rng()
    x = Tensor(r.uniform(0.5, 1.5, (2, 3, 6, 6)).astype(dtype), requires_grad=True)
    w = Tensor(r.standard_normal((4, 3, 3, 3)).astype(dtype), requires_grad=True)
    h = F.conv2d(x, w, padding=1) * 2.0 + 1 - 0.5
    h = 3.0 / (h.relu() + 1.0) + 2 * h ** 2 - np.float64(1.5) * h
    h = F.max_pool2d(F.tanh(h), 2) + F.avg_pool2d(F.sigmoid(h), 2)
    h = F.batch_norm(h, None, None, training=True)
    logits = F.linear(F.flatten(h, 1), Tensor(r.standard_normal((5, 36)).astype(dtype)))
    loss = F.cross_entropy(logits, np.array([0, 1])) + (x.exp().log().mean()) * 0.1
    assert loss.dtype == dtype, "a Python or NumPy scalar must not upcast the tensor"
    loss.backward()
    assert x.grad.dtype == dtype and w.grad.dtype == dtype


def test_integer_tensor_with_float_scalar_is_not_truncated():
    i = Tensor(np.array([1, 2, 3]))
    np.testing.assert_allclose((i * 0.5).data, [0.5, 1.0, 1.5])
    np.testing.assert_allclose((0.5 + i).data, [1.5, 2.5, 3.5])
    assert (i * 2).dtype.kind == "i"


# --- arithmetic with broadcasting, vs torch ---------------------------------------------------------------

BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((2, 3), ()), ((1,), (2, 3)),
                    ((4, 1, 1), (1, 5, 2))]
BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_broadcasting_vs_torch(op, shapes, dtype):
    r = rng()
    a = r.standard_normal(shapes[0]).astype(dtype)
    b = r.uniform(0.5, 2.0, shapes[1]).astype(dtype) * np.where(r.random(shapes[1]) < 0.5, -1, 1).astype(dtype)
    assert_parity(BINARY[op], BINARY[op], a, b)
    functional = getattr(F, op)
    assert_parity(functional, BINARY[op], a, b)


@pytest.mark.parametrize("op", list(BINARY))
def test_reverse_operators_with_arrays_and_scalars(op):
    r = rng()
    x0 = r.uniform(0.5, 2.0, (2, 3))
    left = r.uniform(0.5, 2.0, (4, 2, 3))  # an ndarray on the left, broadcasting x up
    fn = BINARY[op]
    assert_parity(lambda x: fn(left, x), lambda x: fn(torch.from_numpy(left), x), x0)
    assert_parity(lambda x: fn(2.5, x), lambda x: fn(2.5, x), x0)
    assert_parity(lambda x: fn(x, 2.5), lambda x: fn(x, 2.5), x0)
    y = fn(left, Tensor(x0))
    assert isinstance(y, Tensor), "ndarray (op) Tensor must defer to the Tensor's reflected operator"


def test_unary_elementwise_vs_torch():
    r = rng()
    x0 = r.uniform(0.2, 3.0, (3, 4))
    assert_parity(lambda x: -x, lambda x: -x, x0)
    assert_parity(lambda x: x ** 3, lambda x: x ** 3, x0)
    assert_parity(lambda x: x ** 0.5, lambda x: x ** 0.5, x0)
    assert_parity(lambda x: x.exp(), torch.exp, x0)
    assert_parity(lambda x: x.log(), torch.log, x0)


# --- reductions ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (1,)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sum_mean_vs_torch(reduction, axis, keepdims):
    x0 = rng().standard_normal((2, 3, 4))
    dims = tuple(range(3)) if axis is None else axis

    def torch_fn(x):
        return getattr(torch, reduction)(x, dim=dims, keepdim=keepdims)

    assert_parity(lambda x: getattr(x, reduction)(axis=axis, keepdims=keepdims), torch_fn, x0)
    assert_parity(lambda x: getattr(F, reduction)(x, axis=axis, keepdims=keepdims), torch_fn, x0)


# --- shape ops and indexing ---------------------------------------------------------------------------------

def test_reshape_transpose_flatten_vs_torch():
    x0 = rng().standard_normal((2, 3, 4, 5))
    assert_parity(lambda x: x.reshape(6, 20), lambda x: x.reshape(6, 20), x0)
    assert_parity(lambda x: x.reshape((4, -1)), lambda x: x.reshape(4, -1), x0)
    assert_parity(lambda x: F.reshape(x, (2, 60)), lambda x: x.reshape(2, 60), x0)
    assert_parity(lambda x: x.permute(0, 3, 1, 2), lambda x: x.permute(0, 3, 1, 2), x0)
    assert_parity(lambda x: x.permute(3, 2, 1, 0), lambda x: x.permute(3, 2, 1, 0), x0)
    assert_parity(lambda x: x.T, lambda x: x.permute(3, 2, 1, 0), x0)
    assert_parity(lambda x: x.flatten(), lambda x: x.flatten(), x0)
    assert_parity(lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1), x0)
    assert_parity(lambda x: F.flatten(x, 1, 2), lambda x: torch.flatten(x, 1, 2), x0)
    # a transpose feeding a reshape: the gradient must come back through a non-contiguous layout
    assert_parity(lambda x: x.permute(0, 2, 1, 3).reshape(8, -1) * 2.0,
                  lambda x: x.permute(0, 2, 1, 3).reshape(8, -1) * 2.0, x0)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_vs_torch(axis):
    r = rng()
    shapes = {0: [(1, 3, 2), (2, 3, 2), (3, 3, 2)], 1: [(2, 1, 2), (2, 4, 2), (2, 2, 2)],
              -1: [(2, 3, 1), (2, 3, 3), (2, 3, 2)]}[axis]
    arrays = [r.standard_normal(s) for s in shapes]
    assert_parity(lambda *xs: F.concatenate(xs, axis=axis), lambda *xs: torch.cat(xs, dim=axis), *arrays)
    x = Tensor(arrays[0], requires_grad=True)
    F.concatenate([x, x * 2.0], axis=axis).sum().backward()  # the same tensor twice: 1 + 2
    np.testing.assert_allclose(x.grad, np.full(shapes[0], 3.0))


INDICES = [
    (1, "int"),
    ((slice(None), slice(1, None)), "slice"),
    ((slice(None, None, 2), 0), "strided"),
    ((Ellipsis, 1), "ellipsis"),
    ((None, 0), "newaxis"),
    (np.array([0, 2, 0, 0]), "repeated fancy"),
    ((np.array([0, 1, 0]), slice(None), np.array([2, 2, 2])), "mixed fancy"),
    (np.array([[0, 2], [2, 2]]), "2-D fancy"),
]


@pytest.mark.parametrize("index", [i for i, _ in INDICES], ids=[n for _, n in INDICES])
def test_getitem_vs_torch(index):
    x0 = rng().standard_normal((3, 4, 5))

    def torch_index(i):
        if isinstance(i, tuple):
            return tuple(torch.from_numpy(j) if isinstance(j, np.ndarray) else j for j in i)
        return torch.from_numpy(i) if isinstance(i, np.ndarray) else i

    assert_parity(lambda x: x[index], lambda x: x[torch_index(index)], x0)


def test_getitem_repeated_indices_accumulate_by_hand():
    x = Tensor(np.arange(4.0), requires_grad=True)
    x[np.array([1, 1, 3, 1])].sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 3.0, 0.0, 1.0])
    x.grad = None
    mask = np.array([True, False, True, False])
    (x[mask] * Tensor(np.array([5.0, 7.0]))).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 0.0, 7.0, 0.0])
    x.grad = None
    x[::-1][1:].sum().backward()  # negative strides (torch cannot do these)
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0, 0.0])
    m = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    picked = m[Tensor(np.array([1, 1])), Tensor(np.array([0, 2]))]  # Tensors as index arrays, in a tuple
    np.testing.assert_array_equal(picked.data, [3.0, 5.0])
    picked.sum().backward()
    np.testing.assert_array_equal(m.grad, [[0, 0, 0], [1, 0, 1]])


# --- matmul --------------------------------------------------------------------------------------------

MATMUL_SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((4,), (2, 4, 5)),
                 ((2, 3, 4), (4,))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_vs_torch(shapes, dtype):
    r = rng()
    a, b = r.standard_normal(shapes[0]).astype(dtype), r.standard_normal(shapes[1]).astype(dtype)
    assert_parity(lambda x, y: x @ y, torch.matmul, a, b)
    assert_parity(F.matmul, torch.matmul, a, b)
    assert_parity(lambda y: a @ y, lambda y: torch.from_numpy(a) @ y, b)  # ndarray @ Tensor
    assert_parity(lambda x: x @ b, lambda x: x @ torch.from_numpy(b), a, requires_grad=[True])
