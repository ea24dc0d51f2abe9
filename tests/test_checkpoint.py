"""convnp.checkpoint: one .npz file, no pickle, atomic writes, clear errors, exact resume."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import convnp
from convnp import backend, checkpoint, data, models, nn, optim
from convnp.checkpoint import CheckpointError
from convnp.tensor import Tensor
from convnp.train import ModelCheckpoint, fit

SRC = Path(__file__).resolve().parents[1] / "src"


def _trained_tiny(seed=0, steps=3):
    """A TinyCNN, an Adam optimizer and a OneCycleLR, a few steps in, so every state is non-trivial."""
    convnp.manual_seed(seed)
    model = models.TinyCNN(num_classes=3)
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    scheduler = optim.OneCycleLR(optimizer, max_lr=1e-2, total_steps=10)
    x = np.random.default_rng(seed).random((8, 1, 8, 8), dtype=np.float32)
    y = np.arange(8) % 3
    for _ in range(steps):
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(model(Tensor(x)), y).backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_round_trip_restores_weights_optimizer_scheduler_rng_and_metadata(tmp_path):
    model, optimizer, scheduler = _trained_tiny()
    loader = data.DataLoader((np.zeros((4, 1, 8, 8)), np.zeros(4)), 2, shuffle=True, seed=5)
    next(iter(loader))  # advance its generator
    prep = {"dataset": "lines", "mean": [0.2], "std": [0.3], "input_size": [1, 8, 8], "channels": 1,
            "classes": ["vertical", "horizontal", "diagonal"]}
    global_state = backend.default_rng().bit_generator.state
    path = checkpoint.save(tmp_path / "c.npz", model, optimizer, scheduler, epoch=7, loader=loader,
                           preprocessing=prep, history={"train_loss": [1.5, 0.5]}, note="hello",
                           table=np.arange(6).reshape(2, 3))

    # An ordinary .npz that numpy reads with pickle disabled, holding no object arrays.
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
        assert "model/0.weight" in archive.files

    info = checkpoint.load(path)
    assert info.epoch == 7 and info.model == "tinycnn" and info.model_class == "TinyCNN"
    assert info.model_args == {"num_classes": 3, "in_channels": 1}
    assert info.preprocessing == prep and info.dataset == "lines" and info.classes == prep["classes"]
    assert info.history == {"train_loss": [1.5, 0.5]} and info.note == "hello"
    np.testing.assert_array_equal(info.table, np.arange(6).reshape(2, 3))
    assert info.rng_state == global_state
    assert info.loader_rng_state == loader.rng.bit_generator.state

    # Restore into fresh objects: every state equals the original's.
    convnp.manual_seed(123)
    backend.default_rng().random(10)
    model2 = models.TinyCNN(num_classes=3)
    optimizer2 = optim.Adam(model2.parameters(), lr=1e-2)
    scheduler2 = optim.OneCycleLR(optimizer2, max_lr=1e-2, total_steps=10)
    loader2 = data.DataLoader((np.zeros((4, 1, 8, 8)), np.zeros(4)), 2, shuffle=True, seed=99)
    checkpoint.restore(path, model2, optimizer2, scheduler2, loader=loader2)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(model2.state_dict()[key], value, err_msg=key)
    saved, restored = optimizer.state_dict(), optimizer2.state_dict()
    assert restored["param_groups"] == saved["param_groups"]  # lr, betas (a tuple) and all
    assert isinstance(optimizer2.param_groups[0]["betas"], tuple)
    for index, state in saved["state"].items():
        assert restored["state"][index]["step"] == state["step"]
        np.testing.assert_array_equal(restored["state"][index]["exp_avg_sq"], state["exp_avg_sq"])
    assert scheduler2.state_dict() == scheduler.state_dict()
    assert backend.default_rng().bit_generator.state == global_state
    assert loader2.rng.bit_generator.state == loader.rng.bit_generator.state


@pytest.mark.parametrize("name, kwargs", [("lenet5", {}), ("lenet5-classic", {"num_classes": 4}),
                                          ("simplecnn", {"in_channels": 2}), ("tinycnn", {"num_classes": 5}),
                                          ("mlp", {"in_features": 64, "hidden": [16, 8], "num_classes": 3})])
def test_load_model_rebuilds_every_model_from_the_file_alone(tmp_path, name, kwargs):
    model = models.get_model(name, **kwargs)
    path = checkpoint.save(tmp_path / f"{name}.npz", model)
    rebuilt, info = checkpoint.load_model(path)
    assert type(rebuilt) is type(model) and not rebuilt.training
    assert models.model_config(rebuilt) == models.model_config(model)
    channels = kwargs.get("in_channels", 1)
    side = {"lenet5-classic": 32, "tinycnn": 8, "mlp": 8}.get(name, 28)
    x = Tensor(np.random.default_rng(0).random((2, channels, side, side), dtype=np.float32))
    model.eval()
    np.testing.assert_array_equal(rebuilt(x).data, model(x).data)


def _weights(path):
    return checkpoint.load(path).model_state


def test_a_crash_mid_write_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    old_model, _, _ = _trained_tiny(seed=0)
    path = checkpoint.save(tmp_path / "last.npz", old_model, epoch=1)
    old_bytes = path.read_bytes()
    new_model, _, _ = _trained_tiny(seed=1)

    def failing_writer(file, entries):
        file.write(old_bytes[: len(old_bytes) // 2])  # half an archive is on disk when the "crash" comes
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoint, "_write_npz", failing_writer)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save(path, new_model, epoch=2)
    assert sorted(os.listdir(tmp_path)) == ["last.npz"]
    assert path.read_bytes() == old_bytes
    assert checkpoint.load(path).epoch == 1


def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_intact(tmp_path):
    """SIGKILL (no cleanup at all) in the middle of writing the archive."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(SRC)!r})
        import numpy as np
        from convnp import checkpoint, models
        path = {str(tmp_path / "last.npz")!r}
        checkpoint.save(path, models.TinyCNN(), epoch=1)
        def dying_writer(file, entries):
            file.write(b"PK\\x03\\x04" + bytes(1000))
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint._write_npz = dying_writer
        checkpoint.save(path, models.TinyCNN(), epoch=2)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    info = checkpoint.load(tmp_path / "last.npz")
    assert info.epoch == 1
    leftovers = [name for name in os.listdir(tmp_path) if name != "last.npz"]
    assert all(name.startswith(".last.npz.") and name.endswith(".tmp") for name in leftovers)


def test_overwriting_replaces_the_whole_file(tmp_path):
    a, _, _ = _trained_tiny(seed=0)
    b, _, _ = _trained_tiny(seed=1)
    path = checkpoint.save(tmp_path / "c.npz", a, epoch=1)
    checkpoint.save(path, b, epoch=2)
    info = checkpoint.load(path)
    assert info.epoch == 2
    np.testing.assert_array_equal(info.model_state["0.weight"], b.state_dict()["0.weight"])
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def _make_bad_files(tmp_path):
    model, optimizer, scheduler = _trained_tiny()
    good = checkpoint.save(tmp_path / "good.npz", model, optimizer, scheduler, epoch=1).read_bytes()
    files = {}
    files["random bytes"] = tmp_path / "random.npz"
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(3000))
    files["plain npz"] = tmp_path / "plain.npz"
    np.savez(files["plain npz"], weights=np.ones(3))
    files["npy array"] = tmp_path / "array.npz"
    with open(files["npy array"], "wb") as f:
        np.save(f, np.ones(3))
    files["truncated"] = tmp_path / "truncated.npz"
    files["truncated"].write_bytes(good[: len(good) * 2 // 3])
    files["empty"] = tmp_path / "empty.npz"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.npz"
    files["text"].write_text("not a checkpoint\n")
    files["pickled"] = tmp_path / "pickled.npz"
    np.savez(files["pickled"], __convnp_checkpoint__=np.array([{"format": "convnp-checkpoint"}], dtype=object))
    return files


def test_files_that_are_not_checkpoints_are_rejected_naming_the_file(tmp_path):
    for kind, path in _make_bad_files(tmp_path).items():
        with pytest.raises(CheckpointError) as caught:
            checkpoint.load(path)
        message = str(caught.value)
        assert str(path) in message, (kind, message)
        assert "not" in message and "\n" not in message, (kind, message)
    with pytest.raises(CheckpointError, match="not a convnp checkpoint"):
        checkpoint.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        checkpoint.load(tmp_path / "missing.npz")


def test_a_checkpoint_from_a_newer_format_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 99)
    path = checkpoint.save(tmp_path / "future.npz", models.TinyCNN())
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 1)
    with pytest.raises(CheckpointError, match=r"future\.npz has checkpoint format version 99"):
        checkpoint.load(path)


def test_a_checkpoint_that_does_not_match_the_model_says_so(tmp_path):
    path = checkpoint.save(tmp_path / "three.npz", models.TinyCNN(num_classes=3))
    with pytest.raises(CheckpointError, match=r"three\.npz does not match the model: .*4\.weight"):
        checkpoint.restore(path, models.TinyCNN(num_classes=4))
    with pytest.raises(CheckpointError, match=r"three\.npz holds a TinyCNN model, not a LeNet5"):
        checkpoint.restore(path, models.LeNet5())
    with pytest.raises(CheckpointError, match=r"three\.npz holds no optimizer state"):
        model = models.TinyCNN(num_classes=3)
        checkpoint.restore(path, model, optim.SGD(model.parameters(), lr=0.1))


class _Unlisted(nn.Sequential):
    """A user's own class: its code is not in convnp.models, so a file cannot rebuild it."""


def test_an_unlisted_model_saves_but_cannot_be_rebuilt_from_the_file(tmp_path):
    model = _Unlisted(nn.Flatten(), nn.Linear(4, 2))
    path = checkpoint.save(tmp_path / "custom.npz", model)
    with pytest.raises(CheckpointError, match=r"custom\.npz holds a _Unlisted model"):
        checkpoint.load_model(path)
    other = _Unlisted(nn.Flatten(), nn.Linear(4, 2))
    checkpoint.restore(path, other)
    np.testing.assert_array_equal(other.state_dict()["1.weight"], model.state_dict()["1.weight"])
    # a plain nn.Sequential of convnp's layers is stored as data and rebuilt (convnp.models.sequential)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    rebuilt, _ = checkpoint.load_model(checkpoint.save(tmp_path / "plain.npz", plain))
    np.testing.assert_array_equal(rebuilt.state_dict()["1.weight"], plain.state_dict()["1.weight"])


# --- exact resume -------------------------------------------------------------------------------------------
def _dropout_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.3), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(36, 3))


def _setup(seed, scheduler_kind):
    """Model with dropout, shuffling loader with random-shift augmentation, Adam, a scheduler."""
    convnp.manual_seed(seed)
    train_set = data.oriented_lines("train", n=90)
    model = _dropout_net()
    transform = data.Compose([data.RandomShift(1), data.Normalize([0.3], [0.4])])
    loader = data.DataLoader(train_set, 16, shuffle=True, seed=seed, transform=transform)
    optimizer = optim.Adam(model.parameters(), lr=5e-3)
    if scheduler_kind == "onecycle":
        scheduler = optim.OneCycleLR(optimizer, max_lr=1e-2, epochs=4, steps_per_epoch=len(loader))
    else:
        scheduler = optim.StepLR(optimizer, step_size=1, gamma=0.7)
    return model, loader, optimizer, scheduler


@pytest.mark.parametrize("scheduler_kind", ["onecycle", "step"])
@pytest.mark.parametrize("skip", [None, "global rng", "loader rng", "optimizer", "scheduler"])
def test_resuming_from_epoch_k_gives_the_same_weights_as_training_without_interruption(tmp_path, scheduler_kind,
                                                                                      skip):
    model, loader, optimizer, scheduler = _setup(0, scheduler_kind)
    full = fit(model, loader, None, optimizer, epochs=4, scheduler=scheduler, log=None)
    expected = model.state_dict()

    model, loader, optimizer, scheduler = _setup(0, scheduler_kind)
    fit(model, loader, None, optimizer, epochs=2, scheduler=scheduler, log=None,
        callbacks=[ModelCheckpoint(tmp_path, save_best=False)])
    info = checkpoint.load(tmp_path / "last.npz")
    assert info.epoch == 2

    # A new process: different seed, fresh objects; then the checkpoint puts every state back.
    model, loader, optimizer, scheduler = _setup(1, scheduler_kind)
    checkpoint.restore(info, model,
                       optimizer=None if skip == "optimizer" else optimizer,
                       scheduler=None if skip == "scheduler" else scheduler,
                       loader=None if skip == "loader rng" else loader,
                       rng=skip != "global rng")
    resumed = fit(model, loader, None, optimizer, epochs=4, scheduler=scheduler, log=None, start_epoch=2,
                  history=info.history)
    same = all(np.array_equal(model.state_dict()[k], v) for k, v in expected.items())
    if skip is None:
        assert same
        assert resumed["train_loss"] == full["train_loss"] and resumed["epoch"] == [1, 2, 3, 4]
    else:
        assert not same, f"leaving out the {skip} should change the result; the test would not notice it"
