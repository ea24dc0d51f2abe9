"""The ``convnp summary`` and ``convnp viz`` sub-commands (argparse), called from ``convnp.cli``:

    add_summary_parser(subparsers)   # convnp summary --model lenet5 [--input-size 1 28 28] [--batch-size 1]
    add_viz_parser(subparsers)       # convnp viz CHECKPOINT [--what filters feature-maps ...] --out DIR

Each parser sets ``func`` (``args.func(args)`` runs the command and returns the exit status 0).  A user
error ends with ``SystemExit("convnp summary: ...")``: one line, non-zero status, no traceback.
"""
from pathlib import Path

import numpy as np

MODEL_INPUTS = {  # name -> (model class name in convnp.models, one example's shape)
    "lenet5": ("LeNet5", (1, 28, 28)),
    "lenet5-classic": ("LeNet5Classic", (1, 32, 32)),
    "simplecnn": ("SimpleCNN", (1, 28, 28)),
    "tinycnn": ("TinyCNN", (1, 8, 8)),
    "mlp": ("MLP", (1, 28, 28)),
}

VIZ_KINDS = ("filters", "feature-maps", "relu", "saliency", "curves", "confusion", "misclassified", "maxpool")

# The small integer map of the max-pooling picture (a classic 4x4 example, 2x2 windows, stride 2).
MAXPOOL_EXAMPLE = np.array([[1, 3, 2, 1], [4, 2, 0, 1], [5, 1, 7, 8], [2, 6, 3, 4]])


def _one_line(error):
    return " ".join(str(error).split())


# --- convnp summary --------------------------------------------------------------------------------------
def add_summary_parser(subparsers):
    """Add the ``summary`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    names = ", ".join(MODEL_INPUTS)
    parser = subparsers.add_parser(
        "summary", help="print a model's layers, shapes, parameters, MACs/FLOPs and receptive fields",
        description="Print a torchinfo-style table of a model: one row per layer call with its output shape "
                    "(batch included), parameters, mult-adds and receptive field, then the totals (parameters, "
                    "MACs, FLOPs = 2 x MACs) and estimated memory.")
    parser.add_argument("--model", required=True, metavar="NAME", help=f"the model: one of {names}")
    parser.add_argument("--input-size", type=int, nargs="+", metavar="N",
                        help="the shape of one input example, e.g. 1 28 28 (default: the model's own)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="batch size shown in the shapes "
                        "and used for the MACs and sizes (default 1)")
    parser.set_defaults(func=summary_command)
    return parser


def build_model(name, where="convnp summary"):
    """A fresh model of the zoo by its CLI name -> (model, default shape of one input example or None)."""
    from .. import models

    registry = getattr(models, "MODELS", None) or {key: getattr(models, cls) for key, (cls, _) in MODEL_INPUTS.items()}
    key = name.lower()
    if key not in registry:
        raise SystemExit(f"{where}: unknown model {name!r}; choose one of: {', '.join(registry)}")
    model = registry[key]()
    if key in MODEL_INPUTS:
        return model, MODEL_INPUTS[key][1]
    side = getattr(model, "input_size", None)
    return model, ((getattr(model, "in_channels", 1), side, side) if isinstance(side, int) else None)


def summary_command(args):
    from .summary import summary

    model, default_size = build_model(args.model)
    input_size = tuple(args.input_size) if args.input_size else default_size
    if input_size is None:
        raise SystemExit(f"convnp summary: give --input-size for {args.model} (e.g. --input-size 3 32 32)")
    if args.batch_size < 1:
        raise SystemExit(f"convnp summary: --batch-size must be >= 1, got {args.batch_size}")
    if min(input_size) < 1:
        raise SystemExit(f"convnp summary: --input-size must be positive, got {' '.join(map(str, input_size))}")
    if len(input_size) == 4:
        raise SystemExit("convnp summary: --input-size is the shape of ONE example (e.g. 1 28 28); "
                         "give the batch with --batch-size")
    try:
        result = summary(model, input_size, batch_size=args.batch_size)
    except (ValueError, TypeError) as error:
        message = _one_line(error)
        raise SystemExit(f"convnp summary: {message.removeprefix('summary: ')}") from None
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
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint written by convnp (.npz)")
    parser.add_argument("--what", nargs="+", default=["all"], metavar="KIND",
                        help=f"what to draw: all (default: every kind the inputs allow) or any of "
                             f"{', '.join(VIZ_KINDS)} (space- or comma-separated)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files (created)")
    parser.add_argument("--image", metavar="FILE", help="input image for feature-maps/relu/saliency: .npy "
                        "array (H, W) or (C, H, W), or a PNG/JPEG file")
    parser.add_argument("--data", metavar="NAME", help="dataset whose test split gives the image (with --index) "
                        "and the confusion matrix / mistakes, e.g. mnist, digits, lines")
    parser.add_argument("--index", type=int, default=0, help="which test image to draw (default 0)")
    parser.add_argument("--limit", type=int, default=2000, help="test images used for confusion/misclassified "
                        "(default 2000)")
    parser.add_argument("--target", type=int, help="class whose score the saliency map explains "
                        "(default: the predicted class)")
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
                raise SystemExit(f"convnp viz: unknown --what {kind!r}; choose from all, {', '.join(VIZ_KINDS)}")
            kinds.append(kind)
    return kinds or ["all"]


def _load_image(path, channels, size):
    """An image file -> float32 (C, H, W) in [0, 1] (PNG/JPEG via Pillow, resized to ``size``), or a .npy."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"convnp viz: --image {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:  # memory-mapped: a header that declares more data than the file holds is an error, not an allocation
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            if not isinstance(mapped, np.ndarray) or mapped.dtype.kind not in "fiub" or mapped.size > 1 << 28:
                raise ValueError(f"holds {getattr(mapped, 'dtype', 'no array')} "
                                 f"{getattr(mapped, 'shape', '')}; expected a real-valued image array")
            array = np.array(mapped, dtype=np.float32)
        except (OSError, ValueError, EOFError) as error:
            raise SystemExit(f"convnp viz: cannot read --image {path}: {_one_line(error)}") from None
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise SystemExit(f"convnp viz: --image {path} holds shape {array.shape}; expected (H, W) or (C, H, W)")
        return array
    try:
        from ..data.images import open_image_checked

        image = open_image_checked(path).convert("L" if channels == 1 else "RGB")
        if size is not None:
            image = image.resize((size[1], size[0]))
        array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError) as error:
        raise SystemExit(f"convnp viz: cannot read --image {path}: {_one_line(error)}") from None
    return array[None] if array.ndim == 2 else np.transpose(array, (2, 0, 1))


def preprocess(images, info):
    """Images in [0, 1] -> what the model was trained on: (x - mean) / std per channel when the
    checkpoint records the normalisation (``info['mean']``, ``info['std']``), else unchanged."""
    images = np.asarray(images, dtype=np.float32)
    mean, std = _info_get(info, "mean"), _info_get(info, "std")
    if mean is None or std is None:
        return images
    shape = (-1, 1, 1)
    mean = np.asarray(mean, dtype=np.float32).reshape(shape)
    std = np.asarray(std, dtype=np.float32).reshape(shape)
    return (images - mean) / std


def _model_geometry(model, info):
    """(channels, (H, W) or None) the model expects, from the checkpoint info or the model itself."""
    size = _info_get(info, "input_size")
    channels = getattr(model, "in_channels", None)
    if size is not None and len(size) >= 2:
        channels = channels or (size[-3] if len(size) >= 3 else 1)
        return channels, tuple(size[-2:])
    side = getattr(model, "input_size", None)
    if isinstance(side, int):
        return channels or 1, (side, side)
    return channels or 1, None


def viz_command(args):
    from . import viz

    kinds = _parse_kinds(args.what)
    explicit = "all" not in kinds
    wanted = kinds if explicit else list(VIZ_KINDS)
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"convnp viz: checkpoint {args.checkpoint} does not exist")
    try:
        from ..checkpoint import load_model
    except ImportError as error:
        raise SystemExit(f"convnp viz: checkpoints cannot be read here (convnp.checkpoint: "
                         f"{_one_line(error)})") from None
    try:
        model, info = load_model(args.checkpoint)
    except (OSError, ValueError, KeyError, TypeError) as error:
        message = _one_line(error)
        if str(args.checkpoint) not in message:
            message = f"cannot load {args.checkpoint}: {message}"
        raise SystemExit(f"convnp viz: {message}") from None
    model.eval()
    out = Path(args.out)
    channels, size = _model_geometry(model, info)

    data_name = args.data or _info_get(info, "dataset")
    dataset = None
    wants_image = args.image is None and any(k in wanted for k in ("feature-maps", "relu", "saliency"))
    wants_data = any(k in wanted for k in ("confusion", "misclassified")) or wants_image
    if args.data or (data_name and wants_data):
        from ..data import load_dataset

        try:
            dataset = load_dataset(data_name, split="test")
        except Exception as error:  # noqa: BLE001 - any failure to get the data is the user's to fix
            if args.data or explicit:
                raise SystemExit(f"convnp viz: cannot load dataset {data_name!r}: {_one_line(error)}") from None
            dataset = None

    image, image_note = None, ""
    if args.image:
        image, image_note = _load_image(args.image, channels, size), f"from {args.image}"
    elif dataset is not None:
        if not 0 <= args.index < len(dataset):
            raise SystemExit(f"convnp viz: --index {args.index} is outside the {len(dataset)} test images")
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
            raise SystemExit(f"convnp viz: cannot draw {kind}: {why}")
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
        raise SystemExit(f"convnp viz: {_one_line(error)}") from None
    except OSError as error:
        raise SystemExit(f"convnp viz: cannot write into {out}: {_one_line(error)}") from None

    for path in written:
        print(f"wrote {path}")
    if image_note and any(k in wanted for k in ("feature-maps", "relu", "saliency")):
        print(f"input image: {image_note}")
    for note in skipped:
        print(f"skipped {note}")
    return 0


def _has_conv(model):
    from .. import nn

    return any(isinstance(m, nn.Conv2d) for m in model.modules())
