"""Checkpoints: one ``.npz`` file holding everything needed to rebuild a model or resume its training.

    save("runs/lenet5/last.npz", model, optimizer, scheduler, epoch=3, loader=train_loader,
         preprocessing={...}, history=history)
    model, info = load_model("runs/lenet5/last.npz")       # rebuilt from the file alone, in eval mode
    info = restore("runs/lenet5/last.npz", model, optimizer, scheduler, loader=train_loader)

What the file holds
-------------------
An ordinary NumPy ``.npz`` archive, read with ``np.load(path, allow_pickle=False)``, so loading a
checkpoint never runs code.  Its entries:

    __convnp_checkpoint__   uint8 array: UTF-8 JSON metadata (below)
    model/<state_dict key>  the model's parameters and buffers, PyTorch's keys and layouts
    arrays/<n>              every other array (optimizer moments, ...), referenced from the metadata

The metadata is JSON: format name and version, the model's short name, class and constructor
arguments (``convnp.models.model_config``), the epoch, the optimizer's and scheduler's
``state_dict()``, the global convnp RNG state and the training loader's RNG state (both
``bit_generator.state``), the preprocessing the model was trained with (dataset, mean/std,
input size, channels, class names), the training history, and any extra keyword given to ``save``.
Values JSON cannot hold are encoded: arrays as {"__array__": name}, tuples as {"__tuple__": [...]},
dicts with non-string keys (the optimizer numbers its parameters) as {"__items__": [[key, value]...]}.

Atomic writes
-------------
``save`` writes a temporary file in the target's folder, flushes and fsyncs it, then renames it over
the target with ``os.replace`` (atomic on POSIX and Windows), and fsyncs the folder.  A crash or kill
at any moment leaves either the old checkpoint or the new one, never a mixture; an exception during the
write also removes the temporary file.  (A process killed with SIGKILL cannot clean up after itself,
so a ``.<name>.*.tmp`` file may remain beside the intact checkpoint.)
"""
import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import backend

FORMAT = "convnp-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__convnp_checkpoint__"
MODEL_PREFIX = "model/"
ARRAY_PREFIX = "arrays/"

# The keys of the dict ``load`` returns; ``save``'s extra keywords may not use them.
RESERVED = frozenset({
    "path", "format", "format_version", "convnp_version", "model", "model_class", "model_args", "model_state",
    "epoch", "optimizer_class", "optimizer_state", "scheduler_class", "scheduler_state", "rng_state",
    "loader_rng_state", "preprocessing", "history", "dataset", "input_size", "classes", "mean", "std", "extra",
})


class CheckpointError(ValueError):
    """A file that is not a readable convnp checkpoint, or that does not match what it is loaded into."""


class Checkpoint(dict):
    """What ``load`` returns: a dict whose keys can also be read as attributes (``info.epoch``).

    Keys: path, format_version, convnp_version, model (short name, e.g. 'lenet5', or None), model_class,
    model_args, model_state ({key: array}), epoch, optimizer_class, optimizer_state, scheduler_class,
    scheduler_state, rng_state, loader_rng_state, preprocessing (dict or None), history (dict or None),
    extra (dict of the extra keywords given to ``save``, also available as top-level keys), and, copied
    from preprocessing for convenience: dataset, input_size (C, H, W), classes, mean, std.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# --- saving ----------------------------------------------------------------------------------------------
def save(path, model, optimizer=None, scheduler=None, epoch=0, *, loader=None, preprocessing=None, history=None,
         rng_state=None, **extra):
    """Write a checkpoint of ``model`` (and the optimizer, scheduler, ...) to ``path`` atomically.

    ``epoch``: the number of completed epochs.  ``loader``: the training DataLoader, whose ``.rng`` state
    is saved so that a resumed run shuffles and augments exactly as an uninterrupted one would.
    ``rng_state``: the global RNG state to record (default: ``convnp.backend.default_rng()``'s now).
    ``preprocessing``: a JSON-able dict, e.g. {'dataset': 'mnist', 'mean': [0.1307], 'std': [0.3081],
    'input_size': [1, 28, 28], 'channels': 1, 'classes': [...]}.  ``extra``: any other JSON-able values
    (and arrays), returned by ``load`` under their names.  Returns ``path`` as a Path.
    """
    from .models import model_config, model_name

    path = Path(path)
    clash = sorted(set(extra) & RESERVED)
    if clash:
        raise ValueError(f"save: extra key(s) {', '.join(clash)} clash with the checkpoint's own keys")
    try:
        args = model_config(model)
    except ValueError:
        args = None  # a model convnp.models does not know: its weights are saved, load_model cannot rebuild it
    arrays = {}
    encode = _Encoder(arrays)
    if rng_state is None:
        rng_state = backend.default_rng().bit_generator.state
    from . import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "convnp_version": __version__,
        "model": {"name": model_name(model), "class": type(model).__name__, "args": encode(args)},
        "epoch": int(epoch),
        "optimizer": None if optimizer is None else {"class": type(optimizer).__name__,
                                                      "state": encode(optimizer.state_dict())},
        "scheduler": None if scheduler is None else {"class": type(scheduler).__name__,
                                                      "state": encode(scheduler.state_dict())},
        "rng_state": encode(rng_state),
        "loader_rng_state": None if loader is None else encode(loader.rng.bit_generator.state),
        "preprocessing": encode(preprocessing),
        "history": encode(history),
        "extra": encode(extra),
    }
    entries = {MODEL_PREFIX + key: np.asarray(value) for key, value in model.state_dict().items()}
    entries.update((ARRAY_PREFIX + name, value) for name, value in arrays.items())
    text = json.dumps(meta, allow_nan=True)
    entries[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, entries)
    return path


def _write_npz(file, entries):
    """Write the archive into the open binary ``file``.  The only place checkpoint bytes are produced
    (tests replace it with a writer that fails half-way to simulate a crash)."""
    np.savez(file, **entries)


def _atomic_write(path, entries):
    """temporary file in the same folder -> write -> flush -> fsync -> os.replace -> fsync the folder."""
    folder = path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            _write_npz(file, entries)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Encoder:
    """Turn a value into JSON-able data, moving its arrays into ``arrays`` (named 0, 1, ...)."""

    def __init__(self, arrays):
        self.arrays = arrays

    def __call__(self, value):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (np.bool_,)):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        if isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
            name = str(len(self.arrays))
            self.arrays[name] = np.array(value.get() if hasattr(value, "get") else value)
            return {"__array__": name}
        if isinstance(value, tuple):
            return {"__tuple__": [self(item) for item in value]}
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, dict):
            if all(isinstance(key, str) and not key.startswith("__") for key in value):
                return {key: self(item) for key, item in value.items()}
            return {"__items__": [[self(key), self(item)] for key, item in value.items()]}
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"save: cannot store a {type(value).__name__} in a checkpoint "
                        f"(numbers, strings, lists, tuples, dicts and arrays only)")


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__tuple__" in value:
            return tuple(_decode(item, arrays) for item in value["__tuple__"])
        if "__items__" in value:
            return {_decode(key, arrays): _decode(item, arrays) for key, item in value["__items__"]}
        return {key: _decode(item, arrays) for key, item in value.items()}
    return value


# --- loading ---------------------------------------------------------------------------------------------
def load(path):
    """Read the checkpoint at ``path`` -> Checkpoint (a dict; see its docstring for the keys).

    Raises FileNotFoundError for a missing file and CheckpointError (a ValueError) naming the file for
    anything that is not a convnp checkpoint: random bytes, a plain .npz or .npy, a truncated or
    corrupted file, or one written by a newer, incompatible convnp.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.is_dir():
        hint = next((f"; did you mean {path / name}?" for name in ("best.npz", "last.npz")
                     if (path / name).is_file()), "")
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} is not a convnp checkpoint: it holds a single .npy array, "
                                  f"not an .npz archive")
        with archive:
            if META_KEY not in archive.files:
                listed = ", ".join(archive.files[:5]) + (", ..." if len(archive.files) > 5 else "")
                raise CheckpointError(f"{path} is an .npz archive but not a convnp checkpoint: it has no "
                                      f"'{META_KEY}' entry (its arrays: {listed or 'none'})")
            meta = json.loads(archive[META_KEY].tobytes().decode("utf-8"))
            entries = {name: archive[name] for name in archive.files if name != META_KEY}
    except CheckpointError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(f"{path} is not a readable convnp checkpoint (truncated, corrupted or not an "
                              f".npz file): {reason}") from None

    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a convnp checkpoint: its metadata does not say format '{FORMAT}'")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}; this convnp "
                              f"({_version()}) reads versions up to {FORMAT_VERSION}: upgrade convnp")
    try:
        arrays = {name[len(ARRAY_PREFIX):]: value for name, value in entries.items() if name.startswith(ARRAY_PREFIX)}
        model_state = {name[len(MODEL_PREFIX):]: value for name, value in entries.items()
                       if name.startswith(MODEL_PREFIX)}
        optimizer, scheduler = meta.get("optimizer"), meta.get("scheduler")
        preprocessing = _decode(meta.get("preprocessing"), arrays)
        extra = _decode(meta.get("extra") or {}, arrays)
        info = Checkpoint(
            path=str(path),
            format_version=version,
            convnp_version=meta.get("convnp_version"),
            model=meta["model"]["name"],
            model_class=meta["model"]["class"],
            model_args=_decode(meta["model"]["args"], arrays),
            model_state=model_state,
            epoch=meta["epoch"],
            optimizer_class=optimizer and optimizer["class"],
            optimizer_state=optimizer and _decode(optimizer["state"], arrays),
            scheduler_class=scheduler and scheduler["class"],
            scheduler_state=scheduler and _decode(scheduler["state"], arrays),
            rng_state=_decode(meta.get("rng_state"), arrays),
            loader_rng_state=_decode(meta.get("loader_rng_state"), arrays),
            preprocessing=preprocessing,
            history=_decode(meta.get("history"), arrays),
            extra=extra,
        )
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: the checkpoint's metadata is incomplete ({error!r} missing)") from None
    prep = preprocessing or {}
    for key in ("dataset", "input_size", "classes", "mean", "std"):
        info[key] = prep.get(key)
    info.update(extra)
    return info


def _version():
    from . import __version__

    return __version__


def _as_checkpoint(checkpoint):
    return checkpoint if isinstance(checkpoint, Checkpoint) else load(checkpoint)


def restore(checkpoint, model=None, optimizer=None, scheduler=None, loader=None, rng=True):
    """Load a checkpoint (a path or what ``load`` returned) into existing objects -> the Checkpoint.

    ``model``: weights and buffers; ``optimizer`` and ``scheduler``: their state (a checkpoint without
    one is an error); ``loader``: its ``.rng`` state; ``rng``: also restore convnp's global RNG (dropout,
    initialisation).  Everything is checked before anything is changed where possible; a mismatch raises
    CheckpointError naming the file.
    """
    info = _as_checkpoint(checkpoint)
    path = info["path"]
    if model is not None:
        if info["model_class"] != type(model).__name__:
            raise CheckpointError(f"{path} holds a {info['model_class']} model, not a {type(model).__name__}")
        try:
            model.load_state_dict(info["model_state"])
        except ValueError as error:
            raise CheckpointError(f"{path} does not match the model: {error}") from None
    for what, obj, saved_class, state in (("optimizer", optimizer, info["optimizer_class"], info["optimizer_state"]),
                                          ("scheduler", scheduler, info["scheduler_class"], info["scheduler_state"])):
        if obj is None:
            continue
        if state is None:
            raise CheckpointError(f"{path} holds no {what} state to resume a {type(obj).__name__} from")
        if saved_class != type(obj).__name__:
            raise CheckpointError(f"{path} holds the state of a {saved_class} {what}, not a {type(obj).__name__}")
        try:
            obj.load_state_dict(state)
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{path}: its {what} state does not fit this {type(obj).__name__}: {error}") from None
    if loader is not None:
        if info["loader_rng_state"] is None:
            raise CheckpointError(f"{path} holds no data-loader RNG state")
        loader.rng.bit_generator.state = info["loader_rng_state"]
    if rng and info["rng_state"] is not None:
        backend.default_rng().bit_generator.state = info["rng_state"]
    return info


def load_model(path):
    """Rebuild the model saved in ``path`` from the file alone -> (model in eval mode, Checkpoint info)."""
    from .models import MODELS, get_model

    info = load(path)
    name, args = info["model"], info["model_args"]
    if name is None or name not in MODELS:
        raise CheckpointError(f"{path} holds a {info['model_class']} model, which convnp.models does not list, "
                              f"so it cannot be rebuilt from the file; build it and call "
                              f"convnp.checkpoint.restore(path, model)")
    try:
        model = get_model(name, **(args or {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild {info['model_class']} from its saved arguments "
                              f"{args}: {error}") from None
    restore(info, model, rng=False)
    model.eval()
    return model, info
