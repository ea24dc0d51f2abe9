"""shift-robustness: accuracy when every test image is moved right by 0..4 pixels.

LeNet-5 and two-layer MLPs are trained on the unshifted training images (no augmentation), with the
recipe of cnn-vs-mlp and the same seed, then evaluated on the test set shifted right by 0, 1, 2, 3 and
4 pixels (``convnp.data.shift_images``, zero fill: the background of these images is black).
"""
import numpy as np

from ..data import shift_images
from ..inspect.viz import predict_proba
from .common import Stopwatch, count, evaluate_on, lenet5, load_data, mlp, train_model
from .report import Report, pct, pp

NAME = "shift-robustness"
TITLE = "Shift robustness: LeNet-5 versus MLPs on shifted test images"
SUMMARY = "accuracy of LeNet-5 and MLPs on the test set shifted right by 0..4 pixels"

SHIFTS = (0, 1, 2, 3, 4)
CONFIGS = {
    "full": dict(dataset="mnist", n_train=None, n_test=None, batch=128, lr=4e-3, lenet_epochs=5, mlp_epochs=10,
                 widths=(100, 1024)),
    "quick": dict(dataset="mnist", n_train=20_000, n_test=5_000, batch=128, lr=4e-3, lenet_epochs=3, mlp_epochs=4,
                  widths=(100, 1024)),
    "offline": dict(dataset="mnist", batch=32, lr=4e-3, lenet_epochs=10, mlp_epochs=15, widths=(100, 1024)),
}


def shifted_right(x, pixels):
    """Every image of x: (N, C, H, W) moved ``pixels`` to the right, zero fill on the left."""
    n = len(x)
    return shift_images(x, np.zeros(n, dtype=np.int64), np.full(n, pixels, dtype=np.int64))


def run(ctx):
    cfg = ctx.pick(CONFIGS)
    data = load_data(ctx, cfg["dataset"], cfg.get("n_train"), cfg.get("n_test"))
    clock = Stopwatch()
    runs = [train_model(ctx, "LeNet-5", lenet5, data, validate=False, epochs=cfg["lenet_epochs"], lr=cfg["lr"],
                        batch_size=cfg["batch"])]
    for hidden in cfg["widths"]:
        runs.append(train_model(ctx, f"MLP H={hidden}", lambda h=hidden: mlp(h), data, validate=False,
                                epochs=cfg["mlp_epochs"], lr=cfg["lr"], batch_size=cfg["batch"]))
    curves = {}
    for run_ in runs:
        curves[run_.label] = [evaluate_on(run_.model, shifted_right(data.test.x, s), data.test.y, data) for s in SHIFTS]
        ctx.say(f"{run_.label}: accuracy at shifts {list(SHIFTS)}: " + ", ".join(pct(a, 1) for a in curves[run_.label]))
    params = {run_.label: count(run_.model)[0] for run_ in runs}

    report = Report(ctx, TITLE, "A convolution applies the same filter at every position and max pooling keeps the "
                    "largest response in each window, so a CNN's features move with the input; an MLP has a separate "
                    "weight for every pixel. What happens to each when the test digits are moved a few pixels "
                    "to the right, a shift neither saw in training?")
    report.setup(data, [
        ("Models", "LeNet-5 and two-layer MLPs flatten, Linear(784, H), ReLU, Linear(H, 10) with H = " +
                   " and ".join(str(h) for h in cfg["widths"]) + "; parameters: " +
                   ", ".join(f"{label} {p:,}" for label, p in params.items())),
        ("Training", f"the recipe and seed of cnn-vs-mlp (so LeNet-5, and an MLP whose width is also in that "
                     f"experiment's grid, are the very models it trained): Adam, one-cycle learning rate "
                     f"peaking at {cfg['lr']:g}, batch {cfg['batch']}, no augmentation (no shifted images in "
                     f"training); LeNet-5 {cfg['lenet_epochs']} epochs, MLPs {cfg['mlp_epochs']} epochs"),
        ("Test", f"the {len(data.test):,} test images moved right by {', '.join(map(str, SHIFTS))} pixels, the "
                 f"columns that enter on the left filled with 0 (black background); normalised like the training set"),
    ])
    report.results.update(config=dict(cfg), shifts=list(SHIFTS), accuracy=curves, parameters=params)

    report.section("Accuracy versus shift")
    labels = list(curves)
    rows = [[f"{s} px"] + [pct(curves[label][i]) for label in labels] for i, s in enumerate(SHIFTS)]
    rows.append(["drop at 4 px"] + [pp(curves[label][0] - curves[label][-1]) for label in labels])
    report.table(["shift right"] + [f"{label} ({params[label]:,} params)" for label in labels], rows)

    fig, ax = report.new_figure(width=7.2, height=4.5)
    styles = ["o-", "s--", "^:"]
    for label, style in zip(labels, styles):
        ax.plot(SHIFTS, np.asarray(curves[label]) * 100, style, linewidth=2, markersize=7,
                label=f"{label} ({params[label]:,} parameters)")
    ax.axhline(10, color="grey", linestyle=":", linewidth=1, label="chance (10 classes)")
    ax.set_xticks(SHIFTS)
    ax.set_xlabel("shift to the right (pixels, zero fill)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    ax.set_title("Accuracy on test images shifted right (trained without shifts)")
    report.figure(fig, "accuracy_vs_shift.png", "Test accuracy against the shift, one curve per model.")

    _examples_figure(report, data, runs)
    report.conclusion(_conclusion(curves, runs[0].label, labels[1:]))
    report.results["seconds_training"] = clock.seconds
    return report


def _pick_example(data, runs):
    """The first test image every model classifies correctly unshifted and at least one gets wrong at some
    shift (else the first test image) -> (index, {label: [predicted class per shift]})."""
    mean, std = data.mean_std
    x, y = data.test.x[:200], data.test.y[:200]
    guesses = {run_.label: np.stack([predict_proba(run_.model, (shifted_right(x, s) - mean) / std).argmax(axis=1)
                                     for s in SHIFTS], axis=1) for run_ in runs}
    right_unshifted = np.all([g[:, 0] == y for g in guesses.values()], axis=0)
    some_wrong = np.any([np.any(g != y[:, None], axis=1) for g in guesses.values()], axis=0)
    candidates = np.flatnonzero(right_unshifted & some_wrong)
    index = int(candidates[0]) if len(candidates) else 0
    return index, {label: g[index].tolist() for label, g in guesses.items()}


def _examples_figure(report, data, runs):
    """One test image at each shift, with each model's prediction underneath."""
    index, guesses = _pick_example(data, runs)
    image, label = data.test.x[index:index + 1], int(data.test.y[index])
    classes = data.test.classes
    fig, axes = report.new_figure(ncols=len(SHIFTS), width=2.3 * len(SHIFTS), height=3.6)
    for i, (ax, s) in enumerate(zip(axes, SHIFTS)):
        ax.imshow(shifted_right(image, s)[0, 0], cmap="gray", vmin=0, vmax=1)
        ax.axvline(image.shape[-1] / 2 - 0.5, color="tab:red", linestyle="--", linewidth=1,
                   label="centre of the frame")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"shift {s} px", fontsize=10)
        lines = [f"{run_label}: {classes[g[i]]} {'(right)' if g[i] == label else '(WRONG)'}"
                 for run_label, g in guesses.items()]
        ax.set_xlabel("\n".join(lines), fontsize=8)
    axes[0].legend(loc="upper left", fontsize=7)
    fig.suptitle(f"Test image {index} (class {classes[label]}) moved right, and what each model predicts")
    report.results["example"] = {"index": index, "label": label, "predictions": guesses}
    report.figure(fig, "shift_examples.png", f"Test image {index} at each shift with each model's prediction. It is "
                  f"the first test image that every model gets right unshifted and at least one model gets wrong at "
                  f"some shift.")


def _conclusion(curves, cnn, mlps):
    c = curves[cnn]
    sentences = []

    def kept(curve):
        """How many pixels of shift before accuracy falls below 90% of its unshifted value."""
        pixels = 0
        for s, value in zip(SHIFTS[1:], curve[1:]):
            if value < 0.9 * curve[0]:
                break
            pixels = s
        return pixels

    sentences.append(f"{cnn} went from {pct(c[0])} unshifted to {pct(c[2])} at 2 px and {pct(c[4])} at 4 px "
                     f"(a drop of {pp(c[0] - c[4])}); it kept at least 90% of its unshifted accuracy up to "
                     f"{kept(c)} px.")
    for label in mlps:
        m = curves[label]
        per_pixel = (m[0] - m[4]) / 4
        sentences.append(f"{label} went from {pct(m[0])} to {pct(m[2])} at 2 px and {pct(m[4])} at 4 px (a drop of "
                         f"{pp(m[0] - m[4])}, {pp(per_pixel, 1)} per pixel on average), keeping 90% up to "
                         f"{kept(m)} px.")
    at4 = {label: curves[label][4] for label in mlps}
    ahead = [label for label in mlps if c[4] > at4[label]]
    if len(ahead) == len(mlps):
        margin = min(c[4] - at4[label] for label in mlps)
        sentences.append(f"At 4 px {cnn} is ahead of every MLP by at least {pp(margin)}: it degrades more gracefully, "
                         f"because its convolutions respond to a stroke wherever it is and max pooling absorbs small "
                         f"moves, while each MLP weight is tied to one pixel position.")
    elif ahead:
        sentences.append(f"At 4 px {cnn} is ahead of {', '.join(ahead)} but not of "
                         f"{', '.join(label for label in mlps if label not in ahead)}.")
    else:
        sentences.append(f"At 4 px {cnn} is NOT ahead of the MLPs in this run.")
    if c[4] < 0.9 * c[0]:
        sentences.append(f"But the CNN is not shift invariant either: it still lost {pp(c[0] - c[4])} at 4 px, as its "
                         f"two 2x2 poolings tolerate only small moves and its fully connected layers see positions "
                         f"(training with random shifts, `convnp train --augment`, is the usual remedy).")
    return " ".join(sentences)
