"""convnp <-> PyTorch modules.

    torch_model = to_torch(model)         # a real torch.nn.Module tree with the same state_dict keys
    model = from_torch(torch_model)       # and back (bit for bit for a model that came from to_torch)
    text = torch_source(model)            # the Python source of the torch module (what `convnp export
                                          # --format torch` writes beside the .pt state_dict)

Layers become their torch twins (``nn.Conv2d`` -> ``torch.nn.Conv2d`` with the same arguments, ...),
plain ``Sequential``/``ModuleList`` stay containers, and each custom class becomes a generated
``torch.nn.Module`` subclass of the same name whose ``forward`` is written from one traced forward
pass (``convnp.interop.trace``): its own ops become torch calls (``a + b``, ``torch.cat``,
``F.conv2d``, ...) and its children are called as modules, as in the original.  Python control flow in
a custom ``forward`` is frozen to the path the example input took, as in any tracer; the trace runs in
eval mode, so a functional ``F.dropout`` in a custom ``forward`` is not carried over (a ``Dropout`` layer
is).  A model made by ``to_torch`` remembers the convnp model it came from (its name and arguments, or a
copy for a custom class), which is how ``from_torch`` gives back the same class.

``from_torch`` converts torch layers and containers convnp has; a torch class with its own
``forward`` is converted through ONNX when ``example_input`` is given, and is otherwise an error naming
the first module it cannot convert.
"""
from __future__ import annotations

import copy
import io
import itertools
import sys
import types

import numpy as np

from .. import nn
from .files import require
from .trace import trace

_LAYERS = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d,
           nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Flatten, nn.Dropout, nn.Identity)
_counter = itertools.count()


class TorchConversionError(ValueError):
    """A module or op with no PyTorch (or convnp) counterpart."""


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("convnp.interop.to_torch/from_torch need PyTorch: pip install torch") from None
    return torch


# --- convnp -> torch source -------------------------------------------------------------------------------
def layer_source(m):
    """The torch constructor call of a convnp layer: Conv2d(1, 6, 5) -> 'nn.Conv2d(1, 6, kernel_size=(5, 5), ...)'."""
    kind = type(m)
    if kind is nn.Conv2d:
        return (f"nn.Conv2d({m.in_channels}, {m.out_channels}, kernel_size={m.kernel_size}, stride={m.stride}, "
                f"padding={m.padding}, dilation={m.dilation}, groups={m.groups}, bias={m.bias is not None})")
    if kind is nn.Linear:
        return f"nn.Linear({m.in_features}, {m.out_features}, bias={m.bias is not None})"
    if kind in (nn.MaxPool2d, nn.AvgPool2d):
        return f"nn.{kind.__name__}(kernel_size={m.kernel_size}, stride={m.stride}, padding={m.padding})"
    if kind is nn.AdaptiveAvgPool2d:
        return f"nn.AdaptiveAvgPool2d({m.output_size!r})"
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        return (f"nn.{kind.__name__}({m.num_features}, eps={m.eps!r}, momentum={m.momentum!r}, affine={m.affine}, "
                f"track_running_stats={m.track_running_stats})")
    if kind is nn.LeakyReLU:
        return f"nn.LeakyReLU(negative_slope={m.negative_slope!r})"
    if kind is nn.Flatten:
        return f"nn.Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})"
    if kind is nn.Dropout:
        return f"nn.Dropout(p={m.p!r})"
    if kind in (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity):
        return f"nn.{kind.__name__}()"
    raise TorchConversionError(f"{kind.__name__} has no torch twin")


def _is_plain_container(m):
    return type(m) in (nn.Sequential, nn.ModuleList)


def _needs_trace(m):
    if type(m) in _LAYERS:
        return False
    if _is_plain_container(m) or (isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward):
        return any(_needs_trace(child) for child in m.children())
    return True


def example_input_for(model):
    """A (1, ...) input for tracing ``model``, from what it says about itself (``input_size``,
    ``in_channels``, ``in_features``, its first layer); None when it says nothing usable."""
    side = getattr(model, "input_size", None)
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    dtype = next((p.dtype for p in model.parameters()), np.float32)
    if isinstance(first, nn.Linear) and not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return np.zeros((1, first.in_features), dtype)
    if isinstance(first, nn.Conv2d):
        sides = [side] if isinstance(side, int) else [32, 28, 64, 8]
        for s in sides:
            x = np.zeros((1, first.in_channels, s, s), dtype)
            try:
                _try_forward(model, x)
                return x
            except (ValueError, IndexError):
                continue
    return None


def _try_forward(model, x):
    from ..tensor import no_grad

    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_grad():
            model(x)
    finally:
        for m, mode in modes:
            m.training = mode


def torch_source(model, example_input=None, weights_file=None):
    """Python source defining a torch.nn.Module equivalent to ``model`` (its class is also bound to the
    name ``Model`` at the end of the file)."""
    graph = None
    if _needs_trace(model):
        if example_input is None:
            example_input = example_input_for(model)
        if example_input is None:
            raise TorchConversionError(f"to_torch: {type(model).__name__} has its own forward(), which is traced "
                                       f"once; pass example_input= (an array of the input's shape)")
        graph = trace(model, example_input)
    writer = _SourceWriter(graph)
    top = writer.expression(model, "")
    from .. import __version__

    load = f'model.load_state_dict(torch.load("{weights_file}"))' if weights_file else "model.load_state_dict(...)"
    header = (f'"""PyTorch definition of convnp\'s {type(model).__name__}, generated by convnp {__version__} from '
              f'a traced forward pass.\n\n    model = Model()\n    {load}\n"""\n'
              "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n")
    body = "\n\n".join(text for _, text in writer.classes)
    top_name = top[:-2] if top.endswith("()") else None
    footer = f"Model = {top_name}\n" if top_name and top_name.isidentifier() else f"def Model():\n    return {top}\n"
    return header + ("\n\n" + body if body else "") + "\n\n" + footer


class _SourceWriter:
    def __init__(self, graph):
        self.graph = graph
        self.classes = []  # (name, text), dependencies first
        self.calls = {}
        if graph is not None:
            self._index(graph.root)

    def _index(self, call):
        self.calls.setdefault(call.path, call)
        for item in call.items:
            if hasattr(item, "items"):
                self._index(item)

    def expression(self, m, path):
        """The torch expression that builds module ``m`` (at ``path``)."""
        if type(m) in _LAYERS:
            return layer_source(m)
        children = list(m.named_children())
        if _is_plain_container(m):
            inner = _arguments([self.expression(c, _join(path, n)) for n, c in children])
            return f"nn.Sequential({inner})" if type(m) is nn.Sequential else f"nn.ModuleList([{inner}])"
        name = type(m).__name__
        if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
            inner = _arguments([self.expression(c, _join(path, n)) for n, c in children]).replace("\n", "\n        ")
            text = f"class {name}(nn.Sequential):\n    def __init__(self):\n        super().__init__({inner})\n"
            return self._class(name, text) + "()"
        lines = ["class {name}(nn.Module):", "    def __init__(self):", "        super().__init__()"]
        from ..nn.module import Parameter

        buffers = set(m._buffer_names)
        for attr, value in vars(m).items():
            if isinstance(value, nn.Module):
                built = self.expression(value, _join(path, attr)).replace("\n", "\n        ")
                lines.append(f"        self.{attr} = {built}" if attr.isidentifier() else
                             f"        self.add_module({attr!r}, {built})")
            elif isinstance(value, Parameter):
                lines.append(f"        self.{attr} = nn.Parameter(torch.zeros({tuple(value.shape)}, "
                             f"dtype=torch.{value.dtype}), requires_grad={value.requires_grad})")
            elif attr in buffers and value is not None:
                lines.append(f"        self.register_buffer({attr!r}, torch.zeros({tuple(np.shape(value))}, "
                             f"dtype=torch.{np.asarray(value).dtype}))")
        lines.append("")
        call = self.calls.get(path)
        if call is None:
            lines += ["    def forward(self, *args):",
                      f"        raise NotImplementedError('{name} was not called in the traced forward pass')"]
        else:
            lines += _ForwardWriter(self.graph, call).lines()
        return self._class(name, "\n".join(lines) + "\n") + "()"

    def _class(self, name, template):
        """Register a class text (same name, same text: one class; same name, other text: Name_2, ...)."""
        for number in itertools.count(1):
            candidate = name if number == 1 else f"{name}_{number}"
            text = template.replace("{name}", candidate) if "{name}" in template else \
                template.replace(f"class {name}(", f"class {candidate}(", 1)
            existing = dict(self.classes).get(candidate)
            if existing is None:
                self.classes.append((candidate, text))
                return candidate
            if existing == text:
                return candidate


def _arguments(items):
    """One argument per line when there are several (nested calls indented under their parent)."""
    if len(items) <= 1:
        return "".join(items)
    return "\n" + "".join("    " + item.replace("\n", "\n    ") + ",\n" for item in items)


def _join(path, name):
    return f"{path}.{name}" if path else name


def _becomes_sequential(m):
    return _is_plain_container(m) or (isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward)


def _attribute(module, relative):
    """'features.0.weight' -> 'self.features[0].weight': digits index a torch Sequential/ModuleList, and
    are read with getattr elsewhere (a custom class's child named '0')."""
    text = "self"
    for part in relative.split("."):
        if part.isdigit() and module is not None and _becomes_sequential(module):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}"
        else:  # a child called '0' in a custom class, or another name Python cannot spell after a dot
            text = f"getattr({text}, {part!r})"
        value = vars(module).get(part) if module is not None else None
        module = value if isinstance(value, nn.Module) else None
    return text


class _ForwardWriter:
    """Writes ``def forward`` of one module from its traced call."""

    def __init__(self, graph, call):
        self.graph, self.call = graph, call
        self.vars, self.out = {}, []
        self.prefix = f"{call.path}." if call.path else ""

    def lines(self):
        params = []
        for i, name in enumerate(self.call.inputs):
            var = "x" if len(self.call.inputs) == 1 else f"x{i}"
            self.vars[name] = var
            params.append(var)
        for item in self.call.items:
            if hasattr(item, "items"):
                self._child(item)
            else:
                self._op(item)
        body = self.out + [f"return {self.ref(self.call.output)}"]
        return [f"    def forward(self, {', '.join(params)}):"] + ["        " + line for line in body]

    def _assign(self, name, expression):
        var = f"t{len(self.vars)}"
        self.vars[name] = var
        self.out.append(f"{var} = {expression}")

    def ref(self, name):
        if name in self.vars:
            return self.vars[name]
        if name in self.graph.params:
            if not name.startswith(self.prefix):
                raise TorchConversionError(f"to_torch: {type(self.call.module).__name__} uses {name}, a parameter of "
                                           f"another module; torch code can only reach its own")
            return _attribute(self.call.module, name[len(self.prefix):])
        if name in self.graph.constants:
            value = self.graph.constants[name]
            if value.ndim == 0:
                return repr(value.item())
            if value.size <= 64:
                return f"torch.tensor({value.tolist()!r}, dtype=torch.{value.dtype})"
            raise TorchConversionError(f"to_torch: {type(self.call.module).__name__}'s forward uses a constant array "
                                       f"of shape {value.shape}; make it a buffer (register_buffer) instead")
        raise TorchConversionError(f"to_torch: value {name} of {type(self.call.module).__name__} comes from outside it")

    def _child(self, call):
        if not call.path.startswith(self.prefix) or call.path == self.call.path:
            raise TorchConversionError(f"to_torch: {type(self.call.module).__name__} calls '{call.path}', which is not "
                                       f"one of its sub-modules")
        args = ", ".join(self.ref(n) for n in call.inputs)
        self._assign(call.output, f"{_attribute(self.call.module, call.path[len(self.prefix):])}({args})")

    def _op(self, node):
        a = node.attrs
        x = [None if n is None else self.ref(n) for n in node.inputs]
        op = node.op
        simple = {"ReLU": "torch.relu({0})", "Tanh": "torch.tanh({0})", "Sigmoid": "torch.sigmoid({0})",
                  "Exp": "torch.exp({0})", "Log": "torch.log({0})", "Neg": "-{0}", "Add": "{0} + {1}",
                  "Sub": "{0} - {1}", "Mul": "{0} * {1}", "Div": "{0} / {1}", "MatMul": "{0} @ {1}"}
        if op in simple:
            expression = simple[op].format(*x)
        elif op == "LeakyReLU":
            expression = f"F.leaky_relu({x[0]}, {a['negative_slope']!r})"
        elif op == "Pow":
            expression = f"{x[0]} ** {a['exponent']!r}"
        elif op == "Conv2d":
            expression = (f"F.conv2d({x[0]}, {x[1]}, {x[2]}, stride={a['stride']}, padding={a['padding']}, "
                          f"dilation={a['dilation']}, groups={a['groups']})")
        elif op in ("MaxPool2d", "AvgPool2d"):
            fn = "max_pool2d" if op == "MaxPool2d" else "avg_pool2d"
            expression = f"F.{fn}({x[0]}, {a['kernel_size']}, {a['stride']}, {a['padding']})"
        elif op == "AdaptiveAvgPool2d":
            expression = f"F.adaptive_avg_pool2d({x[0]}, {a['output_size']})"
        elif op == "Linear":
            expression = f"F.linear({x[0]}, {x[1]}, {x[2]})"
        elif op in ("Sum", "Mean"):
            fn = op.lower()
            axis = a.get("axis")
            if axis is None and not a.get("keepdims"):
                expression = f"torch.{fn}({x[0]})"
            else:
                dims = tuple(range(len(node.input_shapes[0]))) if axis is None else axis
                expression = f"torch.{fn}({x[0]}, dim={dims!r}, keepdim={bool(a.get('keepdims'))})"
        elif op == "Reshape":
            source, target = node.input_shapes[0], tuple(a["shape"])
            if len(source) >= 2 and target == source[:1] + (int(np.prod(source[1:])),):
                expression = f"torch.flatten({x[0]}, 1)"
            else:
                dims = [str(d) for d in target]
                if target and target[0] == source[0]:
                    dims[0] = f"{x[0]}.shape[0]"
                expression = f"{x[0]}.reshape({', '.join(dims)}{',' if len(dims) == 1 else ''})"
        elif op == "Transpose":
            axes = a.get("axes")
            perm = tuple(reversed(range(len(node.input_shapes[0])))) if axes is None else tuple(axes)
            expression = f"{x[0]}.permute{perm!r}"
        elif op == "Concatenate":
            expression = f"torch.cat([{', '.join(x)}], dim={a.get('axis', 0)})"
        elif op in ("Softmax", "LogSoftmax"):
            expression = f"torch.{op.lower().replace('logsoftmax', 'log_softmax')}({x[0]}, dim={a.get('axis', -1)})"
        elif op == "BatchNorm":
            expression = (f"F.batch_norm({x[0]}, {self.ref(a['running_mean'])}, {self.ref(a['running_var'])}, "
                          f"{x[1]}, {x[2]}, self.training, {a['momentum']!r}, {a['eps']!r})")
        elif op == "GetItem" and _plain_index(a["index"]):
            expression = f"{x[0]}[{_index_text(a['index'])}]"
        else:
            raise TorchConversionError(f"to_torch: op {op} {self.graph.where(node)} has no torch translation here")
        self._assign(node.output, expression)


def _plain_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


def _index_text(index):
    parts = index if isinstance(index, tuple) else (index,)

    def one(p):
        if isinstance(p, slice):
            return ":".join("" if v is None else str(v) for v in (p.start, p.stop)) + \
                ("" if p.step is None else f":{p.step}")
        return "..." if p is Ellipsis else repr(p)
    return ", ".join(one(p) for p in parts) + ("," if len(parts) == 1 and not isinstance(index, tuple) else "")


def to_torch(model, example_input=None):
    """A torch.nn.Module equivalent to ``model``, with the same state_dict keys and values, in the same
    train/eval mode.  ``example_input`` (an array of the input's shape) is needed only for a custom
    class whose input shape convnp cannot guess (see ``example_input_for``)."""
    torch = _torch()
    source = torch_source(model, example_input)
    name = f"convnp_generated_{type(model).__name__}_{next(_counter)}"
    module = types.ModuleType(name)
    module.__dict__["__source__"] = source
    exec(compile(source, f"<convnp.interop.to_torch {type(model).__name__}>", "exec"), module.__dict__)  # noqa: S102
    sys.modules[name] = module  # so the classes can be pickled (torch.save of the module, DDP spawn)
    torch_model = module.Model()
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    if dtype == np.float64:
        torch_model = torch_model.double()
    state = {key: torch.from_numpy(np.array(value)) for key, value in model.state_dict().items()}
    torch_model.load_state_dict(state, strict=True)
    torch_model.train(model.training)
    from ..models import model_config, model_name

    try:
        origin = (model_name(model), model_config(model)) if model_name(model) else None
    except ValueError:
        origin = None
    torch_model._convnp_origin = origin or copy.deepcopy(model)
    torch_model._convnp_source = source
    return torch_model


# --- torch -> convnp ---------------------------------------------------------------------------------------
def from_torch(torch_module, example_input=None):
    """A convnp Module equivalent to ``torch_module`` with its weights (and its train/eval mode).

    Made by ``to_torch``: the original convnp class is rebuilt.  Made of torch layers convnp has
    (Conv2d, Linear, pools, BatchNorm1d/2d, activations, Flatten, Dropout) in Sequential/ModuleList
    containers: converted layer by layer.  Anything with its own ``forward``: converted through ONNX
    (``torch.onnx.export``, then ``convnp.onnx``) when ``example_input`` is given.
    """
    torch = _torch()
    state = {k: v.detach().cpu().numpy() for k, v in torch_module.state_dict().items()}
    origin = getattr(torch_module, "_convnp_origin", None)
    if origin is not None:
        if isinstance(origin, tuple):
            from ..models import get_model

            model = get_model(origin[0], **(origin[1] or {}))
        else:
            model = copy.deepcopy(origin)
        dtype = next((v.dtype for v in state.values() if v.dtype.kind == "f"), np.float32)
        model.astype(dtype).load_state_dict(state)
        return model.train(torch_module.training)
    try:
        model = _convert(torch_module, "", torch)
    except TorchConversionError:
        if example_input is None:
            raise
        return _via_onnx(torch_module, example_input, torch)
    model.load_state_dict(state)
    return model.train(torch_module.training)


def _convert(t, path, torch):
    tnn = torch.nn
    kind = type(t)
    where = f"'{path}' ({kind.__name__})" if path else kind.__name__

    def refuse(why):
        raise TorchConversionError(f"from_torch: {where} {why}")

    dtype = next((p.detach().numpy().dtype for p in t.parameters(recurse=False)), None)
    if kind is tnn.Conv2d:
        if t.padding_mode != "zeros":
            refuse(f"uses padding_mode={t.padding_mode!r}; convnp pads with zeros")
        padding = t.padding if isinstance(t.padding, str) else tuple(t.padding)
        return nn.Conv2d(t.in_channels, t.out_channels, t.kernel_size, t.stride, padding, t.dilation, t.groups,
                         bias=t.bias is not None, dtype=dtype)
    if kind is tnn.Linear:
        return nn.Linear(t.in_features, t.out_features, bias=t.bias is not None, dtype=dtype)
    if kind in (tnn.MaxPool2d, tnn.AvgPool2d):
        if t.ceil_mode:
            refuse("uses ceil_mode=True; convnp pools use floor sizes")
        if kind is tnn.MaxPool2d and (t.dilation not in (1, (1, 1)) or t.return_indices):
            refuse("uses dilation or return_indices, which convnp's MaxPool2d does not have")
        if kind is tnn.AvgPool2d and (not t.count_include_pad or t.divisor_override is not None):
            refuse("excludes padding from its averages (count_include_pad=False or divisor_override); convnp counts it")
        return getattr(nn, kind.__name__)(t.kernel_size, t.stride, t.padding)
    if kind is tnn.AdaptiveAvgPool2d:
        return nn.AdaptiveAvgPool2d(t.output_size)
    if kind in (tnn.BatchNorm1d, tnn.BatchNorm2d):
        return getattr(nn, kind.__name__)(t.num_features, t.eps, t.momentum, t.affine, t.track_running_stats,
                                          dtype=dtype or (t.running_mean.numpy().dtype if t.running_mean is not None
                                                          else None))
    if kind is tnn.LeakyReLU:
        return nn.LeakyReLU(t.negative_slope)
    if kind in (tnn.ReLU, tnn.Tanh, tnn.Sigmoid, tnn.Identity):
        return getattr(nn, kind.__name__)()
    if kind is tnn.Flatten:
        return nn.Flatten(t.start_dim, t.end_dim)
    if kind is tnn.Dropout:
        return nn.Dropout(t.p)
    if kind in (tnn.Sequential, tnn.ModuleList):
        children = [_convert(c, _join(path, n), torch) for n, c in t.named_children()]
        return (nn.Sequential if kind is tnn.Sequential else nn.ModuleList)(*children)
    if not list(t.children()):
        refuse("has no convnp equivalent")
    for name, child in t.named_children():  # name the deepest culprit first
        _convert(child, _join(path, name), torch)
    refuse("defines its own forward(), which convnp cannot translate; pass example_input= to convert the "
           "whole model through ONNX")


def _via_onnx(torch_module, example_input, torch):
    from .onnx import OnnxModel

    onnx = require("onnx", "from_torch through ONNX")
    buffer = io.BytesIO()
    was_training = torch_module.training
    torch_module.eval()
    try:
        torch.onnx.export(torch_module, torch.as_tensor(np.asarray(example_input)), buffer, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=17, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=False)
    finally:
        torch_module.train(was_training)
    source = f"torch.onnx.export of {type(torch_module).__name__}"
    model = OnnxModel(onnx.load_from_string(buffer.getvalue()), source=source)
    return model.train(was_training)
