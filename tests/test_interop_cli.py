"""`convnp export` end to end, and .onnx files accepted by evaluate, predict and viz."""
import contextlib
import importlib.util
import io

import numpy as np
import pytest
from PIL import Image

import convnp
from convnp.cli import main

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A TinyCNN trained for one epoch on the synthetic oriented lines (no files needed)."""
    out = tmp_path_factory.mktemp("run")
    status, _, stderr = run_cli("train", "--dataset", "lines", "--epochs", "1", "--out", out, "--no-progress")
    assert status == 0, stderr
    return out


def test_export_onnx_then_evaluate_and_predict_as_with_the_checkpoint(run, tmp_path):
    status, stdout, stderr = run_cli("export", run / "last.npz", "--format", "onnx", "--out", tmp_path / "tiny")
    assert status == 0, stderr
    path = tmp_path / "tiny.onnx"
    assert stdout.strip() == f"wrote {path}"
    _, from_checkpoint, _ = run_cli("evaluate", run / "last.npz")
    status, from_onnx, stderr = run_cli("evaluate", path)
    assert status == 0, stderr
    assert from_onnx.replace(str(path), "FILE") == from_checkpoint.replace(str(run / "last.npz"), "FILE")
    picture = tmp_path / "line.png"
    pixels = np.zeros((8, 8), np.uint8)
    pixels[:, 3] = 255
    Image.fromarray(pixels).save(picture)
    _, predicted_checkpoint, _ = run_cli("predict", run / "last.npz", picture)
    status, predicted_onnx, stderr = run_cli("predict", path, picture)
    assert status == 0 and predicted_onnx == predicted_checkpoint, stderr
    status, stdout, stderr = run_cli("viz", path, "--what", "filters", "feature-maps", "--out", tmp_path / "figs")
    assert status == 0, stderr
    assert (tmp_path / "figs" / "filters.png").is_file() and (tmp_path / "figs" / "feature_maps.png").is_file()


def test_export_torch_writes_a_state_dict_and_a_module_that_reproduce_the_model(run, tmp_path):
    status, stdout, stderr = run_cli("export", run / "last.npz", "--format", "torch", "--out", tmp_path / "tiny.pt")
    assert status == 0, stderr
    assert stdout.strip() == f"wrote {tmp_path / 'tiny.pt'}, {tmp_path / 'tiny.py'}"
    spec = importlib.util.spec_from_file_location("tiny", tmp_path / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    twin = module.Model()
    twin.load_state_dict(torch.load(tmp_path / "tiny.pt", weights_only=True))
    assert 'torch.load("tiny.pt")' in (tmp_path / "tiny.py").read_text()
    model, _ = convnp.checkpoint.load_model(run / "last.npz")
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        theirs = twin.eval()(torch.from_numpy(x)).numpy()
    with convnp.no_grad():
        np.testing.assert_allclose(theirs, model(convnp.tensor(x)).data, atol=1e-5)


def test_export_safetensors_keeps_weights_and_preprocessing(run, tmp_path):
    status, _, stderr = run_cli("export", run / "last.npz", "--format", "safetensors", "--out", tmp_path / "w")
    assert status == 0, stderr
    weights = convnp.load_safetensors(tmp_path / "w.safetensors")
    info = convnp.checkpoint.load(run / "last.npz")
    for key, value in info.model_state.items():
        np.testing.assert_array_equal(weights.state_dict[key], value)
    assert weights.metadata["model"] == "tinycnn" and weights.metadata["preprocessing"] == info.preprocessing
    _, from_checkpoint, _ = run_cli("evaluate", run / "last.npz")
    status, from_weights, stderr = run_cli("evaluate", tmp_path / "w.safetensors")
    assert status == 0, stderr
    assert from_weights.replace(str(tmp_path / "w.safetensors"), "FILE") == \
        from_checkpoint.replace(str(run / "last.npz"), "FILE")


def test_bad_onnx_files_get_one_line_naming_the_file_and_nothing_is_written(run, tmp_path):
    good = tmp_path / "good.onnx"
    assert run_cli("export", run / "last.npz", "--format", "onnx", "--out", good)[0] == 0
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:300])
    out = tmp_path / "out"
    out.mkdir()
    commands = (["export", cut, "--format", "torch", "--out", out / "x"], ["evaluate", cut], ["viz", cut, "--out", out])
    for argv in commands:
        status, stdout, stderr = run_cli(*argv)
        assert status == 1 and str(cut) in stderr and len(stderr.strip().splitlines()) == 1, (argv, stderr)
    assert list(out.iterdir()) == []


def test_export_has_help():
    status, stdout, _ = run_cli("export", "--help")
    assert status == 0 and "--format {onnx,torch,safetensors}" in stdout
