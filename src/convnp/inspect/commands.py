"""The ``convnp summary`` and ``convnp viz`` sub-commands (argparse), called from ``convnp.cli``:

    add_summary_parser(subparsers)   # convnp summary --model lenet5 [--input-size 1 28 28] [--batch-size 1]
    add_viz_parser(subparsers)       # convnp viz CHECKPOINT [--what filters feature-maps ...] --out DIR

Each parser sets ``func`` (``args.func(args)`` runs the command and returns the exit status 0).  A user
error raises ``convnp.errors.UserError``, which ``convnp.cli.main`` reports as one line.
"""
import importlib
from pathlib import Path

import numpy as np

from .. import models, nn
from ..data import load_dataset
from ..errors import UserError, device_name, non_negative_int, positive_int, usable_device
from ..predict import load_image, load_model_input, normalize
from .summary import summary

VIZ_KINDS = ("filters", "feature-maps", "relu", "saliency", "curves", "confusion", "misclassified", "maxpool")

# The small integer map of the max-pooling picture (a classic 4x4 example, 2x2 windows, stride 2).
MAXPOOL_EXAMPLE = np.array([[1, 3, 2, 1], [4, 2, 0, 1], [5, 1, 7, 8], [2, 6, 3, 4]])


def _one_line(error):
    return " ".join(str(error).split())


# --- convnp summary --------------------------------------------------------------------------------------
def add_summary_parser(subparsers):
    """Add the ``summary`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    names = ", ".join(models.MODELS)
    parser = subparsers.add_parser(
        "summary", help="print a model's layers, shapes, parameters, MACs/FLOPs and receptive fields",
        description="Print a torchinfo-style table of a model: one row per layer call with its output shape "
                    "(batch included), parameters, mult-adds and receptive field, then the totals (parameters, "
                    "MACs, FLOPs = 2 x MACs) and estimated memory.")
    parser.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="a checkpoint (.npz, .onnx, "
                        ".safetensors): its model at its training input size")
    parser.add_argument("--model", metavar="NAME", help=f"the model: one of {names}")
    parser.add_argument("--model-code", metavar="FILE.py:CLASS", help="a model of your own class: with CHECKPOINT, "
                        "the code that defines it; alone, the class built with its default arguments")
    parser.add_argument("--input-size", type=positive_int, nargs="+", metavar="N",
                        help="the shape of one input example, e.g. 1 28 28 (default: the model's own)")
    parser.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="batch size shown in the "
                        "shapes and used for the MACs and sizes (default 1)")
    parser.set_defaults(func=summary_command)
    return parser


def build_model(name):
    """A fresh model of the zoo by its CLI name -> (model, the shape of one input example or None);
    each model carries its own ``input_shape``."""
    key = name.lower()
    if key not in models.MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(models.MODELS)}")
    model = models.MODELS[key]()
    return model, getattr(model, "input_shape", None)


def summary_command(args):
    from ..models.user_code import load_any_model, load_model_class

    if sum(x is not None for x in (args.checkpoint, args.model)) > 1 or not (args.checkpoint or args.model
                                                                              or args.model_code):
        raise UserError("give a CHECKPOINT, --model NAME or --model-code FILE.py:CLASS (one of them)")
    if args.checkpoint is not None:
        try:
            model, info = load_any_model(args.checkpoint, args.model_code)
        except (OSError, ValueError, ImportError) as error:
            raise UserError(_one_line(error)) from None
        prep = _info_get(info, "preprocessing") or {}
        default_size = tuple(prep["input_size"]) if prep.get("input_size") else getattr(model, "input_shape", None)
    elif args.model_code:
        try:
            model = load_model_class(args.model_code)()
        except (ValueError, ImportError, TypeError) as error:
            raise UserError(_one_line(error)) from None
        default_size = getattr(model, "input_shape", None)
    else:
        model, default_size = build_model(args.model)
    input_size = tuple(args.input_size) if args.input_size else default_size
    if input_size is None:
        raise UserError(f"give --input-size for {args.model} (e.g. --input-size 3 32 32)")
    if len(input_size) == 4:
        raise UserError("--input-size is the shape of ONE example (e.g. 1 28 28); give the batch with --batch-size")
    try:
        result = summary(model, input_size, batch_size=args.batch_size)
    except (ValueError, TypeError) as error:
        raise UserError(_one_line(error).removeprefix("summary: ")) from None
    print(result)
    return 0


# --- convnp viz ------------------------------------------------------------------------------------------
def add_viz_parser(subparsers):
    """Add the ``viz`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "viz", help="draw a trained model's filters, feature maps, saliency, curves ... as PNG files",
        description="Write PNG pictures of a checkpointed model into --out. Kinds: filters (first conv layer), "
                    "feature-maps (every conv layer for one image), relu (maps before/after ReLU), saliency, "
                    "curves (the run's training history), confusion and misclassified (need --data), maxpool "
                    "(max pooling on a small integer map).")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a checkpoint written by convnp (.npz), or an .onnx or .safetensors file")
    parser.add_argument("--what", nargs="+", default=["all"], metavar="KIND",
                        help=f"what to draw: all (default: every kind the inputs allow) or any of "
                             f"{', '.join(VIZ_KINDS)} (space- or comma-separated)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files (created)")
    parser.add_argument("--image", metavar="FILE", help="input image for feature-maps/relu/saliency: .npy "
                        "array (H, W) or (C, H, W), or a PNG/JPEG file")
    parser.add_argument("--data", metavar="NAME", help="dataset whose test split gives the image (with --index) "
                        "and the confusion matrix / mistakes, e.g. mnist, digits, lines")
    parser.add_argument("--index", type=non_negative_int, default=0, help="which test image to draw (default 0)")
    parser.add_argument("--limit", type=positive_int, default=2000, help="test images used for "
                        "confusion/misclassified (default 2000)")
    parser.add_argument("--target", type=non_negative_int, help="class whose score the saliency map explains "
                        "(default: the predicted class)")
    parser.add_argument("--model-code", metavar="FILE.py:CLASS", help="the code of a model of your own class")
    parser.add_argument("--device", type=device_name, default="cpu", metavar="cpu|cuda",
                        help="compute the maps on the CPU (default) or on an NVIDIA GPU with CuPy (pip install "
                             "'convnp[cuda]'); the pictures are drawn from host copies")
    parser.set_defaults(func=viz_command)
    return parser


def _info_get(info, key, default=None):
    if isinstance(info, dict):
        return info.get(key, default)
    return getattr(info, key, default)


def _parse_kinds(values):
    kinds = []
    for value in values:
        for kind in value.split(","):
            kind = kind.strip().lower()
            if not kind:
                continue
            if kind != "all" and kind not in VIZ_KINDS:
                raise UserError(f"unknown --what {kind!r}; choose from all, {', '.join(VIZ_KINDS)}")
            kinds.append(kind)
    return kinds or ["all"]


def load_viz_image(path, model, info):
    """--image FILE -> float32 (C, H, W) in [0, 1], prepared exactly as ``convnp predict`` prepares it
    (``convnp.predict.load_model_input``: for MNIST models a dark-on-light digit is inverted, boxed and
    centred), using the checkpoint's preprocessing, else the model's input size."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--image {path} does not exist")
    preprocessing = _info_get(info, "preprocessing") or {}
    if "input_size" not in preprocessing:
        channels, size = _model_geometry(model, info)
        if size is None and path.suffix.lower() != ".npy":
            size = load_image(path).size[::-1]
        preprocessing = {**preprocessing, "input_size": [channels, *(size or (0, 0))]}
    try:
        return load_model_input(path, preprocessing)
    except (OSError, ValueError) as error:
        raise UserError(f"--image: {_one_line(error)}") from None


def preprocess(images, info):
    """Images in [0, 1] -> what the model was trained on: (x - mean) / std per channel when the
    checkpoint records the normalisation (``info['mean']``, ``info['std']``), else unchanged
    (``convnp.predict.normalize``)."""
    return normalize(images, info if isinstance(info, dict) else {"mean": _info_get(info, "mean"),
                                                                  "std": _info_get(info, "std")})


def _model_geometry(model, info):
    """(channels, (H, W) or None) the model expects, from the checkpoint info or the model itself."""
    size = _info_get(info, "input_size") or getattr(model, "input_shape", None)
    channels = getattr(model, "in_channels", None)
    if size is not None and len(size) >= 2:
        channels = channels or (size[-3] if len(size) >= 3 else 1)
        return channels, tuple(size[-2:])
    return channels or 1, None


def viz_command(args):
    try:  # through sys.modules, not the package attribute: a missing matplotlib shows here
        viz = importlib.import_module(".viz", __package__)
    except ImportError as error:  # a NumPy-only install: name the extra
        raise UserError(f"drawing figures needs matplotlib ({_one_line(error)}): pip install 'convnp[tools]'") \
            from None

    kinds = _parse_kinds(args.what)
    explicit = "all" not in kinds
    wanted = kinds if explicit else list(VIZ_KINDS)
    device = usable_device(getattr(args, "device", "cpu"))
    if not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint {args.checkpoint} does not exist")
    from ..models.user_code import load_any_model  # .npz, .onnx, .safetensors; a user's class with --model-code

    try:
        model, info = load_any_model(args.checkpoint, args.model_code)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as error:
        message = _one_line(error)
        if str(args.checkpoint) not in message:
            message = f"cannot load {args.checkpoint}: {message}"
        raise UserError(f"{message}") from None
    model.to(device).eval()
    out = Path(args.out)

    data_name = args.data or _info_get(info, "dataset")
    dataset = None
    wants_image = args.image is None and any(k in wanted for k in ("feature-maps", "relu", "saliency"))
    wants_data = any(k in wanted for k in ("confusion", "misclassified")) or wants_image
    if args.data or (data_name and wants_data):
        try:
            dataset = load_dataset(data_name, split="test")
        except Exception as error:  # noqa: BLE001 - any failure to get the data is the user's to fix
            if args.data or explicit:
                raise UserError(f"cannot load dataset {data_name!r}: {_one_line(error)}") from None
            dataset = None

    image, image_note = None, ""
    if args.image:
        image = load_viz_image(args.image, model, info)
        image_note = f"from {args.image}, prepared as convnp predict does"
    elif dataset is not None:
        if not 0 <= args.index < len(dataset):
            raise UserError(f"--index {args.index} is outside the {len(dataset)} test images")
        image, image_note = dataset.x[args.index], f"{data_name} test image {args.index}"
    if image is not None:
        image = preprocess(image, info)
        if _info_get(info, "mean") is not None:
            image_note += ", normalised with the checkpoint's mean and std"
    classes = _info_get(info, "classes") or getattr(dataset, "classes", None)

    written, skipped = [], []

    def need(kind, ok, why):
        if ok:
            return True
        if explicit:
            raise UserError(f"cannot draw {kind}: {why}")
        skipped.append(f"{kind} ({why})")
        return False

    try:
        for kind in wanted:
            if kind == "filters":
                if need(kind, _has_conv(model), "the model has no Conv2d layer"):
                    written.append(viz.plot_filters(model, out / "filters.png"))
            elif kind == "feature-maps":
                if need(kind, _has_conv(model), "the model has no Conv2d layer") and \
                        need(kind, image is not None, "no input image: give --image FILE or --data NAME"):
                    written.append(viz.plot_feature_maps(model, image, out / "feature_maps.png"))
            elif kind == "relu":
                if need(kind, _has_conv(model), "the model has no Conv2d layer") and \
                        need(kind, image is not None, "no input image: give --image FILE or --data NAME"):
                    written.append(viz.plot_relu_before_after(model, image, out / "relu.png"))
            elif kind == "saliency":
                if need(kind, image is not None, "no input image: give --image FILE or --data NAME"):
                    written.append(viz.plot_saliency(model, image, out / "saliency.png", target=args.target,
                                                     class_names=classes))
            elif kind == "curves":
                history = _info_get(info, "history")
                if need(kind, bool(history) and bool(history.get("train_loss")),
                        "the checkpoint holds no training history"):
                    written.append(viz.plot_training_curves(history, out / "training_curves.png"))
            elif kind in ("confusion", "misclassified"):
                if need(kind, dataset is not None, "no test data: give --data NAME"):
                    x, y = dataset.x[:args.limit], dataset.y[:args.limit]
                    probs = viz.predict_proba(model, preprocess(x, info))
                    if kind == "confusion":
                        written.append(viz.plot_confusion_matrix(y, probs.argmax(axis=1), out / "confusion.png",
                                                                 class_names=classes))
                    else:  # the images as they look, before normalisation
                        written.append(viz.plot_misclassified(x, y, probs, out / "misclassified.png",
                                                              class_names=classes))
            elif kind == "maxpool":
                written.append(viz.plot_max_pool(MAXPOOL_EXAMPLE, out / "max_pool.png"))
    except (ValueError, TypeError) as error:
        raise UserError(f"{_one_line(error)}") from None
    except OSError as error:
        raise UserError(f"cannot write into {out}: {_one_line(error)}") from None

    for path in written:
        print(f"wrote {path}")
    if image_note and any(k in wanted for k in ("feature-maps", "relu", "saliency")):
        print(f"input image: {image_note}")
    for note in skipped:
        print(f"skipped {note}")
    return 0


def _has_conv(model):
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
