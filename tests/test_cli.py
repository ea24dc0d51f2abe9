"""The convnp command line, end to end, on a fake MNIST folder (geometric shapes written as IDX files)."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import convnp.train
from convnp import checkpoint, data
from convnp.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def write_fake_mnist(root, n_train=800, n_test=200):
    """MNIST-format files whose 'digits' are the 10 geometric shapes (label 1: vertical bar, 2: horizontal
    bar, 4: plus, ...), so a LeNet-5 learns them in a few seconds."""
    folder = Path(root) / "mnist"
    folder.mkdir(parents=True)
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        shapes = data.geometric_digits(split, n=n, shift=2)
        data.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", (shapes.x[:, 0] * 255).round().astype(np.uint8))
        data.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", shapes.y.astype(np.uint8))
    return folder


def run_cli(*argv):
    """main(argv) in this process -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_mnist(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVNP_DATA", str(root))
        # never go online: a download attempt is refused at once by a closed local port
        patch.setitem(data.download.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
        patch.setitem(data.download.MIRRORS, "fashion-mnist", ["http://127.0.0.1:9/"])
        yield root


@pytest.fixture(scope="module")
def trained(fake_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lenet5"
    status, stdout, stderr = run_cli("train", "--model", "lenet5", "--dataset", "mnist", "--epochs", "4",
                                     "--batch-size", "32", "--lr", "3e-3", "--out", out, "--no-progress")
    assert status == 0, stderr
    return out, stdout


def test_train_writes_checkpoints_history_and_curves(trained):
    out, stdout = trained
    for epoch in range(1, 5):
        assert f"epoch {epoch}/4" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "history.csv", "history.json", "last.npz",
                                                    "training_curves.png"]
    saved = json.loads((out / "history.json").read_text())
    history = saved["history"]
    assert history["epoch"] == [1, 2, 3, 4] and saved["recipe"]["model"] == "lenet5"
    assert saved["recipe"]["lr"] == 3e-3 and saved["recipe"]["batch_size"] == 32
    assert history["val_accuracy"][-1] > 0.9
    last, best = checkpoint.load(out / "last.npz"), checkpoint.load(out / "best.npz")
    top = max(history["val_accuracy"])  # the best validation accuracy; a tie goes to the lower validation loss
    tied = [i for i, value in enumerate(history["val_accuracy"]) if value == top]
    assert last.epoch == 4 and best.epoch == min(tied, key=lambda i: history["val_loss"][i]) + 1
    assert last.dataset == "mnist" and last.input_size == [1, 28, 28] and last.classes == [str(k) for k in range(10)]
    assert last.recipe["dataset"] == "mnist"
    with Image.open(out / "training_curves.png") as image:
        assert image.format == "PNG"


def test_evaluate_prints_accuracy_per_class_accuracy_and_the_confusion_matrix(trained):
    out, _ = trained
    status, stdout, stderr = run_cli("evaluate", out / "last.npz")
    assert status == 0, stderr
    labels = data.mnist("test").y
    lines = stdout.splitlines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted class):")
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in lines[start + 2:start + 12]])
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=10))
    accuracy = float(lines[1].split()[1].rstrip("%"))
    assert accuracy == pytest.approx(100 * np.trace(matrix) / len(labels), abs=0.005)
    history = json.loads((out / "history.json").read_text())["history"]
    assert accuracy == pytest.approx(100 * history["val_accuracy"][-1], abs=0.005)
    per_class = lines[lines.index("per-class accuracy:") + 2:start]
    for k, line in enumerate(per_class):
        assert float(line.split()[1].rstrip("%")) == pytest.approx(100 * matrix[k, k] / matrix[k].sum(), abs=0.005)


def _stroke_picture(path, shape):
    """A dark shape drawn on a white 200x150 RGB picture."""
    image = Image.new("RGB", (200, 150), "white")
    draw = ImageDraw.Draw(image)
    if shape in ("vertical", "plus"):
        draw.rectangle([88, 20, 112, 130], fill=(30, 30, 30))
    if shape in ("horizontal", "plus"):
        draw.rectangle([45, 63, 155, 87], fill=(30, 30, 30))
    image.save(path)
    return path


def test_predict_reads_pictures_of_any_size_and_colour(trained, tmp_path):
    out, _ = trained
    pictures = [_stroke_picture(tmp_path / "bar.png", "vertical"), _stroke_picture(tmp_path / "dash.jpg", "horizontal"),
                _stroke_picture(tmp_path / "plus.png", "plus")]
    status, stdout, stderr = run_cli("predict", out / "best.npz", *pictures, "--save-input", tmp_path / "inputs")
    assert status == 0, stderr
    lines = [line for line in stdout.splitlines() if not line.startswith("wrote")]
    assert len(lines) == 3
    top1 = []
    for picture, line in zip(pictures, lines):
        name, ranking = line.split(": ", 1)
        assert name == str(picture)
        entries = ranking.split("   ")
        assert len(entries) == 3
        probabilities = [float(entry.split()[1].rstrip("%").replace("<0.1", "0")) for entry in entries]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.05
        top1.append(entries[0].split()[0])
    assert top1 == ["1", "2", "4"]  # geometric labels: vertical bar, horizontal bar, plus
    assert len(list((tmp_path / "inputs").glob("*_input.png"))) == 3


def test_resume_continues_exactly_where_an_interrupted_run_stopped(fake_data, tmp_path, monkeypatch):
    common = ("train", "--dataset", "lines", "--epochs", "4", "--no-progress")
    assert run_cli(*common, "--out", tmp_path / "straight")[0] == 0

    real_train_epoch = convnp.train.train_epoch

    def interrupted_in_epoch_3(model, loader, optimizer, loss, state=None, *args, **kwargs):
        if state.epoch == 2:
            raise KeyboardInterrupt
        return real_train_epoch(model, loader, optimizer, loss, state, *args, **kwargs)

    monkeypatch.setattr(convnp.train, "train_epoch", interrupted_in_epoch_3)
    status, _, stderr = run_cli(*common, "--out", tmp_path / "resumed")
    assert status == 130 and stderr.startswith("convnp train: interrupted; ")
    assert "last.npz (after epoch 2) and history.json were kept" in stderr
    assert stderr.strip().endswith(f"resume with: convnp train --resume --out {tmp_path / 'resumed'}")
    assert checkpoint.load(tmp_path / "resumed" / "last.npz").epoch == 2
    monkeypatch.setattr(convnp.train, "train_epoch", real_train_epoch)

    status, stdout, stderr = run_cli("train", "--out", tmp_path / "resumed", "--resume", "--no-progress")
    assert status == 0, stderr
    assert "resuming from" in stdout and "epoch 3/4" in stdout and "epoch 1/4" not in stdout
    straight = checkpoint.load(tmp_path / "straight" / "last.npz")
    resumed = checkpoint.load(tmp_path / "resumed" / "last.npz")
    assert resumed.epoch == 4
    for key, value in straight.model_state.items():
        np.testing.assert_array_equal(resumed.model_state[key], value, err_msg=key)
    assert resumed.history["train_loss"] == straight.history["train_loss"]


def test_a_diverging_run_stops_with_one_line_and_a_failure_status(fake_data, tmp_path):
    status, stdout, stderr = run_cli("train", "--dataset", "lines", "--epochs", "2", "--optimizer", "sgd",
                                     "--lr", "1e12", "--scheduler", "none", "--out", tmp_path, "--no-progress")
    assert status == 1 and stderr == "convnp train: training diverged (see above)\n"
    assert "NaN guard: the training loss became nan at epoch 1, step" in stdout
    assert not (tmp_path / "last.npz").exists()


def test_the_demo_falls_back_to_the_bundled_digits_when_mnist_is_absent_and_offline(tmp_path, monkeypatch, capsys):
    import dataclasses

    from convnp import demo, recipes

    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "empty"))
    monkeypatch.setitem(data.download.MIRRORS, "mnist", ["http://127.0.0.1:9/"])  # offline: refused at once
    monkeypatch.setitem(recipes.DEFAULTS, "digits", dataclasses.replace(recipes.DEFAULTS["digits"], epochs=1))
    assert demo.main(["--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "MNIST is not available" in out and "Falling back to scikit-learn's bundled 8x8 digits" in out
    assert f"$ convnp train --dataset digits --out {tmp_path / 'demo'}" in out
    assert "SimpleCNN from" in out and f"on digits test: {len(data.digits('test'))} images" in out and "accuracy" in out
    assert checkpoint.load(tmp_path / "demo" / "last.npz").dataset == "digits"


def test_datasets_says_what_is_here_and_how_to_get_the_rest(fake_data):
    status, stdout, _ = run_cli("datasets")
    assert status == 0
    assert f"data folder: {fake_data}" in stdout
    rows = {line.split()[0]: line for line in stdout.splitlines() if line.startswith("  ") and line.split()}
    assert rows["mnist"].split()[1] == "yes" and rows["fashion-mnist"].split()[1] == "no"
    assert "to get it:" in stdout and str(Path(fake_data) / "fashion-mnist") in stdout


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "datasets", None])
def test_every_command_has_help(command):
    status, stdout, _ = run_cli(*([command] if command else []), "--help")
    assert status == 0 and stdout.startswith(f"usage: convnp{' ' + command if command else ''}")


def _bad_files(tmp_path):
    random_file = tmp_path / "random.npz"
    random_file.write_bytes(os.urandom(500))
    return random_file


@pytest.mark.parametrize("argv, expected", [
    (["train", "--epochs", "0"], "--epochs: expected a positive integer"),
    (["train", "--lr", "fast"], "--lr: expected a positive number"),
    (["train", "--model", "resnet999"], "invalid choice: 'resnet999'"),
    (["train", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["train", "--model", "lenet5", "--dataset", "lines", "--out", "{tmp}/x"],
     "model lenet5 does not fit dataset lines"),
    (["train", "--resume", "{tmp}/missing.npz"], "missing.npz: no such checkpoint file"),
    (["train", "--resume"], "--resume without a CHECKPOINT needs --out"),
    (["evaluate", "{tmp}/missing.npz"], "missing.npz: no such checkpoint file"),
    (["evaluate", "{tmp}/random.npz"], "random.npz is not a convnp checkpoint (.npz)"),
    (["evaluate"], "the following arguments are required: CHECKPOINT"),
    (["predict", "{tmp}/random.npz", "x.png"], "random.npz is not a convnp checkpoint (.npz)"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    # every flag's error names the flag
    (["train", "--seed", "-1"], "argument --seed: expected a whole number in [0, 2**32), got '-1'"),
    (["bench", "--threads", "0"], "argument --threads: expected a positive integer, got '0'"),
    (["bench", "--repeats", "0"], "argument --repeats: expected a positive integer, got '0'"),
    (["experiment", "cnn-vs-mlp", "--threads", "0"], "argument --threads: expected a positive integer"),
    (["experiment", "cnn-vs-mlp", "--seed", "-1"], "argument --seed: expected a whole number >= 0"),
    (["viz", "c.npz", "--out", "o", "--limit", "0"], "argument --limit: expected a positive integer, got '0'"),
    (["viz", "c.npz", "--out", "o", "--limit", "-5"], "argument --limit: expected a positive integer, got '-5'"),
    (["viz", "c.npz", "--out", "o", "--index", "-1"], "argument --index: expected a whole number >= 0"),
    (["summary", "--model", "lenet5", "--batch-size", "0"], "argument --batch-size: expected a positive integer"),
    (["summary", "--model", "lenet5", "--input-size", "1", "0", "28"], "argument --input-size: expected a positive"),
    (["summary", "--model", "resnet"], "convnp summary: unknown model 'resnet'"),
    (["experiment", "no-such-thing"], "convnp experiment: unknown experiment 'no-such-thing'"),
    (["viz", "{tmp}/missing.npz", "--out", "{tmp}/o"], "convnp viz: checkpoint"),
])
def test_user_errors_end_with_one_line_and_a_non_zero_status(fake_data, tmp_path, argv, expected):
    _bad_files(tmp_path)
    status, stdout, stderr = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert status != 0
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("convnp") and expected in stderr, stderr


def test_predict_errors_name_the_picture(trained, tmp_path):
    out, _ = trained
    (tmp_path / "notes.png").write_text("hello")
    for picture, expected in ((tmp_path / "nope.png", "nope.png: no such image file"),
                              (tmp_path / "notes.png", "notes.png: not a readable image")):
        status, _, stderr = run_cli("predict", out / "best.npz", picture)
        assert status == 1 and stderr.count("\n") == 1 and expected in stderr


def test_resume_refuses_a_different_recipe(trained, tmp_path):
    out, _ = trained
    status, _, stderr = run_cli("train", "--resume", out / "last.npz", "--out", tmp_path / "r", "--lr", "0.1")
    assert status == 1 and "--lr 0.1 differs from the resumed run's 0.003" in stderr
    status, _, stderr = run_cli("train", "--resume", out / "last.npz", "--out", tmp_path / "r")
    assert status == 1 and "already completed 4 epoch(s)" in stderr


def test_the_installed_entry_point_exits_non_zero_with_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-m", "convnp", "evaluate", str(tmp_path / "none.npz")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"convnp evaluate: {tmp_path / 'none.npz'}: no such checkpoint file\n"
    result = subprocess.run([sys.executable, "-m", "convnp", "train", "--batch-size", "-3"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# --- the error convention, through the real process: exit status, stderr, never a traceback ----------------
def run_process(code, *, env=None, stdout=subprocess.PIPE):
    """Run ``code`` (Python, with convnp importable) in a fresh interpreter -> CompletedProcess."""
    environment = {name: value for name, value in os.environ.items() if name != "CONVNP_DEBUG"}
    environment.update(PYTHONPATH=str(SRC), **(env or {}))
    return subprocess.run([sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          env=environment, timeout=120)


def test_missing_data_error_keeps_all_of_its_lines(tmp_path):
    code = ("import sys, convnp.data.download as d\n"
            "d.MIRRORS['fashion-mnist'] = ['http://127.0.0.1:9/']  # refused at once, never online\n"
            "from convnp.cli import main\n"
            f"sys.exit(main(['train', '--dataset', 'fashion-mnist', '--out', {str(tmp_path / 'x')!r}]))")
    result = run_process(code, env={"CONVNP_DATA": str(tmp_path / "data")})
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("convnp train: dataset fashion-mnist is not available: fashion-mnist: ")
    assert any(line.strip().endswith("train-images-idx3-ubyte.gz") for line in lines)  # which files
    assert any("Put these files in" in line for line in lines)  # where
    assert lines[-1] == "run 'convnp datasets' to see where to put it" and len(lines) >= 5


def test_an_unexpected_error_is_one_line_with_a_hint_and_a_traceback_with_convnp_debug():
    code = ("import sys, convnp.cli as cli\n"
            "cli.datasets_command = lambda args: {}['a bug']\n"
            "sys.exit(cli.main(['datasets']))")
    result = run_process(code)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == ("convnp datasets: unexpected KeyError: 'a bug' "
                             "(run with CONVNP_DEBUG=1 for the traceback)\n")
    result = run_process(code, env={"CONVNP_DEBUG": "1"})
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "KeyError: 'a bug'" in result.stderr and result.stderr.endswith("convnp datasets: unexpected KeyError: "
                                                                          "'a bug'\n")


def test_a_closed_pipe_ends_quietly():
    """``convnp summary ... | head -1``: the reader goes away; convnp stops without a traceback or
    "Exception ignored" noise, with the status a shell reports for a program its pipe ended (141)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before convnp writes anything
    try:
        result = run_process("import sys; from convnp.cli import main; "
                             "sys.exit(main(['summary', '--model', 'lenet5']))", stdout=write_end)
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 141


def test_a_flag_error_from_the_installed_command_names_the_flag():
    result = subprocess.run([sys.executable, "-m", "convnp", "viz", "c.npz", "--out", "o", "--limit", "-5"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "argument --limit: expected a positive integer, got '-5'" in result.stderr



def test_cli_is_wiring_only_every_command_body_lives_beside_its_code():
    """cli.py parses and dispatches; each sub-command's function lives in the module of the code it
    drives (issue 15), so a command's change never has to touch cli.py's body."""
    import argparse

    from convnp.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    homes = {name: sub.get_default("func").__module__ for name, sub in commands.items()}
    assert {"train", "evaluate", "predict", "datasets", "viz", "explore"} <= set(homes)
    assert not [name for name, home in homes.items() if home == "convnp.cli"], homes
    assert homes["train"] == "convnp.train_commands" and homes["datasets"] == "convnp.data.commands"
