"""Training and evaluation loops.

    history = fit(model, train_loader, val_loader, optimizer, nn.CrossEntropyLoss(), epochs=5)
    metrics = evaluate(model, test_loader)

Loaders are ``convnp.data.DataLoader`` objects (or anything yielding (images, labels) batches of
NumPy arrays).  ``fit`` shows a tqdm progress bar per epoch (loss, accuracy, speed, ETA) when the
output is a terminal and one line per epoch otherwise (logs, CI).
"""
import math
import sys
import time

import numpy as np

from . import functional as F
from .tensor import Tensor, no_grad


class StopTraining(Exception):
    """Raised by a callback to end training after the current step or epoch."""


def _progress(iterable, total, description, enabled):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=True, unit="batch", dynamic_ncols=True)


def evaluate(model, loader, loss_fn=None, num_classes=None):
    """Run ``model`` in eval mode over ``loader`` without building a graph.

    Returns {'loss', 'accuracy', 'per_class_accuracy' (K,), 'confusion' (K, K): rows true, columns
    predicted, 'count'}.  The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total_loss, count = 0.0, 0
    confusion = None
    try:
        with no_grad():
            for images, labels in loader:
                logits = model(Tensor(images))
                if loss_fn is None:
                    loss = F.cross_entropy(logits, labels, reduction="sum").item()
                else:
                    loss = loss_fn(logits, labels).item() * len(labels)
                total_loss += loss
                count += len(labels)
                k = num_classes or logits.shape[1]
                if confusion is None:
                    confusion = np.zeros((k, k), dtype=np.int64)
                np.add.at(confusion, (np.asarray(labels), logits.data.argmax(axis=1)), 1)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: the loader yielded no batches")
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    return {"loss": total_loss / count, "accuracy": float(np.trace(confusion) / count),
            "per_class_accuracy": per_class, "confusion": confusion, "count": count}


def train_epoch(model, loader, optimizer, loss_fn, epoch=0, progress=None, on_step=None, scheduler_step=None):
    """One pass over ``loader``: forward, loss, backward, optimizer step.  Returns (mean loss, accuracy)."""
    model.train()
    total_loss, correct, count = 0.0, 0, 0
    start = time.perf_counter()
    bar = _progress(loader, len(loader), f"epoch {epoch + 1}", progress)
    for step, (images, labels) in enumerate(bar):
        optimizer.zero_grad()
        logits = model(Tensor(images))
        loss = loss_fn(logits, labels)
        loss.backward()
        optimizer.step()
        if scheduler_step is not None:
            scheduler_step()
        value = loss.item()
        if on_step is not None:
            on_step(epoch, step, value)
        total_loss += value * len(labels)
        correct += int((logits.data.argmax(axis=1) == labels).sum())
        count += len(labels)
        if bar is not loader and step % 10 == 0:
            bar.set_postfix(loss=f"{total_loss / count:.4f}", acc=f"{correct / count:.4f}")
    if bar is not loader:
        bar.close()
    return total_loss / max(count, 1), correct / max(count, 1), time.perf_counter() - start


def fit(model, train_loader, val_loader=None, optimizer=None, loss_fn=None, epochs=1, scheduler=None,
        callbacks=(), progress=None, log=print):
    """Train ``model`` for ``epochs`` epochs; returns the history, a dict of per-epoch lists:
    train_loss, train_accuracy, val_loss, val_accuracy, lr, time.

    ``scheduler`` steps once per epoch, unless it has ``per_batch = True`` (OneCycleLR), when it steps
    after every optimizer step.
    """
    from .nn import CrossEntropyLoss

    if optimizer is None:
        raise ValueError("fit: an optimizer is required, e.g. convnp.optim.Adam(model.parameters())")
    loss_fn = CrossEntropyLoss() if loss_fn is None else loss_fn
    history = {"train_loss": [], "train_accuracy": [], "val_loss": [], "val_accuracy": [], "lr": [], "time": []}
    per_batch = getattr(scheduler, "per_batch", False)
    for epoch in range(epochs):
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc, seconds = train_epoch(
            model, train_loader, optimizer, loss_fn, epoch, progress,
            scheduler_step=scheduler.step if (scheduler is not None and per_batch) else None)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"fit: the training loss became {train_loss} in epoch {epoch + 1}")
        if scheduler is not None and not per_batch:
            scheduler.step()
        history["train_loss"].append(train_loss)
        history["train_accuracy"].append(train_acc)
        history["lr"].append(lr)
        history["time"].append(seconds)
        line = f"epoch {epoch + 1}/{epochs}  train loss {train_loss:.4f}  acc {train_acc:.4f}"
        if val_loader is not None:
            metrics = evaluate(model, val_loader)
            history["val_loss"].append(metrics["loss"])
            history["val_accuracy"].append(metrics["accuracy"])
            line += f"  val loss {metrics['loss']:.4f}  acc {metrics['accuracy']:.4f}"
        if log is not None:
            log(line + f"  ({seconds:.1f} s)")
    return history
