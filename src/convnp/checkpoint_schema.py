"""What a checkpoint's metadata may hold: every field checked (type, range, size) before anything uses it.

    meta = check_metadata(json_metadata, arrays)     # -> decoded, checked pieces; raises SchemaError

``convnp.checkpoint.load`` calls this on the JSON metadata of a file and the arrays it references, and
turns a ``SchemaError(field, problem)`` into a ``CheckpointError`` naming the file and the field, e.g.
``runs/x/last.npz: preprocessing.std[0]: must be > 0, got 0``.  A file is data, never instructions: the
limits below keep a crafted file from making convnp build a huge model, read huge images, or call a
constructor with arguments it does not take.
"""
import math
import re

import numpy as np

# Sizes a file may ask for.  Generous for real use, far below what would exhaust memory.
MAX_MODEL_ARG = 1 << 20          # any integer constructor argument (in_features of a 1024x1024 image)
MAX_ARG_LIST = 16                # a list argument (MLP hidden widths, VGG widths)
MAX_LAYER_WEIGHTS = 1 << 28      # the two largest integer arguments multiplied: a bound on one layer
MAX_CHANNELS = 64
MAX_SIDE = 4096                  # input height and width
MAX_CLASSES = 100_000
MAX_NAME = 200                   # characters of a class name, dataset name, class of a model or optimizer
MAX_EPOCHS = 10_000_000
MAX_GROUPS = 10_000              # optimizer parameter groups
MAX_NESTING = 6                  # lists/dicts inside one another in a plain value (scheduler state)

PREPROCESSING_KEYS = ("dataset", "mean", "std", "input_size", "channels", "classes", "layout")
LAYOUT_VALUES = {"box": None, "centre": (None, "mass", "box"), "invert": ("auto", "never"), "fit": (None, "crop")}
TOP_LEVEL_KEYS = ("format", "format_version", "convnp_version", "model", "epoch", "optimizer", "scheduler",
                  "rng_state", "loader_rng_state", "preprocessing", "history", "extra")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STATE_KEY = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\Z")


class SchemaError(ValueError):
    """``field`` (dotted path, e.g. 'preprocessing.input_size[1]') breaks the schema: ``problem``."""

    def __init__(self, field, problem):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


# --- small checks -----------------------------------------------------------------------------------------
def _type_name(value):
    return "null" if value is None else type(value).__name__


def _dict(value, field, keys=None, required=()):
    if not isinstance(value, dict):
        raise SchemaError(field, f"must be an object, got {_type_name(value)}")
    if keys is not None:
        unknown = sorted(str(key) for key in value if key not in keys)
        if unknown:
            raise SchemaError(field, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(keys)})")
    missing = [key for key in required if key not in value]
    if missing:
        raise SchemaError(field, f"missing key(s) {', '.join(missing)}")
    return value


def _list(value, field, max_length, min_length=0):
    if not isinstance(value, (list, tuple)):
        raise SchemaError(field, f"must be a list, got {_type_name(value)}")
    if not min_length <= len(value) <= max_length:
        raise SchemaError(field, f"must have {min_length}..{max_length} items, has {len(value)}")
    return value


def check_int(value, field, low, high):
    """An int (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SchemaError(field, f"must be an integer, got {_type_name(value)}")
    if not low <= value <= high:
        raise SchemaError(field, f"must be in {low}..{high}, got {value}")
    return int(value)


def check_number(value, field, finite=True, low=None):
    """An int or float (not a bool), finite unless ``finite=False``, and > ``low`` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SchemaError(field, f"must be a number, got {_type_name(value)}")
    if finite and not math.isfinite(value):
        raise SchemaError(field, f"must be finite, got {value}")
    if low is not None and not value > low:
        raise SchemaError(field, f"must be > {low:g}, got {value}")
    return value


def check_str(value, field, max_length=MAX_NAME, allow_empty=False, identifier=False):
    if not isinstance(value, str):
        raise SchemaError(field, f"must be a string, got {_type_name(value)}")
    if not (allow_empty or value) or len(value) > max_length:
        raise SchemaError(field, f"must be a string of {0 if allow_empty else 1}..{max_length} characters")
    if identifier and not _IDENTIFIER.match(value):
        raise SchemaError(field, f"must be a Python name, got {value[:40]!r}")
    return value


def _plain(value, field, depth=0):
    """A JSON-like value without arrays: None, bool, number, str, lists/tuples/dicts of them."""
    if depth > MAX_NESTING:
        raise SchemaError(field, f"nested more than {MAX_NESTING} levels deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _plain(item, f"{field}[{i}]", depth + 1)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise SchemaError(field, f"has a key of type {_type_name(key)}")
            _plain(item, f"{field}.{key}", depth + 1)
        return value
    raise SchemaError(field, f"must be a plain value (number, string, list), got {_type_name(value)}")


# --- decoding the metadata's encoded values (see checkpoint._Encoder) ---------------------------------------
class Decoder:
    """Turn {"__array__": name} / {"__tuple__": [...]} / {"__items__": [[k, v], ...]} back into values,
    checking each, and record which arrays were referenced (an archive member nobody references is an
    error: a file holds nothing it does not explain)."""

    def __init__(self, arrays):
        self.arrays, self.used = arrays, set()

    def __call__(self, value, field, depth=0):
        if depth > 64:
            raise SchemaError(field, "nested too deeply")
        if isinstance(value, list):
            return [self(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if "__array__" in value:
            _dict(value, field, keys=("__array__",))
            name = value["__array__"]
            if not isinstance(name, str) or name not in self.arrays:
                raise SchemaError(field, f"refers to array {name!r}, which the archive does not hold")
            self.used.add(name)
            return self.arrays[name]
        if "__tuple__" in value:
            _dict(value, field, keys=("__tuple__",))
            items = _list(value["__tuple__"], field, max_length=1 << 20)
            return tuple(self(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(items))
        if "__items__" in value:
            _dict(value, field, keys=("__items__",))
            decoded = {}
            for i, pair in enumerate(_list(value["__items__"], field, max_length=1 << 20)):
                pair = _list(pair, f"{field}[{i}]", max_length=2, min_length=2)
                key = self(pair[0], f"{field}[{i}][0]", depth + 1)
                if not isinstance(key, (str, int, float, bool, type(None))):
                    raise SchemaError(f"{field}[{i}][0]", f"a key must be a number or string, got {_type_name(key)}")
                decoded[key] = self(pair[1], f"{field}.{key}", depth + 1)
            return decoded
        return {key: self(item, f"{field}.{key}", depth + 1) for key, item in value.items()}


# --- the fields -----------------------------------------------------------------------------------------------
def check_model(model, weight_sizes=None):
    """{'name': short name or None, 'class': class name, 'args': constructor arguments or None}.

    ``weight_sizes``: every axis length of the stored weights.  Each integer argument must be one of them
    (num_classes is the last layer's output size, in_channels the first kernel's depth, ...), so a file
    cannot ask for a model larger than the weights it actually holds."""
    from .models import MODELS, constructor_parameters

    _dict(model, "model", keys=("name", "class", "args", "layers"), required=("name", "class", "args"))
    if model.get("layers") is not None:
        check_layers(model["layers"], weight_sizes)
    name = model["name"]
    if name is not None:
        check_str(name, "model.name")
    check_str(model["class"], "model.class", identifier=True)
    args = model["args"]
    if args is None:
        return model
    _dict(args, "model.args")
    accepted = constructor_parameters(MODELS[name]) if name in MODELS else None
    sizes = []
    for key, value in args.items():
        field = f"model.args.{key}"
        check_str(key, field, identifier=True)
        if accepted is not None and key not in accepted:
            raise SchemaError(field, f"{MODELS[name].__name__} takes no argument {key!r} "
                                     f"(it takes: {', '.join(accepted)})")
        if isinstance(value, (list, tuple)):
            _list(value, field, MAX_ARG_LIST)
            items = [(f"{field}[{i}]", check_int(item, f"{field}[{i}]", 1, MAX_MODEL_ARG))
                     for i, item in enumerate(value)]
        else:
            items = [(field, check_int(value, field, 1, MAX_MODEL_ARG))]
        for where, size in items:
            if weight_sizes is not None and size not in weight_sizes:
                raise SchemaError(where, f"is {size}, which is no axis length of the stored weights "
                                         f"(the model built from it would not fit them)")
            sizes.append(size)
    largest = sorted(sizes)[-2:]
    if math.prod(largest) > MAX_LAYER_WEIGHTS:
        raise SchemaError("model.args", f"asks for layers of up to {largest[0]} x {largest[-1]} weights "
                                        f"(at most {MAX_LAYER_WEIGHTS:,} allowed)")
    return model


def check_layers(layers, weight_sizes=None):
    """model.layers: an nn.Sequential's structure, [[layer class, {argument: value}], ...] of the layers
    ``convnp.models.sequential.LAYER_ARGUMENTS`` lists, every argument typed and bounded."""
    from .models.sequential import LAYER_ARGUMENTS

    items = _list(layers, "model.layers", 1000, min_length=1)
    for i, item in enumerate(items):
        field = f"model.layers[{i}]"
        _list(item, field, 2, min_length=2)
        name, args = item
        if check_str(name, f"{field}[0]") not in LAYER_ARGUMENTS:
            raise SchemaError(f"{field}[0]", f"must be one of {', '.join(LAYER_ARGUMENTS)}, got {name[:40]!r}")
        _dict(args, f"{field}[1]", keys=LAYER_ARGUMENTS[name], required=LAYER_ARGUMENTS[name])
        sizes = []
        for key, value in args.items():
            where = f"{field}[1].{key}"
            if key in ("bias", "affine", "track_running_stats"):
                if not isinstance(value, bool):
                    raise SchemaError(where, f"must be true or false, got {_type_name(value)}")
            elif key in ("eps", "momentum", "negative_slope", "p"):
                if value is not None or key != "momentum":
                    check_number(value, where)
            elif key in ("start_dim", "end_dim"):
                check_int(value, where, -8, 8)
            else:
                values = _list(value, where, 2, min_length=1) if isinstance(value, list) else [value]
                low = 0 if key == "padding" else 1
                for v in values:
                    sizes.append(check_int(v, where, low, MAX_MODEL_ARG))
                    if key in ("out_channels", "in_features", "out_features") and weight_sizes is not None \
                            and v not in weight_sizes:
                        raise SchemaError(where, f"is {v}, which is no axis length of the stored weights")
        largest = sorted(sizes)[-2:]
        if len(largest) == 2 and math.prod(largest) > MAX_LAYER_WEIGHTS:
            raise SchemaError(field, f"asks for up to {largest[0]} x {largest[1]} weights (at most "
                                     f"{MAX_LAYER_WEIGHTS:,} allowed)")
    return layers


def check_optimizer_state(state, field):
    """An ``Optimizer.state_dict()``: {'state': {index: {name: array or number}}, 'param_groups': [...]}."""
    _dict(state, field, keys=("state", "param_groups"), required=("state", "param_groups"))
    groups = _list(state["param_groups"], f"{field}.param_groups", MAX_GROUPS, min_length=1)
    indices = set()
    for g, group in enumerate(groups):
        where = f"{field}.param_groups[{g}]"
        _dict(group, where, required=("params", "lr"))
        for i, index in enumerate(_list(group["params"], f"{where}.params", 1 << 20)):
            index = check_int(index, f"{where}.params[{i}]", 0, (1 << 20) - 1)
            if index in indices:
                raise SchemaError(f"{where}.params[{i}]", f"parameter {index} is listed twice")
            indices.add(index)
        for key, value in group.items():
            check_str(key, f"{where}.{key}", identifier=True)
            if key == "params":
                continue
            if key in ("lr", "initial_lr", "max_lr", "min_lr"):
                check_number(value, f"{where}.{key}")
                if value < 0:
                    raise SchemaError(f"{where}.{key}", f"must be >= 0, got {value}")
            else:
                _plain(value, f"{where}.{key}")
    for index, per_param in _dict(state["state"], f"{field}.state").items():
        where = f"{field}.state.{index}"
        if isinstance(index, bool) or not isinstance(index, int) or index not in indices:
            raise SchemaError(where, "is the state of a parameter no parameter group lists")
        for name, value in _dict(per_param, where).items():
            check_str(name, f"{where}.{name}", identifier=True)
            if isinstance(value, np.ndarray):
                if value.dtype.kind != "f":
                    raise SchemaError(f"{where}.{name}", f"must be a real floating-point array, got {value.dtype}")
            else:
                check_number(value, f"{where}.{name}", finite=False)
    return state


def check_scheduler_state(state, field):
    """An ``LRScheduler.state_dict()``: its attributes, plain values only (loaded into a scheduler only when
    its keys are that scheduler's own, see checkpoint.restore)."""
    for key, value in _dict(state, field).items():
        check_str(key, f"{field}.{key}", identifier=True)
        if key == "optimizer":
            raise SchemaError(f"{field}.{key}", "a scheduler's state may not replace its optimizer")
        _plain(value, f"{field}.{key}")
    return state


def check_rng_state(state, field):
    """A ``numpy.random.PCG64().state`` dict (the generator convnp and its loaders use)."""
    if state is None:
        return None
    _dict(state, field, keys=("bit_generator", "state", "has_uint32", "uinteger"),
          required=("bit_generator", "state", "has_uint32", "uinteger"))
    if state["bit_generator"] != "PCG64":
        raise SchemaError(f"{field}.bit_generator", f"must be 'PCG64', got {str(state['bit_generator'])[:40]!r}")
    inner = _dict(state["state"], f"{field}.state", keys=("state", "inc"), required=("state", "inc"))
    for key in ("state", "inc"):
        check_int(inner[key], f"{field}.state.{key}", 0, (1 << 128) - 1)
    check_int(state["has_uint32"], f"{field}.has_uint32", 0, 1)
    check_int(state["uinteger"], f"{field}.uinteger", 0, (1 << 32) - 1)
    return state


def check_preprocessing(prep):
    """{'dataset', 'mean', 'std', 'input_size': [C, H, W], 'channels', 'classes', 'layout'} or None."""
    if prep is None:
        return None
    _dict(prep, "preprocessing", keys=PREPROCESSING_KEYS)
    if prep.get("dataset") is not None:  # None: not trained on a named dataset (a user's own data)
        check_str(prep["dataset"], "preprocessing.dataset")
    channels = None
    if "input_size" in prep:
        size = _list(prep["input_size"], "preprocessing.input_size", 3, min_length=3)
        channels = check_int(size[0], "preprocessing.input_size[0]", 1, MAX_CHANNELS)
        check_int(size[1], "preprocessing.input_size[1]", 1, MAX_SIDE)
        check_int(size[2], "preprocessing.input_size[2]", 1, MAX_SIDE)
    if "channels" in prep:
        given = check_int(prep["channels"], "preprocessing.channels", 1, MAX_CHANNELS)
        if channels is not None and given != channels:
            raise SchemaError("preprocessing.channels", f"is {given} but input_size says {channels}")
    for key in ("mean", "std"):
        if prep.get(key) is None:
            continue
        values = _list(prep[key], f"preprocessing.{key}", max(channels or MAX_CHANNELS, 1), min_length=1)
        if channels is not None and len(values) not in (1, channels):
            raise SchemaError(f"preprocessing.{key}", f"has {len(values)} values for {channels} channel(s)")
        for i, value in enumerate(values):
            check_number(value, f"preprocessing.{key}[{i}]", low=0.0 if key == "std" else None)
    if "classes" in prep:
        classes = _list(prep["classes"], "preprocessing.classes", MAX_CLASSES, min_length=1)
        for i, name in enumerate(classes):
            check_str(name, f"preprocessing.classes[{i}]")
    if prep.get("layout") is not None:
        layout = _dict(prep["layout"], "preprocessing.layout", keys=tuple(LAYOUT_VALUES))
        if layout.get("box") is not None:
            check_int(layout["box"], "preprocessing.layout.box", 1, MAX_SIDE)
        for key in ("centre", "invert", "fit"):
            if key in layout and layout[key] not in LAYOUT_VALUES[key]:
                raise SchemaError(f"preprocessing.layout.{key}", f"must be one of {LAYOUT_VALUES[key]}, "
                                                                 f"got {str(layout[key])[:40]!r}")
    return prep


def check_history(history):
    """``fit``'s history: per-epoch lists of numbers (the same length), stop_reason, diverged."""
    from .train import HISTORY_KEYS

    if history is None:
        return None
    _dict(history, "history")
    epochs = len(_list(history.get("epoch", []), "history.epoch", MAX_EPOCHS))
    for key, values in history.items():
        if key not in (*HISTORY_KEYS, "stop_reason", "diverged"):  # a caller's own entry: plain values
            check_str(key, f"history.{key}", identifier=True)
            _plain(values, f"history.{key}")
    for key in HISTORY_KEYS:
        values = _list(history.get(key, []), f"history.{key}", MAX_EPOCHS)
        if "epoch" in history and len(values) not in (0, epochs):
            raise SchemaError(f"history.{key}", f"has {len(values)} values for {epochs} epoch(s)")
        for i, value in enumerate(values):
            if key == "epoch":
                check_int(value, f"history.epoch[{i}]", 1, MAX_EPOCHS)
            else:
                check_number(value, f"history.{key}[{i}]", finite=False)
    if history.get("stop_reason") is not None:
        check_str(history["stop_reason"], "history.stop_reason", max_length=10_000)
    if "diverged" in history and not isinstance(history["diverged"], bool):
        raise SchemaError("history.diverged", f"must be true or false, got {_type_name(history['diverged'])}")
    return history


def check_best(best):
    """ModelCheckpoint's {'monitor', 'value', 'epoch'}."""
    _dict(best, "best", keys=("monitor", "value", "epoch"))
    if best.get("monitor") is not None:
        check_str(best["monitor"], "best.monitor", identifier=True)
    if best.get("value") is not None:
        check_number(best["value"], "best.value", finite=False)
    if best.get("epoch") is not None:
        check_int(best["epoch"], "best.epoch", 0, MAX_EPOCHS)
    return best


def check_model_state_key(key):
    if not _STATE_KEY.match(key) or len(key) > 1000:
        raise SchemaError(f"model/{key[:60]}", "is not a state_dict key (dotted names of letters, digits, _)")


def check_weight(key, array):
    """A model weight: real floating point (an integer counter for num_batches_tracked), at most 32 axes."""
    field = f"model/{key}"
    if key.rsplit(".", 1)[-1] == "num_batches_tracked":
        if array.dtype.kind not in "iu" or array.shape != ():
            raise SchemaError(field, f"must be an integer scalar, got {array.dtype} {array.shape}")
    elif array.dtype.kind != "f":
        raise SchemaError(field, f"must hold real floating-point numbers, got dtype {array.dtype}")
    if array.ndim > 32:
        raise SchemaError(field, f"has {array.ndim} axes")


def check_metadata(meta, arrays, weight_sizes=None):
    """Check the JSON metadata ``meta`` and decode it with ``arrays`` ({name: array of arrays/<name>});
    ``weight_sizes``: the set of axis lengths of the stored weights (see ``check_model``).

    Returns a dict: model, epoch, optimizer, scheduler (each {'class', 'state'} or None), rng_state,
    loader_rng_state, preprocessing, history, extra -- all checked.  Raises SchemaError.
    """
    from .checkpoint import FORMAT_VERSION, RESERVED

    _dict(meta, "metadata", keys=TOP_LEVEL_KEYS, required=("format", "format_version", "model", "epoch"))
    check_int(meta["format_version"], "format_version", 1, max(FORMAT_VERSION, 1))
    if meta.get("convnp_version") is not None:
        check_str(meta["convnp_version"], "convnp_version", max_length=100)
    decode = Decoder(arrays)
    out = {"model": check_model(meta["model"], weight_sizes), "epoch": check_int(meta["epoch"], "epoch", 0, MAX_EPOCHS)}
    for what, check in (("optimizer", check_optimizer_state), ("scheduler", check_scheduler_state)):
        entry = meta.get(what)
        if entry is not None:
            _dict(entry, what, keys=("class", "state"), required=("class", "state"))
            check_str(entry["class"], f"{what}.class", identifier=True)
            entry = {"class": entry["class"], "state": check(decode(entry["state"], f"{what}.state"), f"{what}.state")}
        out[what] = entry
    for key in ("rng_state", "loader_rng_state"):
        out[key] = check_rng_state(decode(meta.get(key), key), key)
    out["preprocessing"] = check_preprocessing(decode(meta.get("preprocessing"), "preprocessing"))
    out["history"] = check_history(decode(meta.get("history"), "history"))
    extra = decode(meta.get("extra") or {}, "extra")
    _dict(extra, "extra")
    for key in extra:
        check_str(key, f"extra.{key}", identifier=True)
        if key in RESERVED:
            raise SchemaError(f"extra.{key}", "clashes with the checkpoint's own keys")
    if extra.get("best") is not None:
        check_best(extra["best"])
    if extra.get("recipe") is not None:
        from .recipes import check_saved_recipe

        check_saved_recipe(extra["recipe"])
    out["extra"] = extra
    unused = sorted(set(arrays) - decode.used, key=str)
    if unused:
        raise SchemaError(f"arrays/{unused[0]}", "is an archive member the metadata does not refer to")
    return out
