"""cnn-vs-mlp: how wide must a two-layer MLP be to match LeNet-5?

LeNet-5 is trained first; its final test accuracy is the target.  Then the two-layer MLP (flatten,
Linear(784, H), ReLU, Linear(H, 10)) is trained with the same recipe for every H of a grid, and the
smallest H whose final test accuracy reaches the target is reported (or that none does).
"""
from .common import Stopwatch, count, layer_params, lenet5, load_data, mlp, seconds_text, train_model
from .report import Report, pct, pp, thousands

NAME = "cnn-vs-mlp"
TITLE = "LeNet-5 versus a two-layer MLP"
SUMMARY = "LeNet-5 vs the smallest two-layer MLP (784-H-10) that matches its accuracy: parameters, time"

CONFIGS = {
    # LeNet-5: Adam with a one-cycle schedule peaking at 4e-3, batch 128 (like convnp train's MNIST recipe,
    # which peaks at 8e-3, but without its random shifts, so that neither model is taught translations).
    "full": dict(dataset="mnist", n_train=None, n_test=None, batch=128, lr=4e-3, lenet_epochs=5, mlp_epochs=10,
                 widths=(64, 128, 256, 512, 1024, 2048, 4096), target=0.99),
    "quick": dict(dataset="mnist", n_train=20_000, n_test=5_000, batch=128, lr=4e-3, lenet_epochs=3, mlp_epochs=4,
                  widths=(32, 64, 128, 256, 512, 1024, 2048), target=None),
    "offline": dict(dataset="mnist", jitter=3, copies=2, batch=32, lr=4e-3, lenet_epochs=10, mlp_epochs=15,
                    widths=(32, 64, 128, 256, 512, 1024), target=None),
}


def run(ctx):
    cfg = ctx.pick(CONFIGS)
    offline = CONFIGS["offline"]
    data = load_data(ctx, cfg["dataset"], cfg.get("n_train"), cfg.get("n_test"), jitter=offline["jitter"],
                     copies=offline["copies"])
    clock = Stopwatch()
    recipe = dict(epochs=cfg["lenet_epochs"], lr=cfg["lr"], batch_size=cfg["batch"])

    lenet = train_model(ctx, "LeNet-5", lenet5, data, validate=False, **recipe)
    lenet_params, _, lenet_flops, _ = count(lenet.model)
    target = lenet.accuracy
    rows = []
    for hidden in cfg["widths"]:
        run_ = train_model(ctx, f"MLP H={hidden}", lambda h=hidden: mlp(h), data, validate=False,
                           epochs=cfg["mlp_epochs"], lr=cfg["lr"], batch_size=cfg["batch"])
        params, _, flops, _ = count(run_.model)
        rows.append(dict(hidden=hidden, parameters=params, flops=flops, accuracy=run_.accuracy,
                         train_seconds=run_.train_seconds, epoch_seconds=run_.epoch_seconds,
                         reaches=bool(run_.accuracy >= target), diverged=run_.diverged))
    matched = next((row for row in rows if row["reaches"]), None)
    best = max(rows, key=lambda row: row["accuracy"])

    report = Report(ctx, TITLE, "The classic case for convolution in one question: a two-layer MLP sees every pixel "
                    "with its own weight, LeNet-5 shares small filters across the image. How many hidden units "
                    "(and parameters) does the MLP need to classify digits as well as LeNet-5?")
    report.setup(data, [
        ("Models", "LeNet-5 (conv 6@5x5, max-pool, conv 16@5x5, max-pool, 256-120-84-10, ReLU) and the two-layer "
                   "MLP flatten, Linear(784, H), ReLU, Linear(H, 10) for H in " +
                   ", ".join(str(h) for h in cfg["widths"])),
        ("Training", f"the same recipe for every model: Adam, one-cycle learning rate peaking at {cfg['lr']:g}, "
                     f"batch {cfg['batch']}, inputs normalised with the training set's mean and std, no augmentation; "
                     f"LeNet-5 {cfg['lenet_epochs']} epochs, each MLP {cfg['mlp_epochs']} epochs (more, to give it "
                     f"every chance)"),
        ("Measured", "test accuracy of the final model (no early stopping); parameters and FLOPs from "
                     "`convnp.inspect.summary`; training time = the training passes only, on this run's threads"),
    ])
    report.results.update(config=dict(cfg), lenet=dict(parameters=lenet_params, flops=lenet_flops,
                                                       accuracy=lenet.accuracy, train_seconds=lenet.train_seconds,
                                                       epoch_seconds=lenet.epoch_seconds),
                          mlp=rows, target_accuracy=target,
                          matched_hidden=matched["hidden"] if matched else None,
                          best_mlp_hidden=best["hidden"], reached_99=bool(lenet.accuracy >= 0.99))

    # Table: every model.
    report.section("Results", f"Target: LeNet-5's test accuracy, **{pct(target)}**. An MLP *reaches* it when its "
                              f"final test accuracy is at least as high (on {len(data.test):,} test images one "
                              f"image is {100 / len(data.test):.3g} pp).")
    table = [["LeNet-5", "-", thousands(lenet_params), "1.0x", thousands(lenet_flops), pct(target),
              f"{lenet.train_seconds:.1f}", "(target)"]]
    for row in rows:
        table.append(["MLP", row["hidden"], thousands(row["parameters"]), f"{row['parameters'] / lenet_params:.1f}x",
                      thousands(row["flops"]), pct(row["accuracy"]), f"{row['train_seconds']:.1f}",
                      "yes" if row["reaches"] else f"no ({pp(row['accuracy'] - target)})"])
    report.table(["model", "H", "parameters", "vs LeNet-5", "FLOPs / image", "test accuracy", "training time (s)",
                  "reaches LeNet-5?"], table, align="llrrrrrl")

    # Side by side: where the parameters are.
    other = matched or best
    other_model = mlp(other["hidden"])
    left, right = layer_params(lenet.model), layer_params(other_model)
    height = max(len(left), len(right))
    side = []
    for i in range(height):
        a = left[i] if i < len(left) else ("", "", None)
        b = right[i] if i < len(right) else ("", "", None)
        side.append([f"{a[0]} ({a[1]})" if a[0] else "", thousands(a[2]) if a[2] is not None else "",
                     f"{b[0]} ({b[1]})" if b[0] else "", thousands(b[2]) if b[2] is not None else ""])
    side.append(["**total**", f"**{thousands(lenet_params)}**", "**total**", f"**{thousands(other['parameters'])}**"])
    which = "the smallest MLP that reaches LeNet-5" if matched else "the most accurate MLP of the grid"
    conv_params = sum(p for _, t, p in left if t == "Conv2d")
    share = conv_params / lenet_params
    report.section("Parameters side by side", f"LeNet-5 and {which} (H = {other['hidden']}), layer by layer. "
                   f"LeNet-5's two convolutions hold {thousands(conv_params)} parameters ({share:.0%} of its total)"
                   + (": most of its weights sit in the fully connected layers after them." if share < 0.5 else "."))
    report.table(["LeNet-5 layer", "parameters", f"MLP H={other['hidden']} layer", "parameters"], side,
                 align="lrlr")

    _figure(report, lenet_params, target, rows, matched)
    report.conclusion(_conclusion(ctx, cfg, lenet, lenet_params, lenet_flops, target, rows, matched, best))
    report.results["seconds_training"] = clock.seconds
    return report


def _figure(report, lenet_params, target, rows, matched):
    fig, (ax, bx) = report.new_figure(ncols=2, width=11.5, height=4.4)
    params = [row["parameters"] for row in rows]
    accs = [row["accuracy"] * 100 for row in rows]
    ax.plot(params, accs, "o-", color="tab:blue", label="two-layer MLP (784-H-10)")
    for row in rows:
        ax.annotate(f"H={row['hidden']}", (row["parameters"], row["accuracy"] * 100), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=7)
    ax.plot([lenet_params], [target * 100], "*", color="tab:red", markersize=14, label="LeNet-5")
    ax.axhline(target * 100, color="tab:red", linestyle="--", linewidth=1,
               label=f"LeNet-5's accuracy {target * 100:.2f}%")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against parameters")
    low = min(accs + [target * 100])
    ax.set_ylim(low - 0.15 * (100 - low) - 0.2, min(100.0, target * 100 + 0.6 * (100 - low) + 0.2))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)

    best = max(rows, key=lambda row: row["accuracy"])
    shown = [("LeNet-5", lenet_params, "tab:red")]
    if matched:
        shown.append((f"MLP H={matched['hidden']}\n(smallest that\nreaches LeNet-5)", matched["parameters"],
                      "tab:blue"))
    else:
        shown.append((f"MLP H={best['hidden']}\n(best MLP, still\n{(target - best['accuracy']) * 100:.2f} pp below)",
                      best["parameters"], "tab:blue"))
    bars = bx.bar([s[0] for s in shown], [s[1] for s in shown], color=[s[2] for s in shown])
    for bar, (_, value, _) in zip(bars, shown):
        bx.annotate(f"{value:,}", (bar.get_x() + bar.get_width() / 2, value), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=9)
    bx.set_ylabel("parameters")
    bx.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    bx.set_title("Parameter counts side by side")
    bx.set_ylim(0, max(s[1] for s in shown) * 1.15)
    bx.grid(axis="y", alpha=0.3)
    fig.suptitle("LeNet-5 versus two-layer MLPs of growing width H")
    report.figure(fig, "accuracy_vs_parameters.png", "Left: test accuracy of each MLP against its parameter count "
                  "(log scale), LeNet-5 as the star. Right: the parameter counts side by side.")


def _conclusion(ctx, cfg, lenet, lenet_params, lenet_flops, target, rows, matched, best):
    sentences = []
    if cfg.get("target") is not None:
        if lenet.accuracy >= cfg["target"]:
            sentences.append(f"LeNet-5 reached {pct(lenet.accuracy)} test accuracy, above the {pct(cfg['target'], 1)} "
                             f"asked for, with {lenet_params:,} parameters.")
        else:
            sentences.append(f"LeNet-5 reached {pct(lenet.accuracy)} test accuracy with this recipe: SHORT of the "
                             f"{pct(cfg['target'], 1)} asked for.")
    else:
        sentences.append(f"LeNet-5 reached {pct(lenet.accuracy)} test accuracy with {lenet_params:,} parameters.")
    widest = rows[-1]
    if matched:
        sentences.append(f"The smallest two-layer MLP that matches it has H = {matched['hidden']} hidden units and "
                         f"{matched['parameters']:,} parameters, {matched['parameters'] / lenet_params:.1f} times as "
                         f"many as LeNet-5 ({pct(matched['accuracy'])}).")
        smaller = [row for row in rows if row["parameters"] < matched["parameters"]]
        if smaller:
            sentences.append(f"Narrower MLPs fell short by {pp(target - smaller[-1]['accuracy'])} (H = "
                             f"{smaller[-1]['hidden']}) or more.")
    else:
        sentences.append(f"No MLP in the grid (H = {rows[0]['hidden']} to {widest['hidden']}, up to "
                         f"{widest['parameters']:,} parameters, {widest['parameters'] / lenet_params:.0f} times "
                         f"LeNet-5's) reached it: the best, H = {best['hidden']}, got {pct(best['accuracy'])}, "
                         f"{pp(target - best['accuracy'])} lower, with {best['parameters'] / lenet_params:.1f} times "
                         f"the parameters.")
    middle = rows[len(rows) // 2]
    gain = widest["accuracy"] - middle["accuracy"]
    if gain < 0.005:
        sentences.append(f"Widening the MLP from H = {middle['hidden']} to {widest['hidden']} "
                         f"({widest['parameters'] / middle['parameters']:.0f} times the parameters) took its accuracy "
                         f"from {pct(middle['accuracy'])} to {pct(widest['accuracy'])}: extra width buys little, as "
                         f"the MLP still has no notion that nearby pixels belong together or that a stroke means the "
                         f"same thing anywhere in the image.")
    else:
        sentences.append(f"Widening the MLP from H = {middle['hidden']} to {widest['hidden']} still gained "
                         f"{pp(gain)}, at {widest['parameters'] / middle['parameters']:.0f} times the parameters.")
    lenet_macs_per_weight = lenet_flops / 2 / lenet_params
    faster = [row for row in rows if row["train_seconds"] < lenet.train_seconds]
    bigger_faster = [row for row in faster if row["parameters"] > lenet_params]
    sentences.append(f"Parameters are not time: LeNet-5 does {lenet_macs_per_weight:.1f} multiply-adds per weight per "
                     f"image (each filter is applied at every position), an MLP one. LeNet-5 trained in "
                     f"{seconds_text(lenet.train_seconds)} ({seconds_text(lenet.epoch_seconds)} per epoch); "
                     f"{len(faster)} of the {len(rows)} MLPs took less time even with {cfg['mlp_epochs']} epochs "
                     f"to its {cfg['lenet_epochs']}" + (f", up to H = {bigger_faster[-1]['hidden']} with "
                                                 f"{bigger_faster[-1]['parameters'] / lenet_params:.0f} times its "
                                                 f"parameters." if bigger_faster else "."))
    return " ".join(sentences)
