"""An in-process A/B of one module setting: a training step, or one 3x3 layer, with the setting at value A
and at value B, taking turns, so that the machine's drift falls on both alike (docs/performance.md).

    python benchmarks/ab_setting.py convnp.ops.winograd WIDE_CHANNELS 32 64 vgg
    python benchmarks/ab_setting.py convnp.ops.conv CHUNK_NUMBERS "1<<20" "1<<19" resnet --turns 12
    python benchmarks/ab_setting.py convnp.ops.winograd MIN_CHANNELS 32 33 32,32,32      # C,F,side layer

The values are Python expressions.  A network (one of ``convnp bench``'s) times whole training steps;
a layer ``C,F,side`` (batch 128, padding 1, stored batch innermost like a network's activations) times
its forward, forward + backward, and forward with only dW or only dx.  Each turn runs A then B or B
then A (alternating) for a few repetitions each; the line gives both medians and the median of the
per-turn ratios B / A with their range.  A setting that a cache keys on (``conv.conv_geometry``'s
tuning) takes effect at once; one read only at import time does not.
"""
import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import convnp  # noqa: E402
from convnp import bench  # noqa: E402
from profile_step import training_step  # noqa: E402  (this folder is on sys.path when run as a script)


def layer_passes(c, f, side, n=128):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((c, side, side, n), dtype=np.float32).transpose(3, 0, 1, 2)
    x = convnp.Tensor(data, requires_grad=True)
    x_constant = convnp.Tensor(data)
    dy = convnp.Tensor(rng.standard_normal((f, side, side, n), dtype=np.float32).transpose(3, 0, 1, 2))
    layer = convnp.nn.Conv2d(c, f, 3, padding=1)

    def forward():
        with convnp.no_grad():
            layer(x)

    def both():
        layer.zero_grad()
        x.grad = None
        layer(x).backward(dy)

    def filter_gradient():
        layer.zero_grad()
        layer(x_constant).backward(dy)

    def input_gradient():
        for parameter in layer.parameters():
            parameter.requires_grad = False
        x.grad = None
        try:
            layer(x).backward(dy)
        finally:
            for parameter in layer.parameters():
                parameter.requires_grad = True

    return {"fwd": forward, "fwd+bwd": both, "fwd+dW": filter_gradient, "fwd+dx": input_gradient}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module")
    parser.add_argument("setting")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("what", help="a network of convnp bench, or C,F,side for one 3x3 layer")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    convnp.set_num_threads(args.threads)
    convnp.keep_freed_memory_for_reuse()
    module = importlib.import_module(args.module)
    if not hasattr(module, args.setting):
        parser.error(f"{args.module} has no setting {args.setting!r}")
    values = [eval(args.a, vars(module)), eval(args.b, vars(module))]  # expressions, with the module's names
    if args.what in bench.NETWORKS:
        timed, repeats = {"step": training_step(args.what)[0]}, 3
    else:
        try:
            c, f, side = (int(part) for part in args.what.split(","))
        except ValueError:
            parser.error(f"expected a network ({', '.join(sorted(bench.NETWORKS))}) or C,F,side, got {args.what!r}")
        timed, repeats = layer_passes(c, f, side), 5
    original = getattr(module, args.setting)
    try:
        for function in timed.values():  # warm up both settings
            for value in values:
                setattr(module, args.setting, value)
                function()
                function()
        times = {(name, i): [] for name in timed for i in (0, 1)}
        for turn in range(args.turns):
            for name, function in timed.items():
                for i in ((0, 1) if turn % 2 == 0 else (1, 0)):
                    setattr(module, args.setting, values[i])
                    samples = []
                    for _ in range(repeats):
                        start = time.perf_counter()
                        function()
                        samples.append(time.perf_counter() - start)
                    times[name, i].append(np.median(samples) * 1e3)
    finally:
        setattr(module, args.setting, original)
    for name in timed:
        a, b = np.array(times[name, 0]), np.array(times[name, 1])
        ratios = b / a
        print(f"{args.what} {name}: {args.setting}={args.a} {np.median(a):.2f} ms, {args.b} {np.median(b):.2f} ms, "
              f"B/A {np.median(ratios):.3f} [{ratios.min():.3f}-{ratios.max():.3f}] over {args.turns} turns")


if __name__ == "__main__":
    main()
