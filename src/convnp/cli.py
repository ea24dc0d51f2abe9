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

Every command has ``--help``.  The error convention (``convnp.errors``): a sub-command raises
``UserError`` for anything the user can fix (missing file, bad value, unknown model or dataset), and
``main`` prints it as ``convnp COMMAND: message`` on stderr with exit status 1; a flag's bad value is an
argparse error naming the flag (status 2).  Anything unexpected is one line too, plus a hint to run with
CONVNP_DEBUG=1, which shows the traceback.  A closed output pipe (``convnp ... | head``) ends quietly.

Since the command owns its process, ``main`` makes two process-wide settings that ``import convnp``
does not: ``keep_freed_memory_for_reuse()`` and ``set_num_threads`` (convnp's threads and BLAS together).
"""
import argparse
import contextlib
import os
import sys
import traceback
from pathlib import Path

from . import distributed
from .backend import keep_freed_memory_for_reuse
from .bench import add_bench_parser
from .errors import UserError, checked, fraction, non_negative_float, positive_float, positive_int
from .experiments.commands import add_experiment_parser
from .explorer.commands import add_explore_parser
from .inspect.commands import add_summary_parser, add_viz_parser
from .interop.commands import add_export_parser
from .parallel import available_threads, set_num_threads

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


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


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
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="data-parallel training on N MPI ranks: starts mpiexec itself (convnp[distributed]); "
                        "under mpiexec/mpirun/srun the ranks are found without it (convnp.distributed)")
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
        print(f"{where}: {_one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the last resort: a bug, said in one line
        if debug:
            traceback.print_exc()
        print(f"{where}: unexpected {type(error).__name__}: {_one_line(error)}"
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


# --- train ---------------------------------------------------------------------------------------------------
RECIPE_FLAGS = ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "scheduler",
                "augment", "seed", "val_fraction", "image_size", "channels", "model_args", "patience", "freeze")


def _recipe_from_args(args, user_class=None):
    from .recipes import DEFAULTS, default_recipe

    if args.dataset and args.dataset.startswith("folder:"):  # --dataset folder:PATH is --data PATH
        if args.data is not None:
            raise UserError("give the folder once: --data PATH or --dataset folder:PATH")
        args.data, args.dataset = args.dataset[len("folder:"):], None
    if args.data is not None and args.dataset not in (None, "folder"):
        raise UserError(f"--data trains on your folder; it cannot be combined with --dataset {args.dataset}")
    dataset = "folder" if args.data is not None else (args.dataset or "mnist")
    if dataset == "folder" and args.data is None:
        raise UserError("--dataset folder needs --data PATH")
    if dataset != "folder" and (args.image_size or args.channels):
        raise UserError("--image-size and --channels are for your own images (--data PATH)")
    augment, policy = args.augment, None
    if augment == -1:  # --augment without a value
        augment = DEFAULTS[dataset].augment or 1
    if isinstance(augment, str):  # a policy instead of shifts
        augment, policy = 0, augment
    recipe = default_recipe(dataset, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                            optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                            scheduler=args.scheduler, augment=augment, seed=args.seed, val_fraction=args.val_fraction,
                            patience=args.patience, freeze=args.freeze, augment_policy=policy)
    if args.model_args and not args.model_code:
        raise UserError("--model-args are the arguments of a --model-code class")
    if user_class is not None:
        recipe.model, recipe.model_code, recipe.model_args = user_class.__name__, args.model_code, args.model_args or {}
    start = _init_from_input(args)  # fine-tuning: the started-from model's input size and arguments by default
    if user_class is not None and start and not args.model_args:
        recipe.model_args = dict(start.get("model_args") or {})
    if dataset == "folder":
        recipe.data = str(Path(args.data).resolve())
        recipe.image_size = args.image_size or start.get("image_size") or _default_image_size(recipe, user_class)
        recipe.channels = args.channels or start.get("channels") or _guess_channels(args.data)
    return recipe


def _init_from_input(args):
    """{'image_size', 'channels', 'model_args'} of the --init-from checkpoint ({} without one)."""
    if not args.init_from:
        return {}
    from . import checkpoint

    info = checkpoint.load(args.init_from)
    size = (info.get("preprocessing") or {}).get("input_size")
    saved = info.get("recipe") or {}
    return {"image_size": list(size[1:]) if size else None, "channels": size[0] if size else None,
            "model_args": saved.get("model_args")}


def _default_image_size(recipe, user_class):
    """The model's own input size (its ``input_shape``), for --data without --image-size."""
    from .models import model_class

    try:
        model = user_class(**recipe.model_args) if user_class is not None else model_class(recipe.model)()
    except (TypeError, ValueError):
        model = None
    shape = getattr(model, "input_shape", None)
    if not shape:
        raise UserError(f"{recipe.model} has no input_shape to size the images by; give --image-size (e.g. 32)")
    return [int(shape[-2]), int(shape[-1])]


def _guess_channels(path):
    from .data.folders import folder_splits, image_channels

    try:
        return image_channels(folder_splits(path)["train"])
    except (OSError, ValueError) as error:
        raise UserError(f"--data {path}: {' '.join(str(error).split())}") from None


def _resumed_recipe(args, info):
    """The recipe stored in the checkpoint, with --epochs (the only setting a resumed run may change)."""
    from .recipes import Recipe

    saved = info.get("recipe")
    if not saved:
        raise UserError(f"{info.path} records no training recipe, so the run cannot be resumed from it")
    recipe = Recipe.from_dict(saved)
    for flag in RECIPE_FLAGS:
        given = getattr(args, flag)
        if flag == "augment" and given == -1:
            given = None
        if flag == "augment" and isinstance(given, str):  # a policy: compared with the run's policy
            if given != recipe.augment_policy:
                raise UserError(f"--augment {given} differs from the resumed run's {recipe.augment_policy}; a "
                                f"resumed run keeps its recipe (only --epochs may change)")
            continue
        if flag != "epochs" and given is not None and given != getattr(recipe, flag):
            raise UserError(f"--{flag.replace('_', '-')} {given} differs from the resumed run's "
                            f"{getattr(recipe, flag)}; a resumed run keeps its recipe (only --epochs may change)")
    if recipe.dataset == "folder":  # the folder is read only when the user names it again
        if args.data is None:
            raise UserError(f"the run trained on the image folder {recipe.data}; resume with --data {recipe.data}")
        recipe.data = str(Path(args.data).resolve())
    if args.epochs is not None and args.epochs != recipe.epochs:
        if args.epochs < info.epoch:
            raise UserError(f"{info.path} has already completed {info.epoch} epoch(s); --epochs {args.epochs} "
                            f"would end before that")
        if recipe.scheduler in ("cosine", "onecycle"):  # re-planned for the new length (recipes.replan_schedule)
            print(f"convnp train: the {recipe.scheduler} schedule planned for {recipe.epochs} epochs is re-planned "
                  f"for {args.epochs}, continuing from the current step", flush=True)
        if recipe.scheduler == "step":  # the saved StepLR keeps its step size: say so rather than surprise
            step = (info.scheduler_state or {}).get("step_size", max(1, recipe.epochs // 3))
            print(f"convnp train: the step schedule keeps its step size of {step} epoch(s) from the "
                  f"{recipe.epochs}-epoch plan: the lr is divided by 10 every {step} epochs up to epoch "
                  f"{args.epochs}", flush=True)
        recipe.epochs = args.epochs
    return recipe


RUN_FILES = ("last.npz", "best.npz", "history.json", "history.csv")


def _check_out_folder(out, force):
    """A new run's --out: refused when it holds another run's files (unless --force), and checked for
    writability now rather than after the first epoch.  (convnp does not pick runs/NAME-2 by itself: a
    run's folder is the one you named, so that --resume, evaluate and viz find it.)"""
    import tempfile

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not force:
        raise UserError(f"--out {out} holds another run ({', '.join(found)}); continue it with --resume, choose "
                        f"another --out, or pass --force to overwrite it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise UserError(f"--out {out} cannot be written: {error.strerror or error}") from None


def _resume_command(args, out, recipe):
    parts = ["convnp", "train", "--resume", "--out", str(out)]
    if recipe.dataset == "folder":
        parts += ["--data", str(recipe.data)]
    if recipe.model_code:
        parts += ["--model-code", recipe.model_code]
    import shlex

    return " ".join(shlex.quote(part) for part in parts)


def train_command(args):
    if args.workers is not None and args.workers > 1 and not distributed.launched_by_mpi():
        return distributed.launch(args.workers, getattr(args, "arguments", sys.argv[1:]))  # each rank runs it again
    world = distributed.init() if distributed.launched_by_mpi() else None
    if world is None or world.size == 1 and world.is_writer:
        return _train(args, world)
    set_num_threads(distributed.threads_per_rank(world, available_threads()))
    try:
        if world.is_writer:
            return _train(args, world)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # rank 0 alone reports
            return _train(args, world)
    except BaseException as error:  # the other ranks would wait for this one in the next Allreduce
        print(f"convnp train (rank {world.rank} of {world.size}): {_one_line(error)}; stopping every rank",
              file=sys.stderr, flush=True)
        world.abort(1)
        raise


def _train(args, world):
    import numpy as np

    from . import checkpoint
    from .recipes import check_recipe, run

    info, user_class = None, None
    if args.model_code:
        from .models.user_code import load_model_class

        try:
            user_class = load_model_class(args.model_code)
        except (ValueError, ImportError) as error:
            raise UserError(str(error)) from None
    if args.resume is not None:
        if args.resume == "" and args.out is None:
            raise UserError("--resume without a CHECKPOINT needs --out (it resumes OUT/last.npz)")
        if args.init_from:
            raise UserError("--init-from starts a new run; it cannot be combined with --resume")
        path = Path(args.resume) if args.resume else Path(args.out) / "last.npz"
        info = checkpoint.load(path)
        recipe = _resumed_recipe(args, info)
        if recipe.model_code and user_class is None:
            raise UserError(f"the run trained {recipe.model} from {recipe.model_code}: resume with --model-code "
                            f"{recipe.model_code}")
        out = Path(args.out) if args.out else path.parent
    else:
        if args.freeze and not args.init_from:
            raise UserError("--freeze needs --init-from CHECKPOINT (the weights to keep)")
        recipe = _recipe_from_args(args, user_class)
        out = Path(args.out) if args.out else Path("runs") / f"{recipe.model.lower()}-{recipe.dataset}"
        _check_out_folder(out, args.force)
    check_recipe(recipe)

    print(f"convnp train: {recipe.model} on {recipe.dataset}: {recipe.describe()}", flush=True)
    if info is not None:
        print(f"resuming from {info.path} after epoch {info.epoch}", flush=True)
    callbacks, server = [], None
    if args.log == "tensorboard" and (world is None or world.is_writer):
        from .recipes import TensorBoardLog

        try:
            callbacks.append(TensorBoardLog(out / "tensorboard"))
        except ImportError as error:
            raise UserError(str(error)) from None
        print(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}", flush=True)
    if args.explore is not None and (world is None or world.is_writer):  # the live view (convnp.explorer)
        from .explorer.live import start_live_view

        monitor, server = start_live_view(out, port=args.explore, log=lambda line: print(line, flush=True))
        callbacks.append(monitor)
    try:
        # Overflow on the way to a NaN is reported by the NaN guard, in one line, not as NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = run(recipe, out=out, resume=info, progress=args.progress,
                         log=lambda line: print(line, flush=True), callbacks=callbacks, world=world,
                         model_class=user_class, init_from=args.init_from)
    except FileNotFoundError as error:
        if recipe.dataset == "folder":
            raise UserError(f"--data: {' '.join(str(error).split())}") from None
        raise UserError(_dataset_problem(recipe.dataset, error)) from None
    except KeyboardInterrupt:  # what was kept, and the command that continues
        last = out / "last.npz"
        if last.is_file():
            print(f"convnp train: interrupted; {last} (after epoch {checkpoint.load(last).epoch}) and history.json "
                  f"were kept.\nresume with: {_resume_command(args, out, recipe)}", file=sys.stderr, flush=True)
        else:
            print("convnp train: interrupted; no epoch had finished, so nothing was kept (run the same command "
                  "again)", file=sys.stderr, flush=True)
        return 130
    finally:
        if server is not None:  # the page then says that the server stopped
            server.shutdown()
            server.server_close()
    history = result.history
    if world is not None and not world.is_writer:
        return 1 if history["diverged"] else 0
    if history["diverged"]:
        kept = f"; the last good checkpoint is {result.files['last']}" if result.files["last"].exists() else ""
        print(f"convnp train: training diverged (see above){kept}", file=sys.stderr)
        return 1
    files = result.files
    best = checkpoint.load(files["best"]) if files.get("best") and files["best"].exists() else None
    val = history["val_accuracy"]
    print(f"final validation accuracy {val[-1] * 100:.2f}% (epoch {history['epoch'][-1]})" if val else
          f"final training accuracy {history['train_accuracy'][-1] * 100:.2f}%")
    written = [f"{files['last']}"]
    if best is not None:
        b = best.get("best") or {}
        value = b.get("value")
        written.append(f"{files['best']} (epoch {best.epoch}" +
                       (f", {b.get('monitor')} {value * 100:.2f}%)" if value is not None else ")"))
    written += [str(files[key]) for key in ("history", "curves") if key in files]
    print("wrote " + ", ".join(written))
    return 0


def _dataset_problem(name, error):
    """The missing-data message, every line of it (which files, where, how to get them)."""
    detail = str(error).strip() or type(error).__name__
    return f"dataset {name} is not available: {detail}\nrun 'convnp datasets' to see where to put it"


# --- evaluate ------------------------------------------------------------------------------------------------
def _load_checkpoint_model(path, model_code=None):
    from .models.user_code import load_any_model  # .npz, .onnx, .safetensors; a user's class with model_code

    try:
        model, info = load_any_model(path, model_code)
    except ImportError as error:
        raise UserError(str(error)) from None
    if not info.get("preprocessing"):
        raise UserError(f"{path} records no preprocessing (dataset, normalisation); it was not written by "
                        f"convnp train, so evaluate/predict cannot reproduce its inputs")
    return model, info


def evaluate_command(args):
    from .data import load_dataset
    from .recipes import DEFAULTS, check_dataset_options

    model, info = _load_checkpoint_model(args.checkpoint, args.model_code)
    prep = info["preprocessing"]
    name = args.dataset or prep["dataset"]
    recipe = info.get("recipe") or {}
    if name == "folder" or args.data is not None:
        dataset, split = _folder_split(args, info)
        return _report_evaluation(args, model, info, dataset, f"{args.data} {split}")
    if args.split == "val":
        raise UserError("--split val is for image folders (--data PATH); a built-in dataset has train and test")
    args.split = args.split or "test"
    if name not in DEFAULTS:
        raise UserError(f"{args.checkpoint} was trained on dataset {name[:40]!r}, which convnp cannot load; "
                        f"give --dataset")
    # Options from the file: allowed keys and ranges only (never a data root or a download switch).
    options = recipe.get("dataset_options") if recipe.get("dataset") == name else DEFAULTS[name].dataset_options
    options = check_dataset_options(name, options or {}, field=f"{args.checkpoint}: recipe.dataset_options")
    try:
        dataset = load_dataset(name, args.split, **(options or {}))
    except FileNotFoundError as error:
        raise UserError(_dataset_problem(name, error)) from None
    if list(dataset.x.shape[1:]) != list(prep["input_size"]):
        raise UserError(f"dataset {name} has {'x'.join(map(str, dataset.x.shape[1:]))} images but the model in "
                        f"{args.checkpoint} was trained on {'x'.join(map(str, prep['input_size']))}")
    classes = dataset.classes
    if len(classes) != len(prep["classes"]):
        raise UserError(f"dataset {name} has {len(classes)} classes but the model in {args.checkpoint} "
                        f"predicts {len(prep['classes'])}")
    trained = "" if name == prep["dataset"] else f" (trained on {prep['dataset']})"
    return _report_evaluation(args, model, info, dataset, f"{name} {args.split}{trained}")


def _folder_split(args, info):
    """The split of an image folder that evaluate reads: test/ by default, else the run's validation images."""
    from .recipes import Recipe, load_splits

    prep, saved = info["preprocessing"], info.get("recipe") or {}
    if args.data is None:
        where = f" --data {saved['data']}" if saved.get("data") else " --data PATH"
        raise UserError(f"{args.checkpoint} was trained on an image folder; give it again:{where}")
    if saved.get("dataset") != "folder":
        raise UserError(f"{args.checkpoint} was not trained on an image folder (--data is for models trained "
                        f"with convnp train --data)")
    recipe = Recipe.from_dict(saved)
    recipe.data = str(Path(args.data).resolve())
    try:
        splits = load_splits(recipe)
    except (OSError, ValueError) as error:
        raise UserError(f"--data {args.data}: {' '.join(str(error).split())}") from None
    split = args.split or ("test" if splits.test is not None else "val")
    dataset = {"test": splits.test, "val": splits.val, "train": splits.train}[split]
    if dataset is None:
        raise UserError(f"{args.data} has no {split} split" + (" (no test/ folder: try --split val)"
                                                                 if split == "test" else ""))
    if list(dataset.classes) != list(prep["classes"]):
        raise UserError(f"{args.data} has classes {', '.join(dataset.classes)} but the model in {args.checkpoint} "
                        f"predicts {', '.join(prep['classes'])}")
    if split == "val" and args.split is None:
        print(f"{args.data} has no test/ folder: evaluating on the run's validation images (--split val)")
    return dataset, split


def _report_evaluation(args, model, info, dataset, described):
    from .data import DataLoader
    from .recipes import normalizer
    from .train import evaluate

    prep = info["preprocessing"]
    classes = dataset.classes
    loader = DataLoader(dataset, args.batch_size, transform=normalizer(prep))
    try:
        metrics = evaluate(model, loader, num_classes=len(classes))
    except ValueError as error:  # non-finite outputs: name the checkpoint
        raise UserError(f"{args.checkpoint}: {error}") from None
    print(f"{info['model_class']} from {args.checkpoint} (epoch {info.epoch}) on {described}: "
          f"{metrics['count']:,} images")
    print(f"accuracy {metrics['accuracy'] * 100:.2f}%   loss {metrics['loss']:.4f}   "
          f"errors {metrics['count'] - int(metrics['confusion'].trace()):,}")
    print(format_per_class(metrics, classes))
    print(format_confusion(metrics["confusion"]))
    return 0


def precision_recall_f1(confusion):
    """Per class (precision, recall, F1), each an array, from a confusion matrix (rows: true class):
    scikit-learn's ``precision_recall_fscore_support`` (0 where a class is never predicted or present)
    when scikit-learn is installed, else the same formulas in NumPy."""
    import numpy as np

    confusion = np.asarray(confusion)
    k = len(confusion)
    try:
        from sklearn.metrics import precision_recall_fscore_support
    except ImportError:
        true_positive = np.diag(confusion).astype(np.float64)
        predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
        precision = np.divide(true_positive, predicted, out=np.zeros(k), where=predicted > 0)
        recall = np.divide(true_positive, actual, out=np.zeros(k), where=actual > 0)
        total = precision + recall
        return precision, recall, np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    rows, cols = np.nonzero(confusion)
    counts = confusion[rows, cols]
    y_true, y_pred = np.repeat(rows, counts), np.repeat(cols, counts)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=range(k), zero_division=0)
    return precision, recall, f1


def format_per_class(metrics, classes):
    support = metrics["confusion"].sum(axis=1)
    precision, recall, f1 = precision_recall_f1(metrics["confusion"])
    width = max(len("class"), *(len(f"{k} {name}") for k, name in enumerate(classes)))
    lines = ["per-class accuracy:", f"  {'class':<{width}}  accuracy  images  precision  recall      F1"]
    for k, name in enumerate(classes):
        label = str(k) if name == str(k) else f"{k} {name}"
        accuracy = metrics["per_class_accuracy"][k]
        shown = "       -" if accuracy != accuracy else f"{accuracy * 100:7.2f}%"
        lines.append(f"  {label:<{width}}  {shown}  {support[k]:6d}  {precision[k]:9.4f}  {recall[k]:6.4f}  "
                     f"{f1[k]:6.4f}")
    return "\n".join(lines)


def format_confusion(confusion):
    k = len(confusion)
    width = max(4, len(str(confusion.max())) + 1)
    lines = ["confusion matrix (rows: true class, columns: predicted class):",
             "true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>9}" + "".join(f"{confusion[i, j]:>{width}}" for j in range(k)))
    return "\n".join(lines)


# --- predict -------------------------------------------------------------------------------------------------
def predict_command(args):
    import warnings

    import numpy as np

    from .predict import BlankImageWarning, load_model_input, predict_arrays, preprocess

    model, info = _load_checkpoint_model(args.checkpoint, args.model_code)
    prep = info["preprocessing"]
    with warnings.catch_warnings(record=True) as caught:  # a blank picture: one warning line each
        warnings.simplefilter("always", BlankImageWarning)
        inputs = [preprocess(path, prep) for path in args.images]
    for warning in caught:
        print(f"convnp predict: warning: {warning.message}", file=sys.stderr)
    results = predict_arrays(model, np.stack(inputs), prep.get("classes"), top=min(args.top, len(prep["classes"])),
                             where=args.checkpoint)
    for path, top in zip(args.images, results):
        print(f"{path}: " + "   ".join(f"{name} {_percent(p)}" for name, p in top))
    if args.save_input:
        from PIL import Image

        folder = Path(args.save_input)
        folder.mkdir(parents=True, exist_ok=True)
        for path in args.images:
            x = load_model_input(path, prep)
            pixels = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
            picture = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
            target = folder / (Path(path).stem + "_input.png")
            Image.fromarray(picture).save(target)
            print(f"wrote {target}")
    return 0


def _percent(p):
    return f"{p * 100:.1f}%" if p >= 0.0005 else "<0.1%"


# --- datasets -------------------------------------------------------------------------------------------------
def datasets_command(args):
    from .data import available_datasets, data_dir

    statuses = available_datasets()
    chosen_by = "CONVNP_DATA" if os.environ.get("CONVNP_DATA") else "default; set CONVNP_DATA to change it"
    print(f"data folder: {data_dir()} ({chosen_by})")
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        mark = "yes" if s.available else "no "
        print(f"  {s.name:<{width}}  {mark}  {s.location}")
        if not s.available and s.how_to_get:
            print(f"  {'':<{width}}       to get it: {s.how_to_get}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
