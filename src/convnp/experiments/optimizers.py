"""optimizers: plain SGD, SGD with momentum 0.9 and Adam training LeNet-5, each at its own tuned
learning rate.

The budget is a fixed number of epochs.  Tuning: every optimizer tries the same grid of constant
learning rates for that many epochs on the training set minus a held-out part, and keeps the rate with
the best accuracy on the held-out part (never the test set).  Then each trains LeNet-5 on the whole
training set at its rate for the same number of epochs, following the training loss and the test
accuracy along the way.
"""
import math

import numpy as np

from ..data import ArrayDataset
from .common import Data, Stopwatch, TestAccuracyEvery, lenet5, load_data, smooth, train_model
from .report import Report, pct, pp

NAME = "optimizers"
TITLE = "SGD, SGD with momentum and Adam on LeNet-5"
SUMMARY = "SGD, SGD + momentum and Adam on LeNet-5, each at a tuned learning rate: curves, final accuracy"

OPTIMIZERS = {"sgd": "SGD", "momentum": "SGD + momentum 0.9", "adam": "Adam"}
GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
CURVE_POINTS = 16             # test-accuracy evaluations along each final run
CONFIGS = {
    "full": dict(dataset="mnist", n_train=None, n_test=None, batch=128, epochs=2, tune_val=10_000),
    "quick": dict(dataset="mnist", n_train=10_000, n_test=5_000, batch=128, epochs=2, tune_val=2_000),
    "offline": dict(dataset="mnist", batch=32, epochs=4, tune_val=288),
}


def tuning_split(data, n_val, seed):
    """data.train split in two at random (seeded): (the rest for tuning, n_val held out) as a Data."""
    order = np.random.default_rng([seed, 31]).permutation(len(data.train))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    x, y, classes = data.train.x, data.train.y, data.train.classes
    return Data(f"{data.name}-tuning", ArrayDataset(x[train_idx], y[train_idx], classes, name="tuning-train"),
                ArrayDataset(x[val_idx], y[val_idx], classes, name="tuning-validation"),
                f"{len(train_idx):,} training images for tuning, {len(val_idx):,} held out", data.substitute)


def run(ctx):
    cfg = ctx.pick(CONFIGS)
    data = load_data(ctx, cfg["dataset"], cfg.get("n_train"), cfg.get("n_test"))
    clock = Stopwatch()
    tune = tuning_split(data, cfg["tune_val"], ctx.seed)
    sweep, chosen = {}, {}
    for key, name in OPTIMIZERS.items():
        sweep[key] = []
        for lr in GRID:
            run_ = train_model(ctx, f"tuning {name} lr {lr:g}", lenet5, tune, epochs=cfg["epochs"], lr=lr,
                               batch_size=cfg["batch"], optimizer=key, schedule="constant", validate=False)
            sweep[key].append(0.0 if run_.diverged else run_.accuracy)
        chosen[key] = GRID[int(np.argmax(sweep[key]))]
        ctx.say(f"{name}: tuned learning rate {chosen[key]:g}")
    total_steps = cfg["epochs"] * math.ceil(len(data.train) / cfg["batch"])
    curves, runs = {}, {}
    for key in OPTIMIZERS:
        curves[key] = TestAccuracyEvery(data, total_steps // CURVE_POINTS)
        runs[key] = train_model(ctx, OPTIMIZERS[key], lenet5, data, epochs=cfg["epochs"], lr=chosen[key],
                                batch_size=cfg["batch"], optimizer=key, schedule="constant", callbacks=[curves[key]])
        steps_done = len(runs[key].step_losses)
        if not curves[key].points or curves[key].points[-1][0] != steps_done:
            curves[key].points.append((steps_done, runs[key].accuracy))   # the final model ends the curve

    report = Report(ctx, TITLE, "Plain SGD steps along the gradient of each mini-batch; momentum accumulates a running "
                    "sum of past gradients; Adam also divides each parameter's step by a running estimate of its "
                    "gradient's size. With each one's learning rate tuned, how fast and how far does each train "
                    "LeNet-5?")
    report.setup(data, [
        ("Model", "LeNet-5 (44,426 parameters), the same initial weights for every run (same seed)"),
        ("Tuning", f"each optimizer tries the constant learning rates {', '.join(f'{lr:g}' for lr in GRID)}; "
                   f"{cfg['epochs']} epoch(s) (the budget) on {len(tune.train):,} training images, scored on "
                   f"{len(tune.test):,} other training images held out (the test set is not used for tuning); the "
                   f"best held-out accuracy wins (a diverged run scores 0)"),
        ("Training", f"each optimizer at its tuned constant learning rate, batch {cfg['batch']}, "
                     f"{cfg['epochs']} epochs "
                     f"on the training set, no augmentation; SGD without momentum or weight decay, momentum 0.9, "
                     f"Adam betas (0.9, 0.999)"),
    ])

    report.section("Learning-rate tuning", "Held-out accuracy after each tuning run, for each learning rate "
                   "(the chosen one in bold):")
    rows = []
    for key, name in OPTIMIZERS.items():
        rows.append([name] + [f"**{pct(acc, 1)}**" if lr == chosen[key] else pct(acc, 1)
                              for lr, acc in zip(GRID, sweep[key])])
    report.table(["optimizer"] + [f"lr {lr:g}" for lr in GRID], rows)

    report.section("Training at the tuned learning rates", f"With a constant learning rate the test accuracy goes "
                   f"up and down from one evaluation to the next, so besides the final model's accuracy the table "
                   f"gives the mean (and range) of the test accuracies measured in the last quarter of each run "
                   f"(of {CURVE_POINTS} evaluations spread along each run, plus the final model).")
    table, results = [], {}
    for key, run_ in runs.items():
        tail = run_.step_losses[-max(1, len(run_.step_losses) // 10):]
        final_loss = float(np.mean(tail))
        val = run_.history["val_accuracy"]
        late = [acc for step, acc in curves[key].points if step > 0.75 * len(run_.step_losses)]
        results[key] = dict(name=OPTIMIZERS[key], lr=chosen[key], tuning_accuracy=dict(zip(map(str, GRID), sweep[key])),
                            test_accuracy=run_.accuracy, accuracy_after_epoch_1=val[0] if val else None,
                            late_accuracy_mean=float(np.mean(late)), late_accuracy_range=[min(late), max(late)],
                            late_evaluations=len(late), val_accuracy=val, test_accuracy_curve=curves[key].points,
                            final_train_loss=final_loss, train_seconds=run_.train_seconds,
                            diverged=run_.diverged, step_losses=[round(v, 5) for v in run_.step_losses])
        table.append([OPTIMIZERS[key], f"{chosen[key]:g}", pct(val[0]) if val else "n/a", pct(run_.accuracy),
                      f"{pct(np.mean(late))} ({pct(min(late))} to {pct(max(late))})", f"{final_loss:.4f}",
                      f"{run_.train_seconds:.1f}"])
    report.table(["optimizer", "tuned lr", "test accuracy after epoch 1", "final test accuracy",
                  "mean test accuracy, last quarter (range)", "final training loss (last 10% of steps)",
                  "training time (s)"], table)
    report.results.update(config=dict(cfg), grid=list(GRID), optimizers=results)
    _figures(report, runs, curves, sweep, chosen, cfg["batch"])
    report.conclusion(_conclusion(results, len(data.test)))
    report.results["seconds_training"] = clock.seconds
    return report


def _figures(report, runs, curves, sweep, chosen, batch):
    colors = {"sgd": "tab:gray", "momentum": "tab:orange", "adam": "tab:blue"}
    fig, (ax, bx, cx) = report.new_figure(ncols=3, width=15, height=4.4)
    for key, name in OPTIMIZERS.items():
        ax.plot(GRID, np.asarray(sweep[key]) * 100, "o-", color=colors[key], label=name)
        best = GRID.index(chosen[key])
        ax.plot([chosen[key]], [sweep[key][best] * 100], "o", markersize=13, markerfacecolor="none",
                markeredgecolor=colors[key], markeredgewidth=2)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("held-out accuracy after tuning run (%)")
    ax.set_title("Tuning (circled: chosen)")
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", ncol=3, fontsize=7.5)

    longest = max(len(run_.step_losses) for run_ in runs.values())
    window = max(5, longest // 60)
    for key, run_ in runs.items():
        losses = smooth(run_.step_losses, window)
        bx.plot(np.arange(1, len(losses) + 1), losses, color=colors[key], linewidth=1.6,
                label=f"{OPTIMIZERS[key]}, lr {chosen[key]:g}")
    bx.set_yscale("log")
    bx.set_xlabel(f"training step (batches of {batch})")
    bx.set_ylabel(f"training loss (running mean of {window} steps, log scale)")
    bx.set_title("Training loss")
    bx.grid(alpha=0.3, which="both")
    bx.legend(loc="upper right", fontsize=8)

    low = 100.0
    for key in runs:
        steps, values = zip(*curves[key].points) if curves[key].points else ((), ())
        values = np.asarray(values) * 100
        low = min([low, *values[len(values) // 4:]])
        cx.plot(steps, values, "o-", markersize=4, color=colors[key], label=OPTIMIZERS[key])
    cx.set_ylim(max(0.0, low - 0.2 * (100 - low) - 0.5), 100)
    cx.set_xlabel(f"training step (batches of {batch})")
    cx.set_ylabel("test accuracy (%)")
    cx.set_title("Test accuracy during training")
    cx.grid(alpha=0.3)
    cx.legend(loc="lower right", fontsize=8)
    fig.suptitle("LeNet-5 trained by SGD, SGD + momentum and Adam at tuned learning rates")
    report.figure(fig, "optimizers.png", "Left: the learning-rate tuning runs. Middle: training loss along the way "
                  f"(log scale). Right: test accuracy, measured {CURVE_POINTS} times along each run (the early, "
                  f"lowest points can fall below the axis).")


def _conclusion(results, test_images):
    names = {key: results[key]["name"] for key in results}
    ranked = sorted(results, key=lambda key: results[key]["late_accuracy_mean"], reverse=True)
    sentences = ["Mean test accuracy over the last quarter of training: " + ", ".join(
        f"{names[key]} {pct(results[key]['late_accuracy_mean'])} (lr {results[key]['lr']:g})" for key in ranked) +
        "; the final models scored " + ", ".join(f"{pct(results[key]['test_accuracy'])}" for key in ranked) + "."]
    sgd = results["sgd"]
    for key in ("momentum", "adam"):
        r = results[key]
        diff = r["late_accuracy_mean"] - sgd["late_accuracy_mean"]
        if r["late_accuracy_range"][0] > sgd["late_accuracy_range"][1]:
            verdict = "clearly above it: its lowest late evaluation beat plain SGD's highest"
        elif r["late_accuracy_range"][1] < sgd["late_accuracy_range"][0]:
            verdict = "clearly below it: its highest late evaluation was under plain SGD's lowest"
        else:
            verdict = "but the two ranges overlap, so the gap is within the run's own fluctuations"
        sentences.append(f"{names[key]} averaged {pp(abs(diff))} {'above' if diff >= 0 else 'below'} plain SGD, "
                         f"{verdict}.")
    early = {key: results[key]["accuracy_after_epoch_1"] for key in results}
    fastest = max(early, key=early.get)
    sentences.append(f"After one epoch {names[fastest]} was furthest along ({pct(early[fastest])}, plain SGD "
                     f"{pct(early['sgd'])}).")
    losses = {key: results[key]["final_train_loss"] for key in results}
    lowest = min(losses, key=losses.get)
    sentences.append(f"The lowest final training loss was {names[lowest]}'s ({losses[lowest]:.4f}, plain SGD "
                     f"{losses['sgd']:.4f}).")
    if ranked[0] == "sgd":
        sentences.append("Plain SGD, given a well-tuned rate, was not beaten within this budget.")
    return " ".join(sentences)
