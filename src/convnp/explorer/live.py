"""``TrainingMonitor``: a training callback that publishes what ``convnp train --explore`` shows live.

    monitor = TrainingMonitor(checkpoint_dir="runs/x")
    fit(model, ..., callbacks=[monitor])          # or convnp.recipes.run(recipe, callbacks=[monitor])
    monitor.snapshot()                            # history, batch losses, lr, per-layer stats, images/s, ETA

Every ``interval`` seconds (and at each epoch's end) it records, for each parameterised layer: the
weights' and the gradients' min/mean/max and a small picture of the weights (the first filters of a
convolution), and the activations of one fixed training image (its output maps, traced with
``convnp.summary.trace`` in eval mode).  Everything is copied under a lock, so the server thread reads a
consistent snapshot while training goes on.
"""
import threading
import time
from pathlib import Path

import numpy as np

from ..backend import to_numpy
from ..inspect.summary import trace
from ..nn import on_model_device
from ..tensor import Tensor, no_grad
from ..train import Callback
from .arrays import encode

MAX_BATCH_POINTS = 2000
PICTURE_FILTERS = 8
PICTURE_CHANNELS = 8


def _stats(array):
    array = to_numpy(array).astype(np.float64)
    return {"min": float(array.min()), "mean": float(array.mean()), "max": float(array.max()),
            "std": float(array.std())}


def _weight_picture(weight):
    """weight -> a small 2-D (or 3-D: filters, kh, kw) array to draw."""
    if weight.ndim == 4:  # (F, C, kh, kw): the first channel of the first filters
        return weight[:PICTURE_FILTERS, 0]
    if weight.ndim == 2:
        return weight[:64, :256]
    return weight.reshape(1, -1)[:, :256]


class TrainingMonitor(Callback):
    """Collects live training numbers for the explorer page; ``snapshot()`` is the /api/live reply."""

    def __init__(self, checkpoint_dir=None, interval=0.5, probe=None):
        self._probe = None if probe is None else np.asarray(probe, dtype=np.float32)[None]
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.interval = interval
        self.lock = threading.Lock()
        self.state = {"active": True, "running": False, "finished": False, "epoch": 0, "epochs": 0, "step": 0,
                      "steps_per_epoch": 0, "history": {}, "batches": {"step": [], "loss": [], "lr": []},
                      "layers": [], "images_per_s": None, "eta_s": None, "updated": 0}
        self._last = 0.0
        self._grads = {}

    # --- callbacks ------------------------------------------------------------------------------------
    def on_train_begin(self, state):
        self._start = time.perf_counter()
        self._images = 0
        self._steps_done = 0
        loader = state.train_loader
        steps = len(loader) if hasattr(loader, "__len__") else 0
        x = getattr(loader, "x", None)
        if self._probe is None and x is not None and len(x):  # one fixed image whose activations are shown
            probe = np.asarray(x[:1], dtype=np.float32)
            transform = getattr(loader, "transform", None)  # its own generator: the loader's stays untouched
            self._probe = transform(probe, np.random.default_rng(0)) if transform is not None else probe
        with self.lock:
            self.state.update(running=True, epochs=state.epochs, steps_per_epoch=steps,
                              history=_copy_history(state.history), epoch=len(state.history.get("epoch", [])))
        self._steps_left = steps * (state.epochs - len(state.history.get("epoch", [])))
        self._record_layers(state)

    def on_before_step(self, state):
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._grads = {name: (_stats(p.grad), encode(_weight_picture(p.grad)))
                           for name, p in state.model.named_parameters() if p.grad is not None}

    def on_batch_end(self, state):
        self._steps_done += 1
        self._steps_left -= 1
        batch = getattr(state.train_loader, "batch_size", None) or 1
        self._images += batch
        lr = state.optimizer.param_groups[0]["lr"]
        global_step = state.epoch * max(self.state["steps_per_epoch"], 1) + state.step
        elapsed = time.perf_counter() - self._start
        rate = self._images / elapsed if elapsed > 0 else None
        per_step = elapsed / self._steps_done
        with self.lock:
            b = self.state["batches"]
            b["step"].append(global_step + 1)
            b["loss"].append(float(state.loss))
            b["lr"].append(float(lr))
            if len(b["step"]) > MAX_BATCH_POINTS:  # keep every other point: the curve's shape stays
                for key in b:
                    b[key] = b[key][::2]
            self.state.update(epoch=state.epoch, step=state.step + 1, images_per_s=rate,
                              eta_s=max(self._steps_left, 0) * per_step, updated=time.time())
        if time.perf_counter() - self._last >= self.interval:
            self._record_layers(state)

    def on_epoch_end(self, state):
        with self.lock:
            self.state["history"] = _copy_history(state.history)
            self.state["epoch"] = state.epoch + 1
        self._record_layers(state)

    def on_train_end(self, state):
        with self.lock:
            self.state.update(running=False, finished=True, history=_copy_history(state.history), eta_s=0.0,
                              stop_reason=state.history.get("stop_reason"))

    # --- what the page reads ------------------------------------------------------------------------------
    def _record_layers(self, state):
        model = state.model
        self._last = time.perf_counter()
        activations = {}
        if self._probe is not None:
            was_training = model.training
            model.eval()
            try:
                with no_grad():
                    _, calls = trace(model, on_model_device(model, self._probe))
                for call in calls:
                    if call.is_leaf and isinstance(call.output, Tensor):
                        activations.setdefault(call.name, np.array(to_numpy(call.output.data[0])))
            finally:
                model.train(was_training)
        layers = []
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if weight is None or not hasattr(weight, "data") or any(True for _ in module.children()):
                continue
            grad, grad_picture = self._grads.get(f"{name}.weight", (None, None))
            layer = {"name": name, "type": type(module).__name__, "weight": _stats(weight.data),
                     "weight_picture": encode(_weight_picture(weight.data)), "grad": grad, "grad_picture": grad_picture}
            out = activations.get(name)
            if out is not None:
                layer["activation"] = _stats(out)
                layer["activation_picture"] = encode(out[:PICTURE_CHANNELS] if out.ndim == 3 else out[None])
            layers.append(layer)
        with self.lock:
            self.state["layers"] = layers

    def latest_checkpoint(self):
        """The newest last.npz the run wrote, or None."""
        if self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / "last.npz"
        return path if path.is_file() else None

    def snapshot(self):
        with self.lock:
            value = {key: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                     for key, v in self.state.items()}
            value["batches"] = {key: list(v) for key, v in self.state["batches"].items()}
        checkpoint = self.latest_checkpoint()
        value["checkpoint"] = None if checkpoint is None else str(checkpoint)
        return value


def _copy_history(history):
    return {key: [float(v) for v in values] for key, values in history.items()
            if isinstance(values, list) and all(isinstance(v, (int, float)) for v in values)}


def start_live_view(out, port=8765, host="127.0.0.1", log=print):
    """For ``convnp train --explore``: a TrainingMonitor for the run writing into ``out`` and a server
    (background thread) whose page shows it; panels 2-3 open ``out``/last.npz once it exists.
    -> (monitor, server)."""
    from .core import Explorer
    from .server import check_host, start

    monitor = TrainingMonitor(checkpoint_dir=out)
    explorer = Explorer(live=monitor)
    try:
        server = start(explorer, host, port)
    except OSError as error:
        raise OSError(f"--explore: cannot listen on {host}:{port}: {error.strerror or error}") from None
    warning = check_host(host)
    if warning and log:
        log(warning)
    if log:
        log(f"convnp train: live view at {server.url}#panel=live (it stops when training ends)")
    return monitor, server
