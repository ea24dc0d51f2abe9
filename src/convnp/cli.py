"""The ``convnp`` command (also ``python -m convnp``):

    convnp train --model lenet5 --dataset mnist --epochs 5 --out runs/lenet5      train, write checkpoints
    convnp train --out runs/lenet5 --epochs 8 --resume                              continue from last.npz
    convnp train --data photos --model-code nets.py:Net --out runs/mine             your images, your model class
    convnp evaluate runs/lenet5/best.npz                                            accuracy, per class, confusion
    convnp predict runs/lenet5/best.npz seven.png photo.jpg                         top-3 classes per picture
    convnp datasets                                                                 what is here, how to get the rest
    convnp summary --model lenet5         convnp viz CHECKPOINT --out DIR           (convnp.inspect)
    convnp experiment --list                                                        (convnp.experiments)
    convnp bench --quick                                                            speed vs PyTorch (convnp.bench)
    convnp export runs/lenet5/best.npz --format onnx --out lenet5.onnx              ONNX, torch, safetensors

This module is the wiring: the flags of train, evaluate, predict and datasets, the sub-parsers the other
commands add themselves, dispatch, and the error convention.  Each command's body lives beside the code
it drives: ``train_commands``, ``evaluate_commands``, ``predict_commands``, ``data.commands``,
``inspect.commands`` (summary, viz), ``experiments.commands``, ``explorer.commands``, ``interop.commands``
(export) and ``bench``.

Every command has ``--help``.  The error convention (``convnp.errors``): a sub-command raises
``UserError`` for anything the user can fix (missing file, bad value, unknown model or dataset), and
``main`` prints it as ``convnp COMMAND: message`` on stderr with exit status 1; a flag's bad value is an
argparse error naming the flag (status 2).  Anything unexpected is one line too, plus a hint to run with
CONVNP_DEBUG=1, which shows the traceback.  A closed output pipe (``convnp ... | head``) ends quietly.

Since the command owns its process, ``main`` makes two process-wide settings that ``import convnp``
does not: ``keep_freed_memory_for_reuse()`` and ``set_num_threads`` (convnp's threads and BLAS together).
"""
import argparse
import os
import sys
import traceback

from .backend import keep_freed_memory_for_reuse
from .bench import add_bench_parser
from .data.commands import datasets_command
from .errors import (
    UserError,
    checked,
    device_name,
    fraction,
    non_negative_float,
    one_line,
    positive_float,
    positive_int,
)
from .evaluate_commands import evaluate_command
from .experiments.commands import add_experiment_parser
from .explorer.commands import add_explore_parser
from .inspect.commands import add_summary_parser, add_viz_parser
from .interop.commands import add_export_parser
from .parallel import available_threads, set_num_threads
from .predict_commands import predict_command
from .train_commands import train_command

EXAMPLES = """examples:
  convnp train --model lenet5 --dataset mnist --epochs 5 --out runs/lenet5
  convnp train --data photos --image-size 32 --out runs/photos       (class sub-folders of images)
  convnp evaluate runs/lenet5/best.npz
  convnp predict runs/lenet5/best.npz digit.png
  convnp datasets"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line on stderr (and exit status 2), not the whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


_non_negative_int = checked(int, lambda value: value >= 0, "a whole number of pixels >= 0")
_seed = checked(int, lambda value: 0 <= value < 2**32, "a whole number in [0, 2**32)")


def _train_dataset(text):
    """--dataset of train: a built-in dataset's name, or folder:PATH."""
    from .data import DATASET_NAMES

    if str(text).lower().startswith("folder:") and len(text) > len("folder:"):
        return "folder:" + str(text)[len("folder:"):]
    if str(text).lower() not in DATASET_NAMES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(DATASET_NAMES)}, or "
                                         f"folder:PATH)")
    return str(text).lower()


def _augment(text):
    """--augment: a whole number of pixels, or one of the policies none|light|standard."""
    from .data.transforms import AUGMENT_POLICIES

    if str(text).lower() in AUGMENT_POLICIES:
        return str(text).lower()
    return _non_negative_int(text)


def _image_size(text):
    """'32' or '48x32' (height x width) -> [height, width]."""
    parts = str(text).lower().split("x")
    try:
        sides = [int(part) for part in parts]
    except ValueError:
        sides = []
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or not all(1 <= side <= 4096 for side in sides):
        raise argparse.ArgumentTypeError(f"expected N or HxW with sides from 1 to 4096, got {text!r}")
    return sides


def _json_object(text):
    import json

    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"width\": 32}}', got {text!r} "
                                         f"({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"width\": 32}}', got {text!r}")
    return value


def _name_list(text):
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated module names, got {text!r}")
    return names


def build_parser():
    from .data import DATASET_NAMES
    from .models import MODELS
    from .recipes import OPTIMIZERS, SCHEDULERS

    parser = _Parser(prog="convnp", description="Convolutional networks from scratch in NumPy: train, evaluate "
                     "and use models from the command line.", epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"convnp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # train
    p = sub.add_parser("train", help="train a model on a dataset, writing checkpoints, history and curves",
                       description="Train a model. Settings not given come from the dataset's default recipe "
                                   "(see convnp.recipes); --out receives last.npz (every epoch), best.npz (best "
                                   "validation accuracy), history.json, history.csv and training_curves.png. "
                                   "Validation holds out a stratified 10%% of the training set (--val-fraction; 0: "
                                   "the test split), or uses the val/ folder of --data.")
    p.add_argument("--model", type=str.lower, choices=list(MODELS), metavar="NAME",
                   help=f"one of {', '.join(MODELS)} (default: the dataset's recipe)")
    p.add_argument("--dataset", type=_train_dataset, metavar="NAME",
                   help=f"one of {', '.join(DATASET_NAMES)} (default mnist), or folder:PATH (the same as --data PATH)")
    p.add_argument("--epochs", type=positive_int, metavar="N", help="total epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=positive_int, metavar="N")
    p.add_argument("--optimizer", type=str.lower, choices=OPTIMIZERS, metavar="NAME",
                   help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=positive_float, metavar="LR", help="learning rate (peak lr for onecycle)")
    p.add_argument("--weight-decay", type=non_negative_float, metavar="WD")
    p.add_argument("--scheduler", type=str.lower, choices=SCHEDULERS, metavar="NAME",
                   help=f"learning-rate schedule: one of {', '.join(SCHEDULERS)} (plateau: halve the lr when the "
                        "validation loss has not improved for 2 epochs)")
    p.add_argument("--augment", type=_augment, nargs="?", const=-1, metavar="PIXELS|POLICY",
                   help="random shifts of up to PIXELS pixels (alone: 1 pixel, or the recipe's; 0: off), or a "
                        "policy: none, light (flips, small crops and shifts) or standard (flips, crops, rotations, "
                        "shifts, brightness, contrast, saturation and hue)")
    p.add_argument("--seed", type=_seed, metavar="N", help="random seed (default 0)")
    p.add_argument("--val-fraction", type=fraction, metavar="F",
                   help="hold out this stratified fraction of the training set for validation, so best.npz is "
                        "chosen on validation data (default 0.1; 0: validate on the test split)")
    # your own images and model (convnp.data.folders, convnp.models.user_code)
    p.add_argument("--data", metavar="PATH", help="train on your own images: a folder of class sub-folders, or "
                   "of train/ and val/ (and test/) folders of class sub-folders (the dataset 'folder')")
    p.add_argument("--image-size", type=_image_size, metavar="N|HxW",
                   help="with --data: images are centre-cropped and resized to this (default: the model's input size)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="with --data: 1 grayscale or 3 RGB (default: "
                   "3 when any image has colour, else 1)")
    p.add_argument("--model-code", metavar="FILE.py:CLASS", help="train your own nn.Module class (only this "
                   "file, or MODULE:CLASS from PYTHONPATH, is imported)")
    p.add_argument("--model-args", type=_json_object, metavar="JSON",
                   help="constructor arguments of --model-code's class, e.g. '{\"width\": 32}' (num_classes and "
                        "in_channels are filled in from the data when the class takes them)")
    p.add_argument("--patience", type=positive_int, metavar="N",
                   help="stop early when the validation loss has not improved for N epochs")
    p.add_argument("--init-from", metavar="CHECKPOINT", help="fine-tune: start a new run from CHECKPOINT's weights "
                   "(new optimizer and schedule)")
    p.add_argument("--freeze", type=_name_list, metavar="NAMES", help="with --init-from: comma-separated "
                   "sub-modules whose parameters are not trained, e.g. conv1,conv2 (or 0,3 in a Sequential)")
    p.add_argument("--log", choices=("tensorboard",), help="also write TensorBoard event files into OUT/tensorboard "
                   "(needs the tensorboard package); history.json and history.csv are always written")
    p.add_argument("--force", action="store_true", help="start a new run in an --out folder that holds another "
                   "run's files (they are overwritten); without it such a folder is refused")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/MODEL-DATASET)")
    p.add_argument("--resume", nargs="?", const="", metavar="CHECKPOINT",
                   help="continue an interrupted run from CHECKPOINT (alone: OUT/last.npz) with its recipe")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal; else one line per epoch)")
    p.add_argument("--explore", nargs="?", type=int, const=8765, metavar="PORT",
                   help="serve the explorer page with a live view of the training (default port 8765)")
    p.add_argument("--device", type=device_name, default="cpu", metavar="cpu|cuda",
                   help="train on the CPU (default) or on an NVIDIA GPU with CuPy (pip install 'convnp[cuda]'); "
                        "checkpoints hold host arrays either way, so evaluate, predict, viz and --resume run on "
                        "either device")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="data-parallel training on N MPI ranks: starts mpiexec itself (convnp[distributed]); "
                        "under mpiexec/mpirun/srun the ranks are found without it (convnp.distributed)")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="with several MPI ranks: batch norm uses the statistics of the whole global batch "
                        "(SyncBatchNorm) instead of each rank's share of it; give it again with --resume")
    p.set_defaults(func=train_command)

    # evaluate
    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a checkpoint",
                       description="Evaluate a checkpoint on a dataset split, preprocessed as in training.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .npz checkpoint written by convnp train (or a "
                   ".onnx or .safetensors file from convnp export)")
    p.add_argument("--dataset", type=str.lower, choices=list(DATASET_NAMES), metavar="NAME",
                   help="default: the dataset the model was trained on")
    p.add_argument("--split", choices=("test", "val", "train"), help="default test (for a folder without test/: "
                   "val, the run's validation images)")
    p.add_argument("--batch-size", type=positive_int, default=1000, metavar="N")
    p.add_argument("--data", metavar="PATH", help="the image folder of a model trained with --data (given again: "
                   "convnp never reads a folder because a file names it)")
    p.add_argument("--model-code", metavar="FILE.py:CLASS", help="the code of a model of your own class")
    p.add_argument("--device", type=device_name, default="cpu", metavar="cpu|cuda",
                   help="evaluate on the CPU (default) or on an NVIDIA GPU with CuPy (pip install 'convnp[cuda]')")
    p.set_defaults(func=evaluate_command)

    # predict
    p = sub.add_parser("predict", help="top classes for image files (PNG, JPEG, ...)",
                       description="Classify pictures of any size or colour. Each is prepared like the model's "
                                   "training images: for MNIST, grayscale, inverted if the background is light, "
                                   "the drawing's bounding box fit into 20x20 and centred by centre of mass in 28x28.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=positive_int, default=3, metavar="K", help="classes to show (default 3)")
    p.add_argument("--save-input", metavar="DIR", help="also write each prepared model input as a PNG into DIR")
    p.add_argument("--model-code", metavar="FILE.py:CLASS", help="the code of a model of your own class")
    p.add_argument("--device", type=device_name, default="cpu", metavar="cpu|cuda",
                   help="classify on the CPU (default) or on an NVIDIA GPU with CuPy (pip install 'convnp[cuda]')")
    p.set_defaults(func=predict_command)

    # datasets
    p = sub.add_parser("datasets", help="which datasets are available, where, and how to get the others",
                       description="List the datasets convnp knows, where each was found (the data folder is "
                                   "$CONVNP_DATA or the per-user cache, ~/.cache/convnp on Linux), and how to get "
                                   "what is missing.")
    p.set_defaults(func=datasets_command)

    # the commands that live beside their code: summary and viz, experiment, bench
    for add in (add_summary_parser, add_viz_parser, add_experiment_parser, add_bench_parser, add_export_parser,
                add_explore_parser):
        add(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (0 success, 1 failure, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return _status(exit)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    args.arguments = list(sys.argv[1:] if argv is None else argv)  # what `train --workers` hands to mpiexec
    where = f"convnp {args.command}"
    debug = bool(os.environ.get("CONVNP_DEBUG"))
    # The command owns its process, so it makes the process-wide settings a library must not make at
    # import: malloc keeps freed memory for reuse, and BLAS runs on one thread while convnp's threads
    # split the work (convnp.backend, convnp.parallel).
    keep_freed_memory_for_reuse()
    set_num_threads(available_threads())
    try:
        status = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return status
    except SystemExit as exit:
        return _status(exit)
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_after_broken_pipe()
    except UserError as error:  # the user's to fix: every line of the message, no traceback
        if debug:
            traceback.print_exc()
        print(f"{where}: {str(error).strip() or type(error).__name__}", file=sys.stderr)
        return 1
    except (OSError, ValueError, ImportError) as error:  # a bad file, value or missing extra: one line
        if debug:
            traceback.print_exc()
        print(f"{where}: {one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the last resort: a bug, said in one line
        if debug:
            traceback.print_exc()
        print(f"{where}: unexpected {type(error).__name__}: {one_line(error)}"
              + ("" if debug else " (run with CONVNP_DEBUG=1 for the traceback)"), file=sys.stderr)
        return 1


def _quiet_after_broken_pipe():
    """The reader of our stdout went away (``convnp ... | head``): stop quietly, and point stdout at
    /dev/null so that Python's final flush does not complain either.  141 = 128 + SIGPIPE, what a shell
    reports for a program its pipe ended."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test's StringIO)
        pass
    return 141


def _status(exit):
    if isinstance(exit.code, str):  # SystemExit("convnp viz: ...") from a sub-command
        print(" ".join(exit.code.split()), file=sys.stderr)
        return 1
    return 0 if exit.code is None else exit.code


if __name__ == "__main__":
    sys.exit(main())
