"""Modules: parameter/buffer bookkeeping, modes, state_dict compatibility with PyTorch, default
initialisation, and each layer's forward and gradients against the equivalent torch.nn layer."""
import math

import numpy as np
import pytest
import torch

import convnp
from convnp import Tensor, nn
from helpers import assert_close, to_torch

torch.manual_seed(0)


def rng(seed=0):
    return np.random.default_rng(3000 + seed)


class Net(nn.Module):
    """A small model with every kind of state: nested Sequential, BatchNorm buffers, a bias-free conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.features = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))

    def forward(self, x):
        return self.head(self.features(self.bn(self.conv(x)).relu()))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, stride=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.Tanh(),
                                        torch.nn.Linear(5, 2))

    def forward(self, x):
        return self.head(self.features(torch.relu(self.bn(self.conv(x)))))


def torch_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


# --- parameters, buffers, modes --------------------------------------------------------------------

def test_named_parameters_match_torch():
    ours, theirs = Net(), TorchNet()
    names = [name for name, _ in ours.named_parameters()]
    assert names == [name for name, _ in theirs.named_parameters()]
    assert names[:4] == ["conv.weight", "bn.weight", "bn.bias", "features.0.weight"]
    assert "head.3.bias" in names
    params = list(ours.parameters())
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    assert [p.shape for p in params] == [tuple(p.shape) for p in theirs.parameters()]
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())


def test_shared_parameter_listed_once():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight
    assert len(list(model.parameters())) == 3
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_buffers_match_torch():
    ours, theirs = Net(), TorchNet()
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()] == \
        ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    buffers = dict(ours.named_buffers())
    np.testing.assert_array_equal(buffers["bn.running_mean"], np.zeros(4))
    np.testing.assert_array_equal(buffers["bn.running_var"], np.ones(4))
    assert buffers["bn.num_batches_tracked"].dtype == np.int64 and buffers["bn.num_batches_tracked"] == 0
    assert not any(isinstance(b, nn.Parameter) for b in ours.buffers())


def test_train_eval_recurse():
    model = Net()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert [n for n, _ in model.named_modules()] == [n for n, _ in TorchNet().named_modules()]
    assert len(list(model.modules())) == 12
    model.train()
    assert all(m.training for m in model.modules())
    model.features.train(False)
    assert model.training and not model.features[0].training and model.head[1].training


def test_zero_grad():
    model = Net()
    model(Tensor(rng().standard_normal((2, 3, 8, 8)).astype(np.float32))).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_names_layers():
    text = repr(Net())
    assert "(conv): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)" in text
    assert "(1): Linear(in_features=6, out_features=5, bias=True)" in text
    assert "Parameter containing" in repr(nn.Parameter(np.ones(2)))


def test_sequential_container():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and list(model) == layers and model[2] is layers[2] and model[-1] is layers[2]
    x = Tensor(rng().standard_normal((4, 2)).astype(np.float32))
    expected = layers[2](layers[1](layers[0](x)))
    np.testing.assert_array_equal(model(x).data, expected.data)


# --- state_dict compatibility --------------------------------------------------------------------------

STATE_DICT_PAIRS = {
    "Conv2d": (lambda: nn.Conv2d(3, 8, (3, 5), stride=2, padding=1), lambda: torch.nn.Conv2d(3, 8, (3, 5), 2, 1)),
    "Conv2d no bias, groups": (lambda: nn.Conv2d(4, 8, 3, groups=2, bias=False),
                               lambda: torch.nn.Conv2d(4, 8, 3, groups=2, bias=False)),
    "Linear": (lambda: nn.Linear(7, 3), lambda: torch.nn.Linear(7, 3)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(5), lambda: torch.nn.BatchNorm2d(5)),
    "BatchNorm1d no affine": (lambda: nn.BatchNorm1d(5, affine=False), lambda: torch.nn.BatchNorm1d(5, affine=False)),
    "BatchNorm2d no running stats": (lambda: nn.BatchNorm2d(5, track_running_stats=False),
                                     lambda: torch.nn.BatchNorm2d(5, track_running_stats=False)),
    "Sequential": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)),
                   lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                               torch.nn.Linear(8, 2))),
    "Net": (Net, TorchNet),
}


@pytest.mark.parametrize("name", list(STATE_DICT_PAIRS))
def test_state_dict_keys_and_shapes_match_torch(name):
    make_ours, make_theirs = STATE_DICT_PAIRS[name]
    ours, theirs = make_ours().state_dict(), torch_state(make_theirs())
    assert list(ours) == list(theirs)
    for key in ours:
        assert ours[key].shape == theirs[key].shape, key
        assert ours[key].dtype == theirs[key].dtype, key  # float32 and int64 num_batches_tracked


def test_sequential_keys():
    assert list(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).state_dict()) == \
        ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_state_dict_is_a_copy():
    layer = nn.Linear(2, 2)
    state = layer.state_dict()
    state["weight"][...] = 7
    assert not np.any(layer.weight.data == 7)


def test_load_torch_state_dict_and_back():
    ours, theirs = Net(), TorchNet()
    for b in theirs.buffers():  # non-trivial buffers, so copying them is tested too
        b.add_(3)
    result = ours.load_state_dict(theirs.state_dict())  # torch tensors are accepted directly
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, theirs.state_dict()[key].numpy(), err_msg=key)
        assert value.dtype == theirs.state_dict()[key].numpy().dtype
    back = TorchNet()
    back.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for key, value in back.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), ours.state_dict()[key])


def test_load_named_parameters_of_a_torch_module():
    # tensors that require grad (from named_parameters) load too, not only state_dict()'s detached ones
    ours, theirs = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ours.load_state_dict(dict(theirs.named_parameters()))
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())


def test_loaded_arrays_are_copies():
    layer = nn.Linear(2, 2)
    state = {"weight": np.ones((2, 2), dtype=np.float32), "bias": np.zeros(2, dtype=np.float32)}
    layer.load_state_dict(state)
    state["weight"][...] = 5
    np.testing.assert_array_equal(layer.weight.data, np.ones((2, 2)))


def _snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape"])
def test_load_state_dict_strict_errors_leave_the_model_alone(problem):
    model = Net()
    before = _snapshot(model)
    state = {k: v + 1 for k, v in torch_state(TorchNet()).items()}
    if problem == "missing":
        del state["bn.running_var"]
        match = "missing keys: bn.running_var"
    elif problem == "unexpected":
        state["head.9.weight"] = np.zeros(3)
        match = "unexpected keys: head.9.weight"
    else:
        state["head.1.weight"] = np.zeros((5, 7), dtype=np.float32)
        match = r"head\.1\.weight: checkpoint has shape \(5, 7\), this model has \(5, 6\)"
    with pytest.raises(ValueError, match=match):
        model.load_state_dict(state)
    after = _snapshot(model)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=f"{key} changed by a failed load")


def test_load_state_dict_non_strict():
    model = Net()
    state = torch_state(TorchNet())
    del state["conv.weight"]
    state["extra.weight"] = np.zeros(1)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["conv.weight"] and result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(model.head[3].bias.data, state["head.3.bias"])
    state["head.3.bias"] = np.zeros(9)
    with pytest.raises(ValueError, match="head.3.bias"):  # a shape mismatch is an error even so
        model.load_state_dict(state, strict=False)


# --- initialisation --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make_ours, make_theirs, fan_in", [
    (lambda: nn.Conv2d(64, 128, 3), lambda: torch.nn.Conv2d(64, 128, 3), 64 * 9),
    (lambda: nn.Conv2d(64, 128, (3, 5), groups=8), lambda: torch.nn.Conv2d(64, 128, (3, 5), groups=8), 8 * 15),
    (lambda: nn.Linear(300, 400), lambda: torch.nn.Linear(300, 400), 300),
], ids=["conv", "conv groups", "linear"])
def test_default_init_matches_torch(make_ours, make_theirs, fan_in):
    bound = 1 / math.sqrt(fan_in)
    convnp.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = make_ours(), make_theirs()
    for name in ["weight", "bias"]:
        w = getattr(ours, name).data
        wt = getattr(theirs, name).detach().numpy()
        assert w.dtype == np.float32 and w.shape == wt.shape
        for values in (w, wt):  # the same U(-bound, bound) law in both libraries
            assert np.abs(values).max() <= bound
            if values.size > 10000:
                np.testing.assert_allclose(values.std(), bound / math.sqrt(3), rtol=0.02)
                assert abs(values.mean()) < 0.02 * bound
                assert np.abs(values).max() > 0.99 * bound  # really uniform on the whole interval
        if w.size > 10000:
            hist = np.histogram(w, bins=10, range=(-bound, bound))[0] / w.size
            np.testing.assert_allclose(hist, 0.1, atol=0.01)


def test_batchnorm_init_and_seeded_init():
    bn = nn.BatchNorm2d(3)
    np.testing.assert_array_equal(bn.weight.data, np.ones(3))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(3))
    convnp.manual_seed(42)
    a = nn.Conv2d(2, 3, 3).weight.data
    convnp.manual_seed(42)
    np.testing.assert_array_equal(nn.Conv2d(2, 3, 3).weight.data, a)
    assert not np.array_equal(nn.Conv2d(2, 3, 3).weight.data, a)


# --- every layer against torch, same weights ---------------------------------------------------------------

LAYERS = {
    "Conv2d": (lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
               (2, 3, 9, 8)),
    "Conv2d same dilated depthwise": (lambda: torch.nn.Conv2d(3, 6, (3, 5), padding="same", dilation=2, groups=3),
                                      lambda: nn.Conv2d(3, 6, (3, 5), padding="same", dilation=2, groups=3),
                                      (2, 3, 7, 9)),
    "Conv2d no bias": (lambda: torch.nn.Conv2d(2, 3, 2, bias=False), lambda: nn.Conv2d(2, 3, 2, bias=False),
                       (1, 2, 5, 5)),
    "Linear": (lambda: torch.nn.Linear(6, 4), lambda: nn.Linear(6, 4), (5, 6)),
    "Linear 3-D": (lambda: torch.nn.Linear(6, 4, bias=False), lambda: nn.Linear(6, 4, bias=False), (2, 5, 6)),
    "MaxPool2d": (lambda: torch.nn.MaxPool2d(3, 2, 1), lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 7, 8)),
    "AvgPool2d": (lambda: torch.nn.AvgPool2d((2, 3), (1, 2), 1), lambda: nn.AvgPool2d((2, 3), (1, 2), 1), (2, 3, 7, 8)),
    "AdaptiveAvgPool2d": (lambda: torch.nn.AdaptiveAvgPool2d((3, 2)), lambda: nn.AdaptiveAvgPool2d((3, 2)),
                          (2, 3, 7, 5)),
    "ReLU": (torch.nn.ReLU, nn.ReLU, (3, 4)),
    "LeakyReLU": (lambda: torch.nn.LeakyReLU(0.3), lambda: nn.LeakyReLU(0.3), (3, 4)),
    "Tanh": (torch.nn.Tanh, nn.Tanh, (3, 4)),
    "Sigmoid": (torch.nn.Sigmoid, nn.Sigmoid, (3, 4)),
    "Flatten": (torch.nn.Flatten, nn.Flatten, (2, 3, 4, 5)),
    "Dropout (eval)": (lambda: torch.nn.Dropout(0.5).eval(), lambda: nn.Dropout(0.5).eval(), (3, 4)),
    "BatchNorm1d": (torch.nn.BatchNorm1d(4).train, lambda: nn.BatchNorm1d(4), (6, 4)),
    "BatchNorm2d": (lambda: torch.nn.BatchNorm2d(3), lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    "Sequential": (lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                               torch.nn.Flatten(), torch.nn.Linear(8, 3)),
                   lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)),
                   (2, 1, 6, 6)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch(name):
    make_theirs, make_ours, shape = LAYERS[name]
    theirs, ours = make_theirs(), make_ours()
    for p in theirs.parameters():  # move weights away from their defaults (BatchNorm's ones and zeros)
        with torch.no_grad():
            p.add_(torch.randn(p.shape) * 0.1)
    ours.load_state_dict(theirs.state_dict())
    ours.train(theirs.training)
    x0 = rng().standard_normal(shape).astype(np.float32)
    x, xt = Tensor(x0, requires_grad=True), to_torch(x0, True)
    y, yt = ours(x), theirs(xt)
    assert y.dtype == np.float32
    assert_close(y.data, yt, 1e-4, 1e-5, "output")
    dy = rng(1).standard_normal(y.shape).astype(np.float32)
    y.backward(dy)
    yt.backward(torch.from_numpy(dy))
    assert_close(x.grad, xt.grad, 1e-4, 1e-5, "input gradient")
    torch_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        assert_close(p.grad, torch_params[key].grad, 1e-4, 1e-5, f"gradient of {key}")
    for key, value in ours.state_dict().items():  # running statistics moved the same way
        assert_close(value, theirs.state_dict()[key], 1e-5, 1e-6, key)


@pytest.mark.parametrize("cls, shape", [("BatchNorm2d", (8, 3, 4, 5)), ("BatchNorm1d", (16, 3))])
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm_train_then_eval_matches_torch(cls, shape, momentum):
    ours, theirs = getattr(nn, cls)(3, momentum=momentum), getattr(torch.nn, cls)(3, momentum=momentum)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    r = rng()
    for step in range(5):
        x0 = (r.standard_normal(shape) * (1 + step) + 2 * step).astype(np.float32)
        assert_close(ours(Tensor(x0)).data, theirs(to_torch(x0)), 1e-4, 1e-5, f"train step {step}")
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 5
    for key in ["running_mean", "running_var"]:
        assert_close(getattr(ours, key), getattr(theirs, key), 1e-5, 1e-6, key)
    ours.eval(), theirs.eval()
    x0 = (r.standard_normal(shape) * 3 + 1).astype(np.float32)
    x, xt = Tensor(x0, requires_grad=True), to_torch(x0, True)
    y, yt = ours(x), theirs(xt)
    assert_close(y.data, yt, 1e-4, 1e-5, "eval output")
    y.backward(np.ones_like(x0))
    yt.backward(torch.ones_like(xt))
    assert_close(x.grad, xt.grad, 1e-4, 1e-5, "eval input gradient")
    assert int(ours.num_batches_tracked) == 5  # evaluation does not count batches
    assert_close(ours.weight.grad, theirs.weight.grad, 1e-4, 1e-5, "weight gradient")


def test_batchnorm_cumulative_average_in_eval_before_training():
    # momentum=None and no training step yet: evaluation must use the initial statistics, not divide by 0
    ours, theirs = nn.BatchNorm1d(3, momentum=None).eval(), torch.nn.BatchNorm1d(3, momentum=None).eval()
    x0 = rng().standard_normal((4, 3)).astype(np.float32)
    assert_close(ours(Tensor(x0)).data, theirs(to_torch(x0)), 1e-5, 1e-6)


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    ours = nn.BatchNorm2d(2, track_running_stats=False).eval()
    theirs = torch.nn.BatchNorm2d(2, track_running_stats=False).eval()
    x0 = rng().standard_normal((3, 2, 4, 4)).astype(np.float32) * 2 + 1
    assert_close(ours(Tensor(x0)).data, theirs(to_torch(x0)), 1e-4, 1e-5)


def test_dropout_module_train_and_eval():
    layer = nn.Dropout(0.5)
    x = np.ones((100, 100), dtype=np.float32)
    y = layer(Tensor(x)).data
    assert set(np.unique(y)) == {0.0, 2.0}
    np.testing.assert_array_equal(layer.eval()(Tensor(x)).data, x)


def test_losses_modules():
    logits, target = rng().standard_normal((4, 3)), np.array([0, 2, 1, 1])
    for reduction in ["mean", "sum", "none"]:
        ours = nn.CrossEntropyLoss(reduction=reduction)(Tensor(logits), target)
        theirs = torch.nn.CrossEntropyLoss(reduction=reduction)(to_torch(logits), torch.from_numpy(target))
        assert_close(ours.data, theirs, 1e-12, 1e-12)


def test_astype_float64():
    model = Net().astype(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.bn.running_mean.dtype == np.float64 and model.bn.num_batches_tracked.dtype == np.int64
    y = model(Tensor(rng().standard_normal((2, 3, 8, 8))))
    assert y.dtype == np.float64


def test_eval_mode_restores_every_submodules_own_mode():
    """eval_mode turns dropout and batch norm to evaluation inside the block, and afterwards every
    submodule is back in ITS mode (one was already in eval), also when the block raises."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    model.train()
    model[2].eval()
    x = Tensor(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    with nn.eval_mode(model) as same:
        assert same is model and not any(m.training for m in model.modules())
        y1, y2 = model(x).data, model(x).data
        np.testing.assert_array_equal(y1, y2)  # no dropout: deterministic
    assert [m.training for m in model.modules()] == [True, True, True, False]
    with pytest.raises(RuntimeError):
        with nn.eval_mode(model):
            raise RuntimeError("inside")
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert not np.array_equal(model(x).data, model(x).data)  # dropout is back on


def test_confusion_matrix_counts_by_hand():
    from convnp.metrics import confusion_matrix

    counts = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2])
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert confusion_matrix([1], [1], num_classes=4).shape == (4, 4)
    with pytest.raises(ValueError, match="confusion_matrix: \\(2,\\) true labels but \\(3,\\) predictions"):
        confusion_matrix([0, 1], [0, 1, 1])
