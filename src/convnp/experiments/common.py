"""What every experiment shares: the run context, the data (with its offline substitutes), the
networks the experiments compare, and one training helper built on ``convnp.train.fit``.

    ctx = Context("stride-vs-pool", mode="quick", seed=0, out=Path("runs/experiments/stride-vs-pool"))
    data = load_data(ctx, "mnist", n_train=10_000, n_test=5_000)     # or the offline substitute
    run = train_model(ctx, "LeNet-5", LeNet5, data, epochs=3, lr=4e-3)
    run.accuracy, run.epoch_seconds, run.history

Reproducibility: every model is built right after ``manual_seed(ctx.seed)`` and every training loader is
seeded with ``ctx.seed``, so a model's weights depend only on the seed and its recipe, never on what ran
before it.  The experiments run on ``ctx.threads`` threads (BLAS and convnp's own loops), 1 by default:
on a shared or loaded machine extra BLAS threads only fight over the cores, and timings taken on one
thread compare fairly across runs.
"""
import datetime
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import nn
from ..backend import manual_seed
from ..data import (
    ArrayDataset,
    DataLoader,
    Normalize,
    available_datasets,
    data_dir,
    digits,
    fashion_mnist,
    mnist,
    resize_bilinear,
    shift_images,
)
from ..inspect import summary
from ..models import MLP, LeNet5
from ..parallel import blas_threads, num_threads
from ..recipes import make_optimizer, make_scheduler
from ..train import Callback, NaNGuard, evaluate, fit

MODES = ("full", "quick", "offline")
LN10 = math.log(10)   # the cross-entropy of a uniform guess over 10 classes


class ExperimentError(Exception):
    """A problem the user can fix (missing data, bad option); reported as one line."""


@dataclass
class Context:
    """One experiment run: its name, mode, seed, output folder, data location and threads.

    mode: 'full' (the real datasets, the settings the report is about), 'quick' (subsets of the real
    datasets, about a minute) or 'offline' (a small substitute made from scikit-learn's bundled digits,
    used when MNIST/Fashion-MNIST are not on disk, or when asked for).
    """

    name: str
    mode: str = "full"
    seed: int = 0
    out: Path = None
    data_dir: Path = None
    threads: int = 1
    log: object = print
    command: str = ""
    notes: list = field(default_factory=list)   # remarks the report should carry (e.g. a data fallback)
    started: datetime.datetime = field(default_factory=datetime.datetime.now)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self.out = Path(self.out if self.out is not None else Path("runs") / "experiments" / self.name)
        self.data_dir = None if self.data_dir is None else Path(self.data_dir)

    def say(self, line):
        if self.log is not None:
            self.log(line)

    def pick(self, configs):
        """The entry of ``configs`` ({'full': ..., 'quick': ..., 'offline': ...}) for this run's mode."""
        return configs[self.mode]


# --- threads ------------------------------------------------------------------------------------------
@contextmanager
def limited_threads(count):
    """Run the body on ``count`` threads, convnp's own (``convnp.num_threads``), with BLAS on one
    thread (with more than one convnp thread, convnp splits the GEMMs itself); both are restored
    afterwards.  Yields a description for the report."""
    with num_threads(count, blas=1):
        blas = blas_threads()
        yield f"convnp {count}, BLAS {blas[0]}" if blas else f"convnp {count}, BLAS threads not reachable " \
            "(threadpoolctl is not installed)"


# --- data ---------------------------------------------------------------------------------------------
@dataclass
class Data:
    """A train/test pair and how to describe it in a report."""

    name: str              # 'mnist', 'fashion-mnist' or the substitute's name
    train: object          # ArrayDataset
    test: object
    description: str       # one sentence for the report's setup section
    substitute: bool = False

    @property
    def mean_std(self):
        """The training images' mean and standard deviation (one number each: grey images)."""
        x = self.train.x
        return float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))

    def normalizer(self):
        return Normalize(*self.mean_std)


REAL_DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def real_data_present(name, data_dir=None):
    """Are the four IDX files of ``name`` ('mnist' or 'fashion-mnist') on disk?"""
    return any(s.name == name and s.available for s in available_datasets(data_dir))


def _subset(dataset, n, seed, stream):
    """A seeded random subset of ``n`` images (all of them when n is None or too big), in sorted order."""
    if n is None or n >= len(dataset):
        return dataset
    order = np.sort(np.random.default_rng([seed, stream]).permutation(len(dataset))[:n])
    return ArrayDataset(dataset.x[order], dataset.y[order], dataset.classes, name=f"{dataset.name}[{n}]")


def load_real(ctx, name, n_train=None, n_test=None):
    """MNIST or Fashion-MNIST (subsets of n_train / n_test seeded random images) -> Data."""
    loader = {"mnist": mnist, "fashion-mnist": fashion_mnist}[name]
    try:
        train, test = loader("train", root=ctx.data_dir), loader("test", root=ctx.data_dir)
    except Exception as error:  # noqa: BLE001 - missing files, no network, a corrupt download: all the user's to fix
        reason = " ".join(str(error).split())
        if len(reason) > 240:
            reason = reason[:240].rsplit(" ", 1)[0] + " ..."
        raise ExperimentError(f"{REAL_DATASETS[name]} is needed for the full experiment and could not be loaded "
                              f"({reason}); put the IDX files in {_data_folder(ctx) / name} (the folder is "
                              f"$CONVNP_DATA or --data-dir), or run with --quick (which falls back to offline "
                              f"data)") from None
    full_train, full_test = len(train), len(test)
    train, test = _subset(train, n_train, ctx.seed, 11), _subset(test, n_test, ctx.seed, 12)
    whole = (len(train), len(test)) == (full_train, full_test)
    sizes = (f"all {full_train:,} training and {full_test:,} test images" if whole
             else f"{len(train):,} of the {full_train:,} training images and {len(test):,} of the {full_test:,} test "
                  f"images (seeded random subsets)")
    return Data(name, train, test, f"{REAL_DATASETS[name]}: {sizes}, 28x28 grey, 10 classes.")


def digits_in_frame(split, jitter=0, copies=1, seed=0):
    """scikit-learn's 8x8 digits laid out like MNIST: scaled (bilinear) to 20x20 and centred in a 28x28
    frame, 4 px of black on every side.  ``jitter`` > 0 moves each copy of each image by a random
    whole number of pixels in -jitter..jitter along each axis (``copies`` copies per image)."""
    source = digits(split)
    x = np.pad(resize_bilinear(source.x, 20, 20), ((0, 0), (0, 0), (4, 4), (4, 4)))
    y = source.y
    if jitter:
        rng = np.random.default_rng([seed, 21 if split == "train" else 22])
        xs = []
        for _ in range(copies):
            dy, dx = rng.integers(-jitter, jitter + 1, size=(2, len(x)))
            xs.append(shift_images(x, dy, dx))
        x, y = np.concatenate(xs), np.tile(y, copies)
    name = f"digits-20in28{f'-jitter{jitter}' if jitter else ''}-{split}"
    return ArrayDataset(x.astype(np.float32), y, source.classes, name=name)


def load_substitute(ctx, jitter=0, copies=1):
    """The offline substitute: digits_in_frame train/test -> Data."""
    try:
        train = digits_in_frame("train", jitter, copies, ctx.seed)
        test = digits_in_frame("test", jitter, copies, ctx.seed)
    except ImportError as error:
        raise ExperimentError(f"the offline substitute needs scikit-learn's bundled digits ({error})") from None
    placed = (f"each placed at {copies} random offset(s) of up to {jitter} px along each axis"
              if jitter else "centred, like MNIST's digits")
    description = (f"offline substitute: scikit-learn's 1,797 bundled 8x8 digits, scaled to 20x20 in a 28x28 "
                   f"frame and {placed}; {len(train):,} training and {len(test):,} test images "
                   f"(stratified 80/20 split).")
    return Data(f"digits-20in28{'-jitter' if jitter else ''}", train, test, description, substitute=True)


def decide_mode(ctx, configs):
    """Settle the run's mode before it starts, from its CONFIGS: a quick run whose dataset is not on
    disk becomes an offline run (noted in the report), so the experiment picks its settings once."""
    name = configs["quick"]["dataset"]
    if ctx.mode == "quick" and not real_data_present(name, ctx.data_dir):
        ctx.say(f"{REAL_DATASETS[name]} is not in {_data_folder(ctx)}; the quick run uses the offline substitute")
        ctx.notes.append(f"{REAL_DATASETS[name]} was not found in {_data_folder(ctx)}, so this quick run used the "
                         f"offline substitute instead (its settings are the offline ones).")
        ctx.mode = "offline"
    return ctx.mode


def load_data(ctx, name, n_train=None, n_test=None, jitter=0, copies=1):
    """The data of an experiment: ``name`` ('mnist' or 'fashion-mnist') in full/quick mode, the
    substitute in offline mode (``decide_mode`` has settled the mode); a full run without the files
    tries the library's download, then stops."""
    if ctx.mode == "offline":
        return load_substitute(ctx, jitter, copies)
    return load_real(ctx, name, n_train, n_test)


def _data_folder(ctx):
    return ctx.data_dir if ctx.data_dir is not None else data_dir()


# --- networks ------------------------------------------------------------------------------------------
def lenet5():
    return LeNet5()


def lenet5_strided():
    """LeNet-5 with each 2x2 max pool removed and the convolution before it given stride 2:
    (N,1,28,28) -> conv1 k5 s2 (N,6,12,12) -> conv2 k5 s2 (N,16,4,4) -> the same 256-120-84-10 classifier.
    The feature maps come out at the pooled sizes, so every layer keeps LeNet-5's parameter count."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, stride=2), nn.ReLU(),
        nn.Conv2d(6, 16, 5, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def mlp(hidden):
    """The two-layer MLP: flatten, Linear(784, hidden), ReLU, Linear(hidden, 10)."""
    return MLP(784, hidden, 10)


# --- training -------------------------------------------------------------------------------------------
@dataclass
class TrainRun:
    """What ``train_model`` measured."""

    label: str
    model: object
    history: dict
    accuracy: float            # test accuracy of the final model
    loss: float                # its test loss
    train_seconds: float       # training passes only (no evaluation)
    step_losses: list          # every batch's training loss, in order
    diverged: bool
    parameters: int
    train_images: int

    @property
    def epoch_seconds(self):
        """Median seconds per training epoch (robust to one slow epoch on a shared machine)."""
        times = self.history.get("time") or []
        return float(np.median(times)) if times else float("nan")

    @property
    def images_per_second(self):
        return self.train_images / self.epoch_seconds if self.epoch_seconds > 0 else float("nan")


class StepLosses(Callback):
    """A fit callback that keeps every batch's loss (``on_before_step`` sees it before the update)."""

    def __init__(self):
        self.values = []

    def on_before_step(self, state):
        self.values.append(float(state.loss))


class TestAccuracyEvery(Callback):
    """A fit callback that evaluates the model on ``test`` (a Data's test set, normalised like its training
    set) every ``every`` training steps: ``points`` = [(step, accuracy)], step counted from 1 across epochs."""

    def __init__(self, data, every):
        self.loader = DataLoader(data.test, 1000, transform=data.normalizer())
        self.every = max(1, int(every))
        self.points = []
        self.step = 0

    def on_batch_end(self, state):
        self.step += 1
        if self.step % self.every == 0:
            self.points.append((self.step, evaluate(state.model, self.loader)["accuracy"]))


def build_optimizer(name, parameters, lr, momentum=0.9):
    """The experiments' names for the recipe machinery's optimizers: 'adam', 'sgd' (plain SGD) and
    'momentum' (SGD with momentum 0.9)."""
    if name not in ("adam", "sgd", "momentum"):
        raise ValueError(f"unknown optimizer {name!r}")
    if name == "adam":
        return make_optimizer("adam", parameters, lr)
    return make_optimizer("sgd", parameters, lr, momentum=momentum if name == "momentum" else 0.0)


def train_model(ctx, label, build, data, *, epochs, lr, batch_size=128, optimizer="adam", schedule="onecycle",
                validate=True, test=None, callbacks=()):
    """Build a model (right after seeding), train it on ``data.train`` and evaluate it on ``test``
    (default ``data.test``) -> TrainRun.

    ``optimizer``: 'adam', 'sgd' or 'momentum' (SGD with momentum 0.9); ``schedule``: 'onecycle' (lr is the
    peak, stepped per batch) or 'constant'.  Inputs are normalised with the training set's mean and std.
    ``validate``: evaluate on the test data after every epoch (history['val_accuracy']).  A run whose loss
    becomes NaN or infinite stops there (NaN guard) and is reported as diverged.  ``callbacks``: more
    ``convnp.train`` callbacks (e.g. ``TestAccuracyEvery``).
    """
    test = data.test if test is None else test
    manual_seed(ctx.seed)
    model = build()
    opt = build_optimizer(optimizer, model.parameters(), lr)
    normalize = data.normalizer()
    train_loader = DataLoader(data.train, batch_size, shuffle=True, seed=ctx.seed, transform=normalize)
    test_loader = DataLoader(test, 1000, transform=normalize)
    if schedule not in ("onecycle", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}")
    scheduler, _ = make_scheduler("onecycle" if schedule == "onecycle" else "none", opt, lr, epochs,
                                  len(train_loader))
    steps = StepLosses()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        history = fit(model, train_loader, test_loader if validate else None, opt, epochs=epochs, scheduler=scheduler,
                      scheduler_interval="batch" if scheduler is not None else None,
                      callbacks=[NaNGuard(), steps, *callbacks],
                      progress=False, log=lambda line: ctx.say(f"  {label}: {line}"))
        # a diverged run's weights may be NaN: its outputs then count as class 0, as in fit's own evaluations
        final = evaluate(model, test_loader, finite=not history.get("diverged"))
    run = TrainRun(label, model, history, final["accuracy"], final["loss"], float(sum(history["time"])),
                   steps.values, bool(history.get("diverged")), model.num_parameters(), len(data.train))
    ctx.say(f"{label}: test accuracy {run.accuracy * 100:.2f}%, {run.parameters:,} parameters, "
            f"{run.train_seconds:.1f} s of training" + (" (diverged)" if run.diverged else ""))
    return run


def evaluate_on(model, images, labels, data):
    """Accuracy of ``model`` on raw [0, 1] ``images`` normalised like ``data``'s training set."""
    return evaluate(model, DataLoader((images, labels), 1000, transform=data.normalizer()))["accuracy"]


def count(model, input_size=(1, 28, 28)):
    """``convnp.inspect.summary`` of ``model`` for one input: (parameters, MACs, FLOPs, Summary)."""
    s = summary(model, input_size)
    return s.total_params, s.total_mult_adds, s.flops, s


def layer_params(model, input_size=(1, 28, 28)):
    """[(layer name, type, parameters)] of the layers that hold parameters, from the summary."""
    return [(row.name, row.type, row.own_params) for row in summary(model, input_size).rows
            if row.is_leaf and row.own_params and not row.recursive]


def smooth(values, window):
    """Running mean over the last ``window`` values (shorter at the start): a readable loss curve."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    window = max(1, min(int(window), len(values)))
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    stop = np.arange(1, len(values) + 1)
    start = np.maximum(0, stop - window)
    return (cumulative[stop] - cumulative[start]) / (stop - start)


def cpu_description():
    """'<model name> (N hardware threads)' from /proc/cpuinfo where there is one."""
    name = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import platform

    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name}, {os.cpu_count()} hardware threads"


def seconds_text(value):
    """A duration with 3 significant digits: 0.0512 -> '0.0512 s', 12.34 -> '12.3 s', 123.4 -> '123 s'."""
    return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"


def difference_noise(p, q, n):
    """Two standard errors of the difference of two accuracies p and q measured on the same n test images,
    treating them as independent binomial proportions: 2 sqrt((p(1-p) + q(1-q)) / n)."""
    return 2 * math.sqrt(max(p * (1 - p) + q * (1 - q), 1e-12) / n)


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self):
        return time.perf_counter() - self.start
