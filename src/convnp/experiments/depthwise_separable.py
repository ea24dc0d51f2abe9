"""depthwise-separable: a small CNN with standard 3x3 convolutions versus the same network with each
3x3 convolution after the first split into a depthwise 3x3 (groups = channels) and a pointwise 1x1.

A standard k x k convolution from C_in to C_out channels has C_in C_out k^2 weights; the separable pair
has C_in k^2 + C_in C_out, a ratio of 1/C_out + 1/k^2 (MobileNet's trick).  Both apply their weights
once per output position, so the multiply-adds shrink by the same ratio.
"""
from .. import nn
from .common import Stopwatch, count, load_data, train_model
from .pairs import accuracy_phrase, cost_figure, cost_table, model_results, step_times
from .report import Report

NAME = "depthwise-separable"
TITLE = "Standard versus depthwise-separable convolutions"
SUMMARY = "a small CNN with standard 3x3 convs vs depthwise + pointwise (Fashion-MNIST): params, FLOPs, accuracy, speed"

WIDTHS = (16, 32, 64)
CONFIGS = {
    "full": dict(dataset="fashion-mnist", n_train=None, n_test=None, batch=128, lr=4e-3, epochs=5, timing_steps=40),
    "quick": dict(dataset="fashion-mnist", n_train=10_000, n_test=5_000, batch=128, lr=4e-3, epochs=3,
                  timing_steps=15),
    "offline": dict(dataset="fashion-mnist", batch=32, lr=4e-3, epochs=10, timing_steps=10),
}


def small_cnn(separable, widths=WIDTHS):
    """x: (N, 1, 28, 28) -> logits (N, 10)

    conv 1->w0 3x3 pad 1, ReLU, max-pool 2                 (N, w0, 14, 14)
    conv w0->w1 3x3 pad 1, ReLU, max-pool 2                (N, w1, 7, 7)
    conv w1->w2 3x3 pad 1, ReLU, max-pool 2                (N, w2, 3, 3)
    flatten, linear 9 w2 -> 10
    ``separable``: the second and third convolutions become depthwise 3x3 (groups = input channels),
    ReLU, pointwise 1x1.  The first stays standard (a depthwise filter of a 1-channel image would be
    a single 3x3 filter), as in MobileNet.
    """
    def block(c_in, c_out):
        if not separable:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
        return [nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1), nn.ReLU()]

    w0, w1, w2 = widths
    return nn.Sequential(
        nn.Conv2d(1, w0, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        *block(w0, w1), nn.MaxPool2d(2),
        *block(w1, w2), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(w2 * 3 * 3, 10))


def run(ctx):
    cfg = ctx.pick(CONFIGS)
    data = load_data(ctx, cfg["dataset"], cfg.get("n_train"), cfg.get("n_test"))
    clock = Stopwatch()
    recipe = dict(epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch"])
    standard = train_model(ctx, "standard 3x3", lambda: small_cnn(False), data, **recipe)
    separable = train_model(ctx, "depthwise-separable", lambda: small_cnn(True), data, **recipe)
    runs = [standard, separable]
    counts = {run_.label: count(run_.model) for run_ in runs}
    steps = step_times(ctx, {standard.label: lambda: small_cnn(False), separable.label: lambda: small_cnn(True)},
                       data, cfg["batch"], cfg["timing_steps"])

    w0, w1, w2 = WIDTHS
    report = Report(ctx, TITLE, "MobileNet's trick: replace a k x k convolution by a depthwise k x k convolution "
                    "(one filter per channel) followed by a pointwise 1x1 convolution (mixing the channels). "
                    "How many parameters and FLOPs does it save in a small CNN, what does it cost in accuracy, and "
                    "does it actually run faster here?")
    report.setup(data, [
        ("Models", f"standard: conv 1->{w0} 3x3, max-pool, conv {w0}->{w1} 3x3, max-pool, conv {w1}->{w2} 3x3, "
                   f"max-pool ({w2}x3x3), linear {9 * w2}->10 (ReLU after each conv, padding 1). Separable: the "
                   f"same, with "
                   f"conv {w0}->{w1} and conv {w1}->{w2} each replaced by depthwise 3x3 (groups = input channels), "
                   f"ReLU, pointwise 1x1"),
        ("Training", f"the same for both: Adam, one-cycle learning rate peaking at {cfg['lr']:g}, "
                     f"batch {cfg['batch']}, "
                     f"{cfg['epochs']} epochs, no augmentation"),
        ("Measured", "parameters, MACs and FLOPs (= 2 MACs) from `convnp.inspect.summary` (layers with weights; "
                     "pooling and ReLU not counted); test accuracy of the final model; training step = median time "
                     f"of one step (forward, backward, Adam update) on a batch of {cfg['batch']}, the two models timed "
                     f"in turn for {cfg['timing_steps']} steps each so that changes in the machine's load hit both "
                     f"alike; epoch time = median seconds of a training pass during training"),
    ])
    report.results.update(config=dict(cfg), widths=list(WIDTHS), models=model_results(runs, counts, steps))

    report.section("Results")
    cost_table(report, runs, counts, steps)
    report.section("Layer by layer", "Each convolution, with the parameters and multiply-adds per image the summary "
                   "counts for it; the ratio column is the separable pair over the standard layer it replaces, next "
                   "to the formula 1/C_out + 1/k^2 (which leaves out the biases).")
    report.table(["model", "layer", "kind", "output (C x H x W)", "parameters", "MACs"], _layer_rows(counts, runs),
                 align="lllrrr")
    report.table(["replaced convolution", "standard params", "separable params", "ratio", "1/C_out + 1/k^2"],
                 _pair_rows(counts, standard, separable), align="lrrrr")
    cost_figure(report, runs, counts, steps, "depthwise_separable.png",
                "Standard versus depthwise-separable convolutions")
    report.conclusion(_conclusion(standard, separable, counts, steps, len(data.test)))
    report.results["seconds_training"] = clock.seconds
    return report


def _conv_rows(summary):
    return [row for row in summary.leaf_rows() if row.type == "Conv2d"]


def _layer_rows(counts, runs):
    rows = []
    for run_ in runs:
        modules = dict(run_.model.named_modules())
        for row in _conv_rows(counts[run_.label][3]):
            conv = modules[row.name]
            kind = ("depthwise" if conv.groups > 1 else "pointwise 1x1" if conv.kernel_size == (1, 1)
                    else f"standard {conv.kernel_size[0]}x{conv.kernel_size[1]}")
            rows.append([run_.label, row.name, kind, "x".join(map(str, row.output_shape[1:])), f"{row.own_params:,}",
                         f"{row.macs:,}"])
    return rows


def _pair_rows(counts, standard, separable):
    std_convs = _conv_rows(counts[standard.label][3])[1:]
    sep_convs = _conv_rows(counts[separable.label][3])[1:]
    rows = []
    for i, std in enumerate(std_convs):
        dw, pw = sep_convs[2 * i], sep_convs[2 * i + 1]
        c_out = std.output_shape[1]
        pair = dw.own_params + pw.own_params
        rows.append([f"{std.name}: {WIDTHS[i]}->{c_out} 3x3", f"{std.own_params:,}", f"{pair:,}",
                     f"{pair / std.own_params:.3f}", f"{1 / c_out + 1 / 9:.3f}"])
    return rows


def _conclusion(standard, separable, counts, steps, test_images):
    p0, _, f0 = counts[standard.label][:3]
    p1, _, f1 = counts[separable.label][:3]
    sentences = [f"The depthwise-separable network has {p1:,} parameters against {p0:,} ({p0 / p1:.1f} times fewer) "
                 f"and needs {f1:,} FLOPs per image against {f0:,} ({f0 / f1:.1f} times fewer)."]
    sentences.append(accuracy_phrase(standard, separable, "The standard network", "the separable one",
                                     test_images) + ".")
    t0, t1 = steps[standard.label], steps[separable.label]
    speed = t0 / t1
    timing = f"A training step took {t1 * 1000:.1f} ms against {t0 * 1000:.1f} ms"
    if speed >= f0 / f1 * 0.8:
        sentences.append(f"{timing}, {speed:.1f} times faster: close to the FLOP ratio.")
    elif speed > 1.05:
        sentences.append(f"{timing}: only {speed:.1f} times faster for {f0 / f1:.1f} times fewer FLOPs. A depthwise "
                         f"convolution does little arithmetic per byte it moves (one 3x3 filter per channel) and the "
                         f"extra layers bring their own copies, ReLUs and gradient passes, so at this size memory "
                         f"traffic and per-layer overheads weigh more than multiply-adds.")
    else:
        sentences.append(f"{timing}: no faster despite {f0 / f1:.1f} times fewer FLOPs; at this size memory traffic "
                         f"and per-layer overheads, not multiply-adds, set the time of the thin depthwise and 1x1 "
                         f"layers.")
    return " ".join(sentences)
