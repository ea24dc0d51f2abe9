"""convnp.train: fit, evaluate, scheduler stepping, progress output and the callbacks."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix, recall_score

import convnp
from convnp import checkpoint, data, models, nn, optim
from convnp.tensor import Tensor
from convnp.train import Callback, EarlyStopping, ModelCheckpoint, NaNGuard, evaluate, fit, plot_history


def _lines(seed=0):
    convnp.manual_seed(seed)
    train = data.oriented_lines("train", n=150, seed=seed)
    val = data.oriented_lines("val", n=150, seed=seed)
    return (data.DataLoader(train, 16, shuffle=True, seed=seed), data.DataLoader(val, 64), models.TinyCNN())


def test_fit_learns_the_lines_task_and_returns_a_per_epoch_history():
    train_loader, val_loader, model = _lines()
    before = evaluate(model, val_loader)["accuracy"]
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    history = fit(model, train_loader, val_loader, optimizer, nn.CrossEntropyLoss(), epochs=6, log=None)
    for key in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "time"):
        assert len(history[key]) == 6, key
    assert history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_accuracy"][-1] >= 0.9 > before + 0.2
    assert history["stop_reason"] is None and history["diverged"] is False
    assert all(t > 0 for t in history["time"]) and history["lr"] == [1e-2] * 6
    # The last epoch's val numbers are evaluate()'s numbers on the final model.
    final = evaluate(model, val_loader)
    assert final["accuracy"] == history["val_accuracy"][-1]
    assert math.isclose(final["loss"], history["val_loss"][-1], rel_tol=1e-6)


class _FirstPixelModel(nn.Module):
    """Logits that depend only on the image: a fixed random projection of its pixels."""

    def __init__(self, k=4):
        super().__init__()
        self.w = np.random.default_rng(3).normal(size=(16, k)).astype(np.float32)

    def forward(self, x):
        return Tensor(x.data.reshape(len(x.data), -1) @ self.w)


def test_evaluate_matches_sklearn_and_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 4, size=37)
    model = _FirstPixelModel()
    metrics = evaluate(model, data.DataLoader((x, y), 10))   # batches of 10, 10, 10, 7
    logits = x.reshape(37, -1) @ model.w
    predicted = logits.argmax(axis=1)
    np.testing.assert_array_equal(metrics["confusion"], confusion_matrix(y, predicted, labels=range(4)))
    np.testing.assert_allclose(metrics["per_class_accuracy"], recall_score(y, predicted, average=None,
                                                                           labels=range(4)))
    assert metrics["accuracy"] == np.mean(predicted == y) and metrics["count"] == 37
    expected_loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert math.isclose(metrics["loss"], expected_loss, rel_tol=1e-5)


def test_evaluate_marks_classes_without_examples_as_nan():
    x = np.zeros((3, 1, 4, 4), dtype=np.float32)
    metrics = evaluate(_FirstPixelModel(), data.ArrayDataset(x, [0, 0, 1], ["a", "b", "c", "d"]))
    assert np.isnan(metrics["per_class_accuracy"][2:]).all()
    assert not np.isnan(metrics["per_class_accuracy"][:2]).any()


@pytest.mark.parametrize("make, interval, expected_steps", [
    (lambda o: optim.OneCycleLR(o, max_lr=0.01, total_steps=30), None, "batches"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=3), None, "epochs"),
    (lambda o: optim.StepLR(o, step_size=100), "batch", "batches"),
])
def test_the_scheduler_steps_per_batch_or_per_epoch(make, interval, expected_steps):
    train_loader, _, model = _lines()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = make(optimizer)
    fit(model, train_loader, None, optimizer, epochs=3, scheduler=scheduler, scheduler_interval=interval, log=None)
    steps = 3 * len(train_loader) if expected_steps == "batches" else 3
    assert scheduler.last_epoch == steps


def test_one_line_per_epoch_when_not_a_terminal_and_a_progress_bar_when_asked(capsys):
    train_loader, val_loader, model = _lines()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    lines = []
    fit(model, train_loader, val_loader, optimizer, epochs=2, log=lines.append, progress=False)
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2") and "val loss" in lines[0] and "img/s" in lines[0]
    assert capsys.readouterr().err == ""

    lines.clear()
    fit(model, train_loader, val_loader, optimizer, epochs=2, log=lines.append, progress=True)
    bar = capsys.readouterr().err
    assert len(lines) == 2 and "val loss" in lines[1] and " lr " in lines[1]  # and the final line (Keras style)
    assert "epoch 1/2" in bar and "epoch 2/2" in bar and "img/s" in bar and "val loss" in bar
    assert "120/120" in bar  # images done / total (the bar counts images)


class _NaNAt(nn.CrossEntropyLoss):
    """Cross-entropy that returns NaN on one training call (validation, under no_grad, is not counted)."""

    def __init__(self, call):
        super().__init__()
        self.calls, self.bad_call = 0, call

    def forward(self, logits, labels):
        loss = super().forward(logits, labels)
        if not convnp.is_grad_enabled():
            return loss
        self.calls += 1
        return loss * float("nan") if self.calls == self.bad_call else loss


class _Snapshot(Callback):
    def __init__(self):
        self.states = []

    def on_epoch_end(self, state):
        self.states.append(state.model.state_dict())


def test_the_nan_guard_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    train_loader, val_loader, model = _lines()
    assert len(train_loader) == 8
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    snapshot = _Snapshot()
    lines = []
    history = fit(model, train_loader, val_loader, optimizer, _NaNAt(8 + 3), epochs=4, log=lines.append,
                  callbacks=[NaNGuard(), snapshot, ModelCheckpoint(tmp_path)])
    assert history["diverged"] is True and history["epoch"] == [1]
    assert "epoch 2, step 3" in history["stop_reason"] and "nan" in history["stop_reason"]
    assert lines[-1] == history["stop_reason"]
    for name in ("last.npz", "best.npz"):
        info = checkpoint.load(tmp_path / name)
        assert info.epoch == 1
        for key, value in snapshot.states[0].items():
            np.testing.assert_array_equal(info.model_state[key], value)
    # The bad step was never applied: the model holds finite weights.
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_without_the_guard_a_nan_loss_is_an_error():
    train_loader, _, model = _lines()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(model, train_loader, None, optimizer, _NaNAt(2), epochs=2, log=None)


def test_early_stopping_waits_patience_epochs_without_improvement():
    train_loader, val_loader, model = _lines()
    optimizer = optim.SGD(model.parameters(), lr=0.0)  # nothing changes: val_loss never improves
    history = fit(model, train_loader, val_loader, optimizer, epochs=10, log=None,
                  callbacks=[EarlyStopping("val_loss", patience=2)])
    assert history["epoch"] == [1, 2, 3]
    assert "val_loss has not improved for 2 epoch(s)" in history["stop_reason"]
    assert history["diverged"] is False


def test_early_stopping_needs_the_monitored_value():
    train_loader, _, model = _lines()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no 'val_loss' in the history"):
        fit(model, train_loader, None, optimizer, epochs=2, log=None, callbacks=[EarlyStopping("val_loss")])


def test_model_checkpoint_keeps_last_and_best_by_validation_accuracy(tmp_path):
    train_loader, val_loader, model = _lines(seed=2)
    optimizer = optim.Adam(model.parameters(), lr=3e-2)
    snapshot = _Snapshot()
    history = fit(model, train_loader, val_loader, optimizer, epochs=4, log=None,
                  callbacks=[snapshot, ModelCheckpoint(tmp_path)])
    accuracy, loss = np.array(history["val_accuracy"]), np.array(history["val_loss"])
    # best: highest accuracy, ties broken by the lower loss
    best_epoch = min(range(4), key=lambda i: (-accuracy[i], loss[i])) + 1
    best, last = checkpoint.load(tmp_path / "best.npz"), checkpoint.load(tmp_path / "last.npz")
    assert last.epoch == 4 and best.epoch == best_epoch
    assert best.best == {"monitor": "val_accuracy", "value": accuracy[best_epoch - 1], "epoch": best_epoch}
    for info, epoch in ((best, best_epoch), (last, 4)):
        for key, value in snapshot.states[epoch - 1].items():
            np.testing.assert_array_equal(info.model_state[key], value)
    assert last.history["val_accuracy"] == history["val_accuracy"]


def test_plot_history_writes_a_png(tmp_path):
    history = {"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.3], "train_accuracy": [0.5, 0.8, 0.9],
               "val_loss": [0.9, 0.6, 0.4], "val_accuracy": [0.6, 0.7, 0.85]}
    path = plot_history(history, tmp_path / "curves.png", title="test run")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)
