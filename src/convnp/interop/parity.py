"""Models that exercise every export mapping, and the parity table of ``benchmarks/interop_parity.py``.

``parity_models()`` gives (name, model, input shape) for every model in ``convnp.models`` and for custom
models with residual additions and batch norm, concatenation, depthwise and dilated convolutions, and
padded average pools; ``parity_table()`` runs each through onnxruntime, the ONNX import and ``to_torch``
and reports the largest difference from convnp's own output.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F, models, nn
from ..backend import manual_seed
from ..nn.module import Parameter


class ResidualBN(nn.Module):
    """x: (N, 3, 12, 12) -> (N, 5): conv-BN-ReLU stem, a residual block (out + x), global pool, linear.
    ``self.relu`` is called three times (a reused module); the residual ReLU is a functional call."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3, momentum=0.3)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        x = self.relu(F.relu(out + x))
        return self.fc(F.flatten(self.pool(x), 1))


class ConcatNet(nn.Module):
    """x: (N, 1, 10, 10) -> (N, 4): two branches (1x1 and 3x3) joined by concatenation, a scaled
    leaky ReLU, tanh and sigmoid gates, a max pool, log-softmax at the end."""

    def __init__(self):
        super().__init__()
        self.branch1 = nn.Conv2d(1, 3, 1)
        self.branch3 = nn.Conv2d(1, 5, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 5 * 5, 4)

    def forward(self, x):
        y = F.concatenate([self.branch1(x), self.act(self.branch3(x))], axis=1)
        y = self.pool(F.tanh(y) * 0.5 + F.sigmoid(y) - 1.0)
        return F.log_softmax(self.fc(y.reshape(y.shape[0], -1)), dim=1)


class DepthwiseDilated(nn.Module):
    """x: (N, 3, 15, 15) -> (N, 6): a strided conv, a depthwise dilated conv (groups = channels,
    dilation 2), a pointwise conv, batch norm, global average pooling."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(),
            nn.Conv2d(6, 12, 3, padding=2, dilation=2, groups=6), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 8, 1), nn.Tanh(), nn.Conv2d(8, 8, (3, 2), stride=(1, 2), padding=(1, 0)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.features(x))))


class PaddedPools(nn.Sequential):
    """x: (N, 2, 13, 13) -> (N, 3): average pools with padding (PyTorch counts the padded zeros),
    a padded max pool, dropout (gone at inference), batch norm on features, a classifier."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(3, stride=2, padding=1), nn.Sigmoid(),
            nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2, stride=1, padding=1), nn.Flatten(),
            nn.Dropout(0.3), nn.Linear(4 * 5 * 5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3),
        )


class FunctionalOps(nn.Module):
    """x: (N, 2, 6, 6) -> (N, 5): the functional surface in a custom forward: reshape and transpose to
    (N, 36, 4), a Linear on 3-D input, matmul with the module's own Parameter, a normalisation written
    with mean, sum, sub, div and a power, exp, log and negation, softmax at the end."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.proj = nn.Linear(4, 3)
        self.mix = Parameter(np.eye(3, dtype=np.float32) + 0.1)
        self.fc = nn.Linear(36 * 3, 5)

    def forward(self, x):
        y = self.conv(x)
        z = self.proj(y.reshape(y.shape[0], 4, 36).permute(0, 2, 1)) @ self.mix
        z = (z - z.mean(axis=1, keepdims=True)) / (F.sum(z * z, axis=1, keepdims=True) + 1.0) ** 0.5
        w = (-z).exp() + (z * z + 1.0).log()
        return F.softmax(self.fc(F.flatten(w, 1)), dim=-1)


CUSTOM = {"functional-ops": (FunctionalOps, (2, 6, 6)), "residual-bn": (ResidualBN, (3, 12, 12)),
          "concat": (ConcatNet, (1, 10, 10)),
          "depthwise-dilated": (DepthwiseDilated, (3, 15, 15)), "padded-pools": (PaddedPools, (2, 13, 13))}
BUILT_IN_INPUTS = {"lenet5": (1, 28, 28), "lenet5-classic": (1, 32, 32), "simplecnn": (1, 28, 28),
                   "tinycnn": (1, 8, 8), "mlp": (1, 28, 28), "smallvgg": (3, 32, 32), "resnet20": (3, 32, 32),
                   "mnistcnn": (1, 28, 28)}


def _randomise_statistics(model, rng):
    """Running statistics away from (0, 1), so an exporter that ignored them would be caught."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean[...] = rng.normal(0, 0.5, module.num_features)
            module.running_var[...] = rng.uniform(0.5, 2.0, module.num_features)
            module.weight.data[...] = rng.uniform(0.5, 1.5, module.num_features)
            module.bias.data[...] = rng.normal(0, 0.2, module.num_features)


def parity_models(seed=0):
    """[(name, model, input shape without the batch)] for every built-in and custom parity model."""
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    result = []
    for name, shape in BUILT_IN_INPUTS.items():
        model = models.get_model(name)
        _randomise_statistics(model, rng)
        result.append((name, model, shape))
    for name, (cls, shape) in CUSTOM.items():
        model = cls()
        _randomise_statistics(model, rng)
        result.append((name, model, shape))
    return result


def parity_table(batches=(1, 7), folder=None):
    """[(model, target, batch, max |difference|)] for the targets:

    onnxruntime          convnp's ONNX export run by onnxruntime, against convnp
    convnp.onnx.load     that file read back into convnp, against convnp
    to_torch             the torch module, eval mode, against convnp
    to_torch grads       train mode: the largest difference over the output and every parameter gradient
                         (upstream gradient: standard normal), against convnp's; in float32 and float64
    torch.onnx.export    torch's own export of the to_torch module read by convnp.onnx.load, against torch
    """
    import io
    import tempfile
    import warnings
    from pathlib import Path

    import onnxruntime
    import torch

    from ..tensor import Tensor, no_grad
    from .onnx import OnnxModel, export, load, require
    from .torch import to_torch

    onnx = require("onnx", "parity_table")
    rows = []
    folder = Path(folder or tempfile.mkdtemp(prefix="convnp-parity-"))
    rng = np.random.default_rng(1)
    for name, model, shape in parity_models():
        model.eval()
        example = np.zeros((1, *shape), np.float32)
        path = export(model, example, folder / f"{name}.onnx")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        imported = load(path).eval()
        torch_model = to_torch(model, example).eval()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(torch_model, torch.from_numpy(example), buffer, dynamo=False, opset_version=17,
                              input_names=["input"], dynamic_axes={"input": {0: "batch"}})
        from_torch_export = OnnxModel(onnx.load_from_string(buffer.getvalue())).eval()
        for batch in batches:
            x = rng.standard_normal((batch, *shape)).astype(np.float32)
            with no_grad():
                expected = model(Tensor(x)).data
                back = imported(Tensor(x)).data
                theirs_imported = from_torch_export(Tensor(x)).data
            with torch.no_grad():
                theirs = torch_model(torch.from_numpy(x)).numpy()
            ort_out = session.run(None, {"input": x})[0]
            rows += [(name, "onnxruntime", batch, _max_difference(ort_out, expected)),
                     (name, "convnp.onnx.load", batch, _max_difference(back, expected)),
                     (name, "to_torch", batch, _max_difference(theirs, expected)),
                     (name, "to_torch grads (train)", batch, _train_difference(model, x, rng, to_torch, torch)),
                     (name, "to_torch grads (train, float64)", batch,
                      _train_difference(model, x.astype(np.float64), rng, to_torch, torch)),
                     (name, "torch.onnx.export -> load", batch, _max_difference(theirs_imported, theirs))]
    return rows


def _max_difference(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _train_difference(model, x, rng, to_torch, torch):
    """Train mode (dropout off), in x's dtype: the largest difference over the output and every parameter
    gradient.  In float32, training-mode batch norm (dividing by a batch's standard deviation) amplifies
    rounding; the float64 row shows that the two computations are the same."""
    import copy

    from ..tensor import Tensor

    if len(x) < 2:  # batch norm cannot train on one value per channel
        return float("nan")
    model = copy.deepcopy(model).astype(x.dtype).train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    twin = to_torch(model, x[:1]).train()
    y = model(Tensor(x))
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    y.backward(dy)
    yt = twin(torch.from_numpy(x))
    yt.backward(torch.from_numpy(dy))
    grads = dict(twin.named_parameters())
    errors = [_max_difference(yt.detach().numpy(), y.data)]
    errors += [_max_difference(grads[key].grad.numpy(), p.grad) for key, p in model.named_parameters()]
    return max(errors)
