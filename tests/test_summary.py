"""convnp.inspect.summary against torchinfo (same architecture built in PyTorch) and against the
receptive field measured by backpropagating from one output unit."""
import argparse

import numpy as np
import pytest
import torch
import torchinfo

import convnp
from convnp import models, nn
from convnp.errors import UserError
from convnp.inspect import commands
from convnp.inspect.summary import summary, trace
from convnp.tensor import Tensor

tnn = torch.nn


# --- the same architectures in both libraries ----------------------------------------------------------
class TorchLeNet5(tnn.Module):
    def __init__(self, flat=256):
        super().__init__()
        self.conv1, self.conv2 = tnn.Conv2d(1, 6, 5), tnn.Conv2d(6, 16, 5)
        self.pool, self.relu, self.flatten = tnn.MaxPool2d(2), tnn.ReLU(), tnn.Flatten()
        self.fc1, self.fc2, self.fc3 = tnn.Linear(flat, 120), tnn.Linear(120, 84), tnn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.flatten(x)
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


class TorchMLP(tnn.Module):
    def __init__(self):
        super().__init__()
        self.layers = tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 100), tnn.ReLU(), tnn.Linear(100, 10))

    def forward(self, x):
        return self.layers(x)


def conv_bn(lib):
    """conv (frozen, no bias) + BN + ReLU + depthwise strided conv + global pool + linear + BN1d."""
    net = lib.Sequential(lib.Conv2d(3, 8, 3, padding=1, bias=False), lib.BatchNorm2d(8), lib.ReLU(),
                         lib.Conv2d(8, 8, 3, stride=2, groups=8), lib.AdaptiveAvgPool2d(1), lib.Flatten(),
                         lib.Linear(8, 4), lib.BatchNorm1d(4))
    net[0].weight.requires_grad = False
    return net


def make_blocks(lib):
    """Nested Sequential, a ModuleList the model iterates over (its forward never runs), a shared
    ReLU and a Linear called twice (torchinfo's 'recursive' rows)."""
    modules_list = lib.ModuleList([lib.Conv2d(4, 4, 3, padding=1) for _ in range(2)]) if lib is tnn else \
        lib.ModuleList(*[lib.Conv2d(4, 4, 3, padding=1) for _ in range(2)])

    class Blocks(lib.Module):
        def __init__(self):
            super().__init__()
            self.stem = lib.Sequential(lib.Conv2d(1, 4, 3, padding=1), lib.MaxPool2d(2))
            self.blocks = modules_list
            self.act = lib.ReLU()
            self.flatten = lib.Flatten()
            self.head = lib.Linear(4 * 5 * 5, 8)
            self.shared = lib.Linear(8, 8)

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = self.act(block(x))
            x = self.head(self.flatten(x))
            return self.shared(self.act(self.shared(x)))

    return Blocks()


CASES = {  # name: (convnp model, torch twin, input size with the batch)
    "lenet5": (models.LeNet5, TorchLeNet5, (1, 1, 28, 28)),
    "lenet5-classic": (models.LeNet5Classic, lambda: TorchLeNet5(400), (2, 1, 32, 32)),
    "simplecnn": (models.SimpleCNN, lambda: tnn.Sequential(
        tnn.Conv2d(1, 4, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(4, 8, 3, padding=1), tnn.ReLU(),
        tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(392, 10)), (1, 1, 28, 28)),
    "tinycnn": (models.TinyCNN, lambda: tnn.Sequential(
        tnn.Conv2d(1, 3, 3), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(27, 3)), (5, 1, 8, 8)),
    "mlp": (models.MLP, TorchMLP, (2, 1, 28, 28)),
    "conv-bn": (lambda: conv_bn(nn), lambda: conv_bn(tnn), (3, 3, 16, 16)),
    "blocks": (lambda: make_blocks(nn), lambda: make_blocks(tnn), (2, 1, 10, 10)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_agrees_with_torchinfo(name):
    make_ours, make_torch, input_size = CASES[name]
    ours = summary(make_ours(), input_size)
    theirs = torchinfo.summary(make_torch(), input_size=input_size, verbose=0)

    assert ours.total_params == theirs.total_params
    assert ours.trainable_params == theirs.trainable_params
    assert ours.non_trainable_params == theirs.total_params - theirs.trainable_params
    assert ours.total_mult_adds == theirs.total_mult_adds
    assert ours.flops == 2 * theirs.total_mult_adds
    assert ours.params_bytes == theirs.total_param_bytes
    assert ours.forward_backward_bytes == theirs.total_output_bytes
    # torchinfo measures the input with sys.getsizeof(storage): the array's bytes plus Python's overhead
    assert 0 <= theirs.total_input - ours.input_bytes < 256
    assert ours.input_bytes == int(np.prod(input_size)) * 4

    assert len(ours.rows) == len(theirs.summary_list)
    for row, info in zip(ours.rows, theirs.summary_list):
        where = f"{name}: row {row.label} vs {info}"
        if row.depth > 0:  # the model itself: the torch twin's class name differs
            assert row.type == info.class_name, where
        assert row.depth == info.depth, where
        assert row.output_shape == (tuple(info.output_size) if info.output_size else None), where
        assert row.num_params == info.num_params, where
        assert row.trainable_params == info.trainable_params, where
        assert row.is_leaf == info.is_leaf_layer, where
        if row.is_leaf:
            assert row.macs == info.macs, where
        if sum(other is info for other in theirs.summary_list) > 1:
            # torchinfo inserts ONE object for every appearance of a container whose forward never ran
            # (the ModuleList), so all its copies show the last depth-index and read as recursive;
            # convnp numbers each appearance and marks only the later ones recursive.
            continue
        assert row.index == info.depth_index, where
        assert row.recursive == info.is_recursive, where


def test_lenet5_table_and_fields():
    s = summary(models.LeNet5(), (1, 28, 28))
    text = str(s)
    assert repr(s) == text
    for needle in ["Layer (type (var_name):depth-idx)", "Output Shape", "Param #", "Mult-Adds", "RF size",
                   "├─Conv2d (conv1): 1-1", "[1, 16, 8, 8]", "2,416", "30,840", "154,624",
                   "Total params: 44,426", "Trainable params: 44,426", "Non-trainable params: 0",
                   "Total mult-adds (MACs): 286,334", "FLOPs (2 x MACs): 572,668",
                   "Input size (MB, estimate): 0.00", "Forward/backward pass size (MB, estimate): 0.04",
                   "Params size (MB, estimate): 0.18", "Estimated total size (MB): 0.22"]:
        assert needle in text, needle
    # one row per call: pool and relu, shared, appear for each of their calls
    assert [r.name for r in s.rows] == ["", "conv1", "relu", "pool", "conv2", "relu", "pool", "flatten", "fc1",
                                        "relu", "fc2", "relu", "fc3"]
    # hand-derived: conv MACs = k*k*C_in*C_out*H_out*W_out + bias per output element
    assert s.row("conv1").macs == 5 * 5 * 1 * 6 * 24 * 24 + 6 * 24 * 24
    assert s.row("conv2").macs == 5 * 5 * 6 * 16 * 8 * 8 + 16 * 8 * 8
    assert s.row("fc1").macs == 256 * 120 + 120
    assert s.row("conv2").num_params == 6 * 16 * 25 + 16
    assert s.params_bytes == 44_426 * 4
    assert s.total_mb == pytest.approx((s.input_bytes + s.forward_backward_bytes + s.params_bytes) / 1e6)


def test_receptive_fields_by_hand():
    # r_out = r_in + (k - 1) j_in, j_out = j_in s:  conv5 -> 5/1, pool2 -> 6/2, conv5 -> 14/2, pool2 -> 16/4
    rows = summary(models.LeNet5(), (1, 28, 28)).rows
    fields = [(r.name, r.rf_size, r.rf_jump, r.rf_global) for r in rows[1:9]]
    assert fields == [("conv1", (5, 5), (1, 1), False), ("relu", (5, 5), (1, 1), False),
                      ("pool", (6, 6), (2, 2), False), ("conv2", (14, 14), (2, 2), False),
                      ("relu", (14, 14), (2, 2), False), ("pool", (16, 16), (4, 4), False),
                      ("flatten", (16, 16), (4, 4), False), ("fc1", (28, 28), None, True)]


def strided_dilated():
    return nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.Conv2d(2, 2, 3, dilation=2),
                         nn.MaxPool2d(3, stride=2), nn.AvgPool2d(2), nn.Conv2d(2, 2, (3, 1)), nn.BatchNorm2d(2))


def empirical_field(model, input_shape, name, call=0, batch=32, seed=0):
    """Extent (h, w) of the input pixels whose gradient is non-zero when backpropagating from the
    centre unit of channel 0 of the ``call``-th output of layer ``name``.  Weights are made positive
    and inputs are positive, so nothing cancels and every ReLU passes; the union over a batch of
    random images makes each cell of a max-pool window win somewhere."""
    for p in model.parameters():
        p.data = np.abs(p.data) + 0.01
    model.eval()
    rng = np.random.default_rng(seed)
    x = Tensor(rng.uniform(0.1, 1.0, size=(batch,) + input_shape).astype(np.float32), requires_grad=True)
    _, calls = trace(model, x)
    y = [c for c in calls if c.name == name][call].output
    onehot = np.zeros(y.shape, dtype=np.float32)
    if y.ndim == 4:
        onehot[:, 0, y.shape[2] // 2, y.shape[3] // 2] = 1
    else:
        onehot[:, 0] = 1
    y.backward(gradient=onehot)
    touched = (x.grad != 0).any(axis=(0, 1))
    rows, cols = np.flatnonzero(touched.any(axis=1)), np.flatnonzero(touched.any(axis=0))
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


RF_CASES = [
    (models.LeNet5, (1, 28, 28), "conv1", 0), (models.LeNet5, (1, 28, 28), "pool", 0),
    (models.LeNet5, (1, 28, 28), "conv2", 0), (models.LeNet5, (1, 28, 28), "pool", 1),
    (models.LeNet5, (1, 28, 28), "fc1", 0),
    (models.SimpleCNN, (1, 28, 28), "3", 0), (models.SimpleCNN, (1, 28, 28), "5", 0),
    (models.SimpleCNN, (1, 28, 28), "7", 0),
    (strided_dilated, (1, 72, 72), "2", 0), (strided_dilated, (1, 72, 72), "3", 0),
    (strided_dilated, (1, 72, 72), "4", 0), (strided_dilated, (1, 72, 72), "6", 0),
]


@pytest.mark.parametrize("make, shape, name, call", RF_CASES)
def test_receptive_field_matches_backprop(make, shape, name, call):
    convnp.manual_seed(0)
    model = make()
    rows = [r for r in summary(model, shape).rows if r.name == name]
    analytic = rows[call].rf_size
    assert empirical_field(model, shape, name, call) == analytic
    if rows[call].rf_global:
        assert analytic == shape[1:]


def test_non_square_and_dilated_fields():
    rows = {r.name: r for r in summary(strided_dilated(), (1, 72, 72)).rows}
    # conv3 s2: 3/2; conv3 d2: 3 + 4*2 = 11/2; max3 s2: 11 + 2*2 = 15/4; avg2: 15 + 4 = 19/8;
    # conv (3, 1): 19 + 2*8 = 35 tall, 19 wide
    assert [rows[n].rf_size for n in "0234"] == [(3, 3), (11, 11), (15, 15), (19, 19)]
    assert rows["5"].rf_size == (35, 19) and rows["5"].rf_jump == (8, 8)
    assert rows["6"].rf_size == (35, 19)  # batch norm (eval) is elementwise


def test_batch_size_and_input_size_forms():
    a = summary(models.LeNet5(), (1, 28, 28), batch_size=4)
    b = summary(models.LeNet5(), (4, 1, 28, 28))
    assert a.input_size == b.input_size == (4, 1, 28, 28)
    assert [r.output_shape for r in a.rows] == [r.output_shape for r in b.rows]
    assert a.row("conv1").output_shape == (4, 6, 24, 24)
    assert a.total_mult_adds == 4 * summary(models.LeNet5(), (1, 28, 28)).total_mult_adds
    assert summary(models.MLP(), (784,)).row("layers.1").output_shape == (1, 100)
    assert summary(models.MLP(), (784,)).rows[0].rf_size is None  # not an image: no receptive field
    with pytest.raises(ValueError, match="already has a batch size"):
        summary(models.LeNet5(), (4, 1, 28, 28), batch_size=2)


def test_model_left_as_it_was():
    model = conv_bn(nn)
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    summary(model, (3, 16, 16))
    assert all(m.training for m in model.modules())
    assert all("forward" not in vars(m) for m in model.modules())
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # eval mode: running stats untouched


def test_wrong_input_says_so_and_unwraps():
    model = models.LeNet5()
    with pytest.raises(ValueError, match=r"LeNet5 cannot take an input of shape \(1, 1, 32, 32\).*32x32"):
        summary(model, (1, 32, 32))
    assert all("forward" not in vars(m) for m in model.modules())
    assert model(Tensor(np.zeros((1, 1, 28, 28), np.float32))).shape == (1, 10)


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="convnp")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_summary_parser(sub)
    commands.add_viz_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_summary(capsys):
    assert run_cli(["summary", "--model", "lenet5-classic"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "[1, 16, 5, 5]" in out
    assert run_cli(["summary", "--model", "simplecnn", "--input-size", "1", "28", "28", "--batch-size", "8"]) == 0
    assert "[8, 4, 28, 28]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet"], "unknown model 'resnet'; choose one of: lenet5"),
    (["--model", "lenet5", "--input-size", "1", "32", "32"], "expects 28x28 images, got 32x32"),
    (["--model", "tinycnn", "--input-size", "2", "1", "8", "8"], "ONE example"),
])
def test_cli_summary_user_errors(argv, message):
    with pytest.raises(UserError) as caught:
        run_cli(["summary"] + argv)
    text = str(caught.value)
    assert message in text and "\n" not in text
