"""Where a training step's time goes, op by op: forward and backward of every Function, the optimizer
step and the rest (tape bookkeeping, Python), for one of the benchmark networks.

    python benchmarks/profile_step.py vgg --batch 128 --steps 10
    python benchmarks/profile_step.py resnet --threads 1

Every op class's ``forward`` and ``backward`` is wrapped in a timer for the run; the table lists the
classes by total time, with calls per step.  The timers cost a few microseconds a call, so the
'other' row is an upper bound on the tape's own overhead.
"""
import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import convnp  # noqa: E402
from convnp import bench, functional as F  # noqa: E402
from convnp.function import Function  # noqa: E402


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def instrument(totals, counts):
    """Wrap forward/backward of every Function subclass; return a function that undoes it.  Times are
    exclusive: a call made inside another (the input gradient of a convolution is a convolution's
    forward) counts for itself only, so the rows add up to the step."""
    originals = []
    inner = [0.0]  # time spent in timed calls nested inside the current one

    for cls in set(all_subclasses(Function)):
        for method in ("forward", "backward"):
            if method not in cls.__dict__:
                continue
            original = cls.__dict__[method]

            def timed(self, *args, _original=original, _key=(cls.__name__, method), **kwargs):
                outer_inner, inner[0] = inner[0], 0.0
                start = time.perf_counter()
                try:
                    return _original(self, *args, **kwargs)
                finally:
                    elapsed = time.perf_counter() - start
                    totals[_key] += elapsed - inner[0]
                    counts[_key] += 1
                    inner[0] = outer_inner + elapsed

            originals.append((cls, method, original))
            setattr(cls, method, timed)

    def undo():
        for cls, method, original in originals:
            setattr(cls, method, original)
    return undo


def training_step(network, batch=None):
    """One of ``convnp bench``'s networks on a fixed random batch -> (step, model, optimizer, (x, y)):
    ``step()`` runs zero_grad, forward, cross-entropy, backward and the optimizer step.  Also used by
    ab_setting.py."""
    spec = bench.NETWORKS[network]
    batch = batch or spec.batch
    model, optimizer = spec.make("convnp")
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + spec.input_shape, dtype=np.float32)
    y = rng.integers(0, 10, batch)

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(convnp.Tensor(x)), y).backward()
        optimizer.step()

    return step, model, optimizer, (x, y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", choices=sorted(bench.NETWORKS))
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    convnp.set_num_threads(args.threads)
    convnp.keep_freed_memory_for_reuse()
    batch = args.batch or bench.NETWORKS[args.network].batch
    step, model, optimizer, (x, y) = training_step(args.network, batch)
    for _ in range(3):
        step()
    totals, counts = collections.defaultdict(float), collections.defaultdict(int)
    optimizer_time = 0.0
    undo = instrument(totals, counts)
    start = time.perf_counter()
    for _ in range(args.steps):
        optimizer.zero_grad()
        F.cross_entropy(model(convnp.Tensor(x)), y).backward()
        t = time.perf_counter()
        optimizer.step()
        optimizer_time += time.perf_counter() - t
    wall = time.perf_counter() - start
    undo()
    rows = sorted(totals.items(), key=lambda item: -item[1])
    print(f"{args.network}, batch {batch}, {args.threads} threads: {wall / args.steps * 1e3:.2f} ms a step")
    print(f"{'op':34} {'ms/step':>8} {'share':>6} {'calls/step':>10}")
    for (name, method), total in rows:
        print(f"{name + '.' + method:34} {total / args.steps * 1e3:8.3f} {total / wall:6.1%} "
              f"{counts[name, method] / args.steps:10.0f}")
    print(f"{'optimizer.step':34} {optimizer_time / args.steps * 1e3:8.3f} {optimizer_time / wall:6.1%}")
    other = wall - sum(totals.values()) - optimizer_time
    print(f"{'other (tape, Python, timers)':34} {other / args.steps * 1e3:8.3f} {other / wall:6.1%}")


if __name__ == "__main__":
    main()
