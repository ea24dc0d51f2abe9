"""The body of ``convnp evaluate`` (its flags are in ``convnp.cli.build_parser``): a checkpoint on a dataset
split, preprocessed as in training, reported as accuracy, loss, per-class precision/recall/F1 and the
confusion matrix (``convnp.train.evaluate``; the tables are ``convnp.metrics``' formatters).

    evaluate_command(args)     # -> exit status; a problem the user can fix raises convnp.errors.UserError
"""
from pathlib import Path

from .data import DataLoader, load_dataset
from .data.commands import dataset_problem
from .errors import UserError
from .metrics import format_confusion, format_per_class
from .predict_commands import load_checkpoint_model
from .recipes import DEFAULTS, Recipe, check_dataset_options, load_splits, normalizer
from .train import evaluate


def evaluate_command(args):
    model, info = load_checkpoint_model(args.checkpoint, args.model_code, args.device)
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
        raise UserError(dataset_problem(name, error)) from None
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
