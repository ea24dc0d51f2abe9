"""ONNX export (checked by onnx and run by onnxruntime) and import (convnp.onnx.load), with the traps
the two formats set: pads order, AveragePool's count_include_pad, MaxPool's ceil_mode, BatchNormalization's
epsilon and momentum, Softmax's axis before opset 13."""
import numpy as np
import pytest

import convnp
from convnp import functional as F, nn
from convnp.interop.onnx import OnnxExportError, OnnxImportError, OnnxModel
from convnp.interop.parity import parity_models

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import convnp.onnx  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch on its TorchScript exporter
              pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")]
MODELS = parity_models()
IDS = [name for name, _, _ in MODELS]


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def convnp_output(model, x):
    with convnp.no_grad():
        return model(convnp.tensor(x)).data


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    files = {}
    for name, model, shape in MODELS:
        model.eval()
        files[name] = convnp.onnx.export(model, np.zeros((1, *shape), np.float32), folder / f"{name}.onnx")
    return files


@pytest.mark.parametrize("index", range(len(MODELS)), ids=IDS)
def test_onnxruntime_matches_convnp_at_batch_1_and_7(exported, index):
    name, model, shape = MODELS[index]
    proto = onnx.load(str(exported[name]))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == 8 and proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    state = model.state_dict()
    for init in proto.graph.initializer:  # named by state_dict keys, holding the model's values
        if init.name in state:
            np.testing.assert_array_equal(numpy_helper.to_array(init), state[init.name])
    params = {n for n, _ in model.named_parameters()}
    assert params <= {i.name for i in proto.graph.initializer}
    assert not any(n.op_type == "Dropout" for n in proto.graph.node)
    run = session(exported[name])
    rng = np.random.default_rng(3)
    for batch in (1, 7):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        np.testing.assert_allclose(run.run(None, {"input": x})[0], convnp_output(model, x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("index", range(len(MODELS)), ids=IDS)
def test_import_of_the_export_gives_convnp_outputs_exactly(exported, index):
    name, model, shape = MODELS[index]
    imported = convnp.onnx.load(exported[name]).eval()
    x = np.random.default_rng(4).standard_normal((7, *shape)).astype(np.float32)
    np.testing.assert_array_equal(convnp_output(imported, x), convnp_output(model, x))
    own = model.state_dict()
    theirs = imported.state_dict()
    for key, value in theirs.items():  # the exporter's keys come back (num_batches_tracked is not in ONNX)
        assert key in own, key
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(value, own[key])


def test_the_imported_model_trains_and_saves_as_a_checkpoint(exported, tmp_path):
    imported = convnp.onnx.load(exported["residual-bn"]).train()
    x = np.random.default_rng(5).standard_normal((6, 3, 12, 12)).astype(np.float32)
    labels = np.arange(6) % 5
    optimizer = convnp.optim.SGD(imported.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(imported(convnp.tensor(x)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in imported.parameters())
    # the same steps in PyTorch on the original architecture agree (batch-norm statistics included)
    name, model, _ = MODELS[IDS.index("residual-bn")]
    twin = convnp.interop.to_torch(model).train()
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for key, value in imported.state_dict().items():
        np.testing.assert_allclose(value, twin.state_dict()[key].numpy(), rtol=1e-4, atol=1e-5, err_msg=key)
    convnp.checkpoint.save(tmp_path / "c.npz", imported, epoch=1)
    again = convnp.onnx.load(exported["residual-bn"])
    convnp.checkpoint.restore(tmp_path / "c.npz", again)
    imported.eval(), again.eval()
    np.testing.assert_array_equal(convnp_output(again, x), convnp_output(imported, x))


def test_metadata_and_the_file_loader(tmp_path):
    model = convnp.models.TinyCNN()
    prep = {"dataset": "digits", "input_size": [1, 8, 8], "classes": ["a", "b", "c"], "mean": [0.5], "std": [0.2]}
    path = convnp.onnx.export(model, np.zeros((2, 1, 8, 8), np.float32), tmp_path / "t.onnx",
                              metadata={"preprocessing": prep, "epoch": 4})
    loaded, info = convnp.interop.load_model_file(path)
    assert isinstance(loaded, OnnxModel) and not loaded.training
    assert info.model == "tinycnn" and info.model_class == "TinyCNN" and info.epoch == 4
    assert info["preprocessing"] == prep and info.classes == ["a", "b", "c"]


# --- the traps -------------------------------------------------------------------------------------------
def graph_model(nodes, inputs, output, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "trap", inputs, [output], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_conv_pads_are_begins_then_ends_and_no_kernel_flip(tmp_path):
    w = np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32)
    # pads [h_begin, w_begin, h_end, w_end] = [0, 1, 2, 3]: asymmetric on purpose
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[0, 1, 2, 3])
    path = save(graph_model([node], [value("x", [1, 1, 5, 6])], value("y", [1, 2, 5, 8]),
                            [numpy_helper.from_array(w, "w")]), tmp_path / "pads.onnx")
    x = np.random.default_rng(1).standard_normal((1, 1, 5, 6)).astype(np.float32)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.from_numpy(x), (1, 3, 0, 2)),
                                          torch.from_numpy(w)).numpy()  # torch pads (w_begin, w_end, h_begin, h_end)
    np.testing.assert_allclose(session(path).run(None, {"x": x})[0], expected, atol=1e-5)
    np.testing.assert_allclose(convnp_output(convnp.onnx.load(path), x), expected, atol=1e-5)


@pytest.mark.parametrize("include", [0, 1])
def test_average_pool_count_include_pad(tmp_path, include):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                            count_include_pad=include)
    path = save(graph_model([node], [value("x", [2, 3, 7, 7])], value("y", [2, 3, 4, 4])), tmp_path / "avg.onnx")
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 7)).astype(np.float32)
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x), 3, 2, 1, count_include_pad=bool(include)).numpy()
    np.testing.assert_allclose(session(path).run(None, {"x": x})[0], expected, atol=1e-6)
    np.testing.assert_allclose(convnp_output(convnp.onnx.load(path), x), expected, atol=1e-6)


def test_export_writes_count_include_pad_and_floor_mode(tmp_path):
    model = nn.Sequential(nn.AvgPool2d(3, 2, 1), nn.MaxPool2d(2))
    path = convnp.onnx.export(model, np.zeros((1, 1, 9, 9), np.float32), tmp_path / "p.onnx")
    graph = onnx.load(str(path)).graph
    nodes = {n.op_type: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in graph.node}
    assert nodes["AveragePool"]["count_include_pad"] == 1 and nodes["AveragePool"]["ceil_mode"] == 0
    assert nodes["MaxPool"]["ceil_mode"] == 0


@pytest.mark.parametrize("size, kernel, stride, padding", [(7, 2, 2, 0), (8, 3, 2, 1), (10, 3, 3, 1), (5, 2, 2, 1)])
def test_max_pool_ceil_mode_matches_torch(tmp_path, size, kernel, stride, padding):
    pool = torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)
    x = np.random.default_rng(size).standard_normal((2, 2, size, size)).astype(np.float32)
    torch.onnx.export(pool, torch.from_numpy(x), tmp_path / "ceil.onnx", dynamo=False, opset_version=17)
    expected = pool(torch.from_numpy(x)).numpy()
    imported = convnp.onnx.load(tmp_path / "ceil.onnx")
    assert convnp_output(imported, x).shape == expected.shape
    np.testing.assert_array_equal(convnp_output(imported, x), expected)


def test_batch_norm_epsilon_and_momentum_conventions(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, eps=1e-2, momentum=0.25))
    model[1].running_var[...] = [0.01, 0.02, 0.5]  # small variances, where epsilon matters
    path = convnp.onnx.export(model, np.zeros((1, 2, 4, 4), np.float32), tmp_path / "bn.onnx")
    (bn,) = [n for n in onnx.load(str(path)).graph.node if n.op_type == "BatchNormalization"]
    attrs = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
    assert attrs["epsilon"] == pytest.approx(1e-2) and attrs["momentum"] == pytest.approx(0.75)  # 1 - PyTorch's
    x = np.random.default_rng(6).standard_normal((4, 2, 4, 4)).astype(np.float32)
    model.eval()
    np.testing.assert_allclose(session(path).run(None, {"input": x})[0], convnp_output(model, x), atol=1e-5)
    imported = convnp.onnx.load(path)
    layer = imported.state_dict()
    assert "1.running_var" in layer
    (bn_layer,) = [m for m in imported.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn_layer.eps == pytest.approx(1e-2) and bn_layer.momentum == 0.25
    twin = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3, eps=1e-2, momentum=0.25))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    imported.train()(convnp.tensor(x))
    twin.train()(torch.from_numpy(x))  # one training step of the statistics: same momentum convention
    np.testing.assert_allclose(bn_layer.running_mean, twin[1].running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn_layer.running_var, twin[1].running_var.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [11, 17])
def test_softmax_axis_semantics_before_and_after_opset_13(tmp_path, opset):
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    path = save(graph_model([node], [value("x", [2, 3, 4])], value("y", [2, 3, 4]), opset=opset), tmp_path / "s.onnx")
    x = np.random.default_rng(7).standard_normal((2, 3, 4)).astype(np.float32)
    if opset < 13:  # one softmax over the flattened axes 1.. (12 numbers per row)
        expected = torch.softmax(torch.from_numpy(x).reshape(2, 12), dim=1).reshape(2, 3, 4).numpy()
    else:  # over axis 1 alone
        expected = torch.softmax(torch.from_numpy(x), dim=1).numpy()
    np.testing.assert_allclose(session(path).run(None, {"x": x})[0], expected, atol=1e-6)
    np.testing.assert_allclose(convnp_output(convnp.onnx.load(path), x), expected, atol=1e-6)


# --- files from torch.onnx.export ------------------------------------------------------------------------
class TorchResidual(torch.nn.Module):
    """Written in PyTorch by hand (not by to_torch): conv-BN-ReLU, a residual add, a concat, pools."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.side = torch.nn.Conv2d(3, 4, 1, bias=False)
        self.pool = torch.nn.AvgPool2d(3, 2, 1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x))) + self.side(x)
        y = torch.cat([y, torch.nn.functional.max_pool2d(y, 3, 1, 1)], dim=1)
        return torch.log_softmax(self.fc(torch.flatten(self.pool(y), 1)), dim=1)


@pytest.mark.parametrize("name", IDS + ["hand-written"])
def test_files_from_torch_onnx_export_import_and_match_torch(tmp_path, name):
    if name == "hand-written":
        torch.manual_seed(0)
        twin, shape = TorchResidual(), (3, 8, 8)
        twin.bn.running_mean.uniform_(-1, 1)
        twin.bn.running_var.uniform_(0.5, 2)
    else:
        _, model, shape = MODELS[IDS.index(name)]
        twin = convnp.interop.to_torch(model, np.zeros((1, *shape), np.float32))
    twin.eval()
    x = np.random.default_rng(8).standard_normal((5, *shape)).astype(np.float32)
    torch.onnx.export(twin, torch.from_numpy(x[:1]), tmp_path / "t.onnx", dynamo=False, opset_version=17,
                      input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    imported = convnp.onnx.load(tmp_path / "t.onnx").eval()
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(convnp_output(imported, x), expected, rtol=1e-4, atol=1e-5)


def test_from_torch_with_its_own_forward_goes_through_onnx():
    torch.manual_seed(1)
    twin = TorchResidual().eval()
    x = np.random.default_rng(9).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="TorchResidual defines its own forward"):
        convnp.interop.from_torch(twin)
    model = convnp.interop.from_torch(twin, example_input=x[:1]).eval()
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(convnp_output(model, x), expected, rtol=1e-4, atol=1e-5)


# --- bad input ---------------------------------------------------------------------------------------------
def test_truncated_and_non_onnx_files_name_the_file(tmp_path):
    good = convnp.onnx.export(convnp.models.TinyCNN(), np.zeros((1, 1, 8, 8), np.float32), tmp_path / "g.onnx")
    data = good.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 20)
    (tmp_path / "empty.onnx").write_bytes(b"")
    for bad in ("cut.onnx", "text.onnx", "empty.onnx"):
        with pytest.raises(OnnxImportError, match=bad):
            convnp.onnx.load(tmp_path / bad)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        convnp.onnx.load(tmp_path / "missing.onnx")


def test_unsupported_ops_are_listed_in_one_error(tmp_path):
    nodes = [helper.make_node("Erf", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Erf", ["b"], ["c"]), helper.make_node("Floor", ["c"], ["y"])]
    path = save(graph_model(nodes, [value("x", [1, 4])], value("y", [1, 4])), tmp_path / "ops.onnx")
    with pytest.raises(OnnxImportError, match=r"ops.onnx: unsupported ONNX op\(s\): Erf \(x2\), Floor;"):
        convnp.onnx.load(path)


class Sliced(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4))
        self.head = SliceHead()

    def forward(self, x):
        return self.head(self.inner(x))


class SliceHead(nn.Module):
    def forward(self, x):
        return x[:, :2]


def test_an_op_without_mapping_names_it_and_its_module_and_writes_nothing(tmp_path):
    with pytest.raises(OnnxExportError, match=r"op GetItem in module 'head' \(SliceHead\) has no ONNX mapping"):
        convnp.onnx.export(Sliced(), np.zeros((1, 4), np.float32), tmp_path / "s.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    convnp.onnx.export(convnp.models.TinyCNN(), np.zeros((1, 1, 8, 8), np.float32), path)
    old = path.read_bytes()

    class Boom(Exception):
        pass

    def failing_write(self):
        raise Boom

    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", failing_write)
    with pytest.raises(Boom):
        convnp.onnx.export(convnp.models.TinyCNN(), np.zeros((1, 1, 8, 8), np.float32), path)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


class TorchPadded(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)

    def forward(self, x):  # torch's pad order is (w_begin, w_end, h_begin, h_end): ONNX's Pad is begins then ends
        return self.conv(torch.nn.functional.pad(x, (1, 2, 0, 1), value=0.5))


def test_a_torch_pad_imports_with_its_own_order_and_value(tmp_path):
    torch.manual_seed(2)
    twin = TorchPadded().eval()
    x = np.random.default_rng(11).standard_normal((2, 2, 5, 6)).astype(np.float32)
    torch.onnx.export(twin, torch.from_numpy(x), tmp_path / "pad.onnx", dynamo=False, opset_version=17)
    assert "Pad" in {n.op_type for n in onnx.load(str(tmp_path / "pad.onnx")).graph.node}
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(convnp_output(convnp.onnx.load(tmp_path / "pad.onnx"), x), expected, atol=1e-5)


def test_a_fixed_batch_export(tmp_path):
    path = convnp.onnx.export(convnp.models.TinyCNN(), np.zeros((3, 1, 8, 8), np.float32), tmp_path / "f.onnx",
                              dynamic_batch=False)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [3, 1, 8, 8]
    with pytest.raises(ValueError, match="opset 12 is not supported"):
        convnp.onnx.export(convnp.models.TinyCNN(), np.zeros((1, 1, 8, 8), np.float32), tmp_path / "o.onnx", opset=12)


def test_one_weight_used_by_two_convs_is_one_reused_layer(tmp_path):
    w = np.random.default_rng(12).standard_normal((2, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "block.weight"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "block.weight"], ["y"], kernel_shape=[3, 3], pads=[0, 1, 2, 0])]
    path = save(graph_model(nodes, [value("x", [1, 2, 6, 6])], value("y", [1, 2, 6, 5]),
                            [numpy_helper.from_array(w, "block.weight")]), tmp_path / "shared.onnx")
    model = convnp.onnx.load(path)
    assert list(model.state_dict()) == ["block.weight"]
    x = np.random.default_rng(13).standard_normal((1, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(convnp_output(model, x), session(path).run(None, {"x": x})[0], atol=1e-5)


def test_without_the_onnx_package_the_error_names_the_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'convnp\[interop\]'"):
        convnp.onnx.export(convnp.models.TinyCNN(), np.zeros((1, 1, 8, 8), np.float32), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
