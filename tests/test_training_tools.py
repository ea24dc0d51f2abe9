"""The run tools around ``convnp train`` (issue 16): ``--scheduler plateau`` (stepped on the validation loss,
saved and restored on --resume, in history.csv), TensorBoard event files read back with tensorboard's own
reader, and every command with the optional packages absent (falls back, or one line naming the extra)."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from convnp import checkpoint
from convnp.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from shape_folder import make_shape_folder  # noqa: E402

pytest.importorskip("PIL")


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shape_folder(root / "shapes", per_class=6)
    return root / "shapes"


# --- --scheduler plateau -----------------------------------------------------------------------------------------
# lr 1e-7: the validation loss changes by far less than ReduceLROnPlateau's 1e-4 relative threshold, so every
# epoch after the first counts as "no improvement" and the lr is halved after epochs 4 and 7.
PLATEAU = ("--model", "simplecnn", "--scheduler", "plateau", "--lr", "1e-7", "--batch-size", "8", "--no-progress")


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_plateau_halves_the_lr_on_the_validation_loss_as_torch_does(shapes, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    status, out, err = run_cli(capsys, "train", "--data", shapes, *PLATEAU, "--epochs", "8", "--out", tmp_path / "run")
    assert status == 0, err
    assert "lr x0.5 after 2 epochs without improvement" in out
    history = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    # the same validation losses fed to PyTorch's ReduceLROnPlateau give the lr of every epoch
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1e-7)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    expected = []
    for val_loss in history["val_loss"]:
        expected.append(optimizer.param_groups[0]["lr"])
        theirs.step(val_loss)
    np.testing.assert_allclose(history["lr"], expected, rtol=1e-12)
    assert history["lr"] == [1e-7] * 4 + [5e-8] * 3 + [2.5e-8]  # it did reduce, twice
    rows = read_csv(tmp_path / "run" / "history.csv")  # the lr column the curves' lr panel draws
    np.testing.assert_allclose([float(row["lr"]) for row in rows], expected, rtol=1e-5)


def test_plateau_state_is_saved_and_restored_on_resume(shapes, tmp_path, capsys):
    assert run_cli(capsys, "train", "--data", shapes, *PLATEAU, "--epochs", "8", "--out", tmp_path / "straight")[0] == 0
    assert run_cli(capsys, "train", "--data", shapes, *PLATEAU, "--epochs", "3", "--out", tmp_path / "short")[0] == 0
    saved = checkpoint.load(tmp_path / "short" / "last.npz")
    assert saved.scheduler_class == "ReduceLROnPlateau" and saved.scheduler_state["num_bad_epochs"] == 2
    status, _, err = run_cli(capsys, "train", "--resume", "--out", tmp_path / "short", "--data", shapes,
                             "--epochs", "8", "--no-progress")
    assert status == 0, err
    straight = checkpoint.load(tmp_path / "straight" / "last.npz")
    extended = checkpoint.load(tmp_path / "short" / "last.npz")
    # a fresh scheduler after epoch 3 would wait 3 more epochs: the lr of epoch 5 shows the restored count
    assert extended.history["lr"] == straight.history["lr"]
    assert extended.scheduler_state == straight.scheduler_state
    for key, value in straight.model_state.items():
        np.testing.assert_array_equal(extended.model_state[key], value, err_msg=key)


def test_plateau_without_validation_steps_on_the_training_loss():
    from convnp import nn, optim
    from convnp.data import ArrayDataset, DataLoader
    from convnp.train import fit

    rng = np.random.default_rng(0)
    data = DataLoader(ArrayDataset(rng.normal(size=(16, 1, 4, 4)).astype(np.float32), np.arange(16) % 2, ["a", "b"]), 8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    scheduler = optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=0)  # a falling loss: worse
    history = fit(model, data, None, optimizer, epochs=3, scheduler=scheduler, log=None, progress=False)
    assert history["train_loss"][1] < history["train_loss"][0]  # epoch 2 "worse" in max mode: lr x0.1 after it
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="steps once per epoch"):
        fit(model, data, None, optimizer, scheduler=scheduler, scheduler_interval="batch", log=None)


# --- TensorBoard ---------------------------------------------------------------------------------------------
def test_tensorboard_event_files_hold_the_history_and_a_resumed_run_continues_them(shapes, tmp_path, capsys):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    common = ("--data", shapes, "--model", "simplecnn", "--scheduler", "cosine", "--log", "tensorboard",
              "--no-progress", "--out", tmp_path / "run")
    status, out, err = run_cli(capsys, "train", *common, "--epochs", "2")
    assert status == 0, err
    assert f"TensorBoard: tensorboard --logdir {tmp_path / 'run' / 'tensorboard'}" in out
    status, _, err = run_cli(capsys, "train", "--resume", *common, "--epochs", "3")
    assert status == 0, err
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per process
    events = accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    rows = read_csv(tmp_path / "run" / "history.csv")
    columns = {"train/loss": "train_loss", "train/accuracy": "train_accuracy", "val/loss": "val_loss",
               "val/accuracy": "val_accuracy", "lr": "lr"}
    assert sorted(events.Tags()["scalars"]) == sorted(columns)
    for tag, column in columns.items():
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2, 3], tag
        np.testing.assert_allclose([s.value for s in scalars], [float(row[column]) for row in rows], rtol=1e-5,
                                   err_msg=tag)


def hide_packages(monkeypatch, *names):
    """Make ``import NAME`` (and its sub-modules) raise ImportError, as if NAME were not installed."""
    for name in names:
        for loaded in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
            monkeypatch.setitem(sys.modules, loaded, None)
        monkeypatch.setitem(sys.modules, name, None)


def test_log_tensorboard_without_the_package_names_it_before_training(shapes, tmp_path, capsys, monkeypatch):
    hide_packages(monkeypatch, "tensorboard", "tensorboardX")
    status, _, err = run_cli(capsys, "train", "--data", shapes, "--model", "simplecnn", "--epochs", "1",
                             "--log", "tensorboard", "--out", tmp_path / "run", "--no-progress")
    assert status == 1
    assert err.strip().splitlines() == ["convnp train: --log tensorboard needs the tensorboard package: "
                                        "pip install tensorboard (or tensorboardX)"]
    assert not (tmp_path / "run" / "last.npz").exists()


# --- a NumPy-only install: every command falls back or names the extra ------------------------------------------
TOOLS = ("tqdm", "matplotlib", "PIL", "sklearn", "platformdirs", "threadpoolctl")  # the [tools] extra's imports
EXTRA = "pip install 'convnp[tools]'"

# One fresh process runs every command in turn with the tools made unimportable before convnp is imported
# (sys.modules[name] = None: ``import name`` and its sub-modules raise ImportError), and reports each one's
# status and output as JSON.  Each command may change environment variables for itself ("env").
DRIVER = """
import contextlib, io, json, os, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from convnp.cli import main
results = []
for case in json.loads(sys.stdin.read()):
    saved = dict(os.environ)
    os.environ.update(case.get("env", {}))
    for key in case.get("unset", []):
        os.environ.pop(key, None)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(case["argv"])
    os.environ.clear()
    os.environ.update(saved)
    results.append({"status": status, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""

# (command line, 'falls back' or 'needs the extra', what the output must say)
COMMANDS = [
    (["train", "--dataset", "mnist", "--epochs", "1", "--batch-size", "32", "--progress", "--out", "run"], "falls back",
     "training_curves.png skipped: drawing it needs matplotlib (pip install 'convnp[tools]')"),
    (["evaluate", "run/best.npz"], "falls back", "precision"),
    (["predict", "run/best.npz", "digit.npy"], "falls back", "digit.npy: "),
    (["predict", "run/best.npz", "digit.png"], "needs the extra", "needs Pillow"),
    (["datasets"], "falls back", "to get it: pip install 'convnp[tools]' (scikit-learn)"),
    (["summary", "--model", "lenet5"], "falls back", "Conv2d"),
    (["summary", "run/best.npz"], "falls back", "Conv2d"),
    (["viz", "run/best.npz", "--out", "figures"], "needs the extra", "drawing figures needs matplotlib"),
    (["export", "run/best.npz", "--format", "safetensors", "--out", "model.safetensors"], "falls back", "wrote"),
    (["explore", "run/best.npz", "--export", "page"], "needs the extra", "needs Pillow"),
    (["explore", "--export", "page"], "needs the extra", "digits() needs scikit-learn"),
    (["train", "--data", "shapes", "--epochs", "1", "--out", "run-shapes"], "needs the extra", "needs Pillow"),
    (["train", "--dataset", "digits", "--epochs", "1", "--out", "run-digits"], "needs the extra",
     "digits() needs scikit-learn"),
    (["experiment", "cnn-vs-mlp", "--quick", "--out", "experiment"], "needs the extra",
     "experiments draw their figures with matplotlib"),
    # bench times convnp in worker processes of this form (and PyTorch, which is not a tool, in others)
    (["bench", "--worker", "convnp", "--only", "naive", "--quick"], "falls back", '"agree": true'),
]


@pytest.fixture(scope="module")
def numpy_only(tmp_path_factory):
    """The output of every command of COMMANDS, run in one process without the tools; the files they need
    (a small MNIST in CONVNP_DATA, a shape folder, pictures) are made here, with the tools."""
    import os
    import subprocess

    from PIL import Image

    from convnp import data

    root = tmp_path_factory.mktemp("numpy-only")
    for split, n, prefix in (("train", 200, "train"), ("test", 50, "t10k")):
        shapes = data.geometric_digits(split, n=n)
        (root / "data" / "mnist").mkdir(parents=True, exist_ok=True)
        data.write_idx(root / "data" / "mnist" / f"{prefix}-images-idx3-ubyte.gz",
                       (shapes.x[:, 0] * 255).round().astype(np.uint8))
        data.write_idx(root / "data" / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", shapes.y.astype(np.uint8))
    make_shape_folder(root / "shapes", per_class=2)
    digit = data.geometric_digits("test", n=1).x[0, 0]
    np.save(root / "digit.npy", digit)
    Image.fromarray((digit * 255).astype(np.uint8)).save(root / "digit.png")
    cases = [{"argv": argv} for argv, _, _ in COMMANDS]
    env = dict(os.environ, CONVNP_DATA=str(root / "data"), PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    done = subprocess.run([sys.executable, "-c", DRIVER, ",".join(TOOLS)], input=json.dumps(cases), cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[" ".join(argv[:2]) for argv, _, _ in COMMANDS])
def test_without_the_tools_every_command_falls_back_or_names_the_extra(numpy_only, index):
    argv, outcome, expected = COMMANDS[index]
    result = numpy_only[index]
    if outcome == "falls back":
        assert result["status"] == 0 and result["err"] == "", result
        assert expected in result["out"], result
    else:
        lines = result["err"].strip().splitlines()
        assert result["status"] == 1 and len(lines) == 1, result  # one line, no traceback
        assert lines[0].startswith(f"convnp {argv[0]}: ") and expected in lines[0] and EXTRA in lines[0], result


def test_without_tqdm_training_prints_one_line_per_epoch(numpy_only):
    out = numpy_only[0]["out"]
    assert "epoch 1/1  loss" in out and "val loss" in out  # --progress asked for a bar: the per-epoch line instead


def test_without_platformdirs_the_cache_folder_is_the_xdg_one(tmp_path):
    import os
    import subprocess

    env = {key: value for key, value in os.environ.items() if key not in ("CONVNP_DATA", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    cases = [{"argv": ["datasets"]}, {"argv": ["datasets"], "env": {"CONVNP_DATA": str(tmp_path / "mine")}}]
    done = subprocess.run([sys.executable, "-c", DRIVER, ",".join(TOOLS)], input=json.dumps(cases), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    default, chosen = json.loads(done.stdout)
    assert f"data folder: {tmp_path / '.cache' / 'convnp'} (default; set CONVNP_DATA to change it)" in default["out"]
    assert f"data folder: {tmp_path / 'mine'} (CONVNP_DATA)" in chosen["out"]
