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
