"""Training and evaluation loops, with callbacks.

    history = fit(model, train_loader, val_loader, optimizer, nn.CrossEntropyLoss(), epochs=5,
                  scheduler=scheduler, callbacks=[ModelCheckpoint("runs/x"), EarlyStopping(), NaNGuard()])
    metrics = evaluate(model, test_loader)   # loss, accuracy, per-class accuracy, confusion matrix

Loaders are ``convnp.data.DataLoader`` objects (or anything yielding (images, labels) batches of NumPy
arrays); a dataset with ``.x`` and ``.y`` is wrapped in a DataLoader.  ``fit`` shows a tqdm progress
bar per epoch (loss, accuracy, images/s and ETA) when stderr is a terminal and tqdm is installed, and
logs one line per epoch (with validation numbers and lr) in every case: after the bar, Keras style.

When the scheduler steps
------------------------
``scheduler_interval`` says it: ``"epoch"`` (after each epoch, like StepLR/CosineAnnealingLR in PyTorch
examples) or ``"batch"`` (after every optimizer step, as OneCycleLR requires).  Left as None, a scheduler
that sets ``per_batch = True`` and every OneCycleLR steps per batch, every other scheduler per epoch.
A ``ReduceLROnPlateau`` steps per epoch, after validation, with the epoch's validation loss (the training
loss when there is no validation data), as ``scheduler.step(val_loss)`` in a PyTorch loop.

Callbacks
---------
A callback subclasses ``Callback`` and overrides any of ``on_train_begin``, ``on_epoch_begin``,
``on_before_step`` (after backward, before the optimizer step: ``state.loss`` holds the batch loss),
``on_batch_end``, ``on_epoch_end`` and ``on_train_end``; each receives the ``TrainState``.  Raising
``StopTraining(message)`` ends training cleanly: ``fit`` logs the message, stores it in
``history['stop_reason']`` and returns.  Provided: ``ModelCheckpoint`` (last and best), ``EarlyStopping``
and ``NaNGuard``.
"""
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import functional as F
from .backend import to_device, to_numpy
from .metrics import confusion_matrix
from .nn import eval_mode, model_device
from .tensor import Tensor, no_grad

HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "time")


class StopTraining(Exception):
    """Raised by a callback to end training; its message says why.  ``diverged`` marks a failed run."""

    def __init__(self, message, diverged=False):
        super().__init__(message)
        self.diverged = diverged


@dataclass
class TrainState:
    """What callbacks see.  ``epoch`` is 0-based (the epoch running, or just finished in on_epoch_end);
    ``step`` the 0-based batch index within it; ``loss`` the latest batch loss."""

    model: object
    optimizer: object
    scheduler: object
    train_loader: object
    val_loader: object
    epochs: int
    history: dict
    log: object = None
    epoch: int = 0
    step: int = 0
    loss: float = float("nan")
    metrics: dict = field(default_factory=dict)  # the epoch's numbers, set before on_epoch_end


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, state):
        pass

    def on_epoch_begin(self, state):
        pass

    def on_before_step(self, state):
        pass

    def on_batch_end(self, state):
        pass

    def on_epoch_end(self, state):
        pass

    def on_train_end(self, state):
        pass

    def reduce_epoch_totals(self, total_loss, correct, count):
        """The epoch's (loss sum, correct, images) -> the ones to report (a distributed run sums them
        over its ranks: convnp.distributed.GradientAllreduce)."""
        return total_loss, correct, count


# --- callbacks ---------------------------------------------------------------------------------------------
class NaNGuard(Callback):
    """Stop as soon as a batch loss is NaN or infinite, before the optimizer applies that step.

    The message names the epoch and step (1-based, as the progress bar counts them).  Because training
    stops before the epoch ends, ModelCheckpoint never writes the diverged model: the last good
    checkpoint on disk stays as it was.
    """

    def on_before_step(self, state):
        if not math.isfinite(state.loss):
            raise StopTraining(f"NaN guard: the training loss became {state.loss} at epoch {state.epoch + 1}, "
                               f"step {state.step + 1}; training stopped before that update, and checkpoints of "
                               f"earlier epochs were left as they were (try a lower learning rate)", diverged=True)


class EarlyStopping(Callback):
    """Stop when ``monitor`` (a history key, e.g. 'val_loss' or 'val_accuracy') has not improved by more
    than ``min_delta`` for ``patience`` epochs.  ``mode``: 'min', 'max', or 'auto' (max for accuracies).

    ``restore_best_weights``: when training ends, put the weights of the best epoch (of this call of
    ``fit``) back into the model, as Keras does; the model is otherwise left as the last epoch made it."""

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, mode="auto", restore_best_weights=False):
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = _resolve_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, state):
        self.best_state = None
        self.best, self.best_epoch, self.wait = None, None, 0
        for epoch, value in zip(state.history["epoch"], state.history.get(self.monitor, [])):  # a resumed run
            self._update(epoch, value)

    def _update(self, epoch, value):
        if self.best is None or _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1

    def on_epoch_end(self, state):
        value = _monitored(state, self.monitor, "EarlyStopping")
        self._update(state.epoch + 1, value)
        if self.restore_best_weights and self.wait == 0:  # this epoch is the best so far
            self.best_state = {key: np.array(value, copy=True) for key, value in state.model.state_dict().items()}
        if self.wait >= self.patience:
            raise StopTraining(f"early stopping: {self.monitor} has not improved for {self.wait} epoch(s) "
                               f"(best {self.best:.4f} at epoch {self.best_epoch})")

    def on_train_end(self, state):
        if self.restore_best_weights and self.best_state is not None:
            state.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save ``<folder>/last.npz`` after every epoch and ``<folder>/best.npz`` whenever ``monitor``
    improves (default: val_accuracy when there is validation data, else train_accuracy; an accuracy tie
    goes to the lower matching loss).

    Each file is a full checkpoint (``convnp.checkpoint.save``): weights, optimizer, scheduler, epoch,
    global and loader RNG states, history, plus ``preprocessing`` and any ``extra`` values, so a run can
    resume from ``last.npz`` exactly.  Writes are atomic.
    """

    def __init__(self, folder, monitor=None, mode="auto", save_last=True, save_best=True, preprocessing=None,
                 extra=None, last_name="last.npz", best_name="best.npz"):
        self.folder = Path(folder)
        self.monitor, self.mode_argument = monitor, mode
        self.save_last, self.save_best = save_last, save_best
        self.preprocessing, self.extra = preprocessing, dict(extra or {})
        self.last_path, self.best_path = self.folder / last_name, self.folder / best_name
        self.best, self.best_epoch = None, None

    def on_train_begin(self, state):
        if self.monitor is None:
            self.monitor = "val_accuracy" if state.val_loader is not None else "train_accuracy"
        self.mode = _resolve_mode(self.monitor, self.mode_argument)
        # Ties on an accuracy are broken by the matching loss (val_accuracy -> val_loss): lower is better.
        self.tie_key = self.monitor.replace("accuracy", "loss") if "accuracy" in self.monitor else None
        self.best, self.best_tie, self.best_epoch = None, None, None
        history = state.history
        for i, epoch in enumerate(history["epoch"][:len(history.get(self.monitor, []))]):  # a resumed run
            self._consider(epoch, history[self.monitor][i], self._tie_value(history, i))

    def _tie_value(self, history, index):
        values = history.get(self.tie_key) if self.tie_key else None
        return values[index] if values and len(values) > index else None

    def _consider(self, epoch, value, tie):
        improved = (self.best is None or _improved(value, self.best, self.mode, 0.0)
                    or (value == self.best and tie is not None and self.best_tie is not None and tie < self.best_tie))
        if improved:
            self.best, self.best_tie, self.best_epoch = value, tie, epoch
        return improved

    def on_epoch_end(self, state):
        from . import checkpoint

        epoch = state.epoch + 1
        value = _monitored(state, self.monitor, "ModelCheckpoint")
        improved = self._consider(epoch, value, self._tie_value(state.history, len(state.history["epoch"]) - 1))
        loader = state.train_loader if hasattr(state.train_loader, "rng") else None
        kwargs = dict(epoch=epoch, loader=loader,
                      preprocessing=self.preprocessing, history=state.history,
                      best={"monitor": self.monitor, "value": self.best, "epoch": self.best_epoch}, **self.extra)
        if self.save_last:
            checkpoint.save(self.last_path, state.model, state.optimizer, state.scheduler, **kwargs)
        if self.save_best and improved:
            checkpoint.save(self.best_path, state.model, state.optimizer, state.scheduler, **kwargs)


def _resolve_mode(monitor, mode):
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


def _improved(value, best, mode, min_delta):
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _monitored(state, key, who):
    values = state.history.get(key)
    if not values or len(values) < len(state.history["epoch"]):
        known = ", ".join(k for k in HISTORY_KEYS if state.history.get(k))
        raise ValueError(f"{who}: no {key!r} in the history (it has {known}); "
                         f"give validation data or monitor another key")
    return values[-1]


# --- evaluation ---------------------------------------------------------------------------------------------
def evaluate(model, data, loss=None, num_classes=None, batch_size=1000, finite=True):
    """Run ``model`` in eval mode over ``data`` (a loader, or a dataset with .x and .y) without a graph.

    ``finite``: non-finite outputs (NaN/inf weights, a zero std in the normalisation) raise ValueError
    instead of counting as predictions of class 0 (``fit`` passes False: its NaN guard reports divergence).

    Returns {'loss': mean loss, 'accuracy', 'per_class_accuracy' (K,) (NaN for a class with no examples),
    'confusion' (K, K) int: rows true class, columns predicted, 'count'}.  ``loss`` is a mean-reducing
    loss module (default cross-entropy).  The model's train/eval mode is restored afterwards.
    """
    loader = _as_loader(data, batch_size, shuffle=False)
    total_loss, count = 0.0, 0
    confusion = None
    where = model_device(model)
    with eval_mode(model), no_grad(), np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for images, labels in loader:  # non-finite outputs are checked just below
            labels = np.asarray(labels)
            logits = model(Tensor(to_device(images, where)))
            if finite and not np.isfinite(to_numpy(logits.data)).all():
                raise ValueError(f"evaluate: the model's outputs are not finite (NaN or inf) after "
                                 f"{count + len(labels):,} images: its weights or its normalisation (std) "
                                 f"are broken")
            device_labels = to_device(labels, where)
            if loss is None:
                total_loss += F.cross_entropy(logits, device_labels, reduction="sum").item()
            else:
                total_loss += loss(logits, device_labels).item() * len(labels)
            count += len(labels)
            k = num_classes or logits.shape[1]
            batch_confusion = confusion_matrix(labels, to_numpy(logits.data.argmax(axis=1)), k)
            confusion = batch_confusion if confusion is None else confusion + batch_confusion
    if count == 0:
        raise ValueError("evaluate: the data yielded no batches")
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    return {"loss": total_loss / count, "accuracy": float(np.trace(confusion) / count),
            "per_class_accuracy": per_class, "confusion": confusion, "count": count}


# --- training -------------------------------------------------------------------------------------------------
def _as_loader(data, batch_size, shuffle):
    if hasattr(data, "x") and hasattr(data, "y") and not hasattr(data, "batch_size"):
        from .data import DataLoader

        return DataLoader(data, batch_size, shuffle=shuffle)
    return data


def _num_samples(loader):
    x = getattr(loader, "x", None)
    if x is not None and getattr(loader, "batch_size", None):
        return len(loader) * loader.batch_size if getattr(loader, "drop_last", False) else len(x)
    return None


def _use_bar(progress):
    """A bar when asked (default: stderr is a terminal) and tqdm is installed; else one line per epoch."""
    wanted = sys.stderr.isatty() if progress is None else bool(progress)
    if not wanted:
        return False
    try:
        import tqdm  # noqa: F401 - the tools extra; without it, per-epoch lines
    except ImportError:
        return False
    return True


def _make_bar(loader, description):
    from tqdm import tqdm

    total = _num_samples(loader)
    if total is None:
        return tqdm(total=len(loader), desc=description, unit="batch", dynamic_ncols=True, leave=True), False
    return tqdm(total=total, desc=description, unit="img", unit_scale=total >= 10000, dynamic_ncols=True,
                leave=True), True


def train_epoch(model, loader, optimizer, loss, state=None, callbacks=(), scheduler_step=None, bar=None):
    """One pass over ``loader``: forward, loss, backward, callbacks' on_before_step, optimizer step,
    ``scheduler_step()`` (per-batch schedules), callbacks' on_batch_end.

    Returns (mean loss, accuracy, seconds, number of images).  ``bar``: a (tqdm bar, counts images) pair.
    """
    model.train()
    total_loss, correct, count = 0.0, 0, 0
    where = model_device(model)
    start = time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        labels = np.asarray(labels)
        optimizer.zero_grad()
        logits = model(Tensor(to_device(images, where)))  # the batch goes where the model is
        batch_loss = loss(logits, to_device(labels, where))
        value = batch_loss.item()
        batch_loss.backward()
        if state is not None:
            state.step, state.loss = step, value
        for callback in callbacks:
            callback.on_before_step(state)
        optimizer.step()
        if scheduler_step is not None:
            scheduler_step()
        total_loss += value * len(labels)
        correct += int((to_numpy(logits.data.argmax(axis=1)) == labels).sum())
        count += len(labels)
        for callback in callbacks:
            callback.on_batch_end(state)
        if bar is not None:
            tqdm_bar, counts_images = bar
            tqdm_bar.update(len(labels) if counts_images else 1)
            if step % 10 == 0:
                tqdm_bar.set_postfix_str(f"loss {total_loss / count:.4f} acc {correct / count:.4f}", refresh=False)
    for callback in callbacks:  # duck-typed callbacks may lack the hook
        if hasattr(callback, "reduce_epoch_totals"):
            total_loss, correct, count = callback.reduce_epoch_totals(total_loss, correct, count)
    if count == 0:
        raise ValueError("fit: the training data yielded no batches (an empty dataset, or drop_last with "
                         "fewer images than one batch)")
    return total_loss / count, correct / count, time.perf_counter() - start, count


def fit(model, train_data, val_data=None, optimizer=None, loss=None, epochs=1, scheduler=None, callbacks=(), *,
        scheduler_interval=None, start_epoch=0, history=None, progress=None, log=print, batch_size=64):
    """Train ``model`` until ``epochs`` epochs are complete; returns the history.

    The history is a dict of per-epoch lists: epoch (1-based), train_loss, train_accuracy, val_loss,
    val_accuracy (empty without ``val_data``), lr (at the epoch's start), time (seconds of training),
    and 'stop_reason' (None, or why a callback stopped training early) and 'diverged' (True when the
    NaN guard stopped it).

    ``loss``: a loss module taking (logits, labels) (default ``nn.CrossEntropyLoss()``).  ``scheduler``
    and ``scheduler_interval``: see the module docstring.  To resume after ``k`` completed epochs,
    restore the model/optimizer/scheduler/loader state (``convnp.checkpoint.restore``) and pass
    ``start_epoch=k`` and the saved ``history``.  ``progress``: True/False forces the tqdm bar on or off
    (default: on when stderr is a terminal); ``log``: where the per-epoch line and stop messages go
    (None: silent).  ``batch_size`` is used only when ``train_data`` is a dataset rather than a loader.
    """
    from .nn import CrossEntropyLoss
    from .optim import OneCycleLR
    from .optim.lr_scheduler import ReduceLROnPlateau

    if optimizer is None:
        raise ValueError("fit: an optimizer is required, e.g. convnp.optim.Adam(model.parameters())")
    if not 0 <= start_epoch <= epochs:
        raise ValueError(f"fit: start_epoch {start_epoch} must lie between 0 and epochs ({epochs})")
    loss = CrossEntropyLoss() if loss is None else loss
    train_loader = _as_loader(train_data, batch_size, shuffle=True)
    val_loader = None if val_data is None else _as_loader(val_data, 1000, shuffle=False)
    if scheduler_interval is None:
        per_batch = getattr(scheduler, "per_batch", None)
        if per_batch is None:
            per_batch = isinstance(scheduler, OneCycleLR)
        scheduler_interval = "batch" if per_batch else "epoch"
    if scheduler_interval not in ("batch", "epoch"):
        raise ValueError(f"fit: scheduler_interval must be 'batch' or 'epoch', got {scheduler_interval!r}")
    on_plateau = isinstance(scheduler, ReduceLROnPlateau)
    if on_plateau and scheduler_interval == "batch":
        raise ValueError("fit: a ReduceLROnPlateau steps once per epoch on a loss; use scheduler_interval='epoch'")
    history = {key: list(history.get(key, [])) if history else [] for key in HISTORY_KEYS}
    history["stop_reason"], history["diverged"] = None, False
    callbacks = list(callbacks)
    state = TrainState(model, optimizer, scheduler, train_loader, val_loader, epochs, history, log)
    use_bar = _use_bar(progress)
    batch_step = scheduler.step if (scheduler is not None and scheduler_interval == "batch") else None

    for callback in callbacks:
        callback.on_train_begin(state)
    try:
        for epoch in range(start_epoch, epochs):
            state.epoch, state.step = epoch, 0
            for callback in callbacks:
                callback.on_epoch_begin(state)
            lr = optimizer.param_groups[0]["lr"]
            bar = _make_bar(train_loader, f"epoch {epoch + 1}/{epochs}") if use_bar else None
            try:
                train_loss, train_acc, seconds, count = train_epoch(
                    model, train_loader, optimizer, loss, state, callbacks, batch_step, bar)
                if not math.isfinite(train_loss):
                    raise FloatingPointError(f"fit: the training loss became {train_loss} in epoch {epoch + 1} "
                                             f"(add the NaNGuard callback to stop at the first bad step)")
                metrics = {"train_loss": train_loss, "train_accuracy": train_acc}
                if val_loader is not None:
                    val = evaluate(model, val_loader, loss, finite=False)
                    metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                if on_plateau:
                    scheduler.step(metrics.get("val_loss", train_loss))
                elif scheduler is not None and scheduler_interval == "epoch":
                    scheduler.step()
                if bar is not None:
                    bar[0].set_postfix_str(_summary(metrics), refresh=True)
            finally:
                if bar is not None:
                    bar[0].close()
            for key, value in metrics.items():
                history[key].append(value)
            history["epoch"].append(epoch + 1)
            history["lr"].append(lr)
            history["time"].append(seconds)
            state.metrics = metrics
            if log is not None:  # with a bar too (Keras style): validation and lr survive a narrow terminal
                log(f"epoch {epoch + 1}/{epochs}  {_summary(metrics)}  lr {lr:.3g}  {seconds:.1f} s "
                    f"({count / max(seconds, 1e-9):,.0f} img/s)")
            for callback in callbacks:
                callback.on_epoch_end(state)
    except StopTraining as stop:
        history["stop_reason"], history["diverged"] = str(stop), stop.diverged
        if log is not None:
            log(str(stop))
    for callback in callbacks:
        callback.on_train_end(state)
    return history


def _summary(metrics):
    text = f"loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.4f}"
    if "val_loss" in metrics:
        text += f"  val loss {metrics['val_loss']:.4f} acc {metrics['val_accuracy']:.4f}"
    return text


# --- pictures ---------------------------------------------------------------------------------------------
def plot_history(history, path, title=None):
    """Write a PNG of loss (left) and accuracy (right) per epoch, train and validation -> path.
    ``convnp.viz.plot_training_curves`` under the name this module has always had (it needs matplotlib)."""
    from .inspect.viz import plot_training_curves

    return plot_training_curves(history, path, title=title)
