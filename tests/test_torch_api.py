"""The PyTorch idioms a user types, run in convnp and in torch on the same inputs: values, dtypes,
shapes and gradients must agree (issue 12).  Every new op is also gradient-checked in float64."""
import io
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch

import convnp
from convnp import Tensor, functional as F, nn
from helpers import assert_close, assert_parity

# torch warns when a scheduler steps an optimizer that never stepped (our schedule tests need no updates)
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of")


def rng(seed=0):
    return np.random.default_rng(seed)


def gradcheck(fn, *arrays):
    """float64 finite differences through convnp.gradcheck (raises on a mismatch)."""
    inputs = [Tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    assert convnp.gradcheck(fn, inputs)


# --- the silent traps -----------------------------------------------------------------------------------
def test_transpose_swaps_two_dims_like_torch():
    x0 = rng().standard_normal((3, 4))
    out, _ = assert_parity(lambda x: x.transpose(0, 1), lambda x: x.transpose(0, 1), x0)
    assert out.shape == (4, 3)  # the old NumPy-style transpose(0, 1) returned x unchanged
    x4 = rng().standard_normal((2, 3, 4, 5))
    assert_parity(lambda x: x.transpose(1, -1), lambda x: x.transpose(1, -1), x4)
    assert_parity(lambda x: x.permute(0, 2, 3, 1), lambda x: x.permute(0, 2, 3, 1), x4)
    assert_parity(lambda x: x.permute((3, 2, 1, 0)), lambda x: x.permute((3, 2, 1, 0)), x4)
    assert_parity(lambda x: x.mT, lambda x: x.mT, x4)
    assert_parity(lambda x: x.t(), lambda x: x.t(), x0)
    assert_parity(lambda x: x.T, lambda x: x.T, x0)
    with pytest.raises(ValueError, match="permutation"):
        Tensor(x4).permute(0, 1, 2)


@pytest.mark.parametrize("reduction", ["sum", "mean", "amax", "var", "prod", "logsumexp"])
def test_reduction_axis_out_of_range_raises_index_error(reduction):
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(IndexError):
        getattr(torch.ones(2, 3), reduction)(2)
    with pytest.raises(IndexError, match="out of range"):
        getattr(x, reduction)(2)
    with pytest.raises(IndexError):
        getattr(x, reduction)(-3)
    with pytest.raises(IndexError):
        F.sum(x, axis=2)


def test_flatten_starts_at_dim_0_like_torch():
    x0 = rng().standard_normal((2, 3, 4))
    assert_parity(lambda x: F.flatten(x), torch.flatten, x0)
    assert_parity(lambda x: convnp.flatten(x), torch.flatten, x0)
    assert_parity(lambda x: x.flatten(), lambda x: x.flatten(), x0)
    assert_parity(lambda x: convnp.flatten(x, 1), lambda x: torch.flatten(x, 1), x0)
    assert nn.Flatten()(Tensor(x0)).shape == torch.nn.Flatten()(torch.from_numpy(x0)).shape == (2, 12)
    with pytest.raises(IndexError):
        F.flatten(Tensor(x0), 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("number", [1.5, 2, True])
def test_python_numbers_keep_the_tensor_dtype(dtype, number):
    x0 = (np.arange(1, 7).reshape(2, 3) % 2 if dtype is np.bool_ else np.arange(1, 7).reshape(2, 3)).astype(dtype)
    for ours, theirs in [(lambda a: a + number, lambda a: a + number), (lambda a: number - a, lambda a: number - a),
                         (lambda a: a * number, lambda a: a * number), (lambda a: a / number, lambda a: a / number)]:
        try:
            expected = theirs(torch.from_numpy(x0))
        except RuntimeError:  # torch refuses subtraction with bool tensors
            continue
        actual = ours(Tensor(x0))
        assert actual.dtype == expected.numpy().dtype, (dtype, number)
        np.testing.assert_allclose(actual.data.astype(np.float64), expected.numpy().astype(np.float64), rtol=1e-3)


def test_zero_dim_tensors_do_not_widen_and_floats_win_over_ints():
    cases = [(np.float32, (3,), np.float64, ()), (np.int64, (3,), np.float64, ()), (np.float16, (3,), np.float32, ()),
             (np.float32, (3,), np.float64, (3,)), (np.int32, (3,), np.int64, ()), (np.int64, (3,), np.float32, (3,))]
    for dtype_a, shape_a, dtype_b, shape_b in cases:
        a0, b0 = np.full(shape_a, 3).astype(dtype_a), np.full(shape_b, 2).astype(dtype_b)
        for op in (lambda a, b: a + b, lambda a, b: a * b, lambda a, b: b - a, lambda a, b: a / b):
            expected = op(torch.from_numpy(a0), torch.from_numpy(b0))
            actual = op(Tensor(a0), Tensor(b0))
            assert actual.dtype == expected.numpy().dtype, (dtype_a, shape_a, dtype_b, shape_b)
            np.testing.assert_allclose(actual.data, expected.numpy(), rtol=1e-6)
    # and the gradient of a promoted input comes back in its own dtype
    a, b = Tensor(np.ones(3, np.float32), requires_grad=True), Tensor(np.float64(2.0), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64 and b.grad == 3.0


def test_sequential_from_ordered_dict_builds_named_children():
    layers = OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU()), ("flat", nn.Flatten()),
                          ("fc", nn.Linear(8, 3))])
    model = nn.Sequential(layers)
    twin = torch.nn.Sequential(OrderedDict([("conv", torch.nn.Conv2d(1, 2, 3)), ("act", torch.nn.ReLU()),
                                            ("flat", torch.nn.Flatten()), ("fc", torch.nn.Linear(8, 3))]))
    assert list(model.state_dict()) == list(twin.state_dict()) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = rng().standard_normal((2, 1, 4, 4)).astype(np.float32)
    assert_close(model(Tensor(x)).data, twin(torch.from_numpy(x)), 1e-5, 1e-6)
    assert len(model) == 4 and model[0] is layers["conv"] and model.conv is layers["conv"]
    assert list(model[1:].state_dict()) == list(twin[1:].state_dict()) == ["fc.weight", "fc.bias"]
    assert isinstance(model[-2:], nn.Sequential) and len(model[-2:]) == 2
    model.append(nn.Softmax(dim=1))
    assert len(model) == 5 and isinstance(model[4], nn.Softmax)


# --- grad mode: per thread, context manager and decorator ----------------------------------------------------
def test_grad_mode_context_managers_and_decorators():
    x = Tensor(np.ones(2), requires_grad=True)
    with convnp.no_grad():
        assert not convnp.is_grad_enabled() and not (x * 2).requires_grad
        with convnp.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert convnp.is_grad_enabled()

    @convnp.no_grad()
    def evaluate():
        return (x * 2).requires_grad

    @convnp.inference_mode()
    def infer():
        return (x * 2).requires_grad

    assert evaluate() is False and infer() is False and convnp.is_grad_enabled()
    with convnp.set_grad_enabled(False):
        assert not convnp.is_grad_enabled()
    assert convnp.is_grad_enabled()
    convnp.set_grad_enabled(False)  # a plain call switches at once, like torch
    assert not convnp.is_grad_enabled()
    convnp.set_grad_enabled(True)
    with convnp.inference_mode(False):
        assert convnp.is_grad_enabled()

    @convnp.set_grad_enabled(False)
    def no_graph():
        return convnp.is_grad_enabled()

    assert convnp.is_grad_enabled() and no_graph() is False and convnp.is_grad_enabled()
    with pytest.raises(ZeroDivisionError), convnp.no_grad():
        raise ZeroDivisionError
    assert convnp.is_grad_enabled()


def test_grad_mode_is_per_thread():
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def evaluation_thread():
        with convnp.no_grad():
            seen["eval"] = convnp.is_grad_enabled()
            inside.set()
            release.wait(5)
            seen["eval_after"] = (Tensor(np.ones(2), requires_grad=True) * 2).requires_grad

    thread = threading.Thread(target=evaluation_thread)
    thread.start()
    assert inside.wait(5)
    # the other thread is inside no_grad: this one still records graphs
    assert convnp.is_grad_enabled() and (Tensor(np.ones(2), requires_grad=True) * 2).requires_grad
    release.set()
    thread.join(5)
    assert seen == {"eval": False, "eval_after": False}

    shared = convnp.no_grad()  # one decorator instance used by several threads at once
    results = []

    @shared
    def f():
        results.append(convnp.is_grad_enabled())

    threads = [threading.Thread(target=f) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [False] * 4 and convnp.is_grad_enabled()


# --- the Tensor surface ---------------------------------------------------------------------------------------
def test_size_dim_numel_and_shape_methods():
    x0 = rng().standard_normal((2, 3, 4))
    x, t = Tensor(x0), torch.from_numpy(x0)
    assert x.size() == tuple(t.size()) and x.size(1) == t.size(1) and x.size(-1) == t.size(-1)
    assert x.dim() == t.dim() and x.numel() == t.numel() and x.size().numel() == t.size().numel()
    with pytest.raises(IndexError):
        x.size(3)
    assert_parity(lambda a: a.view(6, 4), lambda a: a.view(6, 4), x0)
    assert_parity(lambda a: a.view(-1), lambda a: a.view(-1), x0)
    assert_parity(lambda a: a.reshape(4, 6), lambda a: a.reshape(4, 6), x0)
    assert_parity(lambda a: a.view_as(Tensor(np.zeros((6, 4)))), lambda a: a.view_as(torch.zeros(6, 4)), x0)
    assert_parity(lambda a: a.unflatten(2, (2, 2)), lambda a: a.unflatten(2, (2, 2)), x0)
    assert_parity(lambda a: a.unflatten(-1, (2, -1)), lambda a: a.unflatten(-1, (2, -1)), x0)
    assert_parity(lambda a: a.flatten(1, 2), lambda a: a.flatten(1, 2), x0)
    y0 = rng().standard_normal((2, 1, 3, 1))
    for dim in (None, 1, -1, 0, (1, 3)):
        assert_parity(lambda a: a.squeeze(dim) if dim is not None else a.squeeze(),
                      lambda a: a.squeeze(dim) if dim is not None else a.squeeze(), y0)
    for dim in (0, 2, -1, 4):
        assert_parity(lambda a: a.unsqueeze(dim), lambda a: a.unsqueeze(dim), y0)


def test_expand_repeat_contiguous_clone():
    x0 = rng().standard_normal((3, 1))
    assert_parity(lambda a: a.expand(2, 3, 4), lambda a: a.expand(2, 3, 4), x0)
    assert_parity(lambda a: a.expand(-1, 5), lambda a: a.expand(-1, 5), x0)
    assert_parity(lambda a: a.expand_as(Tensor(np.zeros((3, 2)))), lambda a: a.expand_as(torch.zeros(3, 2)), x0)
    y0 = rng().standard_normal((2, 3))
    assert_parity(lambda a: a.repeat(2, 3), lambda a: a.repeat(2, 3), y0)
    assert_parity(lambda a: a.repeat(2, 1, 2), lambda a: a.repeat(2, 1, 2), y0)
    assert_parity(lambda a: a.t().contiguous() * 2, lambda a: a.t().contiguous() * 2, y0)
    assert_parity(lambda a: a.clone() * a, lambda a: a.clone() * a, y0)
    x = Tensor(y0)
    assert x.contiguous() is x and x.t().contiguous().data.flags.c_contiguous
    assert not np.shares_memory(x.clone().data, x.data)
    gradcheck(lambda a: a.repeat(2, 1, 3), y0)
    gradcheck(lambda a: a.expand(4, 3, 2) * a.expand(4, 3, 2), x0.reshape(1, 3, 1).repeat(2, 2))


def test_detach_requires_grad_and_leaf_flags():
    x = Tensor(np.ones(3, np.float32)).requires_grad_()
    y = x * 2
    assert x.requires_grad and x.is_leaf and not y.is_leaf and y.grad_fn is not None
    assert not y.detach().requires_grad and np.shares_memory(y.detach().data, y.data)
    with pytest.raises(RuntimeError, match="floating-point"):
        Tensor(np.ones(3, np.int64)).requires_grad_()


@pytest.mark.parametrize("method,dtype", [("float", np.float32), ("double", np.float64), ("half", np.float16),
                                          ("long", np.int64), ("int", np.int32), ("bool", np.bool_)])
def test_dtype_conversions_like_torch(method, dtype):
    x0 = np.array([[-1.5, 0.0, 2.25]], dtype=np.float32)
    expected = getattr(torch.from_numpy(x0), method)()
    actual = getattr(Tensor(x0), method)()
    assert actual.dtype == expected.numpy().dtype == dtype
    np.testing.assert_array_equal(actual.data, expected.numpy())


def test_casts_are_differentiable():
    x0 = rng().standard_normal((2, 3)).astype(np.float32)
    assert_parity(lambda a: a.double() * 3, lambda a: a.double() * 3, x0)
    assert_parity(lambda a: a.to(convnp.float64).exp(), lambda a: a.to(torch.float64).exp(), x0)
    assert_parity(lambda a: a.half().float() * 2, lambda a: a.half().float() * 2, x0, rtol=1e-3, atol=1e-3)
    other = np.zeros(1, np.float64)
    assert_parity(lambda a: a.type_as(Tensor(other)), lambda a: a.type_as(torch.from_numpy(other)), x0)
    assert_parity(lambda a: a.to(Tensor(other)), lambda a: a.to(torch.from_numpy(other)), x0)
    x = Tensor(x0, requires_grad=True)
    x.double().sum().backward()
    assert x.grad.dtype == np.float32
    gradcheck(lambda a: a.to(np.float64) * a, x0.astype(np.float64))


def test_devices_and_to():
    x = Tensor(np.ones(2, np.float32))
    assert x.to("cpu") is x and x.to(convnp.device("cpu")) is x and x.cpu() is x
    assert x.device == convnp.device("cpu") == "cpu" and str(x.device) == "cpu"
    assert x.to("cpu", convnp.float64).dtype == np.float64
    assert x.to(dtype=convnp.float16, device="cpu").dtype == np.float16
    device = convnp.device("cuda" if convnp.cuda.is_available() else "cpu")
    assert x.to(device) is x
    convnp.device("cuda:0")  # naming a GPU is fine ...
    with pytest.raises(RuntimeError, match="no GPU backend"):  # ... computing on one is not (yet)
        x.to("cuda")
    with pytest.raises(RuntimeError, match="no GPU backend"):
        x.cuda()
    with pytest.raises(ValueError, match="unknown device"):
        convnp.device("tpu")


def test_numpy_item_tolist_and_python_conversions():
    x0 = np.array([[1.5, -2.0]], dtype=np.float32)
    x, t = Tensor(x0), torch.from_numpy(x0)
    assert x.tolist() == t.tolist() and x[0, 1].item() == t[0, 1].item()
    assert float(x[0, 0]) == 1.5 and f"{x[0, 0]:.2f}" == f"{t[0, 0]:.2f}" == "1.50"
    assert x.numpy() is x.data and np.asarray(x) is x.data
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)


REDUCTIONS = [
    ("sum", lambda a: a.sum(1), lambda a: a.sum(1)),
    ("sum keepdim", lambda a: a.sum(dim=(0, 2), keepdim=True), lambda a: a.sum(dim=(0, 2), keepdim=True)),
    ("mean", lambda a: a.mean(-1), lambda a: a.mean(-1)),
    ("mean all", lambda a: a.mean(), lambda a: a.mean()),
    ("amax", lambda a: a.amax(1), lambda a: a.amax(1)),
    ("amin keepdim", lambda a: a.amin((0, 1), keepdim=True), lambda a: a.amin((0, 1), keepdim=True)),
    ("max all", lambda a: a.max(), lambda a: a.max()),
    ("min all", lambda a: a.min(), lambda a: a.min()),
    ("max dim values", lambda a: a.max(1)[0], lambda a: a.max(1)[0]),
    ("max dim keepdim", lambda a: a.max(dim=2, keepdim=True).values, lambda a: a.max(dim=2, keepdim=True).values),
    ("min dim values", lambda a: a.min(0).values, lambda a: a.min(0).values),
    ("var", lambda a: a.var(1), lambda a: a.var(1)),
    ("var biased", lambda a: a.var(1, unbiased=False), lambda a: a.var(1, unbiased=False)),
    ("var correction", lambda a: a.var(dim=(0, 2), correction=0), lambda a: a.var(dim=(0, 2), correction=0)),
    ("var all", lambda a: a.var(), lambda a: a.var()),
    ("std", lambda a: a.std(2, keepdim=True), lambda a: a.std(2, keepdim=True)),
    ("std all", lambda a: a.std(), lambda a: a.std()),
    ("prod", lambda a: a.prod(1), lambda a: a.prod(1)),
    ("prod all", lambda a: a.prod(), lambda a: a.prod()),
    ("logsumexp", lambda a: a.logsumexp(1), lambda a: a.logsumexp(1)),
    ("logsumexp keepdim", lambda a: a.logsumexp((0, 2), keepdim=True), lambda a: a.logsumexp((0, 2), keepdim=True)),
    ("norm", lambda a: a.norm(), lambda a: a.norm()),
    ("norm dim", lambda a: a.norm(dim=1), lambda a: a.norm(dim=1)),
    ("norm p1", lambda a: a.norm(p=1, dim=2), lambda a: a.norm(p=1, dim=2)),
    ("norm p3", lambda a: a.norm(3, dim=0, keepdim=True), lambda a: a.norm(3, dim=0, keepdim=True)),
    ("norm inf", lambda a: a.norm(float("inf"), dim=1), lambda a: a.norm(float("inf"), dim=1)),
]


@pytest.mark.parametrize("name,ours,theirs", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reductions_vs_torch(name, ours, theirs, dtype):
    x0 = rng(1).standard_normal((3, 4, 5)).astype(dtype)
    assert_parity(ours, theirs, x0)
    if dtype == np.float64:
        gradcheck(ours, x0)


def test_reductions_with_ties_and_zeros_route_gradients_like_torch():
    ties = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    assert_parity(lambda a: a.max(), lambda a: a.max(), ties)
    assert_parity(lambda a: a.amax(1), lambda a: a.amax(1), ties)
    assert_parity(lambda a: a.max(1).values, lambda a: a.max(1).values, ties)
    zeros = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 3.0]])
    assert_parity(lambda a: a.prod(1), lambda a: a.prod(1), zeros)
    assert_parity(lambda a: a.norm(dim=1), lambda a: a.norm(dim=1), np.array([[0.0, 0.0], [3.0, 4.0]]))


def test_max_min_with_dim_return_values_and_indices():
    x0 = rng().standard_normal((3, 5)).astype(np.float32)
    for which in ("max", "min"):
        ours, theirs = getattr(Tensor(x0), which)(1), getattr(torch.from_numpy(x0), which)(1)
        values, indices = ours
        assert indices.dtype == np.int64 and indices.shape == (3,)
        np.testing.assert_array_equal(indices.data, theirs.indices.numpy())
        np.testing.assert_array_equal(values.data, theirs.values.numpy())
        assert ours.values is values and ours.indices is indices
    other = rng(2).standard_normal((3, 5)).astype(np.float32)
    assert_parity(lambda a, b: a.max(b), lambda a, b: a.max(b), x0, other)
    assert_parity(lambda a, b: convnp.maximum(a, b), torch.maximum, x0, other)
    assert_parity(lambda a, b: convnp.minimum(a, b), torch.minimum, x0, other)
    gradcheck(lambda a, b: convnp.maximum(a, b) * convnp.minimum(a, b), x0, other)
    ties = np.array([1.0, 2.0, 3.0])
    assert_parity(convnp.maximum, torch.maximum, ties, np.array([1.0, 0.0, 3.0]))  # ties: half to each


def test_argmax_argmin_all_any():
    x0 = rng().standard_normal((3, 4))
    x, t = Tensor(x0), torch.from_numpy(x0)
    for ours, theirs in [(x.argmax(), t.argmax()), (x.argmax(1), t.argmax(1)), (x.argmin(dim=0), t.argmin(dim=0)),
                         (x.argmax(1, keepdim=True), t.argmax(1, keepdim=True)), ((x > 0).all(), (t > 0).all()),
                         ((x > 0).any(1), (t > 0).any(1)), ((x > 0).all(dim=0), (t > 0).all(dim=0))]:
        assert ours.dtype == theirs.numpy().dtype and ours.shape == tuple(theirs.shape)
        np.testing.assert_array_equal(ours.data, theirs.numpy())
    assert x.sum(dim=0).dtype == np.float64 and Tensor(np.ones(3, np.int32)).sum().dtype == np.int64
    assert (x > 0).sum().dtype == (t > 0).sum().numpy().dtype


def test_comparisons_give_bool_tensors():
    a0, b0 = rng().integers(0, 3, (3, 4)).astype(np.float32), rng(1).integers(0, 3, (3, 4)).astype(np.float32)
    a, b, ta, tb = Tensor(a0), Tensor(b0), torch.from_numpy(a0), torch.from_numpy(b0)
    pairs = [(a == b, ta == tb), (a != b, ta != tb), (a < b, ta < tb), (a <= 1, ta <= 1), (a > b, ta > tb),
             (a >= 1.0, ta >= 1.0), (a.eq(b), ta.eq(tb)), (a.ne(1), ta.ne(1)), (a.lt(b), ta.lt(tb)),
             (a.le(b), ta.le(tb)), (a.gt(0), ta.gt(0)), (a.ge(b), ta.ge(tb)), (~(a > b), ~(ta > tb)),
             ((a > 0) & (b > 0), (ta > 0) & (tb > 0)), ((a > 0) | (b > 0), (ta > 0) | (tb > 0))]
    for ours, theirs in pairs:
        assert ours.dtype == np.bool_ and not ours.requires_grad
        np.testing.assert_array_equal(ours.data, theirs.numpy())
    assert (a == None) is False  # noqa: E711 - as torch: a tensor never equals None
    params = [Tensor(a0), Tensor(b0)]
    assert {params[0]: 1}[params[0]] == 1  # still hashable by identity (optimizer state is keyed by tensors)


ELEMENTWISE = [
    ("abs", lambda a: a.abs(), lambda a: a.abs(), None),
    ("neg", lambda a: a.neg(), lambda a: a.neg(), None),
    ("sqrt", lambda a: a.sqrt(), lambda a: a.sqrt(), "positive"),
    ("rsqrt", lambda a: a.rsqrt(), lambda a: a.rsqrt(), "positive"),
    ("exp", lambda a: a.exp(), lambda a: a.exp(), None),
    ("log", lambda a: a.log(), lambda a: a.log(), "positive"),
    ("log2", lambda a: a.log2(), lambda a: a.log2(), "positive"),
    ("pow number", lambda a: a.pow(3), lambda a: a.pow(3), None),
    ("pow float", lambda a: a ** 1.5, lambda a: a ** 1.5, "positive"),
    ("rpow", lambda a: 2 ** a, lambda a: 2 ** a, None),
    ("rpow float", lambda a: 0.5 ** a, lambda a: 0.5 ** a, None),
    ("sign", lambda a: a.sign() * a, lambda a: a.sign() * a, None),
    ("clamp", lambda a: a.clamp(-0.5, 0.5), lambda a: a.clamp(-0.5, 0.5), None),
    ("clamp min", lambda a: a.clamp(min=0.1), lambda a: a.clamp(min=0.1), None),
    ("clip max", lambda a: a.clip(max=0.2), lambda a: a.clip(max=0.2), None),
    ("sigmoid", lambda a: a.sigmoid(), lambda a: a.sigmoid(), None),
    ("tanh", lambda a: a.tanh(), lambda a: a.tanh(), None),
    ("relu", lambda a: a.relu(), lambda a: a.relu(), None),
    ("softmax", lambda a: a.softmax(1), lambda a: a.softmax(1), None),
    ("log_softmax", lambda a: a.log_softmax(-1), lambda a: a.log_softmax(-1), None),
    ("masked_fill", lambda a: a.masked_fill(a > 0.3, -1.0), lambda a: a.masked_fill(a > 0.3, -1.0), None),
    ("where method", lambda a: a.where(a > 0, a * 2), lambda a: a.where(a > 0, a * 2), None),
    ("where", lambda a: convnp.where(a > 0, a, 0.0), lambda a: torch.where(a > 0, a, 0.0), None),
    ("where two", lambda a: convnp.where(a > 0, a * a, -a), lambda a: torch.where(a > 0, a * a, -a), None),
]


@pytest.mark.parametrize("name,ours,theirs,domain", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_vs_torch(name, ours, theirs, domain, dtype):
    x0 = rng(3).standard_normal((3, 4))
    if domain == "positive":
        x0 = np.abs(x0) + 0.5
    x0 = x0.astype(dtype)
    assert_parity(ours, theirs, x0)
    if dtype == np.float64:
        gradcheck(ours, x0)


def test_tensor_exponents():
    a0, b0 = rng().uniform(0.5, 2, (3, 4)), rng(1).standard_normal((3, 4))
    assert_parity(lambda a, b: a ** b, lambda a, b: a ** b, a0, b0)
    assert_parity(lambda a, b: a.pow(b[0]), lambda a, b: a.pow(b[0]), a0, b0)
    gradcheck(lambda a, b: a ** b, a0, b0)
    zero = np.array([0.0, 1.0, 2.0])
    assert_parity(lambda a, b: a ** b, lambda a, b: a ** b, zero, np.array([2.0, 1.0, 0.5]))
    assert (Tensor(np.array([1, 2])) ** 2).dtype == np.int64 and (Tensor(np.array([1, 2])) ** 0.5).dtype == np.float32


def test_indexing_gather_index_select():
    x0 = rng().standard_normal((4, 5))
    rows = np.array([2, 0, 2])
    assert_parity(lambda a: a[rows], lambda a: a[torch.from_numpy(rows)], x0)
    assert_parity(lambda a: a[Tensor(rows)], lambda a: a[torch.from_numpy(rows)], x0)
    assert_parity(lambda a: a[[1, 3], 2:], lambda a: a[[1, 3], 2:], x0)
    mask = x0 > 0
    assert_parity(lambda a: a[a > 0], lambda a: a[a > 0], x0)
    assert_parity(lambda a: a[Tensor(mask[:, 0])], lambda a: a[torch.from_numpy(mask[:, 0])], x0)
    index = rng(1).integers(0, 5, (4, 3))
    assert_parity(lambda a: a.gather(1, Tensor(index)), lambda a: a.gather(1, torch.from_numpy(index)), x0)
    index0 = rng(2).integers(0, 4, (2, 5))
    assert_parity(lambda a: a.gather(0, index0), lambda a: a.gather(0, torch.from_numpy(index0)), x0)
    small = rng(3).integers(0, 5, (2, 2))  # smaller than the input outside dim, as torch allows
    assert_parity(lambda a: convnp.gather(a, 1, small), lambda a: torch.gather(a, 1, torch.from_numpy(small)), x0)
    assert_parity(lambda a: a.index_select(0, Tensor(rows)), lambda a: a.index_select(0, torch.from_numpy(rows)), x0)
    assert_parity(lambda a: a.index_select(-1, rows), lambda a: a.index_select(-1, torch.from_numpy(rows)), x0)
    gradcheck(lambda a: a.gather(1, index) * a.index_select(1, np.array([0, 0, 4])), x0)
    y = Tensor(x0.copy())
    y[y > 0] = 0.0
    assert (y.data <= 0).all()
    with pytest.raises(RuntimeError, match="in-place"):
        Tensor(x0, requires_grad=True)[0] = 1.0


def test_in_place_helpers_under_no_grad():
    w = Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        w.zero_()
    with convnp.no_grad():
        w.mul_(3).add_(1).sub_(Tensor(np.ones((2, 2), np.float32)), alpha=2)
        assert (w.data == 2).all()
        w.clamp_(max=1.5).fill_(0.25).div_(0.5)
        assert (w.data == 0.5).all() and w.data.dtype == np.float32
        w.copy_(np.full((2, 2), 7.0)).zero_()
        assert (w.data == 0).all()


# --- functional -----------------------------------------------------------------------------------------------
import torch.nn.functional as TF  # noqa: E402

ACTIVATIONS = [
    ("relu6", lambda a: F.relu6(a), lambda a: TF.relu6(a)),
    ("leaky_relu", lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2)),
    ("elu", lambda a: F.elu(a), lambda a: TF.elu(a)),
    ("elu alpha", lambda a: F.elu(a, alpha=0.5), lambda a: TF.elu(a, alpha=0.5)),
    ("gelu", lambda a: F.gelu(a), lambda a: TF.gelu(a)),
    ("gelu tanh", lambda a: F.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh")),
    ("silu", lambda a: F.silu(a), lambda a: TF.silu(a)),
    ("softplus", lambda a: F.softplus(a), lambda a: TF.softplus(a)),
    ("softplus beta", lambda a: F.softplus(a * 10, beta=2, threshold=5),
     lambda a: TF.softplus(a * 10, beta=2, threshold=5)),
    ("hardtanh", lambda a: F.hardtanh(a * 2), lambda a: TF.hardtanh(a * 2)),
    ("hardtanh range", lambda a: F.hardtanh(a, -0.5, 0.25), lambda a: TF.hardtanh(a, -0.5, 0.25)),
    ("sigmoid", lambda a: F.sigmoid(a), lambda a: TF.sigmoid(a)),
    ("tanh", lambda a: F.tanh(a), lambda a: TF.tanh(a)),
    ("relu", lambda a: F.relu(a), lambda a: TF.relu(a)),
    ("softmax", lambda a: F.softmax(a, dim=0), lambda a: TF.softmax(a, dim=0)),
    ("log_softmax", lambda a: F.log_softmax(a, dim=1), lambda a: TF.log_softmax(a, dim=1)),
    ("normalize", lambda a: F.normalize(a), lambda a: TF.normalize(a)),
    ("normalize p1 dim0", lambda a: F.normalize(a, p=1, dim=0), lambda a: TF.normalize(a, p=1, dim=0)),
]


@pytest.mark.parametrize("name,ours,theirs", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_vs_torch(name, ours, theirs, dtype):
    x0 = (rng(4).standard_normal((4, 6)) * 3).astype(dtype)
    assert_parity(ours, theirs, x0)
    if dtype == np.float64:
        gradcheck(ours, x0 + 0.01)  # (away from the kinks at exactly 0)


def test_gelu_extreme_values_match_torch():
    x0 = np.array([-40.0, -8.0, -3.5, -2.9, -1e-3, 0.0, 2.9, 3.1, 8.0, 40.0])
    assert_parity(F.gelu, TF.gelu, x0)
    assert_parity(F.gelu, TF.gelu, x0.astype(np.float32))


LOSS_CASES = [
    ("nll", lambda x, t: F.nll_loss(F.log_softmax(x, 1), t), lambda x, t: TF.nll_loss(TF.log_softmax(x, 1), t)),
    ("nll sum weight", lambda x, t: F.nll_loss(F.log_softmax(x, 1), t, weight=W, reduction="sum"),
     lambda x, t: TF.nll_loss(TF.log_softmax(x, 1), t, weight=torch.from_numpy(W), reduction="sum")),
    ("nll none ignore", lambda x, t: F.nll_loss(F.log_softmax(x, 1), t, ignore_index=2, reduction="none"),
     lambda x, t: TF.nll_loss(TF.log_softmax(x, 1), t, ignore_index=2, reduction="none")),
    ("ce weight", lambda x, t: F.cross_entropy(x, t, weight=W),
     lambda x, t: TF.cross_entropy(x, t, weight=torch.from_numpy(W))),
    ("ce ignore", lambda x, t: F.cross_entropy(x, t, ignore_index=1),
     lambda x, t: TF.cross_entropy(x, t, ignore_index=1)),
    ("ce weight ignore smoothing", lambda x, t: F.cross_entropy(x, t, weight=W, ignore_index=0, label_smoothing=0.2),
     lambda x, t: TF.cross_entropy(x, t, weight=torch.from_numpy(W), ignore_index=0, label_smoothing=0.2)),
    ("ce smoothing sum weight", lambda x, t: F.cross_entropy(x, t, "sum", 0.1, weight=W),
     lambda x, t: TF.cross_entropy(x, t, torch.from_numpy(W), reduction="sum", label_smoothing=0.1)),
    ("ce none smoothing ignore", lambda x, t: F.cross_entropy(x, t, "none", 0.3, ignore_index=3),
     lambda x, t: TF.cross_entropy(x, t, reduction="none", label_smoothing=0.3, ignore_index=3)),
    ("ce smoothing", lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
     lambda x, t: TF.cross_entropy(x, t, label_smoothing=0.1)),
]
W = np.array([0.5, 1.0, 2.0, 0.25, 1.5])


@pytest.mark.parametrize("name,ours,theirs", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_losses_vs_torch(name, ours, theirs, dtype):
    x0 = rng(5).standard_normal((6, 5)).astype(dtype)
    t0 = np.array([0, 1, 2, 3, 4, 1])
    global W
    weights = W
    W = weights.astype(dtype)
    try:
        assert_parity(lambda x, t: ours(x, t.data), lambda x, t: theirs(x, t), x0, t0)
        if dtype == np.float64:
            gradcheck(lambda x: ours(x, t0), x0)
    finally:
        W = weights


def test_cross_entropy_spatial_and_probability_targets():
    x0 = rng(6).standard_normal((2, 4, 3, 3))
    t0 = rng(7).integers(0, 4, (2, 3, 3))
    assert_parity(lambda x: F.cross_entropy(x, t0), lambda x: TF.cross_entropy(x, torch.from_numpy(t0)), x0)
    assert_parity(lambda x: F.nll_loss(F.log_softmax(x, 1), t0, reduction="none"),
                  lambda x: TF.nll_loss(TF.log_softmax(x, 1), torch.from_numpy(t0), reduction="none"), x0)
    probs = rng(8).dirichlet(np.ones(4), size=5)
    logits = rng(9).standard_normal((5, 4))
    for kwargs in ({}, {"reduction": "sum"}, {"reduction": "none"}, {"label_smoothing": 0.2},
                   {"weight": np.array([1.0, 2.0, 0.5, 1.0])}):
        torch_kwargs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        assert_parity(lambda x: F.cross_entropy(x, probs, **kwargs),
                      lambda x: TF.cross_entropy(x, torch.from_numpy(probs), **torch_kwargs), logits)
    gradcheck(lambda x: F.cross_entropy(x, probs), logits)
    with pytest.raises(ValueError, match="out of range"):
        F.cross_entropy(Tensor(logits), np.array([0, 1, 2, 3, 4]), weight=np.ones(4))


def test_binary_and_regression_losses_vs_torch():
    r = rng(10)
    logits, target = r.standard_normal((4, 3)) * 3, r.uniform(0, 1, (4, 3))
    probs = 1 / (1 + np.exp(-logits))
    weight, pos_weight = r.uniform(0.5, 2, (4, 3)), np.array([1.0, 3.0, 0.5])
    for reduction in ("mean", "sum", "none"):
        assert_parity(lambda x, t: F.binary_cross_entropy(x, t, reduction=reduction),
                      lambda x, t: TF.binary_cross_entropy(x, t, reduction=reduction), probs, target,
                      requires_grad=[True, False])
        assert_parity(lambda x, t: F.binary_cross_entropy_with_logits(x, t, weight=weight, reduction=reduction,
                                                                      pos_weight=pos_weight),
                      lambda x, t: TF.binary_cross_entropy_with_logits(
                          x, t, weight=torch.from_numpy(weight), reduction=reduction,
                          pos_weight=torch.from_numpy(pos_weight)), logits, target, requires_grad=[True, False])
        assert_parity(lambda x, t: F.l1_loss(x, t, reduction=reduction),
                      lambda x, t: TF.l1_loss(x, t, reduction=reduction), logits, target)
        assert_parity(lambda x, t: F.smooth_l1_loss(x, t, reduction=reduction, beta=0.5),
                      lambda x, t: TF.smooth_l1_loss(x, t, reduction=reduction, beta=0.5), logits, target)
        assert_parity(lambda x, t: F.mse_loss(x, t, reduction=reduction),
                      lambda x, t: TF.mse_loss(x, t, reduction=reduction), logits, target)
    assert_parity(lambda x, t: F.binary_cross_entropy(x, t, weight=weight),
                  lambda x, t: TF.binary_cross_entropy(x, t, weight=torch.from_numpy(weight)), probs, target,
                  requires_grad=[True, False])
    assert_parity(lambda x, t: F.binary_cross_entropy_with_logits(x, t), TF.binary_cross_entropy_with_logits,
                  (logits * 100).astype(np.float32), target.astype(np.float32), requires_grad=[True, False])
    gradcheck(lambda x: F.binary_cross_entropy(x, target), probs)
    gradcheck(lambda x: F.binary_cross_entropy_with_logits(x, target, pos_weight=pos_weight), logits)
    gradcheck(lambda x: F.smooth_l1_loss(x, target), logits)
    gradcheck(lambda x, t: F.l1_loss(x, t, reduction="sum"), logits, target)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(Tensor(logits), Tensor(target))


def test_dropout_and_dropout2d():
    x0 = np.ones((20, 30, 2, 2), np.float32)
    y = F.dropout2d(Tensor(x0, requires_grad=True), 0.4, rng=np.random.default_rng(0))
    per_channel = y.data.reshape(20, 30, -1)
    assert set(np.unique(per_channel)) <= {0.0, np.float32(1 / 0.6)}
    assert (per_channel.min(-1) == per_channel.max(-1)).all()  # whole channels, like torch
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.5
    y.sum().backward()
    assert np.array_equal(y._ctx is None or y.data, y.data)
    assert F.dropout2d(Tensor(x0), 0.5, training=False).data is x0
    assert F.dropout2d(Tensor(x0[0]), 0.5, rng=np.random.default_rng(1)).shape == (30, 2, 2)
    x = Tensor(x0, requires_grad=True)
    F.dropout2d(x, 0.5, rng=np.random.default_rng(2)).sum().backward()
    assert set(np.unique(x.grad)) <= {0.0, 2.0}


def test_pad_vs_torch():
    x0 = rng(11).standard_normal((2, 3, 4, 5))
    for mode in ("constant", "reflect", "replicate", "circular"):
        for widths in ((1, 2), (2, 1, 0, 3), (1, 1, 2, 2)) if mode == "constant" else ((2, 1, 0, 3), (1, 1, 2, 2)):
            assert_parity(lambda x: F.pad(x, widths, mode=mode),
                          lambda x: TF.pad(x, widths, mode=mode), x0)
        gradcheck(lambda x: F.pad(x, (1, 2, 2, 1), mode=mode), x0)
    assert_parity(lambda x: F.pad(x, (1, 1), value=-2.5), lambda x: TF.pad(x, (1, 1), value=-2.5), x0)
    with pytest.raises(ValueError, match="reflect"):
        F.pad(Tensor(x0), (5, 5), mode="reflect")


def test_one_hot_vs_torch():
    t0 = np.array([[0, 2], [1, 3]])
    for classes in (-1, 5):
        ours, theirs = F.one_hot(t0, classes), TF.one_hot(torch.from_numpy(t0), classes)
        assert ours.dtype == np.int64 and ours.shape == tuple(theirs.shape)
        np.testing.assert_array_equal(ours.data, theirs.numpy())


MAX_POOLS = [dict(kernel_size=3, stride=2, padding=1, dilation=2), dict(kernel_size=2, ceil_mode=True),
             dict(kernel_size=3, stride=2, ceil_mode=True, padding=1), dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
             dict(kernel_size=2, stride=1)]


@pytest.mark.parametrize("kwargs", MAX_POOLS)
def test_max_pool2d_options_vs_torch(kwargs):
    x0 = rng(12).standard_normal((2, 3, 7, 8))
    assert_parity(lambda x: F.max_pool2d(x, **kwargs), lambda x: TF.max_pool2d(x, **kwargs), x0)
    ours, ours_indices = F.max_pool2d(Tensor(x0), return_indices=True, **kwargs)
    theirs, their_indices = TF.max_pool2d(torch.from_numpy(x0), return_indices=True, **kwargs)
    assert ours_indices.dtype == np.int64
    np.testing.assert_array_equal(ours_indices.data, their_indices.numpy())
    gradcheck(lambda x: F.max_pool2d(x, **kwargs), x0)


AVG_POOLS = [dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), dict(kernel_size=2, ceil_mode=True),
             dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
             dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
             dict(kernel_size=(2, 3), divisor_override=4), dict(kernel_size=3, stride=2, padding=1, divisor_override=2)]


@pytest.mark.parametrize("kwargs", AVG_POOLS)
def test_avg_pool2d_options_vs_torch(kwargs):
    x0 = rng(13).standard_normal((2, 3, 7, 8))
    assert_parity(lambda x: F.avg_pool2d(x, **kwargs), lambda x: TF.avg_pool2d(x, **kwargs), x0)
    assert_parity(lambda x: F.avg_pool2d(x, **kwargs), lambda x: TF.avg_pool2d(x, **kwargs), x0.astype(np.float32))
    gradcheck(lambda x: F.avg_pool2d(x, **kwargs), x0)


@pytest.mark.parametrize("size", [1, (2, 3), (3, 3), (5, 4), (None, 2)])
def test_adaptive_max_pool2d_vs_torch(size):
    x0 = rng(14).standard_normal((2, 3, 7, 6))
    assert_parity(lambda x: F.adaptive_max_pool2d(x, size), lambda x: TF.adaptive_max_pool2d(x, size), x0)
    _, ours = F.adaptive_max_pool2d(Tensor(x0), size, return_indices=True)
    _, theirs = TF.adaptive_max_pool2d(torch.from_numpy(x0), size, return_indices=True)
    np.testing.assert_array_equal(ours.data, theirs.numpy())
    gradcheck(lambda x: F.adaptive_max_pool2d(x, size), x0)


INTERPOLATIONS = [dict(size=(7, 5)), dict(scale_factor=2), dict(size=(3, 2)), dict(size=(7, 9), mode="bilinear"),
                  dict(scale_factor=2, mode="bilinear"), dict(size=(3, 4), mode="bilinear"),
                  dict(size=(6, 7), mode="bilinear", align_corners=True), dict(scale_factor=0.5, mode="bilinear"),
                  dict(scale_factor=1.5)]


@pytest.mark.parametrize("kwargs", INTERPOLATIONS)
def test_interpolate_vs_torch(kwargs):
    x0 = rng(15).standard_normal((2, 3, 4, 6))
    assert_parity(lambda x: F.interpolate(x, **kwargs), lambda x: TF.interpolate(x, **kwargs), x0)
    gradcheck(lambda x: F.interpolate(x, **kwargs), x0)


def test_linear_functional_vs_torch():
    x0, w0, b0 = rng(16).standard_normal((3, 5)), rng(17).standard_normal((4, 5)), rng(18).standard_normal(4)
    assert_parity(F.linear, TF.linear, x0, w0, b0)
    assert_parity(lambda x, w: F.linear(x, w), lambda x, w: TF.linear(x, w), x0, w0)


# --- nn modules and Module methods -----------------------------------------------------------------------------
MODULES = [
    (lambda: nn.Identity(54), lambda: torch.nn.Identity(54)),
    (lambda: nn.ReLU(inplace=True), lambda: torch.nn.ReLU()),
    (lambda: nn.ReLU6(), torch.nn.ReLU6), (lambda: nn.ELU(0.7), lambda: torch.nn.ELU(0.7)),
    (nn.GELU, torch.nn.GELU), (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")), (nn.SiLU, torch.nn.SiLU),
    (lambda: nn.Softplus(2.0), lambda: torch.nn.Softplus(2.0)), (nn.Hardtanh, torch.nn.Hardtanh),
    (lambda: nn.LeakyReLU(0.1, inplace=True), lambda: torch.nn.LeakyReLU(0.1)),
    (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
    (lambda: nn.LogSoftmax(dim=-1), lambda: torch.nn.LogSoftmax(dim=-1)),
    (lambda: nn.MaxPool2d(3, 2, 1, dilation=1, ceil_mode=True), lambda: torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
    (lambda: nn.MaxPool2d(2, dilation=2), lambda: torch.nn.MaxPool2d(2, dilation=2)),
    (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), lambda: torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
    (lambda: nn.AvgPool2d(2, ceil_mode=True, divisor_override=3), lambda: torch.nn.AvgPool2d(2, ceil_mode=True, divisor_override=3)),
    (lambda: nn.AdaptiveMaxPool2d((2, 3)), lambda: torch.nn.AdaptiveMaxPool2d((2, 3))),
    (lambda: nn.Upsample(scale_factor=2), lambda: torch.nn.Upsample(scale_factor=2)),
    (lambda: nn.Upsample(size=(4, 9), mode="bilinear"), lambda: torch.nn.Upsample(size=(4, 9), mode="bilinear")),
    (lambda: nn.Flatten(), lambda: torch.nn.Flatten()),
    (lambda: nn.ZeroPad2d((1, 2, 0, 1)), lambda: torch.nn.ZeroPad2d((1, 2, 0, 1))),
    (lambda: nn.ConstantPad2d(1, -0.5), lambda: torch.nn.ConstantPad2d(1, -0.5)),
    (lambda: nn.ReflectionPad2d(2), lambda: torch.nn.ReflectionPad2d(2)),
    (lambda: nn.ReplicationPad2d((2, 1, 1, 3)), lambda: torch.nn.ReplicationPad2d((2, 1, 1, 3))),
]


@pytest.mark.parametrize("ours,theirs", MODULES)
def test_modules_vs_torch(ours, theirs):
    x0 = rng(20).standard_normal((2, 3, 5, 6)).astype(np.float32)
    assert_parity(lambda x: ours()(x), lambda x: theirs()(x), x0)


def test_loss_modules_vs_torch():
    logits, target = rng(21).standard_normal((6, 4)), np.array([0, 3, 1, 2, 1, 3])
    weight = np.array([1.0, 0.5, 2.0, 1.0])
    cases = [(nn.NLLLoss(weight=weight, ignore_index=1), torch.nn.NLLLoss(weight=torch.from_numpy(weight), ignore_index=1),
              lambda x: F.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1)),
             (nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1),
              torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weight), label_smoothing=0.1), None, None)]
    for ours, theirs, prep_ours, prep_theirs in cases:
        assert_parity(lambda x: ours(prep_ours(x) if prep_ours else x, target),
                      lambda x: theirs(prep_theirs(x) if prep_theirs else x, torch.from_numpy(target)), logits)
    probs, y = 1 / (1 + np.exp(-logits)), rng(22).uniform(0, 1, logits.shape)
    for ours, theirs, x0 in [(nn.BCELoss(), torch.nn.BCELoss(), probs),
                             (nn.BCEWithLogitsLoss(pos_weight=np.full(4, 2.0)),
                              torch.nn.BCEWithLogitsLoss(pos_weight=torch.full((4,), 2.0, dtype=torch.float64)), logits),
                             (nn.L1Loss(reduction="sum"), torch.nn.L1Loss(reduction="sum"), logits),
                             (nn.SmoothL1Loss(beta=0.3), torch.nn.SmoothL1Loss(beta=0.3), logits),
                             (nn.MSELoss(), torch.nn.MSELoss(), logits)]:
        assert_parity(lambda x, t: ours(x, t), lambda x, t: theirs(x, t), x0, y, requires_grad=[True, False])


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
        self.register_buffer("scale", convnp.ones(3), persistent=False)
        self.register_buffer("offset", np.zeros(2, np.float32))

    def forward(self, x):
        return self.head(self.bn(self.conv(x)) * convnp.tensor(self.scale).reshape(1, 3, 1, 1)) + self.offset

    def extra_repr(self):
        return "a test block"


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.bn = torch.nn.BatchNorm2d(3)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        self.register_buffer("scale", torch.ones(3), persistent=False)
        self.register_buffer("offset", torch.zeros(2))


def test_module_tree_methods_match_torch():
    ours, theirs = Block(), TorchBlock()
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m).__name__ for m in ours.modules()][1:] == [type(m).__name__ for m in theirs.modules()][1:]
    assert [type(m).__name__ for m in ours.children()] == [type(m).__name__ for m in theirs.children()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())  # 'scale' is not persistent
    assert "scale" not in ours.state_dict() and "offset" in ours.state_dict()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    visited = []
    ours.apply(lambda m: visited.append(type(m).__name__))
    twin_visited = []
    theirs.apply(lambda m: twin_visited.append(type(m).__name__.replace("Torch", "")))
    assert visited == twin_visited
    assert "a test block" in repr(ours)
    assert ours.get_submodule("head.1") is ours.head[1]


def test_requires_grad_freezes_and_to_casts():
    model = Block()
    model.conv.requires_grad_(False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    twin = TorchBlock()
    twin.conv.requires_grad_(False)
    assert trainable == [n for n, p in twin.named_parameters() if p.requires_grad]
    x = Tensor(rng().standard_normal((2, 2, 4, 4)).astype(np.float32))
    model(x).sum().backward()
    assert model.conv.weight.grad is None and model.head[1].weight.grad is not None
    assert model.to("cpu") is model and model.to(convnp.device("cpu")) is model
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters()) and model.bn.running_mean.dtype == np.float64
    assert model.scale.dtype == np.float64  # non-persistent buffers move too
    model.to(convnp.float32)
    assert all(p.dtype == np.float32 for p in model.parameters())
    model.float().to("cpu", convnp.float64)
    assert model.conv.weight.dtype == np.float64
    with pytest.raises(RuntimeError, match="no GPU backend"):
        model.to("cuda")


def test_module_list_and_module_dict():
    layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(3)])
    twin = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(3)])
    layers.append(nn.ReLU())
    twin.append(torch.nn.ReLU())
    assert len(layers) == len(twin) == 4 and isinstance(layers[1:], nn.ModuleList) and len(layers[1:]) == 3
    layers.extend([nn.Tanh()])
    assert isinstance(layers[-1], nn.Tanh)
    assert list(layers.state_dict()) == list(twin.state_dict())
    heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 3)})
    twin_heads = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.Linear(2, 3)})
    assert list(heads.keys()) == list(twin_heads.keys()) and list(heads.state_dict()) == list(twin_heads.state_dict())
    heads["c"] = nn.ReLU()
    assert "c" in heads and len(heads) == 3 and isinstance(heads["c"], nn.ReLU)
    assert [k for k, _ in heads.items()] == ["a", "b", "c"]
    assert isinstance(heads.pop("c"), nn.ReLU) and "c" not in heads
    with pytest.raises(KeyError):
        heads["missing"]
    with pytest.raises(TypeError, match="not a Module"):
        heads["x"] = 3


def test_sequential_indexing_slicing_append_like_torch():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    twin = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    assert list(seq[1:].state_dict()) == list(twin[1:].state_dict()) == ["2.weight", "2.bias"]
    assert isinstance(seq[-1], nn.Linear) and len(seq[:2]) == 2
    seq.append(nn.Sigmoid())
    twin.append(torch.nn.Sigmoid())
    assert list(seq.state_dict()) == list(twin.state_dict()) and len(seq) == 4
    seq[1] = nn.Tanh()
    assert isinstance(seq[1], nn.Tanh)


INITS = [
    ("kaiming_uniform_", {}, (64, 32, 3, 3)), ("kaiming_uniform_", {"a": 5 ** 0.5}, (64, 32, 3, 3)),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}, (64, 32, 3, 3)),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, (64, 32, 3, 3)),
    ("kaiming_normal_", {}, (300, 200)), ("xavier_uniform_", {}, (300, 200)),
    ("xavier_uniform_", {"gain": 2.0}, (32, 16, 5, 5)), ("xavier_normal_", {}, (32, 16, 5, 5)),
    ("uniform_", {"a": -0.3, "b": 0.7}, (200, 300)), ("normal_", {"mean": 1.0, "std": 0.2}, (200, 300)),
]


@pytest.mark.parametrize("name,kwargs,shape", INITS)
def test_init_follows_torch_fan_rules(name, kwargs, shape):
    ours = nn.Parameter(np.zeros(shape, np.float32))
    theirs = torch.zeros(shape)
    assert getattr(nn.init, name)(ours, **kwargs) is ours
    getattr(torch.nn.init, name)(theirs, **kwargs)
    a, b = ours.data, theirs.numpy()
    assert a.dtype == np.float32
    # same distribution: mean, spread and range agree to sampling accuracy (tens of thousands of draws)
    assert abs(a.mean() - b.mean()) < 0.05 * b.std() + 1e-3
    assert abs(a.std() / b.std() - 1) < 0.03
    if "uniform" in name:
        assert abs(a.max() / b.max() - 1) < 0.01 and abs(a.min() / b.min() - 1) < 0.01


def test_init_constants_and_gain():
    w = nn.Parameter(np.ones((3, 4), np.float32))
    nn.init.zeros_(w)
    assert (w.data == 0).all()
    nn.init.ones_(w)
    assert (w.data == 1).all()
    nn.init.constant_(w, 0.25)
    assert (w.data == 0.25).all()
    for nonlinearity, param in [("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("linear", None),
                                ("sigmoid", None), ("selu", None), ("conv2d", None)]:
        assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param))
    with pytest.raises(ValueError, match="fewer than 2"):
        nn.init.xavier_uniform_(nn.Parameter(np.zeros(3, np.float32)))


def test_nn_functional_is_the_torch_spelling():
    import convnp.nn.functional as NF
    assert NF.cross_entropy is F.cross_entropy and NF.max_pool2d is F.max_pool2d and nn.functional.relu is F.relu
    assert set(F.__all__) <= set(dir(NF))


# --- optim ---------------------------------------------------------------------------------------------------
OPTIMIZERS = [
    ("Adadelta", {}), ("Adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1, "maximize": True}),
    ("RMSprop", {}), ("RMSprop", {"momentum": 0.9}), ("RMSprop", {"centered": True, "weight_decay": 0.01}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "maximize": True, "alpha": 0.9}),
    ("Adagrad", {}), ("Adagrad", {"lr_decay": 0.1, "initial_accumulator_value": 0.5, "weight_decay": 0.05}),
    ("Adagrad", {"maximize": True}),
    ("Adam", {"amsgrad": True}), ("Adam", {"maximize": True, "weight_decay": 0.1}), ("AdamW", {"amsgrad": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
]


def _run_optimizer(library, name, kwargs, params0, grads, groups=False):
    if library == "torch":
        params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params0]
        optimizer_class = getattr(torch.optim, name)
    else:
        params = [nn.Parameter(p.copy()) for p in params0]
        optimizer_class = getattr(convnp.optim, name)
    spec = [{"params": params[:1]}, {"params": params[1:], "lr": 0.05}] if groups else params
    optimizer = optimizer_class(spec, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.from_numpy(g.copy()) if library == "torch" else g.copy()
        optimizer.step()
    return [p.detach().numpy() if library == "torch" else p.data for p in params], optimizer


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS)
def test_optimizers_follow_torch(name, kwargs):
    r = rng(30)
    params0 = [r.standard_normal((3, 4)), r.standard_normal(5)]
    grads = [[r.standard_normal(p.shape) for p in params0] for _ in range(6)]
    for groups in (False, True):
        ours, _ = _run_optimizer("convnp", name, kwargs, params0, grads, groups)
        theirs, _ = _run_optimizer("torch", name, kwargs, params0, grads, groups)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS[:9])
def test_optimizer_state_dict_resumes_exactly(name, kwargs):
    r = rng(31)
    params0 = [r.standard_normal((2, 3)), r.standard_normal(4)]
    grads = [[r.standard_normal(p.shape) for p in params0] for _ in range(6)]
    straight, _ = _run_optimizer("convnp", name, kwargs, params0, grads)
    half, optimizer = _run_optimizer("convnp", name, kwargs, params0, grads[:3])
    state = optimizer.state_dict()
    params = [nn.Parameter(p.copy()) for p in half]
    resumed = getattr(convnp.optim, name)(params, **kwargs)
    resumed.load_state_dict(state)
    for step_grads in grads[3:]:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        resumed.step()
    for a, b in zip(straight, params):
        np.testing.assert_array_equal(a, b.data)
    _, twin = _run_optimizer("torch", name, kwargs, params0, grads[:3])
    assert [sorted(s) for s in state["state"].values()] == [sorted(s) for s in twin.state_dict()["state"].values()]


def test_add_param_group_like_torch():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    optimizer = convnp.optim.RMSprop([a], lr=0.1)
    optimizer.add_param_group({"params": [b], "lr": 0.01, "momentum": 0.5})
    twin = torch.optim.RMSprop([torch.nn.Parameter(torch.ones(2, dtype=torch.float64))], lr=0.1)
    twin.add_param_group({"params": [torch.nn.Parameter(torch.ones(3, dtype=torch.float64))], "lr": 0.01,
                          "momentum": 0.5})
    for ours, theirs in zip(optimizer.param_groups, twin.param_groups):
        for key in ("lr", "alpha", "eps", "momentum", "centered", "weight_decay"):
            assert ours[key] == theirs[key]
    with pytest.raises(ValueError, match="more than one"):
        optimizer.add_param_group({"params": [a]})


SCHEDULERS = [
    ("ExponentialLR", {"gamma": 0.8}, 8),
    ("LambdaLR", {"lr_lambda": lambda t: 1 / (1 + t)}, 8),
    ("MultiplicativeLR", {"lr_lambda": lambda t: 0.9 if t % 2 else 0.7}, 8),
    ("ConstantLR", {"factor": 0.25, "total_iters": 3}, 8),
    ("CosineAnnealingWarmRestarts", {"T_0": 3}, 12),
    ("CosineAnnealingWarmRestarts", {"T_0": 2, "T_mult": 2, "eta_min": 0.01}, 16),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3}, 14),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 2, "step_size_down": 3, "mode": "triangular2"}, 16),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 2, "mode": "exp_range", "gamma": 0.9}, 12),
]


def _optimizers_pair(lr=0.1, momentum=0.9):
    ours = convnp.optim.SGD([nn.Parameter(np.ones(2))], lr=lr, momentum=momentum)
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=lr, momentum=momentum)
    return ours, theirs


@pytest.mark.parametrize("name,kwargs,steps", SCHEDULERS)
def test_schedulers_follow_torch(name, kwargs, steps):
    ours_opt, their_opt = _optimizers_pair()
    ours = getattr(convnp.optim.lr_scheduler, name)(ours_opt, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(their_opt, **kwargs)
    for step in range(steps):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12, abs=1e-15), step
        assert ours_opt.param_groups[0]["momentum"] == pytest.approx(their_opt.param_groups[0]["momentum"])
        ours_opt.step()
        their_opt.step()
        ours.step()
        theirs.step()
    # state_dict: a fresh scheduler loaded with it continues identically
    state = ours.state_dict()
    assert "lr_lambdas" not in state
    ours_opt2, _ = _optimizers_pair()
    ours_opt2.load_state_dict(ours_opt.state_dict())
    again = getattr(convnp.optim.lr_scheduler, name)(ours_opt2, **kwargs)
    again.load_state_dict(state)
    for _ in range(3):
        ours.step()
        again.step()
        assert again.get_last_lr() == pytest.approx(ours.get_last_lr(), rel=1e-12)


def test_cosine_warm_restarts_fractional_epochs():
    ours_opt, their_opt = _optimizers_pair()
    ours = convnp.optim.lr_scheduler.CosineAnnealingWarmRestarts(ours_opt, T_0=2, T_mult=2)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(their_opt, T_0=2, T_mult=2)
    for epoch in (0.5, 1.0, 2.5, 5.25, 7.0, 13.5):
        ours.step(epoch)
        theirs.step(epoch)
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)


def test_cyclic_lr_cycles_adam_beta1():
    ours_opt = convnp.optim.Adam([nn.Parameter(np.ones(2))], lr=0.1)
    their_opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    ours = convnp.optim.lr_scheduler.CyclicLR(ours_opt, 0.001, 0.01, step_size_up=2)
    theirs = torch.optim.lr_scheduler.CyclicLR(their_opt, 0.001, 0.01, step_size_up=2)
    for _ in range(6):
        assert ours_opt.param_groups[0]["betas"][0] == pytest.approx(their_opt.param_groups[0]["betas"][0])
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr())
        ours.step()
        theirs.step()


def test_sequential_and_chained_schedulers_follow_torch():
    lrs = convnp.optim.lr_scheduler
    tlrs = torch.optim.lr_scheduler
    ours_opt, their_opt = _optimizers_pair()
    ours = lrs.SequentialLR(ours_opt, [lrs.LinearLR(ours_opt, 0.1, total_iters=3), lrs.ExponentialLR(ours_opt, 0.9),
                                       lrs.StepLR(ours_opt, 2, 0.5)], milestones=[3, 6])
    theirs = tlrs.SequentialLR(their_opt, [tlrs.LinearLR(their_opt, 0.1, total_iters=3),
                                           tlrs.ExponentialLR(their_opt, 0.9), tlrs.StepLR(their_opt, 2, 0.5)],
                               milestones=[3, 6])
    for step in range(12):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12), step
        ours.step()
        theirs.step()
    state = ours.state_dict()
    ours.load_state_dict(state)
    ours_opt, their_opt = _optimizers_pair()
    ours = lrs.ChainedScheduler([lrs.ConstantLR(ours_opt, 0.5, total_iters=2), lrs.ExponentialLR(ours_opt, 0.9),
                                 lrs.StepLR(ours_opt, 3, 0.1)])
    theirs = tlrs.ChainedScheduler([tlrs.ConstantLR(their_opt, 0.5, total_iters=2), tlrs.ExponentialLR(their_opt, 0.9),
                                    tlrs.StepLR(their_opt, 3, 0.1)])
    for step in range(10):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12), step
        ours.step()
        theirs.step()


@pytest.mark.parametrize("kwargs", [{}, {"mode": "max", "patience": 1, "factor": 0.5},
                                    {"patience": 0, "cooldown": 2, "threshold_mode": "abs", "threshold": 0.1,
                                     "min_lr": 0.02}])
def test_reduce_lr_on_plateau_follows_torch(kwargs):
    ours_opt, their_opt = _optimizers_pair()
    ours = convnp.optim.lr_scheduler.ReduceLROnPlateau(ours_opt, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(their_opt, **kwargs)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.89, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.85, 0.86]
    for value in metrics * 2:
        ours.step(value)
        theirs.step(value)
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(their_opt.param_groups[0]["lr"], rel=1e-12)
    again = convnp.optim.lr_scheduler.ReduceLROnPlateau(ours_opt, **kwargs)
    again.load_state_dict(ours.state_dict())
    assert again.num_bad_epochs == ours.num_bad_epochs and again.best == ours.best


# --- convnp.utils.data -------------------------------------------------------------------------------------------
import torch.utils.data as tdata  # noqa: E402

from convnp.utils import data as cdata  # noqa: E402


class Squares:
    """A plain object with __len__ and __getitem__: a map-style dataset for both libraries."""

    def __len__(self):
        return 7

    def __getitem__(self, i):
        return np.full((2, 2), i, np.float32), i * i, {"name": float(i) / 2}


def _same_batches(ours, theirs):
    ours, theirs = list(ours), list(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        a, b = (a, b) if isinstance(a, (tuple, list)) else ((a,), (b,))
        for x, y in zip(a, b):
            if isinstance(x, dict):
                x, y = x["name"], y["name"]
            assert isinstance(x, Tensor) and x.dtype == y.numpy().dtype and x.shape == tuple(y.shape)
            np.testing.assert_array_equal(x.data, y.numpy())


def test_dataloader_batches_like_torch():
    x0, y0 = rng(40).standard_normal((10, 3)).astype(np.float32), np.arange(10)
    for kwargs in ({"batch_size": 4}, {"batch_size": 4, "drop_last": True}, {"batch_size": 3}, {}):
        _same_batches(cdata.DataLoader(cdata.TensorDataset(x0, y0), **kwargs),
                      tdata.DataLoader(tdata.TensorDataset(torch.from_numpy(x0), torch.from_numpy(y0)), **kwargs))
        _same_batches(cdata.DataLoader(Squares(), **kwargs), tdata.DataLoader(Squares(), **kwargs))
    assert len(cdata.DataLoader(Squares(), batch_size=3)) == len(tdata.DataLoader(Squares(), batch_size=3)) == 3
    ours, theirs = next(iter(cdata.DataLoader(Squares(), batch_size=None))), next(iter(tdata.DataLoader(Squares(), batch_size=None)))
    assert isinstance(ours[0], np.ndarray) and ours[1] == theirs[1] == 0
    collated = list(cdata.DataLoader(Squares(), batch_size=5, collate_fn=lambda batch: [s[1] for s in batch]))
    assert collated == [[0, 1, 4, 9, 16], [25, 36]]


def test_default_collate_like_torch():
    samples = [(np.ones(2, np.float64) * i, i, 0.5 * i, True, "s") for i in range(3)]
    ours, theirs = cdata.default_collate(samples), tdata.default_collate(samples)
    for x, y in zip(ours[:4], theirs[:4]):
        assert x.dtype == y.numpy().dtype and x.shape == tuple(y.shape)
        np.testing.assert_array_equal(x.data, y.numpy())
    assert tuple(ours[4]) == tuple(theirs[4]) == ("s", "s", "s")


def test_shuffle_sampler_and_generator():
    ds = cdata.TensorDataset(np.arange(20))
    epochs = [np.concatenate([b[0].data for b in cdata.DataLoader(ds, batch_size=6, shuffle=True,
                                                                   generator=convnp.Generator().manual_seed(3))])
              for _ in range(2)]
    assert sorted(epochs[0]) == list(range(20)) and np.array_equal(epochs[0], epochs[1])  # seeded: repeatable
    loader = cdata.DataLoader(ds, batch_size=6, shuffle=True, generator=convnp.Generator().manual_seed(3))
    first, second = [np.concatenate([b[0].data for b in loader]) for _ in range(2)]
    assert not np.array_equal(first, second)  # a new permutation every epoch
    sampler = cdata.SubsetRandomSampler([1, 3, 5])
    assert sorted(np.concatenate([b[0].data for b in cdata.DataLoader(ds, batch_size=2, sampler=sampler)])) == [1, 3, 5]
    with pytest.raises(ValueError, match="mutually exclusive"):
        cdata.DataLoader(ds, sampler=sampler, shuffle=True)
    batches = list(cdata.DataLoader(ds, batch_sampler=cdata.BatchSampler(cdata.SequentialSampler(ds), 8, True)))
    assert [len(b[0]) for b in batches] == [8, 8]
    with pytest.raises(TypeError, match="__len__ and __getitem__"):
        cdata.DataLoader(iter(range(3)))


def test_random_split_subset_concat_like_torch():
    ds = cdata.TensorDataset(np.arange(11))
    for lengths in ([0.5, 0.3, 0.2], [0.7, 0.3], [4, 7]):
        ours = cdata.random_split(ds, lengths, generator=convnp.Generator().manual_seed(0))
        theirs = tdata.random_split(range(11), lengths, generator=torch.Generator().manual_seed(0))
        assert [len(s) for s in ours] == [len(s) for s in theirs]
        together = np.concatenate([[s[i][0].item() for i in range(len(s))] for s in ours])
        assert sorted(together) == list(range(11))
    with pytest.raises(ValueError, match="sum of input lengths"):
        cdata.random_split(ds, [3, 3])
    subset = cdata.Subset(ds, [4, 2, 9])
    assert [subset[i][0].item() for i in range(3)] == [4, 2, 9]
    _same_batches(cdata.DataLoader(subset, batch_size=2),
                  tdata.DataLoader(tdata.Subset(tdata.TensorDataset(torch.arange(11)), [4, 2, 9]), batch_size=2))
    both = cdata.ConcatDataset([cdata.TensorDataset(np.arange(3)), Squares()])
    twin = tdata.ConcatDataset([tdata.TensorDataset(torch.arange(3)), Squares()])
    assert len(both) == len(twin) == 10
    assert both[4][1] == twin[4][1] == 1 and both[-1][1] == twin[-1][1] == 36 and both[2][0].item() == 2
    with pytest.raises(ValueError, match="size mismatch"):
        cdata.TensorDataset(np.ones(3), np.ones(4))


# --- convnp.vision ---------------------------------------------------------------------------------------------
from PIL import Image  # noqa: E402

from convnp.data.idx import write_idx  # noqa: E402
from convnp.vision import datasets as vdatasets, transforms as T  # noqa: E402


def _write_mnist(folder, n=5, gz=True, seed=0):
    r = rng(seed)
    images, labels = r.integers(0, 256, (n, 28, 28)).astype(np.uint8), r.integers(0, 10, n).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("layout", ["convnp", "torchvision", "data directory"])
def test_mnist_with_torchvision_call_shape(tmp_path, monkeypatch, layout):
    if layout == "convnp":
        images, labels = _write_mnist(tmp_path / "mnist")
        root = tmp_path
    elif layout == "torchvision":
        images, labels = _write_mnist(tmp_path / "MNIST" / "raw", gz=False)
        root = tmp_path
    else:  # root holds no files: convnp's data directory is used
        images, labels = _write_mnist(tmp_path / "cache" / "mnist", seed=1)
        monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "cache"))
        root = tmp_path / "empty"
    dataset = vdatasets.MNIST(root, train=False, download=False)
    assert len(dataset) == 5 and dataset.data.dtype == np.uint8 and dataset.classes[3] == "3 - three"
    image, target = dataset[2]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (28, 28)
    np.testing.assert_array_equal(np.asarray(image), images[2])
    assert target == int(labels[2]) and isinstance(target, int)
    pipeline = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
    transformed = vdatasets.MNIST(root, train=True, transform=pipeline, target_transform=lambda t: t + 100)
    x, y = transformed[1]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and y == int(labels[1]) + 100
    np.testing.assert_allclose(x.data[0], (images[1] / 255 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-6)
    xb, yb = next(iter(cdata.DataLoader(transformed, batch_size=4)))
    assert xb.shape == (4, 1, 28, 28) and xb.dtype == np.float32 and yb.dtype == np.int64


def test_mnist_missing_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="fashion-mnist"):
        vdatasets.FashionMNIST(tmp_path / "empty", download=False)


def test_image_folder(tmp_path):
    for name, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (6, 4), color).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    dataset = vdatasets.ImageFolder(tmp_path, transform=T.ToTensor())
    assert dataset.classes == ["cat", "dog"] and dataset.class_to_idx == {"cat": 0, "dog": 1}
    assert len(dataset) == 4 and [t for _, t in dataset.samples] == [0, 0, 1, 1]
    x, y = dataset[3]
    assert x.shape == (3, 4, 6) and y == 1 and (x.data[2] == 1).all() and (x.data[0] == 0).all()
    with pytest.raises(FileNotFoundError, match="class sub-folders"):
        vdatasets.ImageFolder(tmp_path / "cat")


def test_to_tensor_and_normalize():
    rgb = rng(50).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    for image in (rgb, Image.fromarray(rgb)):
        x = T.ToTensor()(image)
        assert x.shape == (3, 5, 7) and x.dtype == np.float32
        np.testing.assert_allclose(x.data, rgb.transpose(2, 0, 1) / 255, rtol=1e-6)
    gray = T.ToTensor()(rgb[:, :, 0])
    assert gray.shape == (1, 5, 7)
    normalized = T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))(T.ToTensor()(rgb))
    expected = (torch.from_numpy(rgb.transpose(2, 0, 1) / 255) - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) \
        / torch.tensor([0.2, 0.25, 0.5])[:, None, None]
    np.testing.assert_allclose(normalized.data, expected.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        T.Normalize((0.5, 0.5), (1, 1))(T.ToTensor()(rgb))


def test_resize_and_crops():
    rgb = rng(51).integers(0, 256, (6, 10, 3)).astype(np.uint8)
    image = Image.fromarray(rgb)
    assert T.Resize(3)(image).size == (5, 3)  # the shorter side becomes 3, the aspect ratio is kept
    assert T.Resize((4, 8))(image).size == (8, 4)
    chw = rng(52).standard_normal((3, 6, 10)).astype(np.float32)
    resized = T.Resize((9, 4))(Tensor(chw))
    expected = TF.interpolate(torch.from_numpy(chw)[None], size=(9, 4), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(resized.data, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert T.Resize(3)(chw).shape == (3, 3, 5)
    for crop in (T.CenterCrop(4), T.CenterCrop((3, 7))):
        h, w = crop.size
        top, left = int(round((6 - h) / 2)), int(round((10 - w) / 2))
        np.testing.assert_array_equal(np.asarray(crop(image)), rgb[top:top + h, left:left + w])
        np.testing.assert_array_equal(crop(chw), chw[:, top:top + h, left:left + w])
    padded = T.CenterCrop((8, 12))(chw)
    assert padded.shape == (3, 8, 12) and (padded[:, 0] == 0).all() and np.array_equal(padded[:, 1:7, 1:11], chw)
    convnp.manual_seed(0)
    cropped = T.RandomCrop(6, padding=2)(chw)
    big = np.pad(chw, [(0, 0), (2, 2), (2, 2)])
    assert cropped.shape == (3, 6, 6)
    assert any(np.array_equal(cropped, big[:, i:i + 6, j:j + 6]) for i in range(5) for j in range(9))
    assert np.asarray(T.RandomCrop((4, 4), padding=(1, 2))(image)).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="larger than the input"):
        T.RandomCrop(20)(chw)


def test_flips_and_rotation():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    image = Image.fromarray(a)
    np.testing.assert_array_equal(np.asarray(T.RandomHorizontalFlip(p=1.0)(image)), a[:, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(Tensor(a[None])).data[0], a[:, ::-1])
    assert T.RandomHorizontalFlip(p=0.0)(image) is image
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(a[None])[0], a[::-1])
    square = np.arange(25, dtype=np.uint8).reshape(5, 5)
    np.testing.assert_array_equal(T.rotate(square, 90), np.rot90(square))
    np.testing.assert_array_equal(np.asarray(T.rotate(Image.fromarray(square), 90)), np.rot90(square))
    np.testing.assert_array_equal(T.rotate(Tensor(square[None].astype(np.float32)), -90).data[0], np.rot90(square, -1))
    convnp.manual_seed(1)
    turned = T.RandomRotation(30)(Image.fromarray(square))
    assert isinstance(turned, Image.Image) and turned.size == (5, 5)
    assert T.RandomRotation((0, 0))(square[None]).tolist() == square[None].tolist()


# --- top-level functions: creation, random, joining, save/load ---------------------------------------------------
def test_creation_functions_match_torch_dtypes_and_values():
    cases = [
        (convnp.tensor([1.5, 2.0]), torch.tensor([1.5, 2.0])), (convnp.tensor([1, 2]), torch.tensor([1, 2])),
        (convnp.tensor([True, False]), torch.tensor([True, False])),
        (convnp.tensor(np.float64(2.5)), torch.tensor(np.float64(2.5))),
        (convnp.tensor([[1, 2]], dtype=convnp.float64), torch.tensor([[1, 2]], dtype=torch.float64)),
        (convnp.zeros(2, 3), torch.zeros(2, 3)), (convnp.ones((2, 1)), torch.ones((2, 1))),
        (convnp.zeros(3, dtype=convnp.int64), torch.zeros(3, dtype=torch.int64)),
        (convnp.full((2, 2), 7), torch.full((2, 2), 7)), (convnp.full((2,), 0.5), torch.full((2,), 0.5)),
        (convnp.arange(5), torch.arange(5)), (convnp.arange(1, 2, 0.25), torch.arange(1, 2, 0.25)),
        (convnp.arange(0, 10, 3), torch.arange(0, 10, 3)), (convnp.arange(5.0), torch.arange(5.0)),
        (convnp.linspace(0, 1, 5), torch.linspace(0, 1, 5)), (convnp.eye(3), torch.eye(3)),
        (convnp.eye(2, 3), torch.eye(2, 3)),
        (convnp.zeros_like(convnp.ones(2, dtype=convnp.float64)), torch.zeros_like(torch.ones(2, dtype=torch.float64))),
        (convnp.ones_like(convnp.arange(3)), torch.ones_like(torch.arange(3))),
        (convnp.full_like(convnp.ones(2), 3.0), torch.full_like(torch.ones(2), 3.0)),
    ]
    for ours, theirs in cases:
        assert ours.dtype == theirs.numpy().dtype and ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-7)
    assert convnp.empty(2, 3).shape == (2, 3) and convnp.empty(2).dtype == np.float32
    data = np.ones(3)
    assert convnp.from_numpy(data).data is data and convnp.as_tensor(data).data is data
    assert convnp.tensor(data).data is not data  # tensor() copies, like torch.tensor
    assert convnp.tensor([1.0], requires_grad=True).requires_grad


def test_random_functions_distributions_and_seeding():
    convnp.manual_seed(0)
    a = convnp.rand(1000, 20)
    convnp.manual_seed(0)
    assert np.array_equal(a.data, convnp.rand(1000, 20).data)  # seeded: repeatable
    assert a.dtype == np.float32 and 0 <= a.data.min() and a.data.max() < 1 and abs(a.data.mean() - 0.5) < 0.01
    b = convnp.randn(200, 100, generator=convnp.Generator().manual_seed(1))
    assert b.dtype == np.float32 and abs(b.data.mean()) < 0.02 and abs(b.data.std() - 1) < 0.02
    c = convnp.randint(3, 7, (1000,))
    assert c.dtype == np.int64 and set(np.unique(c.data)) == {3, 4, 5, 6}
    assert convnp.randint(5, (3, 2)).shape == (3, 2)
    p = convnp.randperm(10)
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(10))
    assert convnp.rand(2, 3, dtype=convnp.float64).dtype == np.float64 and convnp.randn_like(a).shape == a.shape


def test_cat_stack_where_vs_torch():
    a0, b0 = rng(60).standard_normal((2, 3)), rng(61).standard_normal((2, 3))
    assert_parity(lambda a, b: convnp.cat([a, b], dim=1), lambda a, b: torch.cat([a, b], dim=1), a0, b0)
    assert_parity(lambda a, b: convnp.cat((a, b)), lambda a, b: torch.cat((a, b)), a0, b0)
    assert_parity(lambda a, b: convnp.stack([a, b]), lambda a, b: torch.stack([a, b]), a0, b0)
    assert_parity(lambda a, b: convnp.stack([a, b], dim=-1), lambda a, b: torch.stack([a, b], dim=-1), a0, b0)
    assert_parity(lambda a, b: convnp.where(a > b, a, b), lambda a, b: torch.where(a > b, a, b), a0, b0)
    ours, theirs = convnp.where(Tensor(a0) > 0), torch.where(torch.from_numpy(a0) > 0)
    assert all(np.array_equal(o.data, t.numpy()) and o.dtype == np.int64 for o, t in zip(ours, theirs))
    assert_parity(lambda a: convnp.exp(a) + convnp.sum(a, 1, keepdim=True) * convnp.abs(a).max(),
                  lambda a: torch.exp(a) + torch.sum(a, 1, keepdim=True) * torch.abs(a).max(), a0)
    with pytest.raises(ValueError, match="differ outside dim"):
        convnp.cat([Tensor(a0), Tensor(np.ones((3, 2)))], dim=0)
    with pytest.raises(ValueError, match="equal size"):
        convnp.stack([Tensor(a0), Tensor(np.ones((3, 2)))])


def test_save_load_round_trips_state_dicts_without_pickle(tmp_path):
    model = Block()
    optimizer = convnp.optim.Adam(model.parameters(), lr=1e-3)
    model(Tensor(rng().standard_normal((2, 2, 4, 4)).astype(np.float32))).sum().backward()
    optimizer.step()
    path = tmp_path / "model.pt"
    convnp.save(model.state_dict(), path)
    restored = Block()
    restored.load_state_dict(convnp.load(path))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key], value)
        assert restored.state_dict()[key].dtype == value.dtype
    nested = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3, "lr": 1e-3,
              "best": float("inf"), "tags": ("a", None, True), "history": [0.5, 0.25], "weights": convnp.ones(2),
              "grad": Tensor(np.ones(2, np.float32), requires_grad=True), "scalar": np.float32(1.5)}
    convnp.save(nested, tmp_path / "checkpoint.pt")
    back = convnp.load(tmp_path / "checkpoint.pt", map_location="cpu")
    assert back["epoch"] == 3 and back["best"] == float("inf") and back["tags"] == ("a", None, True)
    assert back["history"] == [0.5, 0.25] and isinstance(back["weights"], Tensor) and back["grad"].requires_grad
    assert back["scalar"] == np.float32(1.5) and back["scalar"].dtype == np.float32
    assert list(back["optimizer"]["state"]) == list(optimizer.state_dict()["state"])  # integer keys survive
    again = convnp.optim.Adam(restored.parameters(), lr=1e-3)
    again.load_state_dict(back["optimizer"])
    # the file is a plain .npz that NumPy opens with allow_pickle=False
    with np.load(tmp_path / "checkpoint.pt", allow_pickle=False) as archive:
        assert "structure" in archive.files
    buffer = io.BytesIO()
    convnp.save(convnp.arange(3), buffer)
    buffer.seek(0)
    assert convnp.load(buffer).tolist() == [0, 1, 2]


def test_save_refuses_objects_and_load_refuses_other_files(tmp_path):
    with pytest.raises(TypeError, match=r"obj\['model'\] is a Block"):
        convnp.save({"model": Block()}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written
    torch.save({"a": torch.ones(2)}, tmp_path / "torch.pt")  # a pickle inside a zip
    with pytest.raises(ValueError, match="not a file written by convnp.save|no 'structure' member"):
        convnp.load(tmp_path / "torch.pt")
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="no 'structure' member"):
        convnp.load(tmp_path / "plain.npz")
    with pytest.raises(RuntimeError, match="no GPU backend"):
        convnp.load(tmp_path / "plain.npz", map_location="cuda:0")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    convnp.save({"w": np.ones(2)}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        convnp.save({"w": np.zeros(2)}, path)
    monkeypatch.undo()
    assert convnp.load(path)["w"].tolist() == [1.0, 1.0]  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left


# --- where convnp deliberately differs from PyTorch -----------------------------------------------------------
def test_deliberate_differences_are_pinned():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    x = Tensor(rng().standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    model(x).sum().backward()
    # .grad, .data, state_dict() values and buffers are NumPy arrays (PyTorch: tensors)
    assert type(x.grad) is np.ndarray and type(x.data) is np.ndarray
    assert all(type(v) is np.ndarray for v in model.state_dict().values())
    assert all(type(b) is np.ndarray for b in model.buffers())
    # view() never refuses a non-contiguous tensor (PyTorch raises and asks for reshape)
    assert Tensor(np.ones((3, 4))).t().view(12).shape == (12,)
    with pytest.raises(RuntimeError):
        torch.ones(3, 4).t().view(12)
    # inplace=True is accepted and leaves the input alone (convnp records no in-place ops)
    y = Tensor(np.array([-1.0, 2.0]))
    nn.ReLU(inplace=True)(y)
    assert y.tolist() == [-1.0, 2.0]
    # Softmax without dim is an error, not PyTorch's deprecated implicit choice
    with pytest.raises(ValueError, match="give dim="):
        nn.Softmax()(y)
    # cross_entropy's third positional argument is the reduction (PyTorch: weight): pass weight by name
    logits, target = Tensor(rng().standard_normal((3, 4))), np.array([0, 1, 3])
    assert F.cross_entropy(logits, target, "sum").item() == pytest.approx(
        TF.cross_entropy(torch.from_numpy(logits.data), torch.from_numpy(target), reduction="sum").item())
    # inference_mode is no_grad: its results are ordinary tensors that may be used in a graph later
    with convnp.inference_mode():
        z = Tensor(np.ones(2)) * 2
    assert not z.requires_grad and (z * Tensor(np.ones(2), requires_grad=True)).requires_grad
