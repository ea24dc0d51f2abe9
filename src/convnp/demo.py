"""The main job, ``make demo``: ``convnp train`` LeNet-5 on MNIST with the default recipe, then
``convnp evaluate`` the result.

When MNIST is neither in the data directory nor downloadable, it says so and trains on scikit-learn's
bundled 8x8 digits (upsampled to 28x28) with their default recipe instead.

    python -m convnp.demo [--out runs/demo]
"""
import argparse
import shlex
import sys
from pathlib import Path

from . import cli
from .data import fetch
from .data.datasets import MNIST_FILES


def mnist_problem():
    """None when MNIST's four files are in the data directory (downloading them if needed), else why not."""
    try:
        fetch("mnist", {**MNIST_FILES["train"], **MNIST_FILES["test"]})
    except OSError as error:  # FileNotFoundError: missing and not downloadable
        return str(error).splitlines()[0].rstrip(":")
    return None


def run(argv):
    print("$ convnp " + " ".join(shlex.quote(str(a)) for a in argv), flush=True)
    return cli.main([str(a) for a in argv])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convnp.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    args = parser.parse_args(argv)

    dataset = "mnist"
    problem = mnist_problem()
    if problem is not None:
        print(f"MNIST is not available ({problem}).\nFalling back to scikit-learn's bundled 8x8 digits, "
              f"upsampled to 28x28 (run 'convnp datasets' to see where MNIST should go).", flush=True)
        dataset = "digits"
    out = Path(args.out)
    status = run(["train", "--dataset", dataset, "--out", out, "--force"])  # the demo's own folder: rerun over it
    if status == 0:
        status = run(["evaluate", out / "last.npz"])
    if status == 0:
        print(next_steps(out, dataset), flush=True)
    return status


def next_steps(out, dataset):
    """The lines printed at the end of the demo: the data folder to export, and the commands to try next."""
    import os

    from .data import data_dir

    best = shlex.quote(str(out / "best.npz"))
    return "\n".join([
        "",
        "next: use the same data folder in your shell, then try the other commands on the trained model:",
        f"  export CONVNP_DATA={shlex.quote(str(os.environ.get('CONVNP_DATA') or data_dir()))}",
        f"  convnp evaluate {best}",
        f"  convnp predict {best} YOUR_PICTURE.png",
        f"  convnp viz {best} --out {shlex.quote(str(out / 'viz'))}" + (" --data digits" if dataset == "digits"
                                                                         else ""),
        f"  convnp explore {best}",
        "  convnp train --data YOUR_IMAGE_FOLDER --out runs/mine      (your own images: see the README)",
    ])


if __name__ == "__main__":
    sys.exit(main())
