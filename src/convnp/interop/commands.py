"""``convnp export CHECKPOINT --format onnx|torch|safetensors --out PATH``.

    onnx          PATH (an .onnx file), with the checkpoint's preprocessing in its metadata, so that
                  ``convnp evaluate/predict/viz PATH`` work on it as on the checkpoint
    torch         PATH as a .pt state_dict (torch.save) and PATH with .py: a generated module definition
    safetensors   PATH, the weights with convnp's metadata in the header
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .files import atomic_write_creating_folder, load_model_file

FORMATS = ("onnx", "torch", "safetensors")


def add_export_parser(subparsers):
    """Add the ``export`` sub-command to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "export", help="write a checkpoint's model as ONNX, PyTorch (.pt + .py) or safetensors",
        description="Export the model in a checkpoint (or an .onnx file). onnx: an ONNX file (opset 17, dynamic "
                    "batch) that evaluate/predict/viz also accept; torch: a .pt state_dict plus a .py file "
                    "defining the torch.nn.Module; safetensors: the weights. Needs: pip install 'convnp[interop]' "
                    "(onnx), PyTorch (torch).")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a .npz checkpoint written by convnp, or an .onnx file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx, torch or safetensors")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the file to write (.onnx or .safetensors added when missing; torch: PATH.pt and PATH.py)")
    parser.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (13-17, default 17)")
    parser.set_defaults(func=export_command)
    return parser


def example_input(model, info):
    """A (1, C, H, W) input of the shape the checkpoint was trained on, or one the model suggests."""
    from .torch import example_input_for

    size = info.get("input_size")
    dtype = next((p.dtype for p in model.parameters()), np.float32)
    if size:
        return np.zeros((1, *size), dtype)
    x = example_input_for(model)
    if x is None:
        raise ValueError(f"{info.get('path')} records no input size and {type(model).__name__} suggests none")
    return x


def export_command(args):
    model, info = load_model_file(args.checkpoint)
    x = example_input(model, info)
    out = Path(args.out)
    suffix = {"onnx": ".onnx", "safetensors": ".safetensors"}.get(args.format)
    if suffix and out.suffix.lower() != suffix:  # the suffix is how evaluate/predict/viz know an .onnx file
        out = out.with_name(out.name + suffix)
    meta = {"preprocessing": info.get("preprocessing"), "epoch": info.get("epoch")}
    if args.format == "onnx":
        from .onnx import export

        written = [export(model, x, out, opset=args.opset, metadata=meta)]
    elif args.format == "safetensors":
        from .safetensors import save_safetensors

        written = [save_safetensors(model, out, preprocessing=meta["preprocessing"], epoch=meta["epoch"])]
    else:
        written = _export_torch(model, x, out)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _export_torch(model, x, out):
    """out.pt (the state_dict) and out.py (the module), both made in memory and checked before either is
    written: the generated module, loaded with the weights, must reproduce convnp's output."""
    from ..tensor import Tensor, no_grad
    from .torch import _torch, to_torch

    torch = _torch()
    weights, source_path = out.with_suffix(".pt"), out.with_suffix(".py")
    twin = to_torch(model, x).eval()
    source = twin._convnp_source.replace("model.load_state_dict(...)",
                                         f'model.load_state_dict(torch.load("{weights.name}"))')
    namespace = {}
    exec(compile(source, str(source_path), "exec"), namespace)  # noqa: S102 - checking our own output
    check = namespace["Model"]()
    check.load_state_dict(twin.state_dict())
    batch = np.random.default_rng(0).standard_normal((2, *x.shape[1:])).astype(x.dtype)
    with torch.no_grad():
        theirs = check.eval()(torch.from_numpy(batch)).numpy()
    was_training = model.training
    model.eval()
    with no_grad():
        ours = model(Tensor(batch)).data
    model.train(was_training)
    if not np.allclose(theirs, ours, rtol=1e-4, atol=1e-4):
        raise ValueError(f"convnp export: the generated torch module differs from {type(model).__name__} "
                         f"(max |difference| {np.abs(theirs - ours).max():.2e}); nothing written")
    buffer = io.BytesIO()
    torch.save(twin.state_dict(), buffer)
    atomic_write_creating_folder(weights, lambda file: file.write(buffer.getvalue()))
    atomic_write_creating_folder(source_path, lambda file: file.write(source.encode("utf-8")))
    return [weights, source_path]
