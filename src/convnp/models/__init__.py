"""Ready-made models: LeNet-5 (28x28 and the classic 32x32), the small CNNs of classic tutorials, an MLP,
a small VGG and ResNet-20.

Each model is also known by a short name, the one the command line and checkpoints use:

    model = get_model("lenet5", num_classes=10)
    model_name(model), model_config(model)      # 'lenet5', {'num_classes': 10, 'in_channels': 1}
    get_model(model_name(model), **model_config(model))   # an identical architecture, fresh weights
"""
import inspect

from .lenet import LeNet5, LeNet5Classic
from .mlp import MLP
from .resnet import BasicBlock, ResNet20
from .tutorial import MnistCNN, SimpleCNN, TinyCNN
from .vgg import SmallVGG

MODELS = {
    "lenet5": LeNet5,
    "lenet5-classic": LeNet5Classic,
    "simplecnn": SimpleCNN,
    "tinycnn": TinyCNN,
    "mlp": MLP,
    "smallvgg": SmallVGG,
    "resnet20": ResNet20,
    "mnistcnn": MnistCNN,
}

__all__ = ["LeNet5", "LeNet5Classic", "SimpleCNN", "TinyCNN", "MnistCNN", "MLP", "SmallVGG", "ResNet20", "BasicBlock",
           "MODELS", "get_model", "model_class", "model_name", "model_config", "constructor_parameters"]


def model_class(name):
    """The class called ``name``: a short name ('lenet5') or a class name ('LeNet5'), any case."""
    key = str(name).lower()
    if key in MODELS:
        return MODELS[key]
    for cls in MODELS.values():
        if cls.__name__.lower() == key:
            return cls
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")


def get_model(name, **kwargs):
    """A freshly initialised model by name; ``kwargs`` go to its constructor (unknown ones are an error)."""
    cls = model_class(name)
    accepted = constructor_parameters(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{cls.__name__} takes no argument(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(accepted) or 'none'}")
    return cls(**kwargs)


def model_name(model):
    """The short name of ``model``'s class in MODELS, or None for a model convnp.models does not list."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    return None


def constructor_parameters(cls):
    """The names of ``cls.__init__``'s arguments (no self, *args, **kwargs), in order."""
    signature = inspect.signature(cls.__init__)
    return [p.name for p in list(signature.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def model_config(model):
    """The constructor arguments that rebuild ``model``'s architecture: {name: value}.

    Every model here stores each constructor argument as an attribute of the same name (LeNet5's
    ``num_classes`` and ``in_channels``, MLP's ``in_features``, ``hidden``, ``num_classes``), so the
    values are read back from the model.  Raises ValueError for a model that does not.
    """
    config = {}
    for name in constructor_parameters(type(model)):
        if not hasattr(model, name):
            raise ValueError(f"{type(model).__name__} does not record its constructor argument {name!r} "
                             f"as an attribute, so its configuration cannot be saved")
        value = getattr(model, name)
        config[name] = list(value) if isinstance(value, tuple) else value
    return config
