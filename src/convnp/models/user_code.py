"""Your own model class: imported only from the file (or module) the user names, never because a file asks.

    cls = load_model_class("my_models.py:ShapeNet")        # or "my_package.models:ShapeNet" on PYTHONPATH
    model, info = load_user_model(cls, "runs/shapes/best.npz")

A checkpoint records the class's name and its ``file:Class`` spec (``recipe.model_code``) as data; the
command line rebuilds such a model only when given ``--model-code``, and otherwise says exactly what to
pass (``missing_code_message``).  Errors are ValueErrors (ImportError for a module that is not there)
with one-line messages that name the spec.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

from .. import nn
from . import constructor_parameters


def load_model_class(spec):
    """'path/to/file.py:ClassName' or 'package.module:ClassName' -> the nn.Module subclass.

    A .py file is executed as a module of its own (only that file); a dotted module is imported from
    sys.path (PYTHONPATH).  Raises ValueError naming the spec for anything wrong."""
    source, _, name = str(spec).rpartition(":")
    if not source or not name or not name.isidentifier():
        raise ValueError(f"--model-code must be FILE.py:CLASS or MODULE:CLASS, got {spec!r}")
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"--model-code {source}: no such Python file")
        module_name = f"convnp_user_model_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001 - the user's code: said in one line
            sys.modules.pop(module_name, None)
            raise ValueError(f"--model-code {spec}: importing {source} failed: {type(error).__name__}: "
                             f"{' '.join(str(error).split())}") from None
    else:
        try:
            module = importlib.import_module(source)
        except Exception as error:  # noqa: BLE001
            raise ValueError(f"--model-code {spec}: cannot import module {source} ({type(error).__name__}: "
                             f"{' '.join(str(error).split())}); is it on PYTHONPATH?") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"--model-code {spec}: {source} has no nn.Module subclass named {name!r}")
    return cls


def model_arguments(cls, info):
    """The constructor arguments that rebuild ``cls`` for checkpoint ``info``: the saved ``model_args``, else
    the recipe's ``model_args`` plus num_classes / in_channels / in_features from the preprocessing."""
    if info.get("model_args") is not None:
        return dict(info["model_args"])
    recipe = info.get("recipe") or {}
    args = dict(recipe.get("model_args") or {})
    prep = info.get("preprocessing") or {}
    if prep.get("input_size") and prep.get("classes"):
        channels, height, width = prep["input_size"]
        wanted = {"num_classes": len(prep["classes"]), "in_channels": channels,
                  "in_features": channels * height * width}
        accepted = constructor_parameters(cls)
        args.update({k: v for k, v in wanted.items() if k in accepted and k not in args})
    return args


def load_user_model(cls, checkpoint_path):
    """Build ``cls`` with the checkpoint's arguments and load its weights -> (model in eval mode, info)."""
    from .. import checkpoint

    info = checkpoint.load(checkpoint_path)
    if info["model_class"] != cls.__name__:
        raise ValueError(f"{checkpoint_path} holds a {info['model_class']} model, not the {cls.__name__} "
                         f"--model-code names")
    args = model_arguments(cls, info)
    try:
        model = cls(**args)
        checkpoint.restore(info, model, rng=False)
    except (TypeError, ValueError) as error:
        call = ", ".join(f"{key}={value!r}" for key, value in args.items())
        raise ValueError(f"cannot load {checkpoint_path} into {cls.__name__}({call}): "
                         f"{' '.join(str(error).split())}") from None
    model.eval()
    return model, info


def missing_code_message(path, info):
    """What to say when a checkpoint of a user's class is opened without --model-code."""
    recipe = info.get("recipe") or {}
    spec = recipe.get("model_code") or f"FILE.py:{info['model_class']}"
    return (f"{path} holds a {info['model_class']} model, which convnp.models does not list: pass the code "
            f"that defines it, --model-code {spec} (convnp never imports code because a file names it)")


def load_any_model(path, model_code=None):
    """The model of a checkpoint for a command -> (model in eval mode, info): with ``model_code``
    ('file.py:Class') the user's class, else a built-in or Sequential model (``interop.load_model_file``:
    .npz, .onnx, .safetensors).  A user's class without ``model_code`` is a ValueError saying what to pass."""
    from .. import checkpoint
    from ..interop.files import load_model_file

    if model_code:
        return load_user_model(load_model_class(model_code), path)
    try:
        return load_model_file(path)
    except checkpoint.CheckpointError as error:
        if "does not list" not in str(error):
            raise
        raise ValueError(missing_code_message(path, checkpoint.load(path))) from None
