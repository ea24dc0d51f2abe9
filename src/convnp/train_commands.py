"""The body of ``convnp train`` (its flags are in ``convnp.cli.build_parser``): the recipe from the flags
(or from the checkpoint of a resumed run), the checks of the output folder, and the run itself
(``convnp.recipes.run``), on one process or on the MPI ranks of ``--workers`` (``convnp.distributed``).

    train_command(args)     # -> exit status; a problem the user can fix raises convnp.errors.UserError
"""
import contextlib
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import checkpoint, distributed
from .data.commands import dataset_problem
from .data.folders import folder_splits, image_channels
from .errors import UserError, one_line, usable_device
from .explorer.live import start_live_view
from .models import model_class
from .models.user_code import load_model_class
from .parallel import available_threads, set_num_threads
from .recipes import DEFAULTS, Recipe, TensorBoardLog, check_recipe, default_recipe, run

RECIPE_FLAGS = ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "scheduler",
                "augment", "seed", "val_fraction", "image_size", "channels", "model_args", "patience", "freeze")


def recipe_from_args(args, user_class=None):
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
    info = checkpoint.load(args.init_from)
    size = (info.get("preprocessing") or {}).get("input_size")
    saved = info.get("recipe") or {}
    return {"image_size": list(size[1:]) if size else None, "channels": size[0] if size else None,
            "model_args": saved.get("model_args")}


def _default_image_size(recipe, user_class):
    """The model's own input size (its ``input_shape``), for --data without --image-size."""
    try:
        model = user_class(**recipe.model_args) if user_class is not None else model_class(recipe.model)()
    except (TypeError, ValueError):
        model = None
    shape = getattr(model, "input_shape", None)
    if not shape:
        raise UserError(f"{recipe.model} has no input_shape to size the images by; give --image-size (e.g. 32)")
    return [int(shape[-2]), int(shape[-1])]


def _guess_channels(path):
    try:
        return image_channels(folder_splits(path)["train"])
    except (OSError, ValueError) as error:
        raise UserError(f"--data {path}: {' '.join(str(error).split())}") from None


def resumed_recipe(args, info):
    """The recipe stored in the checkpoint, with --epochs (the only setting a resumed run may change)."""
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


def check_out_folder(out, force):
    """A new run's --out: refused when it holds another run's files (unless --force), and checked for
    writability now rather than after the first epoch.  (convnp does not pick runs/NAME-2 by itself: a
    run's folder is the one you named, so that --resume, evaluate and viz find it.)"""
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


def resume_command(args, out, recipe):
    parts = ["convnp", "train", "--resume", "--out", str(out)]
    if recipe.dataset == "folder":
        parts += ["--data", str(recipe.data)]
    if recipe.model_code:
        parts += ["--model-code", recipe.model_code]
    if getattr(args, "device", "cpu") != "cpu":
        parts += ["--device", args.device]
    if getattr(args, "sync_batchnorm", False):
        parts += ["--sync-batchnorm"]
    return " ".join(shlex.quote(part) for part in parts)


def train_command(args):
    if args.device != "cpu" and ((args.workers or 1) > 1 or distributed.launched_by_mpi()):
        raise UserError(f"--device {args.device}: data-parallel training over MPI (--workers, mpiexec) runs on "
                        f"the CPU; train on one GPU without --workers, or drop --device")
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
        print(f"convnp train (rank {world.rank} of {world.size}): {one_line(error)}; stopping every rank",
              file=sys.stderr, flush=True)
        world.abort(1)
        raise


def _train(args, world):
    device = usable_device(args.device)  # before any work: no CuPy or no GPU is one line, with the fix
    info, user_class = None, None
    if args.model_code:
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
        recipe = resumed_recipe(args, info)
        if recipe.model_code and user_class is None:
            raise UserError(f"the run trained {recipe.model} from {recipe.model_code}: resume with --model-code "
                            f"{recipe.model_code}")
        out = Path(args.out) if args.out else path.parent
    else:
        if args.freeze and not args.init_from:
            raise UserError("--freeze needs --init-from CHECKPOINT (the weights to keep)")
        recipe = recipe_from_args(args, user_class)
        out = Path(args.out) if args.out else Path("runs") / f"{recipe.model.lower()}-{recipe.dataset}"
        check_out_folder(out, args.force)
    check_recipe(recipe)

    print(f"convnp train: {recipe.model} on {recipe.dataset}: {recipe.describe()}", flush=True)
    if info is not None:
        print(f"resuming from {info.path} after epoch {info.epoch}", flush=True)
    callbacks, server = [], None
    if args.log == "tensorboard" and (world is None or world.is_writer):
        try:
            callbacks.append(TensorBoardLog(out / "tensorboard"))
        except ImportError as error:
            raise UserError(str(error)) from None
        print(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}", flush=True)
    if args.explore is not None and (world is None or world.is_writer):  # the live view (convnp.explorer)
        monitor, server = start_live_view(out, port=args.explore, log=lambda line: print(line, flush=True))
        callbacks.append(monitor)
    try:
        # Overflow on the way to a NaN is reported by the NaN guard, in one line, not as NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = run(recipe, out=out, resume=info, progress=args.progress,
                         log=lambda line: print(line, flush=True), callbacks=callbacks, world=world,
                         model_class=user_class, init_from=args.init_from, device=device,
                         sync_batchnorm=args.sync_batchnorm)
    except FileNotFoundError as error:
        if recipe.dataset == "folder":
            raise UserError(f"--data: {' '.join(str(error).split())}") from None
        raise UserError(dataset_problem(recipe.dataset, error)) from None
    except KeyboardInterrupt:  # what was kept, and the command that continues
        last = out / "last.npz"
        if last.is_file():
            print(f"convnp train: interrupted; {last} (after epoch {checkpoint.load(last).epoch}) and history.json "
                  f"were kept.\nresume with: {resume_command(args, out, recipe)}", file=sys.stderr, flush=True)
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
