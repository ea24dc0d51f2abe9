"""stride-vs-pool: LeNet-5 with max pooling versus the same network with stride-2 convolutions.

Removing each 2x2 max pool and giving the convolution before it stride 2 produces feature maps of the
pooled sizes (12x12 and 4x4 instead of 24x24 -> 12x12 and 8x8 -> 4x4), so every layer keeps its
parameters while each convolution is evaluated at a quarter of the positions.
"""
from .common import Stopwatch, count, difference_noise, lenet5, lenet5_strided, load_data, train_model
from .pairs import accuracy_phrase, cost_figure, cost_table, model_results, step_times
from .report import Report

NAME = "stride-vs-pool"
TITLE = "Max pooling versus stride-2 convolutions in LeNet-5"
SUMMARY = "LeNet-5 with max pooling vs stride-2 convolutions: parameters, FLOPs, accuracy, speed"

CONFIGS = {
    "full": dict(dataset="mnist", n_train=None, n_test=None, batch=128, lr=4e-3, epochs=5, timing_steps=50),
    "quick": dict(dataset="mnist", n_train=10_000, n_test=5_000, batch=128, lr=4e-3, epochs=3, timing_steps=20),
    "offline": dict(dataset="mnist", batch=32, lr=4e-3, epochs=10, timing_steps=10),
}


def run(ctx):
    cfg = ctx.pick(CONFIGS)
    data = load_data(ctx, cfg["dataset"], cfg.get("n_train"), cfg.get("n_test"))
    clock = Stopwatch()
    recipe = dict(epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch"])
    pool = train_model(ctx, "LeNet-5 (max pool)", lenet5, data, **recipe)
    stride = train_model(ctx, "LeNet-5 (stride 2)", lenet5_strided, data, **recipe)
    runs = [pool, stride]
    counts = {run_.label: count(run_.model) for run_ in runs}
    steps = step_times(ctx, {pool.label: lenet5, stride.label: lenet5_strided}, data, cfg["batch"],
                       cfg["timing_steps"])

    report = Report(ctx, TITLE, "LeNet-5 shrinks its feature maps with 2x2 max pooling after each convolution. A "
                    "stride-2 convolution shrinks them too, computing only every second position instead of "
                    "computing all of them and keeping the largest of each 2x2 window. What does each choice "
                    "cost, and what does it buy?")
    report.setup(data, [
        ("Models", "LeNet-5: conv 1->6 k5 (24x24), max-pool 2 (12x12), conv 6->16 k5 (8x8), max-pool 2 (4x4), "
                   "256-120-84-10. Strided: conv 1->6 k5 stride 2 (12x12), conv 6->16 k5 stride 2 (4x4), the same "
                   "256-120-84-10 classifier. ReLU after every layer but the last"),
        ("Training", f"the same for both: Adam, one-cycle learning rate peaking at {cfg['lr']:g}, "
                     f"batch {cfg['batch']}, "
                     f"{cfg['epochs']} epochs, no augmentation"),
        ("Measured", "parameters, MACs and FLOPs (= 2 MACs) from `convnp.inspect.summary`, which counts the "
                     "multiply-adds of layers with weights (the comparisons of max pooling and the ReLUs are not "
                     "counted, but they do take time); test accuracy of the final model; training step = median "
                     f"time of one step (forward, backward, Adam update) on a batch of {cfg['batch']}, the two models "
                     f"timed in turn for {cfg['timing_steps']} steps each so that changes in the machine's load hit "
                     f"both alike; epoch time = median seconds of a training pass during training"),
    ])
    report.results.update(config=dict(cfg), models=model_results(runs, counts, steps))

    report.section("Results")
    cost_table(report, runs, counts, steps)
    report.section("Where the FLOPs go", "Multiply-adds per image of each convolution (from the summary):")
    conv_rows = []
    for run_ in runs:
        for row in counts[run_.label][3].leaf_rows():
            if row.type == "Conv2d":
                conv_rows.append([run_.label, row.name, "x".join(map(str, row.output_shape[1:])),
                                  f"{row.own_params:,}", f"{row.macs:,}"])
    report.table(["model", "layer", "output (C x H x W)", "parameters", "MACs"], conv_rows, align="llrrr")
    cost_figure(report, runs, counts, steps, "stride_vs_pool.png", "LeNet-5: max pooling versus stride-2 convolutions")
    report.conclusion(_conclusion(pool, stride, counts, steps, len(data.test)))
    report.results["seconds_training"] = clock.seconds
    return report


def _conclusion(pool, stride, counts, steps, test_images):
    p_params, _, p_flops = counts[pool.label][:3]
    s_params, _, s_flops = counts[stride.label][:3]

    def conv_macs(label):
        return sum(row.macs for row in counts[label][3].leaf_rows() if row.type == "Conv2d")

    sentences = []
    if p_params == s_params:
        sentences.append(f"Both networks have {p_params:,} parameters (pooling has none, and the feature maps come "
                         f"out at the same sizes).")
    else:
        sentences.append(f"The pooled network has {p_params:,} parameters, the strided one {s_params:,}.")
    sentences.append(f"The stride-2 version needs {s_flops:,} FLOPs per image against {p_flops:,}, "
                     f"{p_flops / s_flops:.1f} times fewer: its convolutions do "
                     f"{conv_macs(pool.label) / conv_macs(stride.label):.1f} times fewer multiply-adds (they are "
                     f"evaluated at a quarter of the positions), while the fully connected layers are unchanged.")
    speed = steps[pool.label] / steps[stride.label]
    if speed > 1.05:
        sentences.append(f"A training step took {steps[stride.label] * 1000:.1f} ms instead of "
                         f"{steps[pool.label] * 1000:.1f} ms, {speed:.1f} times faster" +
                         (": more than the FLOP ratio, since the pools themselves (not counted in FLOPs) and the "
                          "larger feature maps of the pooled network cost time too." if speed > 1.1 * p_flops / s_flops
                          else ": close to the FLOP ratio." if speed >= 0.8 * p_flops / s_flops else
                          ", less than the FLOP ratio (the fully connected layers, the optimizer step and the "
                          "per-batch overheads did not shrink)."))
    else:
        sentences.append(f"A training step took {steps[stride.label] * 1000:.1f} ms against "
                         f"{steps[pool.label] * 1000:.1f} ms: no real speed-up on this machine despite the FLOP ratio.")
    sentences.append(accuracy_phrase(pool, stride, "With max pooling LeNet-5", "the strided version",
                                     test_images) + ".")
    diff = stride.accuracy - pool.accuracy
    if abs(diff) >= difference_noise(pool.accuracy, stride.accuracy, test_images):
        if diff < 0:
            sentences.append("The pools cost compute but keep the strongest response of every 2x2 window, a little "
                             "tolerance to small shifts that the strided network, which simply skips positions, lacks.")
        else:
            sentences.append("Here the cheaper strided network was also the more accurate one.")
    else:
        sentences.append("For a fraction of the FLOPs, the strided network gave up no measurable accuracy in this run.")
    return " ".join(sentences)
