"""The ``convnp experiment`` sub-command (argparse), wired into ``convnp.cli``:

    add_experiment_parser(subparsers)
    # convnp experiment --list
    # convnp experiment NAME [--quick | --offline] [--out DIR] [--seed S] [--data-dir DIR] [--threads N]

The parser sets ``func``: ``args.func(args)`` runs the experiment and returns the exit status 0.  A user
error raises ``convnp.errors.UserError``, which ``convnp.cli.main`` reports as one line.
"""
import argparse
import shlex
import sys
import time

from ..errors import UserError, non_negative_int, positive_int
from . import EXPERIMENTS, ExperimentError, experiment_module, run_experiment


def _one_line(error):
    return " ".join(str(error).split())


def add_experiment_parser(subparsers):
    """Add the ``experiment`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "experiment", help="run one of the classic experiments that make the case for CNNs; writes a report",
        description="Run one experiment and write report.md (setup, tables, figures, conclusion), its PNG "
                    "figures and results.json into --out. Full runs need MNIST / Fashion-MNIST (CONVNP_DATA or "
                    "--data-dir) and take minutes to tens of minutes; --quick runs a reduced version (about a "
                    "minute) and falls back to offline data when the dataset is missing; --offline always uses "
                    "the small offline substitute. Experiments: " + ", ".join(EXPERIMENTS) + ".",
        epilog="examples:\n  convnp experiment --list\n  convnp experiment cnn-vs-mlp --quick\n"
               "  convnp experiment shift-robustness --out runs/shift --seed 1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", metavar="NAME", help="the experiment (see --list)")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="the reduced version: data subsets, fewer epochs "
                       "(about a minute); uses the offline substitute when the dataset is not on disk")
    speed.add_argument("--offline", action="store_true", help="use the offline substitute (scikit-learn's "
                       "digits in a 28x28 frame) even when the dataset is on disk")
    parser.add_argument("--out", metavar="DIR", help="output folder (default runs/experiments/NAME)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed (default 0)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ and fashion-mnist/ "
                        "(default: $CONVNP_DATA or convnp's cache folder)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="threads for BLAS and convnp (default 1: steady timings, fair on a shared machine)")
    parser.set_defaults(func=experiment_command)
    return parser


def list_experiments():
    width = max(map(len, EXPERIMENTS))
    lines = ["experiments (convnp experiment NAME [--quick]):"]
    for name in EXPERIMENTS:
        lines.append(f"  {name:<{width}}  {experiment_module(name).SUMMARY}")
    return "\n".join(lines)


def experiment_command(args):
    if args.list:
        print(list_experiments())
        return 0
    if not args.name:
        raise UserError("give an experiment NAME (one of: " + ", ".join(EXPERIMENTS) + ") or --list")
    if args.name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {args.name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    try:  # the report's figures need matplotlib: say so now, not after minutes of training
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise UserError(f"experiments draw their figures with matplotlib ({_one_line(error)}): "
                        f"pip install 'convnp[tools]'") from None
    mode = "offline" if args.offline else "quick" if args.quick else "full"
    command = ["convnp", "experiment", args.name] + (["--quick"] if args.quick else []) + \
        (["--offline"] if args.offline else []) + ["--seed", str(args.seed)] + \
        (["--threads", str(args.threads)] if args.threads != 1 else [])
    print(f"convnp experiment: {args.name} ({mode}), seed {args.seed}, {args.threads} thread(s)", flush=True)
    start = time.perf_counter()
    try:
        report = run_experiment(args.name, mode=mode, out=args.out, seed=args.seed, data_dir=args.data_dir,
                                threads=args.threads, log=lambda line: print(line, flush=True),
                                command=" ".join(shlex.quote(part) for part in command))
    except (ExperimentError, OSError) as error:
        raise UserError(_one_line(error)) from None
    except KeyboardInterrupt:
        print("convnp experiment: interrupted", file=sys.stderr)
        return 130
    print(f"convnp experiment: wrote {report} (and results.json, figures) in {time.perf_counter() - start:.0f} s")
    return 0
