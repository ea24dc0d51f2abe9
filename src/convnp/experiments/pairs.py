"""Two architectures trained with one recipe and compared on cost and accuracy (stride-vs-pool,
depthwise-separable): the shared timing benchmark, table and figure.

Timing on a shared machine: the models are trained one after the other, so a change in the machine's
load between the two runs would bias their epoch times.  ``step_times`` therefore also times single
training steps of the models in turn (A, B, A, B, ...) on the same batch and keeps each one's median:
any slow stretch hits both alike.  The conclusions use those interleaved step times.
"""
import time

import numpy as np

from .. import functional as F, optim
from ..backend import manual_seed
from ..tensor import Tensor
from .common import difference_noise
from .report import pct, thousands


def step_times(ctx, builders, data, batch_size, repeats, warmup=3):
    """Median seconds of one training step (forward, loss, backward, Adam step) of each model, timed in
    turn on the same batch of ``batch_size`` normalised training images -> {label: seconds}."""
    x = data.normalizer()(data.train.x[:batch_size])
    y = data.train.y[:batch_size]
    models = {}
    for label, build in builders.items():
        manual_seed(ctx.seed)
        model = build()
        models[label] = (model, optim.Adam(model.parameters(), lr=1e-3))
    times = {label: [] for label in builders}
    for i in range(warmup + repeats):
        for label, (model, opt) in models.items():
            start = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(Tensor(x)), y).backward()
            opt.step()
            if i >= warmup:
                times[label].append(time.perf_counter() - start)
    return {label: float(np.median(values)) for label, values in times.items()}


def model_results(runs, counts, steps):
    """{label: the raw numbers of one model} for results.json: parameters, MACs, FLOPs, accuracy, times."""
    return {run.label: dict(parameters=counts[run.label][0], macs=counts[run.label][1], flops=counts[run.label][2],
                            accuracy=run.accuracy, step_seconds=steps[run.label], epoch_seconds=run.epoch_seconds,
                            val_accuracy=run.history["val_accuracy"], diverged=run.diverged)
            for run in runs}


def cost_table(report, runs, counts, steps):
    """One row per model: parameters, MACs, FLOPs, test accuracy, interleaved step time, epoch time."""
    base = runs[0]
    rows = []
    for run_ in runs:
        params, macs, flops = counts[run_.label][:3]
        rows.append([run_.label, thousands(params), thousands(macs), thousands(flops),
                     f"{flops / counts[base.label][2]:.2f}x", pct(run_.accuracy), f"{steps[run_.label] * 1000:.1f}",
                     f"{steps[run_.label] / steps[base.label]:.2f}x", f"{run_.epoch_seconds:.2f}"])
    report.table(["model", "parameters", "MACs / image", "FLOPs / image", "FLOPs vs first", "test accuracy",
                  "training step (ms, interleaved)", "step time vs first", "epoch time in training (s, median)"],
                 rows)


def cost_figure(report, runs, counts, steps, filename, title):
    """Left: test accuracy per epoch.  Right: parameters, FLOPs and step time relative to the first model."""
    fig, (ax, bx) = report.new_figure(ncols=2, width=11.5, height=4.4)
    styles = ["o-", "s--", "^:"]
    for run_, style in zip(runs, styles):
        values = np.asarray(run_.history["val_accuracy"]) * 100
        ax.plot(np.arange(1, len(values) + 1), values, style, linewidth=2, label=run_.label)
    epochs = len(runs[0].history["val_accuracy"])
    ax.set_xticks(np.arange(1, epochs + 1) if epochs <= 15 else np.linspace(1, epochs, 8).round())
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy after each epoch")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")

    base = runs[0]
    metrics = [("parameters", lambda r: counts[r.label][0]), ("FLOPs / image", lambda r: counts[r.label][2]),
               ("training step time", lambda r: steps[r.label])]
    width = 0.8 / len(runs)
    x = np.arange(len(metrics))
    for i, run_ in enumerate(runs):
        values = [get(run_) / get(base) for _, get in metrics]
        bars = bx.bar(x + (i - (len(runs) - 1) / 2) * width, values, width, label=run_.label)
        for bar, value in zip(bars, values):
            bx.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, value), textcoords="offset points",
                        xytext=(0, 2), ha="center", fontsize=8)
    bx.set_xticks(x)
    bx.set_xticklabels([name for name, _ in metrics])
    bx.set_ylabel(f"relative to {base.label}")
    bx.set_title("Cost relative to the first model")
    bx.set_ylim(0, max(1.0, max(get(r) / get(base) for r in runs for _, get in metrics)) * 1.32)
    bx.grid(axis="y", alpha=0.3)
    bx.legend(loc="upper center", ncol=len(runs), fontsize=8)
    fig.suptitle(title)
    report.figure(fig, filename, "Left: test accuracy after each epoch. Right: parameters, FLOPs per image "
                  "(from convnp.inspect.summary) and the median time of a training step (timed in turn), relative "
                  "to the first model.")


def accuracy_phrase(a, b, name_a, name_b, test_images):
    """'X reached p% and Y q%, d pp higher/lower (k of n test images), within/beyond the noise of one run'."""
    diff = b.accuracy - a.accuracy
    images = round(abs(diff) * test_images)
    noise = difference_noise(a.accuracy, b.accuracy, test_images)
    if images == 0:
        return f"{name_a} and {name_b} reached the same test accuracy, {pct(a.accuracy)}"
    direction = "higher" if diff > 0 else "lower"
    verdict = ("within the noise of a single run (two standard errors: {:.2f} pp), so no real difference is shown"
               if abs(diff) < noise else "more than two standard errors ({:.2f} pp) of a single run")
    return (f"{name_a} reached {pct(a.accuracy)} and {name_b} {pct(b.accuracy)}, {abs(diff) * 100:.2f} pp {direction} "
            f"({images} of {test_images:,} test images), " + verdict.format(noise * 100))
