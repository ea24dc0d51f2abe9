"""batchnorm: a deeper plain CNN (6 convolutions) with and without batch normalisation, trained with
SGD + momentum at a normal and at a high learning rate.  Each run is classified from its losses:
diverged (the NaN guard stopped it), stalled (its training loss stayed near ln 10 = 2.30, the loss of a
uniform guess over 10 classes) or trained.
"""
import math

import numpy as np

from .. import nn
from .common import LN10, Stopwatch, count, load_data, smooth, train_model
from .report import Report, pct

NAME = "batchnorm"
TITLE = "Batch normalisation in a deeper plain CNN"
SUMMARY = "a 6-conv plain CNN with and without batch norm at a normal and a high learning rate: loss curves"

WIDTHS = (8, 8, 16, 16, 32, 32)
POOL_AFTER = (1, 3)           # max-pool 2 after the 2nd and 4th convolutions: 28 -> 14 -> 7
STALLED = 0.9 * LN10          # a final training loss above this is still (near) a uniform guess
CONFIGS = {
    "full": dict(dataset="mnist", n_train=None, n_test=None, batch=64, epochs=2, lrs=(0.02, 0.2)),
    "quick": dict(dataset="mnist", n_train=6_000, n_test=2_000, batch=64, epochs=2, lrs=(0.02, 0.2)),
    "offline": dict(dataset="mnist", batch=64, epochs=6, lrs=(0.02, 0.2)),
}


def deep_cnn(batch_norm, widths=WIDTHS):
    """x: (N, 1, 28, 28) -> logits (N, 10): six 3x3 convolutions (padding 1) of ``widths`` channels, each
    followed by [BatchNorm2d] and ReLU, max-pool 2 after the 2nd and 4th, then flatten and one linear
    layer (32 x 7 x 7 -> 10).  With batch norm the convolutions have no bias (the norm's shift replaces it)."""
    layers, channels = [], 1
    for i, width in enumerate(widths):
        layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU())
        if i in POOL_AFTER:
            layers.append(nn.MaxPool2d(2))
        channels = width
    side = 28 // 2 ** len(POOL_AFTER)
    layers += [nn.Flatten(), nn.Linear(channels * side * side, 10)]
    return nn.Sequential(*layers)


def outcome(run_):
    """'diverged', 'stalled' or 'trained', from the run's losses."""
    if run_.diverged or not run_.step_losses:
        return "diverged"
    tail = run_.step_losses[-max(1, len(run_.step_losses) // 10):]
    final = float(np.mean(tail))
    if not math.isfinite(final) or final > 10 * LN10:
        return "diverged"
    return "stalled" if final > STALLED else "trained"


def steps_to(losses, threshold=2.0, window=20):
    """The first step at which the running mean of the loss (over ``window`` steps) is below ``threshold``."""
    below = np.flatnonzero(smooth(losses, window) < threshold)
    return int(below[0]) + 1 if len(below) else None


def run(ctx):
    cfg = ctx.pick(CONFIGS)
    data = load_data(ctx, cfg["dataset"], cfg.get("n_train"), cfg.get("n_test"))
    clock = Stopwatch()
    normal, high = cfg["lrs"]
    runs = {}
    for lr in (normal, high):
        for bn in (False, True):
            label = f"{'with' if bn else 'without'} batch norm, lr {lr:g}"
            runs[(bn, lr)] = train_model(ctx, label, lambda b=bn: deep_cnn(b), data, epochs=cfg["epochs"], lr=lr,
                                         batch_size=cfg["batch"], optimizer="momentum", schedule="constant")
    params = {bn: count(deep_cnn(bn))[0] for bn in (False, True)}
    steps_per_epoch = math.ceil(len(data.train) / cfg["batch"])

    report = Report(ctx, TITLE, "A plain stack of six convolutions with PyTorch's default initialisation passes a "
                    "shrinking signal forward and a shrinking gradient back. Batch normalisation re-centres and "
                    "re-scales every channel of every batch. Does it make the deeper network trainable, and does it "
                    "tolerate a learning rate ten times higher?")
    report.setup(data, [
        ("Model", f"six 3x3 convolutions (padding 1) with {', '.join(map(str, WIDTHS))} channels, each followed by "
                  f"[BatchNorm2d] and ReLU, max-pool 2 after the 2nd and 4th, flatten, linear 1568->10; "
                  f"{params[False]:,} parameters without batch norm, {params[True]:,} with it (no conv biases, "
                  f"plus the norms' scales and shifts)"),
        ("Training", f"SGD with momentum 0.9, constant learning rate {normal:g} (normal) or {high:g} (high), batch "
                     f"{cfg['batch']}, {cfg['epochs']} epochs ({steps_per_epoch * cfg['epochs']:,} steps), no "
                     f"augmentation; the NaN guard stops a run whose loss becomes NaN or infinite"),
        ("Outcome", f"diverged = stopped by the NaN guard (or a final loss above {10 * LN10:.0f}); stalled = the mean "
                    f"training loss of the last 10% of steps is still above {STALLED:.2f} (0.9 ln 10; a uniform "
                    f"guess scores ln 10 = {LN10:.2f}); trained = otherwise"),
    ])

    table, results = [], {}
    for (bn, lr), run_ in runs.items():
        tail = run_.step_losses[-max(1, len(run_.step_losses) // 10):]
        final_loss = float(np.mean(tail)) if tail else float("nan")
        first = steps_to(run_.step_losses)
        result = outcome(run_)
        results[run_.label] = dict(batch_norm=bn, lr=lr, outcome=result, final_train_loss=final_loss,
                                   test_accuracy=run_.accuracy, steps_to_loss_2=first, diverged=run_.diverged,
                                   steps=len(run_.step_losses), val_accuracy=run_.history["val_accuracy"],
                                   epoch_seconds=run_.epoch_seconds,
                                   step_losses=[round(v, 5) for v in run_.step_losses])
        table.append(["yes" if bn else "no", f"{lr:g} ({'normal' if lr == normal else 'high'})", result,
                      f"{final_loss:.3f}", pct(run_.accuracy),
                      f"{first:,}" if first is not None else "never"])
    report.results.update(config=dict(cfg), parameters={"without": params[False], "with": params[True]}, runs=results)
    report.section("Results")
    report.table(["batch norm", "learning rate", "outcome", "final training loss (last 10% of steps)",
                  "test accuracy", "steps until loss < 2.0 (running mean of 20)"], table, align="llcrrr")
    _figure(report, runs, normal, high, steps_per_epoch)
    report.conclusion(_conclusion(runs, results, normal, high))
    report.results["seconds_training"] = clock.seconds
    return report


def _figure(report, runs, normal, high, steps_per_epoch):
    fig, axes = report.new_figure(ncols=3, width=15, height=4.4)
    colors = {False: "tab:orange", True: "tab:blue"}
    longest = max(len(r.step_losses) for r in runs.values())
    window = max(5, longest // 50)
    for ax, lr, name in ((axes[0], normal, "normal"), (axes[1], high, "high")):
        for bn in (False, True):
            run_ = runs[(bn, lr)]
            losses = smooth(run_.step_losses, window)
            steps = np.arange(1, len(losses) + 1)
            ax.plot(steps, np.minimum(losses, 4.0), color=colors[bn], linewidth=1.8,
                    label=f"{'with' if bn else 'without'} batch norm ({outcome(run_)})")
            if run_.diverged:
                ax.plot([len(losses)], [min(losses[-1] if len(losses) else 4.0, 4.0)], "x", color=colors[bn],
                        markersize=10)
        ax.axhline(LN10, color="grey", linestyle=":", linewidth=1, label="ln 10 (uniform guess)")
        for epoch in range(1, longest // steps_per_epoch):
            ax.axvline(epoch * steps_per_epoch, color="grey", linewidth=0.5, alpha=0.4)
        ax.set_ylim(0, 3.2)
        ax.set_xlim(0, longest)
        ax.set_xlabel(f"training step (batches; epochs {steps_per_epoch:,} steps apart)")
        ax.set_ylabel(f"training loss (running mean of {window} steps)")
        ax.set_title(f"{name.capitalize()} learning rate {lr:g}")
        ax.grid(alpha=0.3)
        ax.legend(loc="center right", fontsize=8)

    bx = axes[2]
    labels = [f"lr {normal:g}", f"lr {high:g}"]
    x = np.arange(2)
    for i, bn in enumerate((False, True)):
        values = [runs[(bn, lr)].accuracy * 100 for lr in (normal, high)]
        bars = bx.bar(x + (i - 0.5) * 0.38, values, 0.38, color=colors[bn],
                      label=f"{'with' if bn else 'without'} batch norm")
        for bar, value in zip(bars, values):
            bx.annotate(f"{value:.1f}%", (bar.get_x() + bar.get_width() / 2, value), textcoords="offset points",
                        xytext=(0, 2), ha="center", fontsize=8)
    bx.axhline(10, color="grey", linestyle=":", linewidth=1, label="chance")
    bx.set_xticks(x)
    bx.set_xticklabels(labels)
    bx.set_ylim(0, 130)
    bx.set_yticks(range(0, 101, 20))
    bx.set_ylabel("test accuracy after training (%)")
    bx.set_title("Final test accuracy")
    bx.grid(axis="y", alpha=0.3)
    bx.legend(loc="upper center", ncol=3, fontsize=7.5)
    fig.suptitle("Six-convolution plain CNN, SGD + momentum: with and without batch normalisation")
    report.figure(fig, "batchnorm.png", "Training loss (running mean) at the normal and the high learning rate, and "
                  "the final test accuracy of the four runs. A cross marks a run stopped by the NaN guard.")


def _conclusion(runs, results, normal, high):
    def describe(bn, lr):
        r = results[runs[(bn, lr)].label]
        what = {"diverged": "diverged", "stalled": "stalled near ln 10", "trained": "trained"}[r["outcome"]]
        start = (f", its loss first below 2.0 after {r['steps_to_loss_2']:,} steps"
                 if r["outcome"] == "trained" and r["steps_to_loss_2"] else "")
        return f"{what} ({pct(r['test_accuracy'])} test accuracy{start})"

    sentences = [f"At the normal learning rate {normal:g} the network without batch norm {describe(False, normal)}, "
                 f"with batch norm it {describe(True, normal)}.",
                 f"At the high learning rate {high:g} the network without batch norm {describe(False, high)}, with "
                 f"batch norm it {describe(True, high)}."]
    plain_normal, bn_normal = results[runs[(False, normal)].label], results[runs[(True, normal)].label]
    if plain_normal["outcome"] == "trained" and bn_normal["outcome"] == "trained":
        a, b = plain_normal["steps_to_loss_2"], bn_normal["steps_to_loss_2"]
        if a and b and a > 2 * b:
            sentences.append(f"Without batch norm the loss first sat on the ln 10 plateau: it needed {a / b:.0f} times "
                             f"as many steps to get below 2.0.")
    plain_high, bn_high = results[runs[(False, high)].label], results[runs[(True, high)].label]
    if bn_high["test_accuracy"] > plain_high["test_accuracy"]:
        sentences.append(f"Batch normalisation made the high learning rate usable "
                         f"({pct(bn_high['test_accuracy'])} against {pct(plain_high['test_accuracy'])}).")
    else:
        sentences.append("In this run batch normalisation did NOT help at the high learning rate.")
    return " ".join(sentences)
