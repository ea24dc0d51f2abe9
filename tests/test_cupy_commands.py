"""The commands on a device model, without a GPU: ``train/evaluate/predict/viz --device cuda`` and the
functions behind them (``convnp.predict``, ``convnp.viz``, the explorer and its live view) run on
tests/fake_cupy.py, the CuPy-rules stand-in of tests/test_cupy_rules.py (a distinct array type that
refuses implicit conversion and mixing with host arrays).

Each test runs the same thing on the CPU and on the "device" and asserts that the results agree (the
CPU run is the truth: it is checked against PyTorch elsewhere), that the device run really computed on
device arrays (a spy on ``functional.conv2d`` records the array type of every convolution's input),
and that whatever leaves the engine (checkpoints, JSON, pictures) is made of host arrays.

With CONVNP_REAL_CUPY=1 (benchmarks/gpu_check.sh) the same tests run on the real CuPy.
"""
import contextlib
import copy
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convnp
import convnp.functional as F
from convnp import checkpoint, optim, recipes
from convnp.cli import main
from convnp.data import DataLoader, oriented_lines
from convnp.explorer import Explorer, TrainingMonitor, decode
from convnp.models import TinyCNN
from convnp.predict import predict_arrays
from convnp.train import fit

sys.path.insert(0, str(Path(__file__).parent))
import fake_cupy  # noqa: E402

REAL_CUPY = fake_cupy.REAL_CUPY
# float32 sums in another order (one GEMM per convolution on the device, chunks and tiles on the CPU)
TOLERANCE = dict(rtol=1e-3, atol=1e-4) if REAL_CUPY else dict(rtol=1e-4, atol=1e-6)


@pytest.fixture
def cupy():
    with fake_cupy.installed() as module:
        yield module


@pytest.fixture
def conv_inputs(monkeypatch):
    """The array library ('numpy' or 'cupy') of every convolution's input, in call order (inference's
    convolution + ReLU + pooling is one op, ``F.conv2d_relu_max_pool``: watched too)."""
    seen = []

    def spy(real):
        def watched(x, *args, **kwargs):
            seen.append(type(getattr(x, "data", x)).__module__.split(".")[0])
            return real(x, *args, **kwargs)
        return watched

    monkeypatch.setattr(F, "conv2d", spy(F.conv2d))
    monkeypatch.setattr(F, "conv2d_relu_max_pool", spy(F.conv2d_relu_max_pool))
    return seen


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


TRAIN = ("train", "--dataset", "lines", "--epochs", "2", "--no-progress")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu") / "run"
    status, stdout, stderr = run_cli(*TRAIN, "--out", out)
    assert status == 0, stderr
    return out


def test_train_on_the_device_matches_the_cpu_run_and_writes_host_checkpoints(cupy, cpu_run, conv_inputs, tmp_path):
    out = tmp_path / "gpu"
    status, stdout, stderr = run_cli(*TRAIN, "--out", out, "--device", "cuda")
    assert status == 0, stderr
    assert "training on cuda" in stdout
    assert conv_inputs and set(conv_inputs) == {"cupy"}  # every convolution, training and validation
    on_cpu, on_gpu = checkpoint.load(cpu_run / "last.npz"), checkpoint.load(out / "last.npz")
    assert on_gpu.epoch == on_cpu.epoch == 2
    for key, value in on_cpu.model_state.items():
        assert type(on_gpu.model_state[key]) is np.ndarray  # loaded with allow_pickle=False: host arrays
        np.testing.assert_allclose(on_gpu.model_state[key], value, err_msg=key, **TOLERANCE)
    for key in ("train_loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(on_gpu.history[key], on_cpu.history[key], err_msg=key, **TOLERANCE)
    # the checkpoint is host arrays: the run resumes on the CPU
    conv_inputs.clear()
    status, stdout, stderr = run_cli("train", "--out", out, "--resume", "--epochs", "3", "--no-progress")
    assert status == 0, stderr
    assert "epoch 3/3" in stdout and set(conv_inputs) == {"numpy"}
    assert checkpoint.load(out / "last.npz").epoch == 3


def test_a_device_run_resumes_on_the_device_exactly_like_the_cpu_run_resumes(cupy, cpu_run, tmp_path):
    """An interrupted device run, resumed on the device (the optimizer state goes back to the device),
    ends where the CPU run that was resumed the same way ends."""
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert run_cli("train", "--dataset", "lines", "--epochs", "1", "--no-progress", "--out", out,
                       "--device", device)[0] == 0
        status, _, stderr = run_cli("train", "--out", out, "--resume", "--epochs", "2", "--no-progress",
                                    "--device", device)
        assert status == 0, stderr
    on_cpu, on_gpu = (checkpoint.load(tmp_path / device / "last.npz") for device in ("cpu", "cuda"))
    for key, value in on_cpu.model_state.items():
        np.testing.assert_allclose(on_gpu.model_state[key], value, err_msg=key, **TOLERANCE)


def test_evaluate_on_the_device_reports_what_the_cpu_reports(cupy, cpu_run, conv_inputs):
    reports = {}
    for device in ("cpu", "cuda"):
        conv_inputs.clear()
        status, stdout, stderr = run_cli("evaluate", cpu_run / "last.npz", "--device", device)
        assert status == 0, stderr
        assert set(conv_inputs) == {"numpy" if device == "cpu" else "cupy"}
        reports[device] = stdout.splitlines()
    cpu, gpu = reports["cpu"], reports["cuda"]
    assert len(cpu) == len(gpu) and cpu[0] == gpu[0]
    assert cpu[1].split()[1] == gpu[1].split()[1]  # accuracy
    assert float(gpu[1].split()[3]) == pytest.approx(float(cpu[1].split()[3]), abs=2e-4)  # loss
    assert cpu[2:] == gpu[2:]  # per class and the confusion matrix


def test_predict_on_the_device_ranks_like_the_cpu(cupy, cpu_run, conv_inputs, tmp_path):
    lines = oriented_lines("test")
    pictures = []
    for k in range(3):
        path = tmp_path / f"line{k}.png"
        Image.fromarray((lines.x[k, 0] * 255).round().astype(np.uint8)).save(path)
        pictures.append(path)
    rankings = {}
    for device in ("cpu", "cuda"):
        conv_inputs.clear()
        status, stdout, stderr = run_cli("predict", cpu_run / "best.npz", *pictures, "--device", device)
        assert status == 0, stderr
        assert set(conv_inputs) == {"numpy" if device == "cpu" else "cupy"}
        rankings[device] = [[entry.split()[0] for entry in line.split(": ", 1)[1].split("   ")]
                            for line in stdout.splitlines()]
    assert rankings["cuda"] == rankings["cpu"] and len(rankings["cpu"]) == 3
    # the function behind it: probabilities equal, computed on the device, returned as Python floats
    model, info = checkpoint.load_model(cpu_run / "best.npz")
    x = np.asarray(lines.x[:5], dtype=np.float32)
    expected = predict_arrays(model, x, info["preprocessing"]["classes"], top=3)
    conv_inputs.clear()
    got = predict_arrays(copy.deepcopy(model).to("cuda"), x, info["preprocessing"]["classes"], top=3)
    assert conv_inputs == ["cupy"]
    for row, want in zip(got, expected):
        assert [name for name, _ in row] == [name for name, _ in want]
        assert all(type(p) is float for _, p in row)
        np.testing.assert_allclose([p for _, p in row], [p for _, p in want], **TOLERANCE)


def test_viz_functions_on_a_device_model_return_host_arrays_equal_to_the_cpu(cupy, conv_inputs):
    viz = pytest.importorskip("convnp.inspect.viz")
    convnp.manual_seed(0)
    model = TinyCNN(in_channels=1, num_classes=3)
    device_model = copy.deepcopy(model).to("cuda")
    image = oriented_lines("test").x[0]
    images = oriented_lines("test").x[:7]

    def host_arrays(value):
        assert type(value) is np.ndarray, type(value)
        return value

    for (name, want), (got_name, got) in zip(viz.conv_feature_maps(model, image),
                                             viz.conv_feature_maps(device_model, image)):
        assert got_name == name
        np.testing.assert_allclose(host_arrays(got), want, **TOLERANCE)
    _, before, after = viz.relu_maps(model, image)
    _, got_before, got_after = viz.relu_maps(device_model, image)
    np.testing.assert_allclose(host_arrays(got_before), before, **TOLERANCE)
    np.testing.assert_allclose(host_arrays(got_after), after, **TOLERANCE)
    gradient, target, score = viz.saliency_map(model, image)
    conv_inputs.clear()
    got_gradient, got_target, got_score = viz.saliency_map(device_model, image)
    assert conv_inputs == ["cupy"] and got_target == target
    np.testing.assert_allclose(host_arrays(got_gradient), gradient, **TOLERANCE)
    assert got_score == pytest.approx(score, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(host_arrays(viz.predict_proba(device_model, images, batch_size=3)),
                               viz.predict_proba(model, images), **TOLERANCE)


def test_viz_command_on_the_device_draws_every_kind(cupy, cpu_run, conv_inputs, tmp_path):
    pytest.importorskip("matplotlib")
    kinds = ("filters", "feature-maps", "relu", "saliency", "confusion", "misclassified")
    written = {}
    for device in ("cpu", "cuda"):
        conv_inputs.clear()
        status, stdout, stderr = run_cli("viz", cpu_run / "last.npz", "--out", tmp_path / device, "--what", *kinds,
                                         "--data", "lines", "--device", device)
        assert status == 0, stderr
        assert set(conv_inputs) == {"numpy" if device == "cpu" else "cupy"}
        written[device] = sorted(path.name for path in (tmp_path / device).glob("*.png"))
    assert written["cuda"] == written["cpu"] and len(written["cpu"]) == len(kinds)


def test_the_explorer_answers_for_a_device_model_as_for_the_cpu_model(cupy, cpu_run, conv_inputs):
    model, info = checkpoint.load_model(cpu_run / "last.npz")
    samples = (oriented_lines("test").x[:3], oriented_lines("test").y[:3])
    on_cpu = Explorer(model, info, samples=samples)
    want = on_cpu.forward({"sample": 1})
    conv_inputs.clear()
    on_gpu = Explorer(copy.deepcopy(model).to("cuda"), info, samples=samples)
    got = on_gpu.forward({"sample": 1})
    assert conv_inputs and set(conv_inputs) == {"cupy"}
    assert [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
    for a, b in zip(got["layers"], want["layers"]):
        assert a["name"] == b["name"] and a["field"] == b["field"]
        np.testing.assert_allclose(decode(a["output"], "output"), decode(b["output"], "output"), **TOLERANCE)
    np.testing.assert_allclose(decode(got["logits"], "logits"), decode(want["logits"], "logits"), **TOLERANCE)
    layer = next(i for i, row in enumerate(r for r in on_cpu.summary.rows if r.is_leaf) if row.type == "Conv2d")
    assert on_gpu.layer_filter({"layer": layer}) == on_cpu.layer_filter({"layer": layer})  # exact: copied weights
    assert on_gpu.field({"layer": layer, "unit": [0, 0]}) == on_cpu.field({"layer": layer, "unit": [0, 0]})
    assert on_gpu.model_info()["summary_text"] == on_cpu.model_info()["summary_text"]


def test_the_live_view_records_a_device_run_like_a_cpu_run(cupy):
    data = oriented_lines("train")
    snapshots = []
    for move in (False, True):
        convnp.manual_seed(0)
        model = TinyCNN(in_channels=1, num_classes=3)
        if move:
            model.to("cuda")
        monitor = TrainingMonitor(interval=0.0)
        fit(model, DataLoader(data, 32, shuffle=True, seed=0), epochs=1, progress=False, log=None,
            optimizer=optim.SGD(model.parameters(), lr=0.05), callbacks=[monitor])
        snapshots.append(monitor.snapshot())
    cpu, gpu = snapshots
    assert [layer["name"] for layer in gpu["layers"]] == [layer["name"] for layer in cpu["layers"]]
    for a, b in zip(gpu["layers"], cpu["layers"]):
        for kind in ("weight", "grad", "activation"):
            assert (a.get(kind) is None) == (b.get(kind) is None), kind
            if b.get(kind):
                np.testing.assert_allclose([a[kind][s] for s in ("min", "mean", "max")],
                                           [b[kind][s] for s in ("min", "mean", "max")], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(decode(a["weight_picture"], "w"), decode(b["weight_picture"], "w"), rtol=1e-3,
                                   atol=1e-5)


# --- the flag's errors -----------------------------------------------------------------------------------------
def test_device_cuda_without_cupy_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    if REAL_CUPY:
        pytest.skip("CuPy is installed here")
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError, wherever it is installed
    for argv in ([*TRAIN, "--out", tmp_path / "x", "--device", "cuda"],
                 ["evaluate", tmp_path / "missing.npz", "--device", "cuda"],
                 ["viz", tmp_path / "missing.npz", "--out", tmp_path / "v", "--device", "cuda"]):
        status, stdout, stderr = run_cli(*argv)
        assert status == 1 and stderr.count("\n") == 1, stderr
        assert stderr.startswith(f"convnp {argv[0]}: --device cuda: CuPy is not installed (pip install 'convnp[cuda]'")
    assert not (tmp_path / "x").exists()  # refused before any work


def test_device_cuda_on_a_machine_without_a_gpu_says_so(tmp_path, cupy, monkeypatch):
    if REAL_CUPY:
        pytest.skip("a GPU is here")
    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", lambda: 0)
    status, _, stderr = run_cli(*TRAIN, "--out", tmp_path / "x", "--device", "cuda")
    assert status == 1 and "--device cuda: CuPy is installed but sees no GPU" in stderr


def test_device_flag_values_and_mpi(tmp_path, cupy):
    status, _, stderr = run_cli(*TRAIN, "--out", tmp_path / "x", "--device", "tpu")
    assert status == 2 and "argument --device: expected cpu or cuda, got 'tpu'" in stderr
    status, _, stderr = run_cli(*TRAIN, "--out", tmp_path / "x", "--device", "cuda", "--workers", "2")
    assert status == 1 and "data-parallel training over MPI (--workers, mpiexec) runs on the CPU" in stderr
    with pytest.raises(ValueError, match="MPI runs on the CPU"):
        recipes.run(recipes.default_recipe("lines"), world=object(), device="cuda")
