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

Validated, not trusted
----------------------
``load`` never calls ``np.load``: it reads the zip directory, refuses duplicate, unknown, encrypted or
over-compressed members (a deflated member may expand at most MAX_COMPRESSION_RATIO times) and a total
over MAX_CHECKPOINT_BYTES, reads each member's .npy header and checks that its shape and dtype (real
numbers only; weights real floating point) account for exactly the bytes that follow, and only then
allocates.  Every metadata field is then checked by ``convnp.checkpoint_schema`` (types, ranges, sizes:
model arguments, optimizer/scheduler/RNG state, epoch, history, preprocessing, the stored recipe, whose
dataset options are allowlisted so that a file cannot choose where data is read or trigger a download).
Any violation is a CheckpointError naming the file and the field.  ``save`` runs the same checks first,
so it never writes a checkpoint ``load`` would refuse.  A FIFO, device or folder is refused after a stat,
never opened.

Atomic writes
-------------
``save`` writes a temporary file in the target's folder, flushes and fsyncs it, then renames it over
the target with ``os.replace`` (atomic on POSIX and Windows), and fsyncs the folder.  A crash or kill
at any moment leaves either the old checkpoint or the new one, never a mixture; an exception during the
write also removes the temporary file.  (A process killed with SIGKILL cannot clean up after itself,
so a ``.<name>.*.tmp`` file may remain beside the intact checkpoint.)
"""
import json
import math
import zipfile
import zlib
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
    "path", "format", "format_version", "convnp_version", "model", "model_class", "model_args", "model_layers",
    "model_state", "epoch", "optimizer_class", "optimizer_state", "scheduler_class", "scheduler_state", "rng_state",
    "loader_rng_state", "preprocessing", "history", "dataset", "input_size", "classes", "mean", "std", "extra",
})


class CheckpointError(ValueError):
    """A file that is not a readable convnp checkpoint, or that does not match what it is loaded into."""


class Checkpoint(dict):
    """What ``load`` returns: a dict whose keys can also be read as attributes (``info.epoch``).

    Keys: path, format_version, convnp_version, model (short name, e.g. 'lenet5', or None), model_class,
    model_args, model_layers (an nn.Sequential's structure, or None), model_state ({key: array}), epoch,
    optimizer_class, optimizer_state, scheduler_class, scheduler_state, rng_state, loader_rng_state,
    preprocessing (dict or None), history (dict or None),
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
    from .models.sequential import sequential_layers

    path = Path(path)
    clash = sorted(set(extra) & RESERVED)
    if clash:
        raise ValueError(f"save: extra key(s) {', '.join(clash)} clash with the checkpoint's own keys")
    try:
        args = model_config(model)
    except ValueError:
        args = None  # a model convnp.models does not know: its weights are saved, load_model cannot rebuild it
    if args is not None and model_name(model) is None:  # a user's class: keep args only if the schema takes them
        from .checkpoint_schema import SchemaError, check_model

        try:
            check_model({"name": None, "class": type(model).__name__, "args": args})
        except SchemaError:
            args = None  # rebuilt from the recipe's model_args instead (convnp.models.user_code)
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
    layers = sequential_layers(model)  # an nn.Sequential of convnp's layers: its structure, as data
    if layers is not None:
        meta["model"]["layers"] = layers
    _check_before_saving(path, meta, arrays, model.state_dict())
    entries = {MODEL_PREFIX + key: np.asarray(value) for key, value in model.state_dict().items()}
    entries.update((ARRAY_PREFIX + name, value) for name, value in arrays.items())
    text = json.dumps(meta, allow_nan=True)
    entries[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, entries)
    return path


def _check_before_saving(path, meta, arrays, state):
    """Refuse to write what ``load`` would refuse (a preprocessing key it does not know, an empty class
    list, ...): a run must never leave checkpoints it cannot read back."""
    from .checkpoint_schema import SchemaError, check_metadata, check_model_state_key, check_weight

    try:
        for key, value in state.items():
            check_model_state_key(key)
            check_weight(key, np.asarray(value))
        for name, value in arrays.items():
            if value.dtype.kind not in ALLOWED_ARRAY_KINDS:
                raise SchemaError(f"arrays/{name}", f"holds dtype {value.dtype} (real numbers only)")
        sizes = {size for value in state.values() for size in np.shape(value)}
        check_metadata(json.loads(json.dumps(meta, allow_nan=True)), arrays, sizes)
    except SchemaError as error:
        raise ValueError(f"save {path}: {' '.join(str(error).split())}") from None


def _write_npz(file, entries):
    """Write the archive into the open binary ``file``.  The only place checkpoint bytes are produced
    (tests replace it with a writer that fails half-way to simulate a crash)."""
    np.savez(file, **entries)


def _atomic_write(path, entries):
    """temporary file in the same folder -> write -> flush -> fsync -> os.replace -> fsync the folder."""
    from .files import atomic_write

    atomic_write(path, lambda file: _write_npz(file, entries))


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


# --- loading ---------------------------------------------------------------------------------------------
# Bounds on what a file may make ``load`` allocate.  Tests lower them (monkeypatch) to try the checks.
MAX_CHECKPOINT_BYTES = 4 << 30   # all members together, as declared by their .npy headers
MAX_METADATA_BYTES = 64 << 20    # the JSON metadata
MAX_MEMBERS = 100_000
MAX_COMPRESSION_RATIO = 100      # a deflated member may expand to at most this many times its stored size
COMPRESSION_SLACK = 1 << 20      # ... plus this many bytes (tiny members compress extremely well)
ALLOWED_ARRAY_KINDS = "fiub"     # arrays/<n>: real numbers and booleans; no strings, objects, complex


def load(path):
    """Read the checkpoint at ``path`` -> Checkpoint (a dict; see its docstring for the keys).

    Raises FileNotFoundError for a missing file and CheckpointError (a ValueError) naming the file for
    anything that is not a valid convnp checkpoint: a folder, FIFO or device; random bytes, a plain .npz
    or .npy, a truncated or corrupted file, one written by a newer, incompatible convnp; and any member or
    metadata field that breaks the schema (``convnp.checkpoint_schema``: the field is named).  Memory is
    bounded: every member's .npy header is read and compared with its size before its array is allocated.
    """
    from .checkpoint_schema import SchemaError, check_metadata, check_model_state_key, check_weight
    from .files import open_regular

    path = Path(path)
    if path.is_dir():
        hint = next((f"; did you mean {path / name}?" for name in ("best.npz", "last.npz")
                     if (path / name).is_file()), "")
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    with open_regular(path, "checkpoint", CheckpointError) as file:
        meta_bytes, members = _read_members(path, file)
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{path} is not a readable convnp checkpoint: its metadata is not JSON "
                              f"({_one_line(error)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a convnp checkpoint: its metadata does not say format '{FORMAT}'")
    version = meta.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}; this convnp "
                              f"({_version()}) reads versions up to {FORMAT_VERSION}: upgrade convnp")
    arrays = {name[len(ARRAY_PREFIX):]: value for name, value in members.items() if name.startswith(ARRAY_PREFIX)}
    model_state = {name[len(MODEL_PREFIX):]: value for name, value in members.items()
                   if name.startswith(MODEL_PREFIX)}
    try:
        for key, value in model_state.items():
            check_model_state_key(key)
            check_weight(key, value)
        checked = check_metadata(meta, arrays, {size for value in model_state.values() for size in value.shape})
    except SchemaError as error:
        raise CheckpointError(f"{path}: {_one_line(error)}") from None
    optimizer, scheduler = checked["optimizer"], checked["scheduler"]
    model = checked["model"]
    info = Checkpoint(
        path=str(path),
        format_version=meta["format_version"],
        convnp_version=meta.get("convnp_version"),
        model=model["name"],
        model_class=model["class"],
        model_args=model["args"],
        model_layers=model.get("layers"),
        model_state=model_state,
        epoch=checked["epoch"],
        optimizer_class=optimizer and optimizer["class"],
        optimizer_state=optimizer and optimizer["state"],
        scheduler_class=scheduler and scheduler["class"],
        scheduler_state=scheduler and scheduler["state"],
        rng_state=checked["rng_state"],
        loader_rng_state=checked["loader_rng_state"],
        preprocessing=checked["preprocessing"],
        history=checked["history"],
        extra=checked["extra"],
    )
    prep = checked["preprocessing"] or {}
    for key in ("dataset", "input_size", "classes", "mean", "std"):
        info[key] = prep.get(key)
    info.update(checked["extra"])
    return info


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _read_members(path, file):
    """The archive's members -> (metadata bytes, {member name without .npy: array}), reading each .npy
    header and checking its shape, dtype and size against the zip directory before allocating anything."""
    try:
        with zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
            _check_directory(path, infos)
            members = {}
            for info in infos:
                members[info.filename[:-len(".npy")]] = _read_npy(path, archive, info)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, KeyError, IndexError, OverflowError, zlib.error) as error:
        if file.seek(0) == 0 and file.read(6) == b"\x93NUMPY":
            raise CheckpointError(f"{path} is not a convnp checkpoint (.npz): it holds a single .npy array, "
                                  f"not an .npz archive") from None
        raise CheckpointError(f"{path} is not a convnp checkpoint (.npz), or is truncated or corrupted: "
                              f"{_one_line(error)}") from None
    meta = members.pop(META_KEY, None)
    if meta is None:
        listed = ", ".join(list(members)[:5]) + (", ..." if len(members) > 5 else "")
        raise CheckpointError(f"{path} is an .npz archive but not a convnp checkpoint: it has no "
                              f"'{META_KEY}' entry (its arrays: {listed or 'none'})")
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise CheckpointError(f"{path}: {META_KEY} must be a 1-D uint8 array of UTF-8 text, "
                              f"got {meta.dtype} {meta.shape}")
    return meta.tobytes(), members


def _check_directory(path, infos):
    """Names, count, compression and declared sizes of the members, from the zip's central directory."""
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{path}: the archive has {len(infos):,} members (at most {MAX_MEMBERS:,})")
    names = [info.filename for info in infos]
    seen = set()
    for name in names:
        if name in seen:
            raise CheckpointError(f"{path}: the archive holds member {name!r} twice")
        seen.add(name)
    if META_KEY + ".npy" not in seen:
        return  # not a convnp checkpoint; _read_members says so, listing the arrays it does hold
    total = 0
    for info in infos:
        name = info.filename
        stem = name[:-len(".npy")] if name.endswith(".npy") else None
        known = stem is not None and (
            stem == META_KEY
            or (stem.startswith(MODEL_PREFIX) and len(stem) > len(MODEL_PREFIX))
            or (stem.startswith(ARRAY_PREFIX) and stem[len(ARRAY_PREFIX):].isdigit()))
        if not known:
            raise CheckpointError(f"{path}: unknown archive member {name[:80]!r} (a checkpoint holds "
                                  f"{META_KEY}.npy, {MODEL_PREFIX}<key>.npy and {ARRAY_PREFIX}<n>.npy only)")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{path}: member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{path}: member {name!r} uses zip compression method {info.compress_type} "
                                  f"(stored or deflated only)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointError(f"{path}: member {name!r} is stored uncompressed but its sizes disagree "
                                  f"({info.compress_size} vs {info.file_size} bytes)")
        if (info.compress_type == zipfile.ZIP_DEFLATED
                and info.file_size > info.compress_size * MAX_COMPRESSION_RATIO + COMPRESSION_SLACK):
            raise CheckpointError(f"{path}: member {name!r} would expand from {info.compress_size:,} to "
                                  f"{info.file_size:,} bytes (a compression bomb?)")
        total += info.file_size
        if total > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path}: its members would take more than {MAX_CHECKPOINT_BYTES:,} bytes "
                                  f"in memory")
        if name == META_KEY + ".npy" and info.file_size > MAX_METADATA_BYTES:
            raise CheckpointError(f"{path}: its metadata would take {info.file_size:,} bytes "
                                  f"(at most {MAX_METADATA_BYTES:,})")


def _read_npy(path, archive, info):
    """One member: its .npy header checked (version, dtype, shape x itemsize == the bytes that follow), then
    exactly that many bytes read into a new array."""
    name = info.filename
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise CheckpointError(f"{path}: member {name!r} has .npy format version {version} (1.0 or 2.0 only)")
        if dtype.hasobject or dtype.kind not in ALLOWED_ARRAY_KINDS or dtype.fields is not None:
            raise CheckpointError(f"{path}: member {name!r} holds dtype {dtype} (real numbers only; "
                                  f"no objects, strings or complex numbers)")
        if len(shape) > 32:
            raise CheckpointError(f"{path}: member {name!r} has {len(shape)} axes")
        header_size = member.tell()
        expected = math.prod(shape) * dtype.itemsize
        if expected != info.file_size - header_size:
            raise CheckpointError(f"{path}: member {name!r} declares shape {shape} of {dtype} = {expected:,} "
                                  f"bytes but holds {info.file_size - header_size:,}")
        buffer = bytearray(expected)
        view, filled = memoryview(buffer), 0
        while filled < expected:
            count = member.readinto(view[filled:])
            if not count:
                raise CheckpointError(f"{path}: member {name!r} is truncated")
            filled += count
        if member.read(1):
            raise CheckpointError(f"{path}: member {name!r} has bytes after its array")
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if fortran_order else "C")


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
        if what == "optimizer":
            _check_groups_like(path, state, obj)
        own_keys = set(obj.state_dict()) if what == "scheduler" else None
        unknown = sorted(set(state) - own_keys) if own_keys is not None else []
        if unknown:  # a scheduler's load_state_dict sets attributes: only its own
            raise CheckpointError(f"{path}: its scheduler state has key(s) {', '.join(unknown)}, which a "
                                  f"{type(obj).__name__} does not have")
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


def _check_groups_like(path, state, optimizer):
    """Each saved parameter group's hyperparameters must be of the kinds this optimizer's are (a number for a
    number, a pair for a pair): a file cannot slip a string in where Adam expects its betas."""
    own_groups = optimizer.param_groups
    for i, (saved, own) in enumerate(zip(state["param_groups"], own_groups)):
        for key, value in saved.items():
            if key == "params" or key not in own:
                continue
            mine = own[key]
            if isinstance(mine, bool) or mine is None:
                ok = value is None or isinstance(value, bool) if mine is None else isinstance(value, bool)
            elif isinstance(mine, (int, float)):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            elif isinstance(mine, (tuple, list)):
                ok = (isinstance(value, (tuple, list)) and len(value) == len(mine)
                      and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                              for v in value))
            else:
                ok = type(value) is type(mine)
            if not ok:
                raise CheckpointError(f"{path}: optimizer.state.param_groups[{i}].{key} is {value!r:.60}, "
                                      f"not a value like this {type(optimizer).__name__}'s {mine!r:.60}")
        unknown = sorted(set(saved) - set(own) - {"initial_lr"})
        if unknown:
            raise CheckpointError(f"{path}: optimizer.state.param_groups[{i}] has key(s) {', '.join(unknown)}, "
                                  f"which a {type(optimizer).__name__} does not have")


def load_model(path):
    """Rebuild the model saved in ``path`` from the file alone -> (model in eval mode, Checkpoint info)."""
    from .models import MODELS, get_model

    info = load(path)
    name, args = info["model"], info["model_args"]
    if name is None and info.get("model_layers"):  # an nn.Sequential stored as data
        from .models.sequential import build_sequential

        model = build_sequential(info["model_layers"])
        restore(info, model, rng=False)
        model.eval()
        return model, info
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
