"""The body of ``convnp predict`` (its flags are in ``convnp.cli.build_parser``): the top classes of image
files, each prepared like the model's training images (``convnp.predict``), and the loader of a
checkpoint that evaluate and predict share.

    predict_command(args)     # -> exit status; a problem the user can fix raises convnp.errors.UserError
"""
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import UserError, usable_device
from .models.user_code import load_any_model
from .predict import BlankImageWarning, load_model_input, predict_arrays, preprocess


def load_checkpoint_model(path, model_code=None, device="cpu"):
    """A checkpoint (.npz, .onnx, .safetensors; a user's class with ``model_code``) -> (model, info), which
    must record its preprocessing (dataset, normalisation), else UserError.  The model is moved to
    ``device`` (a ``--device`` value: 'cpu' or 'cuda')."""
    where = usable_device(device)
    try:
        model, info = load_any_model(path, model_code)
    except ImportError as error:
        raise UserError(str(error)) from None
    if not info.get("preprocessing"):
        raise UserError(f"{path} records no preprocessing (dataset, normalisation); it was not written by "
                        f"convnp train, so evaluate/predict cannot reproduce its inputs")
    return model.to(where), info


def predict_command(args):
    model, info = load_checkpoint_model(args.checkpoint, args.model_code, args.device)
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
