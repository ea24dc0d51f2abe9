"""The experiments that make the case for convolution, each reproducible with one command:

    convnp experiment --list
    convnp experiment cnn-vs-mlp [--quick] [--out DIR] [--seed S] [--data-dir DIR] [--offline] [--threads N]

or from Python:

    from convnp.experiments import run_experiment
    report_path = run_experiment("shift-robustness", mode="quick", out="runs/experiments/shift-robustness")

Each writes ``report.md`` (setup, tables, figures, a conclusion computed from the measured numbers),
its PNG figures and ``results.json`` (the raw numbers) into its output folder.  Modes: 'full' (the
real datasets; the settings of the example reports in docs/experiments), 'quick' (subsets, about a
minute) and 'offline' (a small substitute built from scikit-learn's bundled digits, used by the tests
and whenever MNIST/Fashion-MNIST are not on disk for a quick run).
"""
import importlib
import json
from pathlib import Path

from .common import MODES, Context, ExperimentError, decide_mode, limited_threads

# name -> module (in the order of the argument they make, from the basic case to the training tricks)
EXPERIMENTS = {
    "cnn-vs-mlp": "cnn_vs_mlp",
    "shift-robustness": "shift_robustness",
    "stride-vs-pool": "stride_vs_pool",
    "depthwise-separable": "depthwise_separable",
    "batchnorm": "batchnorm",
    "optimizers": "optimizers",
}

__all__ = ["EXPERIMENTS", "MODES", "Context", "ExperimentError", "experiment_module", "run_experiment",
           "load_results"]


def experiment_module(name):
    """The module that runs experiment ``name`` (it has NAME, TITLE, SUMMARY, CONFIGS and run(ctx))."""
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f".{EXPERIMENTS[name]}", __name__)


def run_experiment(name, mode="full", out=None, seed=0, data_dir=None, threads=1, log=print, command=""):
    """Run experiment ``name`` and write its report into ``out`` (default runs/experiments/NAME).

    Returns the path of report.md; results.json and the figures are beside it.  ``mode``: 'full', 'quick'
    or 'offline' (see the module docstring); a quick run without the dataset on disk becomes offline.
    """
    module = experiment_module(name)
    if threads < 1:
        raise ExperimentError(f"threads must be >= 1, got {threads}")
    ctx = Context(name, mode=mode, seed=seed, out=out, data_dir=data_dir, threads=threads, log=log, command=command)
    decide_mode(ctx, module.CONFIGS)
    with limited_threads(threads):
        report = module.run(ctx)
        return report.write()


def load_results(folder):
    """The results.json of a finished experiment (a folder or the file itself) -> dict."""
    path = Path(folder)
    if path.is_dir():
        path = path / "results.json"
    return json.loads(path.read_text())
