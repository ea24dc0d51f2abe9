"""Training recipes: the settings ``convnp train`` uses for each dataset, and the code that runs one.

    recipe = default_recipe("mnist")            # LeNet-5, Adam + one-cycle schedule, shift augmentation
    result = run(recipe, out="runs/lenet5")     # trains, writes last/best checkpoints, history, curves
    result.history["val_accuracy"][-1]

A recipe is a plain dataclass; ``run`` builds everything from it in a fixed order (seed, data, model,
optimizer, scheduler, loaders), so the same recipe and seed give the same weights, and a run resumed
from ``last.npz`` (which stores the recipe) continues exactly where the interrupted one stopped.

The MNIST default: inputs normalised with the training set's mean and std (0.1307, 0.3081), random
shifts of up to 1 pixel, Adam with a one-cycle schedule peaking at lr 8e-3 (stepped per batch), batch
128, 5 epochs.  Measured with LeNet-5, final test accuracy after 5 epochs (seeds 0, 1, 2):

    plain Adam 1e-3, no normalisation (the issue's figure)    98.62
    normalise + Adam 2e-3 + cosine (per epoch)                99.15
      + shift 1                                               99.17 99.12 99.20   mean 99.16
      + shift 2                                               99.11
    normalise + Adam one-cycle 4e-3                           99.16
      + shift 1                                               99.22 99.20 99.16   mean 99.19
      + shift 2                                               99.12
    normalise + Adam one-cycle 6e-3 + shift 1                 99.30 99.32 99.18   mean 99.27
    normalise + Adam one-cycle 8e-3 + shift 1  (default)      99.33 99.32 99.21   mean 99.29
    normalise + Adam one-cycle 1e-2 + shift 1                 99.29 99.37         mean 99.33

Shifts of 2 pixels are too strong for 5 epochs; the one-cycle schedule gains from a higher peak lr up
to about 1e-2; 8e-3 sits in the middle of that plateau.
"""
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import checkpoint, optim
from .backend import CPU, manual_seed, resolve_device
from .data import DATASET_NAMES, ArrayDataset, Compose, DataLoader, Normalize, RandomShift, data_dir, load_dataset
from .data.folders import folder_dataset, folder_splits, image_channels, stratified_split
from .data.transforms import AUGMENT_POLICIES, augment_policy
from .files import RunLock, remove_stale_temporaries
from .models import constructor_parameters, get_model, model_class
from .nn import eval_mode, on_model_device
from .tensor import no_grad
from .train import Callback, EarlyStopping, ModelCheckpoint, NaNGuard, fit

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "onecycle", "step", "plateau")
# --scheduler plateau: the lr is halved when the monitored loss (validation, else training) has not improved
# by 1e-4 (relative) for this many epochs; stepped by ``fit`` after each epoch's validation.
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 2
DEFAULT_LR = {"adam": 2e-3, "adamw": 2e-3, "sgd": 0.05}

# How ``convnp predict`` turns an arbitrary picture into one like the training images (see predict.py):
# 'box': the longer side of the object's bounding box after resizing; 'centre': 'mass' (MNIST: centre of
# mass at the image centre) or 'box' (bounding box centred); 'invert': 'auto' makes a light background dark.
LAYOUTS = {
    "mnist": {"box": 20, "centre": "mass", "invert": "auto"},
    "fashion-mnist": {"box": 28, "centre": "box", "invert": "auto"},
    "digits": {"box": 28, "centre": "box", "invert": "auto"},
    "geometric": {"box": 20, "centre": "box", "invert": "auto"},
    "lines": {"box": None, "centre": None, "invert": "auto"},
    "cifar10": {"box": None, "centre": None, "invert": "never"},
}


@dataclass
class Recipe:
    """Everything that defines a training run."""

    dataset: str = "mnist"
    model: str = "lenet5"
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.9          # SGD only
    scheduler: str = "onecycle"
    augment: int = 1               # random shift of up to this many pixels (0: none)
    seed: int = 0
    val_fraction: float = 0.1      # stratified held-out share of train for validation; 0: validate on test
    dataset_options: dict = field(default_factory=dict)
    # your own images (dataset 'folder'): the folder (kept for the messages; evaluate and a resumed run are
    # given it again with --data, a file never chooses what is read), the (height, width) and channels
    data: str = None
    image_size: list = None
    channels: int = None
    # your own model class: 'file.py:Class' (recorded to say what to pass; imported only when the user
    # names it with --model-code) and its constructor arguments
    model_code: str = None
    model_args: dict = field(default_factory=dict)
    patience: int = 0              # early stopping after this many epochs without improvement (0: off)
    freeze: list = field(default_factory=list)   # sub-modules not trained (fine-tuning), e.g. ['conv1']
    augment_policy: str = "none"   # --augment none|light|standard (convnp.data.transforms.augment_policy)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A recipe from ``to_dict()``'s dict, e.g. read from a checkpoint: every field is checked
        (``check_saved_recipe``; a SchemaError names the field)."""
        return check_saved_recipe(values)

    def describe(self):
        schedule = {"none": "constant lr", "cosine": "cosine decay", "onecycle": "one-cycle schedule",
                    "step": "step decay", "plateau": f"lr x{PLATEAU_FACTOR:g} after {PLATEAU_PATIENCE} epochs "
                    "without improvement"}[self.scheduler]
        augment = f"random shifts of up to {self.augment} px" if self.augment else "no augmentation"
        if self.augment_policy != "none":
            augment = f"{self.augment_policy} augmentation" + (f" and {augment}" if self.augment else "")
        stop = f", early stopping after {self.patience} epoch(s) without improvement" if self.patience else ""
        return (f"{self.optimizer} lr {self.lr:g} with {schedule}, batch {self.batch_size}, {augment}, "
                f"{self.epochs} epoch(s), seed {self.seed}{stop}")


DEFAULTS = {
    "mnist": Recipe("mnist", "lenet5", epochs=5, batch_size=128, optimizer="adam", lr=8e-3, scheduler="onecycle",
                    augment=1),
    # Fashion-MNIST, 10 epochs, seed 0: one-cycle 8e-3 with 1-pixel shifts 90.27%, without 90.78%, 4e-3
    # without 90.46%.  LeNet-5 underfits this harder task, so augmentation costs more than it gives.
    "fashion-mnist": Recipe("fashion-mnist", "lenet5", epochs=10, batch_size=128, optimizer="adam", lr=8e-3,
                            scheduler="onecycle", augment=0),
    "digits": Recipe("digits", "simplecnn", epochs=20, batch_size=32, optimizer="adam", lr=4e-3,
                     scheduler="onecycle", augment=1, dataset_options={"size": 28}),
    "geometric": Recipe("geometric", "simplecnn", epochs=5, batch_size=32, optimizer="adam", lr=4e-3,
                        scheduler="onecycle", augment=1),
    "lines": Recipe("lines", "tinycnn", epochs=8, batch_size=16, optimizer="adam", lr=1e-2, scheduler="onecycle",
                    augment=0),
    "cifar10": Recipe("cifar10", "lenet5-classic", epochs=10, batch_size=128, optimizer="adam", lr=2e-3,
                      scheduler="onecycle", augment=2),
    # your own image folder (convnp.data.folders): a small CNN, images at the model's input size
    "folder": Recipe("folder", "simplecnn", epochs=10, batch_size=32, optimizer="adam", lr=4e-3,
                     scheduler="onecycle", augment=0),
}


def default_recipe(dataset, **overrides):
    """The default recipe for ``dataset`` with some fields replaced (None values are ignored)."""
    if dataset not in DEFAULTS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASET_NAMES)}")
    recipe = dataclasses.replace(DEFAULTS[dataset], dataset_options=dict(DEFAULTS[dataset].dataset_options))
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if "optimizer" in overrides and "lr" not in overrides and overrides["optimizer"] != recipe.optimizer:
        overrides["lr"] = DEFAULT_LR[overrides["optimizer"]]
    return dataclasses.replace(recipe, **overrides)


def check_recipe(recipe):
    """Raise ValueError with a one-line message for any out-of-range setting."""
    if recipe.model_code is None:
        model_class(recipe.model)
    if recipe.dataset == "folder" and not recipe.data:
        raise ValueError("dataset folder needs the folder: --data PATH")
    if recipe.patience < 0:
        raise ValueError(f"patience must be >= 0, got {recipe.patience}")
    if recipe.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    if recipe.scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {recipe.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}")
    for name, minimum in (("epochs", 1), ("batch_size", 1)):
        if getattr(recipe, name) < minimum:
            raise ValueError(f"{name.replace('_', '-')} must be >= {minimum}, got {getattr(recipe, name)}")
    if not recipe.lr > 0:
        raise ValueError(f"lr must be positive, got {recipe.lr}")
    if recipe.weight_decay < 0:
        raise ValueError(f"weight-decay must be >= 0, got {recipe.weight_decay}")
    if recipe.augment < 0:
        raise ValueError(f"augment must be >= 0 pixels, got {recipe.augment}")
    if not 0 <= recipe.val_fraction < 1:
        raise ValueError(f"val-fraction must be in [0, 1), got {recipe.val_fraction}")


# --- recipes read from files ----------------------------------------------------------------------------------
# The dataset options a stored recipe may set, per dataset, with their (low, high) ranges.  Nothing else:
# a file may not choose a data root, turn downloads on or off, or pass other keywords to a dataset.
DATASET_OPTIONS = {
    "mnist": {},
    "fashion-mnist": {},
    "cifar10": {},
    "digits": {"size": (4, 256), "test_fraction": (0.0, 1.0), "seed": (0, 2**32 - 1)},
    "geometric": {"n": (1, 100_000), "seed": (0, 2**32 - 1), "shift": (0, 13)},
    "lines": {"n": (1, 100_000), "val_fraction": (0.0, 1.0), "seed": (0, 2**32 - 1)},
    "folder": {},
}


def check_dataset_options(dataset, options, field="dataset_options"):
    """``options`` for ``load_dataset(dataset, split, **options)``, allowed keys and ranges only -> a copy.

    Raises SchemaError (a ValueError) naming the field."""
    from .checkpoint_schema import SchemaError, check_int, check_number

    if dataset not in DATASET_OPTIONS:
        raise SchemaError("dataset", f"unknown dataset {str(dataset)[:40]!r}; known: {', '.join(DATASET_OPTIONS)}")
    if not isinstance(options, dict):
        raise SchemaError(field, f"must be an object, got {type(options).__name__}")
    allowed = DATASET_OPTIONS[dataset]
    checked = {}
    for key, value in options.items():
        if key not in allowed:
            raise SchemaError(f"{field}.{key}", f"is not an option of dataset {dataset} that a saved recipe may set "
                                                f"(allowed: {', '.join(allowed) or 'none'})")
        low, high = allowed[key]
        if isinstance(low, int):
            checked[key] = check_int(value, f"{field}.{key}", low, high)
        else:
            check_number(value, f"{field}.{key}")
            if not low < value < high:
                raise SchemaError(f"{field}.{key}", f"must lie strictly between {low:g} and {high:g}, got {value}")
            checked[key] = float(value)
    return checked


def check_saved_recipe(values):
    """A Recipe from a stored dict (a checkpoint's 'recipe'): every field known, typed and in range."""
    from .checkpoint_schema import MAX_EPOCHS, MAX_SIDE, SchemaError, check_int, check_number, check_str
    from .models import MODELS

    if not isinstance(values, dict):
        raise SchemaError("recipe", f"must be an object, got {type(values).__name__}")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:
        raise SchemaError("recipe", f"unknown field(s) {', '.join(unknown)}")
    recipe = Recipe()
    for key, value in values.items():
        field = f"recipe.{key}"
        if key == "model" and values.get("model_code") is not None:  # a user's class: its name, not a choice
            check_str(value, field, identifier=True)
        elif key in ("data", "model_code"):
            if value is not None:
                check_str(value, field, max_length=4096)
        elif key == "image_size":
            if value is not None:
                if not isinstance(value, list) or len(value) != 2:
                    raise SchemaError(field, f"must be [height, width], got {str(value)[:40]}")
                for i, side in enumerate(value):
                    check_int(side, f"{field}[{i}]", 1, MAX_SIDE)
        elif key == "channels":
            if value is not None and check_int(value, field, 1, 3) == 2:
                raise SchemaError(field, "must be 1 or 3")
        elif key == "model_args":
            check_model_args(value, field)
        elif key == "patience":
            check_int(value, field, 0, MAX_EPOCHS)
        elif key == "augment_policy":
            if check_str(value, field) not in AUGMENT_POLICIES:
                raise SchemaError(field, f"must be one of {', '.join(AUGMENT_POLICIES)}, got {value[:40]!r}")
        elif key == "freeze":
            if not isinstance(value, list) or len(value) > 256:
                raise SchemaError(field, "must be a list of at most 256 module names")
            for i, name in enumerate(value):
                check_str(name, f"{field}[{i}]", max_length=200)
        elif key in ("dataset", "model", "optimizer", "scheduler"):
            choices = {"dataset": DATASET_OPTIONS, "model": MODELS, "optimizer": OPTIMIZERS,
                       "scheduler": SCHEDULERS}[key]
            if check_str(value, field) not in choices:
                raise SchemaError(field, f"must be one of {', '.join(choices)}, got {value[:40]!r}")
        elif key in ("epochs", "batch_size"):
            check_int(value, field, 1, MAX_EPOCHS if key == "epochs" else 1 << 20)
        elif key == "augment":
            check_int(value, field, 0, 64)
        elif key == "seed":
            check_int(value, field, 0, 2**63 - 1)
        elif key in ("lr", "weight_decay", "momentum", "val_fraction"):
            check_number(value, field)
            if key == "lr" and not value > 0:
                raise SchemaError(field, f"must be > 0, got {value}")
            if value < 0:
                raise SchemaError(field, f"must be >= 0, got {value}")
            if key in ("momentum", "val_fraction") and not value < 1:
                raise SchemaError(field, f"must be < 1, got {value}")
        if key != "dataset_options":
            setattr(recipe, key, value)
    recipe.dataset_options = check_dataset_options(recipe.dataset, values.get("dataset_options", {}),
                                                   field="recipe.dataset_options")
    return recipe


def check_model_args(values, field="model_args"):
    """A user model's constructor arguments: {identifier: number, bool, short string, or a list of numbers}."""
    from .checkpoint_schema import SchemaError, check_number, check_str

    if not isinstance(values, dict):
        raise SchemaError(field, f"must be an object, got {type(values).__name__}")
    if len(values) > 64:
        raise SchemaError(field, f"has {len(values)} entries (at most 64)")
    for key, value in values.items():
        check_str(key, f"{field}.{key}", identifier=True)
        items = value if isinstance(value, list) and len(value) <= 64 else [value]
        for item in items:
            if isinstance(item, str):
                check_str(item, f"{field}.{key}", max_length=200, allow_empty=True)
            elif not isinstance(item, bool):
                check_number(item, f"{field}.{key}")
    return dict(values)


# --- building blocks ----------------------------------------------------------------------------------------
@dataclass
class Splits:
    """What a run trains, validates and (later, with ``convnp evaluate``) tests on, and where each came from."""

    train: object
    val: object             # None: no validation
    test: object            # None: the data has no test split
    described: str          # for the train log: which split is which


def load_splits(recipe, log=None):
    """The run's data.  Validation is a stratified, seeded ``val_fraction`` of the training images (each
    class in proportion), or the folder's own ``val/``; with ``val_fraction`` 0 and no ``val/``, the test
    split (the old behaviour: then best.npz is chosen on test data, and the log says so)."""
    if recipe.dataset == "folder":
        folders = folder_splits(recipe.data)
        if recipe.image_size is None:
            raise ValueError("a folder recipe needs image_size [height, width] (--image-size)")
        if recipe.channels is None:  # what the images are: 3 when any has colour
            recipe.channels = image_channels(folders["train"])

        def read(split):
            return folder_dataset(folders[split], size=recipe.image_size, channels=recipe.channels, log=log,
                                  name=f"{Path(recipe.data).name}-{split}")

        train = read("train")
        test = read("test") if folders["test"] else None
        if folders["val"]:
            return Splits(train, read("val"), test, f"validation: {folders['val']}; " +
                          (f"test: {folders['test']} (untouched)" if test is not None else "no test split"))
    else:
        train = load_dataset(recipe.dataset, "train", **recipe.dataset_options)
        test = load_dataset(recipe.dataset, "test", **recipe.dataset_options)
    if not recipe.val_fraction:
        if test is None:
            return Splits(train, None, None, "no validation and no test split (--val-fraction 0, no val/ or test/)")
        return Splits(train, test, test, "validation: the TEST split (--val-fraction 0), so best.npz is chosen on "
                                         "test data")
    train_idx, val_idx = stratified_split(train.y, recipe.val_fraction, recipe.seed)
    name = recipe.dataset if recipe.dataset != "folder" else Path(recipe.data).name
    held = ArrayDataset(train.x[val_idx], train.y[val_idx], train.classes, name=f"{name}-val")
    kept = ArrayDataset(train.x[train_idx], train.y[train_idx], train.classes, name=f"{name}-train")
    untouched = "untouched test split" if test is not None else "no test split"
    return Splits(kept, held, test, f"validation: {recipe.val_fraction:g} of train held out, stratified by class "
                                    f"(seed {recipe.seed}); {untouched}")


def load_data(recipe):
    """(train, validation, test) datasets: ``load_splits`` without the description."""
    splits = load_splits(recipe)
    return splits.train, splits.val, splits.test


def channel_stats(x, chunk=8192):
    """Per-channel mean and standard deviation of x: (N, C, H, W), accumulated in float64 in chunks."""
    total = np.zeros(x.shape[1])
    total_sq = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].astype(np.float64)
        total += part.sum(axis=(0, 2, 3))
        total_sq += np.square(part).sum(axis=(0, 2, 3))
    count = len(x) * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean, np.where(std > 0, std, 1.0)


def preprocessing_for(dataset_name, train_set):
    """What a model trained on ``train_set`` expects: stored in its checkpoints for evaluate/predict."""
    mean, std = channel_stats(train_set.x)
    channels, height, width = train_set.x.shape[1:]
    if dataset_name == "folder":  # predict reads a picture as the folder reader did: no MNIST layout
        layout = {"box": None, "centre": None, "invert": "never", "fit": "crop"}
    else:
        layout = dict(LAYOUTS.get(dataset_name, {"box": None, "centre": None, "invert": "never"}))
    return {"dataset": dataset_name, "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in std], "input_size": [int(channels), int(height), int(width)],
            "channels": int(channels), "classes": list(train_set.classes), "layout": layout}


def normalizer(preprocessing):
    return Normalize(preprocessing["mean"], preprocessing["std"])


def train_transform(preprocessing, augment, policy="none"):
    """The training batches' transform: the ``policy``'s augmentations, shifts of up to ``augment``
    pixels, then the normalisation."""
    steps = augment_policy(policy) + ([RandomShift(augment)] if augment else [])
    if not steps:
        return normalizer(preprocessing)
    return Compose([*steps, normalizer(preprocessing)])


def build_model(recipe, preprocessing, cls=None):
    """The recipe's model, sized for the data: num_classes, in_channels (and in_features for the MLP).

    ``cls``: a user's nn.Module class (``recipe.model_code``), built with ``recipe.model_args`` plus
    those sizes for the constructor arguments it has and the user did not give."""
    channels, height, width = preprocessing["input_size"]
    wanted = {"num_classes": len(preprocessing["classes"]), "in_channels": channels,
              "in_features": channels * height * width}
    if recipe.model_code is not None:
        if cls is None:
            raise ValueError(f"the recipe's model is {recipe.model} from {recipe.model_code}: pass "
                             f"--model-code {recipe.model_code}")
        accepted = constructor_parameters(cls)
        args = {key: value for key, value in wanted.items() if key in accepted and key not in recipe.model_args}
        try:
            return cls(**args, **recipe.model_args)
        except TypeError as error:
            call = ", ".join(f"{key}={value!r}" for key, value in {**args, **recipe.model_args}.items())
            raise ValueError(f"{cls.__name__}({call}) failed: {error}") from None
    accepted = constructor_parameters(model_class(recipe.model))
    return get_model(recipe.model, **{key: value for key, value in wanted.items() if key in accepted})


def check_model_fits(model, recipe, preprocessing):
    """Run one example through the model; a shape mismatch becomes a ValueError naming model and data."""
    channels, height, width = preprocessing["input_size"]
    try:
        with eval_mode(model), no_grad():
            model(on_model_device(model, np.zeros((1, channels, height, width), dtype=np.float32)))
    except ValueError as error:
        raise ValueError(f"model {recipe.model} does not fit dataset {recipe.dataset} ({channels}x{height}x{width} "
                         f"images): {' '.join(str(error).split())}") from None


def make_optimizer(name, parameters, lr, momentum=0.9, weight_decay=0.0):
    """The optimizer called ``name`` (one of OPTIMIZERS) over ``parameters``: the one builder that
    recipes and the experiments share."""
    if name == "sgd":
        return optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(parameters, lr=lr, weight_decay=weight_decay or 1e-2)
    if name == "adam":
        return optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def make_scheduler(name, optimizer, lr, epochs, steps_per_epoch):
    """(the LR schedule called ``name`` (one of SCHEDULERS) or None, 'batch' or 'epoch': when ``fit``
    steps it); ``lr`` is onecycle's peak.  Shared by recipes and the experiments."""
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=epochs), "epoch"
    if name == "onecycle":
        return optim.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch), "batch"
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1), "epoch"
    if name == "plateau":  # fit steps it with the epoch's validation loss (or training loss without validation)
        plateau = optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE)
        return plateau, "epoch"
    if name == "none":
        return None, "epoch"
    raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")


def build_optimizer(recipe, model):
    return make_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay)


def build_scheduler(recipe, optimizer, steps_per_epoch):
    """(scheduler or None, 'batch' or 'epoch'): when ``fit`` steps it."""
    return make_scheduler(recipe.scheduler, optimizer, recipe.lr, recipe.epochs, steps_per_epoch)


# --- a whole run ----------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    model: object
    history: dict
    recipe: Recipe
    preprocessing: dict
    files: dict            # what was written: {'last': Path, 'best': Path, 'history': Path, 'curves': Path}
    val_loader: object


def run(recipe, out=None, resume=None, log=print, progress=None, callbacks=(), model_class=None, init_from=None,
        freeze=(), world=None, device=None, sync_batchnorm=False):
    """Train by ``recipe``; with ``out``, write last.npz, best.npz, history.json and training_curves.png.

    ``resume``: a checkpoint (path or loaded) from an earlier run of the same recipe; training continues
    after its epoch, up to ``recipe.epochs``, with every state restored (weights, optimizer, scheduler,
    global and loader RNGs, history).  Returns a RunResult.

    ``out`` is locked for the run (``convnp.files.RunLock``: a second run into the same folder is refused,
    naming the first one's pid), and temporary files a killed write left there are removed first.

    ``world``: a ``convnp.distributed.World`` for data-parallel training over MPI: every rank calls
    ``run`` with the same recipe; the weights start as rank 0's, each rank trains on its shard of every
    batch of ``recipe.batch_size`` images, and only rank 0 locks ``out``, logs and writes files.
    ``model_class``: the user's nn.Module class when ``recipe.model_code`` names one (the caller imports
    it, because the user named the file).  ``init_from``: a checkpoint (path or loaded) whose weights
    start this new run (fine-tuning: a fresh optimizer and schedule); ``freeze``: names of the model's
    sub-modules (``conv1``, ``features.0``) whose parameters are not trained.  ``device``: where to train
    ('cpu', the default, or 'cuda' with CuPy): the model moves there and every batch follows it; the device
    is not part of the recipe, so a run may resume on another one (checkpoints hold host arrays).
    ``sync_batchnorm``: with a ``world`` of several ranks, batch norm layers normalise with the statistics
    of the global batch (``convnp.distributed.SyncBatchNorm``) instead of each rank's shard.
    """
    check_recipe(recipe)
    device = CPU if device is None else resolve_device(device)
    if world is not None and device != CPU:
        raise ValueError(f"data-parallel training over MPI runs on the CPU (its gradient buffer is a host "
                         f"array), not on {device}")
    writer = world is None or world.is_writer
    args = (recipe, out, resume, log, progress, callbacks, model_class, init_from, tuple(freeze or recipe.freeze),
            world, device, sync_batchnorm)
    if out is not None and writer:  # one run per folder at a time; the lock is released when this run ends
        with RunLock(out):
            return _run_locked(*args)
    return _run_locked(*args)


def freeze_modules(model, names):
    """Turn off ``requires_grad`` of the parameters under each dotted sub-module name -> their count."""
    modules = dict(model.named_modules()) if hasattr(model, "named_modules") else {}
    frozen = 0
    for name in names:
        prefix = name + "."
        matched = [(key, p) for key, p in model.named_parameters() if key.startswith(prefix) or key == name]
        if not matched:
            known = sorted({key.rsplit(".", 1)[0] for key, _ in model.named_parameters()} | set(modules) - {""})
            raise ValueError(f"--freeze {name}: {type(model).__name__} has no parameters under {name!r}; "
                             f"its parts with parameters: {', '.join(k for k in known if k)}")
        for _, parameter in matched:
            parameter.requires_grad = False
            frozen += parameter.data.size
    return frozen


def _run_locked(recipe, out, resume, log, progress, callbacks, model_class_=None, init_from=None, freeze=(),
                world=None, device=None, sync_batchnorm=False):
    writer = world is None or world.is_writer
    if not writer:
        log, progress, out = None, False, None
    if out is not None:
        stale = remove_stale_temporaries(out)
        if stale and log is not None:
            log(f"removed {len(stale)} temporary file(s) an interrupted write left in {out}: {', '.join(stale)}")
    info = None
    if resume is not None:
        info = resume if isinstance(resume, checkpoint.Checkpoint) else checkpoint.load(resume)
        if info.epoch >= recipe.epochs:
            raise ValueError(f"{info.path} has already completed {info.epoch} epoch(s); ask for more with --epochs")
    manual_seed(recipe.seed)
    splits = load_splits(recipe, log=log)
    train_set, val_set = splits.train, splits.val
    preprocessing = preprocessing_for(recipe.dataset, train_set)
    if info is not None and info.get("preprocessing"):  # a resumed run keeps its normalisation
        preprocessing = info["preprocessing"]
    model = build_model(recipe, preprocessing, model_class_)
    if device is not None and device != CPU:  # first: the optimizer's state is then made where the parameters are
        model.to(device)
    check_model_fits(model, recipe, preprocessing)
    if init_from is not None:  # fine-tuning: the weights of another run, everything else new
        start = init_from if isinstance(init_from, checkpoint.Checkpoint) else checkpoint.load(init_from)
        checkpoint.restore(start, model, rng=False)
        if log is not None:
            log(f"weights from {start.path} (epoch {start.epoch}); a new optimizer and schedule")
    if freeze:
        frozen = freeze_modules(model, freeze)
        if log is not None:
            log(f"frozen: {', '.join(freeze)} ({frozen:,} parameters not trained)")
    if world is not None:
        world.broadcast_model(model)
    synced = 0
    if sync_batchnorm and world is not None and world.size > 1:
        from .distributed import convert_sync_batchnorm

        synced = convert_sync_batchnorm(model, world)
    optimizer = make_optimizer(recipe.optimizer, [p for p in model.parameters() if p.requires_grad], recipe.lr,
                               recipe.momentum, recipe.weight_decay)
    train_loader = DataLoader(train_set, recipe.batch_size, shuffle=True, seed=recipe.seed,
                              transform=train_transform(preprocessing, recipe.augment, recipe.augment_policy))
    if world is not None:  # every rank draws the same global batches and takes its shard of each
        train_loader = world.shard(train_loader)
    val_loader = None if val_set is None else DataLoader(val_set, 1000, transform=normalizer(preprocessing))
    scheduler, interval = build_scheduler(recipe, optimizer, len(train_loader))
    if log is not None:
        channels, height, width = preprocessing["input_size"]
        where = (f" in {recipe.data}" if recipe.dataset == "folder" else
                 f" in {data_dir()}" if recipe.dataset in ("mnist", "fashion-mnist", "cifar10") else "")
        log(f"{type(model).__name__}: {model.num_parameters():,} parameters; {recipe.dataset}{where}: "
            f"{len(train_set):,} training, {0 if val_set is None else len(val_set):,} validation and "
            f"{0 if splits.test is None else len(splits.test):,} test images, {channels}x{height}x{width}, "
            f"{len(preprocessing['classes'])} classes")
        if world is not None and world.size > 1:
            log(f"data parallel over {world.size} MPI ranks: each takes its share of every batch of "
                f"{recipe.batch_size} images (about {recipe.batch_size // world.size} per rank)")
            if synced:
                log(f"SyncBatchNorm: {synced} batch norm layer(s) normalise with the statistics of the whole batch")
        if device is not None and device != CPU:
            log(f"training on {device} (CuPy); checkpoints are written as host arrays")
        log(splits.described)
    start_epoch, history = 0, None
    if info is not None:
        planned = (info.get("recipe") or {}).get("epochs", recipe.epochs)
        fresh = scheduler.state_dict() if scheduler is not None else None  # the plan for recipe.epochs
        checkpoint.restore(info, model, optimizer, scheduler, loader=train_loader)
        start_epoch, history = info.epoch, info.history
        if scheduler is not None and planned != recipe.epochs and recipe.scheduler in ("cosine", "onecycle"):
            replan_schedule(scheduler, fresh, optimizer, log)

    leading = []
    if world is not None:  # the gradient allreduce first: the NaN guard then sees the global loss
        from .distributed import RankDropoutSeed

        leading.append(world.gradient_allreduce(model, train_loader))
        if world.size > 1:
            leading.append(RankDropoutSeed(world, recipe.seed))
    callbacks = [*leading, NaNGuard(), *callbacks]
    files = {}
    if out is not None:
        out = Path(out)
        saver = ModelCheckpoint(out, preprocessing=preprocessing, extra={"recipe": recipe.to_dict()})
        callbacks.append(saver)
        callbacks.append(HistoryFiles(out, recipe, preprocessing))
        files.update(last=saver.last_path, best=saver.best_path)
    if recipe.patience:  # after the savers, so the last epoch is written before it stops the run
        callbacks.append(EarlyStopping("val_loss" if val_loader is not None else "train_loss",
                                       patience=recipe.patience, restore_best_weights=True))
    history = fit(model, train_loader, val_loader, optimizer, epochs=recipe.epochs, scheduler=scheduler,
                  scheduler_interval=interval, callbacks=callbacks, start_epoch=start_epoch, history=history,
                  progress=progress, log=log)
    if out is not None and history["epoch"]:
        files["history"] = write_history(out / "history.json", history, recipe, preprocessing)
        try:
            from .inspect.viz import plot_training_curves  # matplotlib: the tools extra
        except ImportError:
            plot_training_curves = None
            if log is not None:
                log("training_curves.png skipped: drawing it needs matplotlib (pip install 'convnp[tools]')")
        if plot_training_curves is not None:
            title = f"{recipe.model} on {recipe.dataset}: {recipe.describe()}"
            files["curves"] = plot_training_curves(history, out / "training_curves.png", title=title)
    return RunResult(model, history, recipe, preprocessing, files, val_loader)


class HistoryFiles(Callback):
    """Write ``history.json`` and ``history.csv`` (one row per epoch) after every epoch, atomically, so that
    an interrupted run keeps its curves."""

    def __init__(self, folder, recipe, preprocessing):
        self.folder, self.recipe, self.preprocessing = Path(folder), recipe, preprocessing

    def on_epoch_end(self, state):
        write_history(self.folder / "history.json", state.history, self.recipe, self.preprocessing)
        write_history_csv(self.folder / "history.csv", state.history)


class TensorBoardLog(Callback):
    """Scalars of every epoch (train/loss, train/accuracy, val/loss, val/accuracy, lr; step = the 1-based
    epoch) as TensorBoard event files in ``folder`` (``tensorboard --logdir folder``).  Written with the
    ``tensorboard`` package's own event-file writer (no torch needed), or tensorboardX's SummaryWriter when
    only that is installed; ImportError naming the package to install otherwise."""

    def __init__(self, folder):
        try:
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            EventFileWriter = None
        if EventFileWriter is not None:
            self.writer = EventFileWriter(str(folder))
            self._event, self._summary = Event, Summary
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("--log tensorboard needs the tensorboard package: pip install tensorboard "
                              "(or tensorboardX)") from None
        self.writer, self._event = SummaryWriter(str(folder)), None

    def _add_scalar(self, tag, value, step):
        if self._event is None:  # tensorboardX
            self.writer.add_scalar(tag, value, step)
            return
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=float(value))])
        self.writer.add_event(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def on_epoch_end(self, state):
        history = state.history
        epoch = history["epoch"][-1]
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            if history.get(key) and len(history[key]) == len(history["epoch"]):
                self._add_scalar(key.replace("_", "/", 1) if key != "lr" else "lr", history[key][-1], epoch)
        self.writer.flush()

    def on_train_end(self, state):
        self.writer.close()


def write_history_csv(path, history):
    """The per-epoch lists of ``history`` as CSV: a header row (epoch, train_loss, ...), one row per epoch."""
    import csv
    import io

    from .files import atomic_write_text

    columns = [key for key, values in history.items() if isinstance(values, list) and len(values) == len(
        history["epoch"])]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in zip(*(history[key] for key in columns)):
        writer.writerow([f"{value:.6g}" if isinstance(value, float) else value for value in row])
    return atomic_write_text(Path(path), text.getvalue())


def replan_schedule(scheduler, fresh_state, optimizer, log=None):
    """Extend a resumed run: ``scheduler`` (restored at step k of its old plan) takes the plan of
    ``fresh_state`` (the same schedule built for the new number of epochs) at the same step k, so a
    cosine or one-cycle schedule continues as if it had been planned for the longer run from the start."""
    step = scheduler.last_epoch
    old_lr = optimizer.param_groups[0]["lr"]
    scheduler.load_state_dict(fresh_state)
    scheduler.last_epoch = step
    for group, lr in zip(optimizer.param_groups, scheduler.get_lr()):
        group["lr"] = lr
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    if log is not None:
        log(f"the {type(scheduler).__name__} schedule is re-planned for the longer run from step {step}: "
            f"lr {old_lr:.3g} -> {optimizer.param_groups[0]['lr']:.3g}")


def write_history(path, history, recipe, preprocessing):
    from .files import atomic_write_text

    return atomic_write_text(Path(path), json.dumps({"recipe": recipe.to_dict(), "preprocessing": preprocessing,
                                                     "history": history}, indent=1) + "\n")
