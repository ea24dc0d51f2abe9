"""The engine on CuPy's rules, without a GPU: tests/fake_cupy.py installed as the ``cupy`` module.

Every result computed "on the GPU" must be a device array (never a host array that slipped through)
and equal NumPy's result for the same inputs; host and device arrays must never mix silently.
The truth is convnp's own NumPy path, itself checked against PyTorch and finite differences elsewhere.

With CONVNP_REAL_CUPY=1 (benchmarks/gpu_check.sh, on a machine with a GPU) the same tests run on the
real CuPy instead of the stand-in.
"""
import copy
import sys

import numpy as np
import pytest

import convnp
import convnp.functional as F
from convnp import checkpoint, nn, optim
from convnp.gradcheck import gradcheck
from convnp.models import LeNet5

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import fake_cupy  # noqa: E402

REAL_CUPY = fake_cupy.REAL_CUPY


@pytest.fixture
def cupy():
    with fake_cupy.installed() as module:
        yield module


def on_device(value):
    return type(value).__module__.startswith("cupy")


def host(value):
    assert on_device(value), f"expected a device array, got {type(value).__module__}.{type(value).__name__}"
    return value.get()


# --- the stand-in is strict (else the tests below could not fail) -----------------------------------------
def test_the_fake_applies_cupys_rules(cupy):
    a = cupy.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError):
        a + np.ones(3)
    with pytest.raises(TypeError):
        np.ones(3) + a
    total = a.sum()
    assert on_device(total) and total.shape == () and float(total) == 15.0
    assert on_device(a.argmax(axis=1)) and on_device(cupy.exp(a)) and on_device(a * 2.5)
    with pytest.raises(TypeError):
        cupy.lib.stride_tricks.as_strided(a, shape=(2,), strides=(8,), writeable=False)
    assert convnp.backend.get_array_module(a) is cupy


# --- devices --------------------------------------------------------------------------------------------------
def test_tensor_and_module_move_to_cuda_and_back(cupy):
    assert convnp.cuda.is_available()
    x = convnp.Tensor(np.arange(4.0))
    y = x.to("cuda")
    assert on_device(y.data) and y.is_cuda and y.device == convnp.device("cuda")
    np.testing.assert_array_equal(y.cpu().data, x.data)
    assert "device='cuda'" in repr(y)
    model = LeNet5()
    expected = model.state_dict()
    model.to("cuda")
    assert all(on_device(p.data) for p in model.parameters())
    state = model.state_dict()  # host arrays, from either device
    assert all(type(v) is np.ndarray for v in state.values())
    for key in expected:
        np.testing.assert_array_equal(state[key], expected[key])
    model.cpu()
    assert all(type(p.data) is np.ndarray for p in model.parameters())


def test_mixing_devices_is_an_error_naming_both(cupy):
    a, b = convnp.Tensor(np.ones(3)), convnp.Tensor(np.ones(3)).to("cuda")
    with pytest.raises(RuntimeError, match="cpu and cuda"):
        a + b
    logits = convnp.Tensor(np.zeros((2, 3))).to("cuda")
    with pytest.raises(RuntimeError, match="cross_entropy.*cpu and cuda"):
        F.cross_entropy(logits, np.array([0, 1]))


def test_python_scalars_stay_on_the_device(cupy):
    x = convnp.Tensor(np.arange(3, dtype=np.float32)).to("cuda")
    for y in (x + 1.5, 2 * x, x / 4, 1 - x, x ** 2):
        assert on_device(y.data) and y.dtype == np.float32


# --- a parity subset: forward and gradients, device vs host -----------------------------------------------
rng = np.random.default_rng(0)
CASES = {
    "conv2d stride 2 pad 1": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
                              [(2, 3, 9, 8), (4, 3, 3, 2), (4,)]),
    "conv2d groups dilation": (lambda x, w: F.conv2d(x, w, groups=2, dilation=2), [(2, 4, 9, 9), (6, 2, 3, 3)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, stride=2, padding=1), [(2, 3, 9, 7)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), [(2, 3, 8, 6)]),
    "linear relu": (lambda x, w, b: F.relu(F.linear(x, w, b)), [(5, 7), (3, 7), (3,)]),
    "tanh sigmoid": (lambda x: F.tanh(x) * F.sigmoid(x), [(4, 5)]),
    "log_softmax": (lambda x: F.log_softmax(x, dim=1), [(4, 5)]),
    "batch_norm training": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                            [(4, 3, 5, 5), (3,), (3,)]),
    "flatten mean": (lambda x: x.reshape(2, -1).mean(), [(2, 3, 4)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_gradients_match_numpy(cupy, name):
    fn, shapes = CASES[name]
    arrays = [rng.standard_normal(shape) for shape in shapes]
    dy_seed = sum(map(ord, name))

    def run(move):
        inputs = [convnp.Tensor(move(a), requires_grad=True) for a in arrays]
        y = fn(*inputs)
        dy = np.random.default_rng(dy_seed).standard_normal(y.shape)
        y.backward(move(dy))
        return y, inputs

    y_host, inputs_host = run(lambda a: a)
    y_device, inputs_device = run(cupy.asarray)
    np.testing.assert_allclose(host(y_device.data), y_host.data, rtol=1e-12, atol=1e-12)
    for a, b in zip(inputs_device, inputs_host):
        np.testing.assert_allclose(host(a.grad), b.grad, rtol=1e-12, atol=1e-12)


def test_cross_entropy_on_the_device(cupy):
    logits = rng.standard_normal((6, 4))
    target = np.array([0, 3, 1, 1, 2, 0])
    device = convnp.Tensor(cupy.asarray(logits), requires_grad=True)
    loss = F.cross_entropy(device, cupy.asarray(target))
    loss.backward()
    expected = convnp.Tensor(logits, requires_grad=True)
    F.cross_entropy(expected, target).backward()
    assert on_device(loss.data) and on_device(device.grad)
    np.testing.assert_allclose(loss.item(), F.cross_entropy(convnp.Tensor(logits), target).item(), rtol=1e-12)
    np.testing.assert_allclose(host(device.grad), expected.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["conv2d", "max_pool2d", "batch_norm"])
def test_gradcheck_through_the_device(cupy, name):
    functions = {
        "conv2d": (lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=1), [(2, 2, 5, 4), (3, 2, 3, 2)]),
        "max_pool2d": (lambda x: F.max_pool2d(x, 2), [(1, 2, 4, 4)]),
        "batch_norm": (lambda x: F.batch_norm(x, None, None, training=True), [(3, 2, 2, 2)]),
    }
    fn, shapes = functions[name]
    inputs = [convnp.Tensor(cupy.asarray(rng.standard_normal(s)), requires_grad=True) for s in shapes]
    assert gradcheck(fn, inputs)
    assert all(on_device(x.grad) for x in inputs)


def test_dropout_masks_come_from_cupy_random(cupy):
    x = convnp.Tensor(cupy.asarray(np.ones((200, 50))), requires_grad=True)
    convnp.manual_seed(3)
    y = F.dropout(x, 0.5, training=True)
    kept = host(y.data) != 0
    assert on_device(y.data) and 0.4 < kept.mean() < 0.6
    np.testing.assert_array_equal(host(y.data)[kept], 2.0)
    convnp.manual_seed(3)
    np.testing.assert_array_equal(host(F.dropout(x, 0.5, training=True).data), host(y.data))  # seeded


# --- a LeNet-5 training step ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make_optimizer", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                                            lambda p: optim.Adam(p, lr=1e-3)], ids=["sgd", "adam"])
def test_lenet5_training_steps_on_the_device_match_numpy(cupy, make_optimizer, tmp_path):
    convnp.manual_seed(0)
    host_model = LeNet5().double()
    device_model = copy.deepcopy(host_model).to("cuda")
    host_opt, device_opt = make_optimizer(host_model.parameters()), make_optimizer(device_model.parameters())
    images = rng.standard_normal((8, 1, 28, 28))
    labels = rng.integers(0, 10, 8)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(2):
        for model, opt, move in ((host_model, host_opt, lambda a: a), (device_model, device_opt, cupy.asarray)):
            opt.zero_grad()
            loss = loss_fn(model(convnp.Tensor(move(images))), move(labels))
            loss.backward()
            opt.step()
    for (name, p), q in zip(device_model.named_parameters(), host_model.parameters()):
        assert on_device(p.data) and on_device(p.grad), name
        np.testing.assert_allclose(host(p.data), q.data, rtol=1e-10, atol=1e-12, err_msg=name)
    # checkpoints are written as host arrays from the device, and load into a model on either device
    path = checkpoint.save(tmp_path / "gpu.npz", device_model, device_opt, epoch=1)
    loaded = LeNet5().double()
    checkpoint.restore(path, loaded)
    for key, value in loaded.state_dict().items():
        np.testing.assert_array_equal(value, device_model.state_dict()[key])
    again = LeNet5().double().to("cuda")
    checkpoint.restore(path, again, make_optimizer(again.parameters()))
    assert all(on_device(p.data) for p in again.parameters())


def test_fit_and_evaluate_move_the_batches_to_the_model(cupy):
    from convnp.data import DataLoader
    from convnp.train import evaluate, fit

    x = rng.standard_normal((24, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 24)
    convnp.manual_seed(0)
    host_model = LeNet5()
    device_model = copy.deepcopy(host_model).to("cuda")
    histories = [fit(model, DataLoader((x, y), 8, shuffle=True, seed=1), epochs=1, progress=False, log=None,
                     optimizer=optim.SGD(model.parameters(), lr=0.05)) for model in (host_model, device_model)]
    np.testing.assert_allclose(histories[1]["train_loss"], histories[0]["train_loss"], rtol=1e-5)
    for p, q in zip(device_model.parameters(), host_model.parameters()):
        np.testing.assert_allclose(host(p.data), q.data, rtol=1e-4, atol=1e-6)
    on_host, on_gpu = (evaluate(model, DataLoader((x, y), 12)) for model in (host_model, device_model))
    assert on_gpu["accuracy"] == on_host["accuracy"]
    np.testing.assert_allclose(on_gpu["loss"], on_host["loss"], rtol=1e-5)
    np.testing.assert_array_equal(on_gpu["confusion"], on_host["confusion"])


def test_summary_of_a_model_on_the_device(cupy):
    model = LeNet5()
    expected = str(convnp.summary(model, (1, 28, 28)))
    assert str(convnp.summary(model.to("cuda"), (1, 28, 28))) == expected


# --- convnp bench --device cuda, its convnp side in-process on the stand-in ---------------------------------
def test_bench_sections_run_their_convnp_side_on_the_device(cupy, monkeypatch):
    from convnp import bench

    monkeypatch.setattr(bench, "DEVICE", "cuda")
    epoch, model, optimizer = bench.training_setup("convnp", "smallcnn")
    assert all(on_device(p.data) for p in model.parameters())
    before = [host(p.data).copy() for p in model.parameters()]
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    epoch(model, optimizer, [(x, np.arange(4) % 10)])
    assert all(on_device(p.data) and on_device(p.grad) for p in model.parameters())
    assert any(not np.array_equal(host(p.data), b) for p, b in zip(model.parameters(), before))  # it trained
    timings = bench.prepare_inference("convnp", quick=True)()
    assert set(timings) == {"LeNet-5 inference, batch 512 (s per 1k images)", "LeNet-5 latency, batch 1 (ms)"}
    assert all(t > 0 for t in timings.values())
