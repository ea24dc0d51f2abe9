"""An ``nn.Sequential`` of convnp's own layers, stored as data: its structure is a list of
[layer class name, {argument: value}], so a checkpoint of such a stack needs no code to rebuild.

    layers = sequential_layers(model)      # [['Conv2d', {'in_channels': 1, ...}], ['ReLU', {}], ...] or None
    model = build_sequential(layers)       # a fresh nn.Sequential of the same structure

Only the layers of LAYER_ARGUMENTS (no nesting, no user classes) are written; a checkpoint's list is
checked by ``convnp.checkpoint_schema.check_layers`` before anything is built.
"""
from .. import nn

# The constructor arguments that rebuild each layer, read back from the attribute of the same name.
LAYER_ARGUMENTS = {
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"),
    "Linear": ("in_features", "out_features", "bias"),
    "MaxPool2d": ("kernel_size", "stride", "padding"),
    "AvgPool2d": ("kernel_size", "stride", "padding"),
    "AdaptiveAvgPool2d": ("output_size",),
    "BatchNorm1d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "ReLU": (), "Tanh": (), "Sigmoid": (),
    "LeakyReLU": ("negative_slope",),
    "Flatten": ("start_dim", "end_dim"),
    "Dropout": ("p",),
}


def sequential_layers(model):
    """[[class name, {argument: value}], ...] for an nn.Sequential of LAYER_ARGUMENTS layers, else None."""
    if type(model) is not nn.Sequential:
        return None
    layers = []
    for layer in model.children():
        name = type(layer).__name__
        if name not in LAYER_ARGUMENTS or type(layer) is not getattr(nn, name):
            return None
        args = {}
        for key in LAYER_ARGUMENTS[name]:
            value = getattr(layer, key)
            if key == "bias":
                value = value is not None
            args[key] = list(value) if isinstance(value, tuple) else value
        layers.append([name, args])
    return layers


def build_sequential(layers):
    """A fresh nn.Sequential from ``sequential_layers``'s list (checked beforehand)."""
    built = []
    for name, args in layers:
        args = {key: tuple(value) if isinstance(value, list) else value for key, value in args.items()}
        built.append(getattr(nn, name)(**args))
    return nn.Sequential(*built)
