"""Accuracy benchmarks: train each task with convnp's default recipe and compare with its target.

    python benchmarks/accuracy.py                         # every task (several minutes)
    python benchmarks/accuracy.py --only lines,geometric  # a subset
    python benchmarks/accuracy.py --list

Prints one row per task: task, model, epochs, test accuracy, target, pass/fail, seconds.  Each task runs
``convnp.recipes.run`` (the code behind ``convnp train``) with the dataset's default recipe, seed 0, and
reports the accuracy of the final model on the held-out test split.  These are measurements, not timed
tests: accuracy depends on the seed by about +-0.1 percentage point on MNIST.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import convnp  # noqa: E402
from convnp.recipes import default_recipe, run  # noqa: E402
from convnp.train import Callback, evaluate  # noqa: E402

# name -> (dataset, model, epochs, target accuracy, what the target is)
TASKS = {
    "mnist": ("mnist", "lenet5", 5, 0.990, "LeNet-5 on MNIST, >= 99.0% in 5 epochs"),
    "fashion-mnist": ("fashion-mnist", "lenet5", 10, 0.900, "LeNet-5 on Fashion-MNIST, >= 90% in 10 epochs"),
    "digits": ("digits", "simplecnn", None, 0.950, "SimpleCNN on scikit-learn digits at 28x28, > 95% held out"),
    "lines": ("lines", "tinycnn", None, 0.950, "TinyCNN on oriented lines, >= 95% validation"),
    "geometric": ("geometric", "simplecnn", None, 0.990, "SimpleCNN on geometric digits, >= 99%"),
}


def run_task(name, seed=0, verbose=False):
    dataset, model, epochs, target, _ = TASKS[name]
    # val_fraction 0: train on the whole training split and measure on the test split (the figures' setting)
    recipe = default_recipe(dataset, model=model, epochs=epochs, seed=seed, val_fraction=0.0)
    untrained = {}

    class Untrained(Callback):
        """Record the model's validation accuracy before the first update."""

        def on_train_begin(self, state):
            untrained["accuracy"] = evaluate(state.model, state.val_loader)["accuracy"]

    start = time.perf_counter()
    result = run(recipe, out=None, log=(lambda line: print(f"  [{name}] {line}", file=sys.stderr, flush=True))
                 if verbose else None, progress=False, callbacks=[Untrained()])
    seconds = time.perf_counter() - start
    accuracy = evaluate(result.model, result.val_loader)["accuracy"]
    return {"task": name, "model": recipe.model, "dataset": dataset, "epochs": recipe.epochs, "accuracy": accuracy,
            "untrained_accuracy": untrained.get("accuracy"), "target": target, "passed": accuracy >= target,
            "seconds": seconds, "recipe": recipe.describe()}


def format_table(rows):
    header = f"{'task':<14} {'model':<10} {'epochs':>6} {'accuracy':>9} {'target':>7} {'result':>6} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['task']:<14} {row['model']:<10} {row['epochs']:>6} {row['accuracy'] * 100:>8.2f}% "
                     f"{row['target'] * 100:>6.1f}% {'pass' if row['passed'] else 'FAIL':>6} {row['seconds']:>8.1f}")
    notes = [f"  {row['task']}: untrained accuracy {row['untrained_accuracy'] * 100:.2f}%"
             for row in rows if row["task"] == "lines" and row["untrained_accuracy"] is not None]
    recipes = [f"  {row['task']}: {row['recipe']}" for row in rows]
    return "\n".join(lines + ["", "recipes:"] + recipes + ([""] + notes if notes else []))


def main(argv=None):
    convnp.keep_freed_memory_for_reuse()  # this script owns its process, like the convnp command
    convnp.set_num_threads(convnp.parallel.available_threads())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated tasks to run (of {', '.join(TASKS)})")
    parser.add_argument("--skip", help="comma-separated tasks to leave out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the tasks and exit")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--verbose", action="store_true", help="print each epoch to stderr")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, _, _, _, what) in TASKS.items():
            print(f"{name:<14} {what}")
        return 0
    names = [n.strip() for n in args.only.split(",")] if args.only else list(TASKS)
    skipped = {n.strip() for n in args.skip.split(",")} if args.skip else set()
    unknown = [n for n in [*names, *skipped] if n not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    names = [n for n in names if n not in skipped]
    print(f"convnp accuracy benchmark (seed {args.seed}, data folder {os.environ.get('CONVNP_DATA', 'default')})",
          flush=True)
    rows = []
    for name in names:
        row = run_task(name, seed=args.seed, verbose=args.verbose)
        print(f"  {name}: {row['accuracy'] * 100:.2f}% in {row['seconds']:.0f} s", flush=True)
        rows.append(row)
    print()
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
