"""The ``convnp explore`` sub-command (argparse), called from ``convnp.cli``:

    convnp explore [CHECKPOINT.npz] [--port N] [--host 127.0.0.1] [--open] [--export DIR]
                   [--model-code FILE.py:Class] [--input-size C H W]

Without a checkpoint it opens the demo's ``runs/demo/last.npz`` when that exists, else a LeNet-5 trained
for a few seconds on scikit-learn's bundled digits (cached in the data directory), and says which.
A user error raises ``convnp.errors.UserError("...")``; ``convnp.cli.main`` prints it as
``convnp explore: ...`` with status 1.
"""
from pathlib import Path

from ..errors import UserError

DEMO_CHECKPOINT = Path("runs") / "demo" / "last.npz"
DEFAULT_PORT = 8765


def add_explore_parser(subparsers):
    """Add the ``explore`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "explore", help="open the interactive panels (convolution, feature maps, receptive fields, cake "
                        "builder) on a checkpoint, in a local web page",
        description="Serve a local web page whose panels show what a checkpointed model computes, every number "
                    "by convnp. Without CHECKPOINT: runs/demo/last.npz when it exists, else a small LeNet-5 "
                    "trained in a few seconds on scikit-learn's bundled digits (cached in the data folder).")
    parser.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="a .npz checkpoint (default: see above)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="N",
                        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument("--export", metavar="DIR", help="write a static copy of the page (with precomputed replies "
                        "for a few bundled inputs) into DIR instead of serving")
    parser.add_argument("--model-code", metavar="FILE.py:CLASS", help="the Python file and nn.Module class of a "
                        "custom model (only this file is imported); the checkpoint's weights are loaded into it")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                        help="input size, for a --model-code model without a checkpoint")
    parser.set_defaults(func=explore_command)
    return parser


def load_model_code(spec):
    """'path/to/file.py:ClassName' -> the class (``convnp.models.user_code.load_model_class``, the one
    loader of user code, shared with train/evaluate/predict/viz/summary)."""
    from ..models.user_code import load_model_class

    try:
        return load_model_class(spec)
    except (ValueError, ImportError) as error:
        raise UserError(str(error)) from None


def load_custom_model(cls, checkpoint_path):
    """Build ``cls`` with the checkpoint's saved arguments and load its weights -> (model, info)."""
    from ..models.user_code import load_user_model

    try:
        return load_user_model(cls, checkpoint_path)
    except (ValueError, OSError) as error:
        raise UserError(" ".join(str(error).split())) from None


def default_checkpoint(log=print, progress=None):
    """runs/demo/last.npz when it exists, else the cached digits LeNet-5 (trained now if missing).

    The cache is the data directory's explorer/digits-lenet5/ folder, or the per-user cache folder's
    (~/.cache/convnp/... on Linux) when the data directory cannot be written (a shared read-only dataset folder)."""
    if DEMO_CHECKPOINT.is_file():
        log(f"convnp explore: no checkpoint given; using the demo's {DEMO_CHECKPOINT}")
        return DEMO_CHECKPOINT
    from ..data.download import data_dir, user_cache_dir

    folders = [Path(data_dir()) / "explorer" / "digits-lenet5", user_cache_dir() / "explorer" / "digits-lenet5"]
    for folder in folders:
        if (folder / "last.npz").is_file():
            log(f"convnp explore: no checkpoint given; using {folder / 'last.npz'} (LeNet-5 trained on the "
                f"bundled digits)")
            return folder / "last.npz"
    folder = next((f for f in folders if _writable(f)), None)
    if folder is None:
        raise UserError(f"no checkpoint given, and neither {folders[0]} nor {folders[1]} can be "
                        f"written to keep a default model; give a CHECKPOINT")
    log(f"convnp explore: no checkpoint given and no {DEMO_CHECKPOINT}; training LeNet-5 on scikit-learn's "
        f"bundled digits for a few seconds (kept in {folder})")
    train_digits_model(folder, progress=True if progress is None else progress)
    return folder / "last.npz"


def _writable(folder):
    """Whether ``folder`` exists and can be written, or can be created."""
    import os

    for parent in (folder, *folder.parents):
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def train_digits_model(folder, epochs=3, progress=True, log=None):
    """Train the small default model (LeNet-5 on the bundled digits at 28x28) into ``folder``/last.npz."""
    import numpy as np

    from ..recipes import default_recipe, run

    recipe = default_recipe("digits", model="lenet5", epochs=epochs)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return run(recipe, out=folder, progress=progress, log=log)


def explore_command(args):
    from . import Explorer, serve

    if args.model_code:
        cls = load_model_code(args.model_code)
        if args.checkpoint:
            model, info = load_custom_model(cls, args.checkpoint)
        else:
            try:
                model = cls()
            except TypeError as error:
                raise UserError(f"{cls.__name__}() needs arguments ({error}); give a checkpoint")
            info = None
            print(f"convnp explore: no checkpoint: {cls.__name__} with freshly initialised weights")
    else:
        from ..interop.files import load_model_file  # a .npz checkpoint, or an .onnx or .safetensors file

        path = args.checkpoint or default_checkpoint()
        model, info = load_model_file(path)
    try:
        explorer = Explorer(model, info, input_size=args.input_size, source=args.checkpoint)
    except ValueError as error:
        raise UserError(' '.join(str(error).split())) from None
    if args.export:
        from .export import export

        written = export(explorer, args.export)
        print(f"convnp explore: wrote a static copy to {written} (open it in a browser, no server needed)")
        return 0
    try:
        return serve(explorer, host=args.host, port=args.port, open_browser=args.open)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error} "
                        f"(try --port 0 for a free port)") from None
