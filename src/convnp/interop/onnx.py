"""ONNX export and import.

Export (``export(model, example_input, path)``): trace one forward pass (``convnp.interop.trace``) and
map each op to ONNX, opset 17 by default:

    Conv2d -> Conv (cross-correlation in both; pads [h_begin, w_begin, h_end, w_end])
    MaxPool2d -> MaxPool (ceil_mode 0)      AvgPool2d -> AveragePool (count_include_pad 1, PyTorch's
    default; ONNX's default is 0)           AdaptiveAvgPool2d -> GlobalAveragePool, or AveragePool when
    the bins divide the input evenly        Linear -> Gemm (transB 1) for 2-D inputs, else MatMul + Add
    BatchNorm (eval) -> BatchNormalization (epsilon per layer; momentum = 1 - PyTorch's)
    ReLU, LeakyReLU, Tanh, Sigmoid, Add, Sub, Mul, Div, Neg, Pow, Exp, Log, MatMul, Transpose, Concat,
    Softmax, LogSoftmax (axis = the one axis, opset >= 13 semantics), Sum/Mean -> ReduceSum/ReduceMean,
    flatten -> Flatten, other reshapes -> Reshape (0 keeps the batch size); Dropout is the identity at
    inference and disappears.

Initializers are named by their state_dict keys, the batch dimension is symbolic (``batch``), the IR
version is set to the one the opset came with (8 for opset 17: the newest ``onnx`` writes a newer one
that older runtimes refuse), and the file passes ``onnx.checker.check_model(full_check=True)`` before
it is written, atomically.  An op with no mapping is an error naming the op and the module it ran in.

Import (``load(path)``): the graph becomes an ``OnnxModel``, a convnp Module that runs the nodes in
order with convnp's ops.  Conv, Gemm and BatchNormalization whose weights are initializers become real
``nn.Conv2d``/``nn.Linear``/``nn.BatchNorm2d`` layers placed at the initializer's dotted name (so a
file from this exporter gives back the original state_dict keys); every other float initializer
with more than one element becomes a Parameter (a one-element initializer, such as the 0.5 of
``x * 0.5``, stays a constant).  The model trains (BatchNormalization uses batch statistics in train mode) and
saves as an ordinary checkpoint.  Every unsupported op is listed, by name, in one error.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .. import functional as F, nn
from ..nn.module import Parameter
from ..tensor import Tensor
from .files import atomic_write_creating_folder, require
from .trace import INPUT, trace

IR_VERSIONS = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8}  # the IR version each opset was released with
METADATA_KEY = "convnp"


class OnnxExportError(ValueError):
    """A model that cannot be written as ONNX (an op without a mapping)."""


class OnnxImportError(ValueError):
    """A file that is not a usable ONNX model (unreadable, unsupported ops)."""


# --- export ----------------------------------------------------------------------------------------------
def export(model, example_input, path, opset=17, dynamic_batch=True, metadata=None):
    """Write ``model`` as an ONNX file at ``path`` -> Path.

    example_input: an array or Tensor of the input shape (N, C, H, W) (any batch size); the forward pass
    it takes is the graph written.  dynamic_batch: the batch dimension is symbolic.  metadata: a
    JSON-able dict stored (beside the model's name and arguments) in the file's ``metadata_props``.
    """
    proto = to_proto(model, example_input, opset=opset, dynamic_batch=dynamic_batch, metadata=metadata)
    return atomic_write_creating_folder(path, lambda file: file.write(proto.SerializeToString()))


def to_proto(model, example_input, opset=17, dynamic_batch=True, metadata=None):
    """The checked ``onnx.ModelProto`` that ``export`` writes."""
    onnx = require("onnx", "convnp.onnx.export")
    from onnx import helper

    from .. import __version__
    from .safetensors import _model_metadata

    if opset not in IR_VERSIONS:
        raise ValueError(f"convnp.onnx.export: opset {opset} is not supported; choose one of {sorted(IR_VERSIONS)}")
    graph = trace(model, example_input)
    builder = _GraphBuilder(graph, onnx, dynamic_batch)
    for node in graph.nodes():
        builder.emit(node)
    proto_graph = builder.finish(type(model).__name__)
    proto = helper.make_model(proto_graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="convnp", producer_version=__version__)
    proto.ir_version = IR_VERSIONS[opset]
    meta = _model_metadata(model)
    meta.update(metadata or {})
    helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


class _GraphBuilder:
    def __init__(self, graph, onnx, dynamic_batch):
        self.graph, self.onnx, self.dynamic_batch = graph, onnx, dynamic_batch
        self.nodes, self.initializers, self.count = [], {}, 0
        self.renames = {graph.resolve(graph.output): "output"}

    def name(self, value):
        """The ONNX name of a traced value, adding an initializer for a parameter or constant."""
        value = self.graph.resolve(value)
        if value in self.graph.params or value in self.graph.constants:
            if value not in self.initializers:
                array = self.graph.params.get(value, self.graph.constants.get(value))
                self.initializers[value] = self.onnx.numpy_helper.from_array(np.asarray(array), value)
        return self.renames.get(value, value)

    def constant(self, array, hint):
        self.count += 1
        name = f"{hint}_{self.count}"
        self.initializers[name] = self.onnx.numpy_helper.from_array(np.asarray(array), name)
        return name

    def add(self, op_type, inputs, output, node, **attrs):
        self.count += 1
        name = f"{node.module or 'model'}/{op_type}_{self.count}"
        output = self.renames.get(output, output)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def emit(self, node):
        op, attrs, shapes = node.op, node.attrs, node.input_shapes
        x = self.name(node.inputs[0])
        out = node.output
        if op == "Conv2d":
            kh, kw = shapes[1][2:]
            inputs = [x, self.name(node.inputs[1])] + ([self.name(node.inputs[2])] if node.inputs[2] else [])
            ph, pw = attrs["padding"]
            self.add("Conv", inputs, out, node, kernel_shape=[kh, kw], strides=list(attrs["stride"]),
                     pads=[ph, pw, ph, pw], dilations=list(attrs["dilation"]), group=attrs["groups"])
        elif op in ("MaxPool2d", "AvgPool2d"):
            ph, pw = attrs["padding"]
            common = dict(kernel_shape=list(attrs["kernel_size"]), strides=list(attrs["stride"]),
                          pads=[ph, pw, ph, pw], ceil_mode=0)
            if op == "MaxPool2d":
                self.add("MaxPool", [x], out, node, **common)
            else:  # PyTorch (and convnp) count the padded zeros; ONNX's default does not
                self.add("AveragePool", [x], out, node, count_include_pad=1, **common)
        elif op == "AdaptiveAvgPool2d":
            (h, w), (oh, ow) = shapes[0][2:], attrs["output_size"]
            if (oh, ow) == (1, 1):
                self.add("GlobalAveragePool", [x], out, node)
            elif h % oh == 0 and w % ow == 0:
                self.add("AveragePool", [x], out, node, kernel_shape=[h // oh, w // ow], strides=[h // oh, w // ow])
            else:
                raise OnnxExportError(f"convnp.onnx.export: AdaptiveAvgPool2d from {h}x{w} to {oh}x{ow} "
                                      f"{self.graph.where(node)} has uneven bins, which ONNX pooling cannot express")
        elif op in ("ReLU", "Tanh", "Sigmoid", "Neg", "Exp", "Log"):
            self.add({"ReLU": "Relu"}.get(op, op), [x], out, node)
        elif op == "LeakyReLU":
            self.add("LeakyRelu", [x], out, node, alpha=float(attrs["negative_slope"]))
        elif op == "Linear":
            inputs = [x, self.name(node.inputs[1])] + ([self.name(node.inputs[2])] if node.inputs[2] else [])
            if len(shapes[0]) == 2:
                self.add("Gemm", inputs, out, node, transB=1)
            else:
                weight_t = self.add("Transpose", [inputs[1]], f"{out}_weight_t", node, perm=[1, 0])
                if len(inputs) == 2:
                    self.add("MatMul", [x, weight_t], out, node)
                else:
                    product = self.add("MatMul", [x, weight_t], f"{out}_matmul", node)
                    self.add("Add", [product, inputs[2]], out, node)
        elif op in ("MatMul", "Add", "Sub", "Mul", "Div"):
            self.add(op, [x, self.name(node.inputs[1])], out, node)
        elif op == "Pow":
            exponent = self.constant(np.array(attrs["exponent"], dtype=node.dtype), f"{out}_exponent")
            self.add("Pow", [x, exponent], out, node)
        elif op in ("Sum", "Mean"):
            ndim = len(shapes[0])
            axis = attrs.get("axis")
            axes = list(range(ndim)) if axis is None else [a % ndim for a in np.atleast_1d(axis).tolist()]
            keepdims = int(bool(attrs.get("keepdims", False)))
            if op == "Sum":
                self.add("ReduceSum", [x, self.constant(np.array(axes, np.int64), f"{out}_axes")], out, node,
                         keepdims=keepdims)
            else:
                self.add("ReduceMean", [x], out, node, axes=axes, keepdims=keepdims)
        elif op == "Reshape":
            source, target = shapes[0], tuple(attrs["shape"])
            if len(source) >= 2 and target == source[:1] + (int(np.prod(source[1:])),):
                self.add("Flatten", [x], out, node, axis=1)
            else:
                target = list(target)
                if self.dynamic_batch and target and target[0] == source[0]:
                    target[0] = 0  # ONNX Reshape: 0 copies the input's dimension (the batch size)
                self.add("Reshape", [x, self.constant(np.array(target, np.int64), f"{out}_shape")], out, node)
        elif op == "Transpose":
            ndim = len(shapes[0])
            axes = attrs.get("axes")
            perm = list(reversed(range(ndim))) if axes is None else [a % ndim for a in axes]
            self.add("Transpose", [x], out, node, perm=perm)
        elif op == "Concatenate":
            self.add("Concat", [self.name(v) for v in node.inputs], out, node, axis=int(attrs.get("axis", 0)))
        elif op == "BatchNorm":
            if attrs["training"]:
                raise OnnxExportError(f"convnp.onnx.export: BatchNorm {self.graph.where(node)} has no running "
                                      f"statistics (track_running_stats=False), so it has no inference form")
            channels = shapes[0][1]
            ones, zeros = np.ones(channels, node.dtype), np.zeros(channels, node.dtype)  # affine=False
            scale = self.name(node.inputs[1]) if node.inputs[1] else self.constant(ones, f"{out}_scale")
            bias = self.name(node.inputs[2]) if node.inputs[2] else self.constant(zeros, f"{out}_bias")
            self.add("BatchNormalization", [x, scale, bias, self.name(attrs["running_mean"]),
                                            self.name(attrs["running_var"])], out, node,
                     epsilon=float(attrs["eps"]), momentum=float(1.0 - attrs["momentum"]))
        elif op in ("Softmax", "LogSoftmax"):
            self.add(op, [x], out, node, axis=int(attrs.get("axis", -1)))
        elif op == "Dropout":  # only traced in training mode; the identity at inference
            self.graph.aliases[out] = node.inputs[0]
        else:
            raise OnnxExportError(f"convnp.onnx.export: op {op} {self.graph.where(node)} has no ONNX mapping "
                                  f"(mapped: Conv2d, pools, activations, Linear, MatMul, arithmetic, reshapes, "
                                  f"Transpose, Concatenate, BatchNorm, Softmax, LogSoftmax, Sum, Mean, Dropout)")

    def finish(self, name):
        helper, graph = self.onnx.helper, self.graph
        final = self.name(graph.output)
        if final != "output":  # the output is the input, a parameter or a constant: name it
            self.nodes.append(helper.make_node("Identity", [final], ["output"], name="model/Identity"))
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(graph.input_dtype))
        batch = "batch" if self.dynamic_batch else graph.input_shape[0]
        input_shape = [batch, *graph.input_shape[1:]]
        output_shape = list(_output_shape(graph))
        if self.dynamic_batch and output_shape and output_shape[0] == graph.input_shape[0]:
            output_shape[0] = "batch"
        inputs = [helper.make_tensor_value_info(INPUT, elem, input_shape)]
        outputs = [helper.make_tensor_value_info("output", elem, output_shape)]
        return helper.make_graph(self.nodes, name, inputs, outputs, initializer=list(self.initializers.values()))


def _output_shape(graph):
    final = graph.resolve(graph.output)
    if final == INPUT:
        return graph.input_shape
    for node in graph.nodes():
        if node.output == final:
            return node.shape
    array = graph.params.get(final, graph.constants.get(final))
    return np.shape(array)


# --- import ----------------------------------------------------------------------------------------------
SUPPORTED = ("Conv", "Gemm", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Log", "Neg",
             "Add", "Sub", "Mul", "Div", "Pow", "MatMul", "Flatten", "Reshape", "Transpose", "Concat", "Softmax",
             "LogSoftmax", "MaxPool", "AveragePool", "GlobalAveragePool", "Dropout", "Identity", "Constant", "Pad",
             "ReduceMean", "ReduceSum", "Shape", "Gather", "Unsqueeze", "Squeeze", "Slice", "Cast", "ConstantOfShape")


def load(path):
    """Read an ONNX file -> OnnxModel (a convnp Module, in train mode like any new Module)."""
    return load_with_info(path)[0]


def load_with_info(path):
    """-> (OnnxModel, info): info is a dict (attributes too) with path, model, model_class, model_args,
    preprocessing and its keys (dataset, input_size, classes, mean, std), epoch, recipe and history, from
    the convnp metadata the exporter wrote (None where the file has none)."""
    from ..checkpoint import Checkpoint

    proto = read_proto(path)
    model = OnnxModel(proto, source=str(path))
    meta = {}
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                meta = json.loads(prop.value)
            except json.JSONDecodeError:
                meta = {}
    meta = meta if isinstance(meta, dict) else {}
    prep = meta.get("preprocessing") or None
    info = Checkpoint(path=str(path), model=meta.get("model"), model_class=meta.get("model_class") or "OnnxModel",
                      model_args=meta.get("model_args"), preprocessing=prep, epoch=meta.get("epoch"),
                      recipe=meta.get("recipe"), history=None, extra={}, format="onnx")
    for key in ("dataset", "input_size", "classes", "mean", "std"):
        info[key] = (prep or {}).get(key)
    return model, info


def read_proto(path):
    """The ModelProto in ``path``, checked; OnnxImportError naming the file for anything else."""
    onnx = require("onnx", "convnp.onnx.load")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as error:  # noqa: BLE001 - protobuf and the checker raise many kinds; all mean "not ONNX"
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise OnnxImportError(f"{path} is not a readable ONNX model (truncated, corrupted or not ONNX): "
                              f"{reason}") from None
    if not proto.graph.node or not proto.graph.output:
        raise OnnxImportError(f"{path} is not an ONNX model: it holds no graph nodes or outputs")
    return proto


class _Step:
    __slots__ = ("op", "inputs", "output", "run")

    def __init__(self, op, inputs, output, run):
        self.op, self.inputs, self.output, self.run = op, inputs, output, run


class OnnxModel(nn.Module):
    """A convnp Module running an ONNX graph: (N, ...) -> the graph's output, with convnp's ops.

    Its layers (``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d``) and parameters sit at the dotted names
    of the file's initializers, so ``state_dict()`` has the exporter's keys.
    """

    def __init__(self, proto, source="<memory>"):
        super().__init__()
        require("onnx", "convnp.onnx.load")
        from onnx import numpy_helper

        self._source = source
        graph = proto.graph
        self._opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self._constants = {}  # name -> ndarray: Constant nodes and integer initializers (shapes, axes)
        for node in graph.node:
            if node.op_type == "Constant":
                attr = {a.name: a for a in node.attribute}
                if "value" in attr:
                    self._constants[node.output[0]] = numpy_helper.to_array(attr["value"].t)
            elif node.op_type == "Identity" and node.input[0] in inits:  # torch's way of naming a buffer twice
                inits[node.output[0]] = inits[node.input[0]]
        problems = self._unsupported(graph, inits)
        if problems:
            listed = ", ".join(f"{op} (x{n})" if n > 1 else op for op, n in problems.items())
            raise OnnxImportError(f"{source}: unsupported ONNX op(s): {listed}; convnp reads {', '.join(SUPPORTED)}")
        inputs = [i for i in graph.input if i.name not in inits]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise OnnxImportError(f"{source}: convnp reads graphs with one input and one output, this one has "
                                  f"{len(inputs)} input(s) and {len(graph.output)} output(s)")
        self._input = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self._input_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        self._output = graph.output[0].name
        self._layers, self._steps, self._params = {}, [], {}  # weight name -> (layer, its initializers)
        used = {name for node in graph.node for name in node.input}
        for name, array in inits.items():  # initializers the layers do not take: parameters, or constants
            if name in used and (array.dtype.kind != "f" or array.size == 1):  # shapes, axes, scalars
                self._constants[name] = array
        for index, node in enumerate(graph.node):
            folded = node.op_type == "Identity" and node.input[0] in inits
            if node.op_type != "Constant" and not folded:
                self._steps.append(self._compile(index, node, inits))
        taken = {name for _, names in self._layers.values() for name in names}
        for name, array in inits.items():
            if name in used and array.dtype.kind == "f" and array.size > 1 and name not in taken:
                self._param_for(name, array)

    # -- what cannot be read, all at once ------------------------------------------------------------------
    def _unsupported(self, graph, inits):
        problems = {}

        def note(what):
            problems[what] = problems.get(what, 0) + 1

        for node in graph.node:
            attrs = _attributes(node)
            op = node.op_type
            if node.domain not in ("", "ai.onnx") or op not in SUPPORTED:
                note(op if node.domain in ("", "ai.onnx") else f"{node.domain}.{op}")
            elif attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
                note(f"{op}(auto_pad={attrs['auto_pad'].decode()})")
            elif op == "Conv" and node.input[1] not in inits:
                note("Conv(weight computed in the graph)")
            elif op == "Conv" and inits[node.input[1]].ndim != 4:
                note(f"Conv({inits[node.input[1]].ndim - 2}-D)")
            elif op == "MaxPool" and (any(d != 1 for d in attrs.get("dilations", [])) or attrs.get("storage_order", 0)
                                      or len(node.output) > 1):
                note("MaxPool(dilations, storage_order or indices)")
            elif op == "AveragePool" and attrs.get("ceil_mode", 0):
                note("AveragePool(ceil_mode=1)")
            elif op == "Gemm" and attrs.get("transA", 0):
                note("Gemm(transA=1)")
            elif op == "BatchNormalization" and (len(node.output) > 1 or attrs.get("training_mode", 0)
                                                 or not all(n in inits or n in self._constants
                                                            for n in node.input[1:5])):
                note("BatchNormalization(training outputs, or statistics that are not initializers)")
            elif op == "Pad" and attrs.get("mode", b"constant") != b"constant":
                note(f"Pad(mode={attrs['mode'].decode()})")
            elif op == "Constant" and "value" not in attrs:
                note("Constant(other than value)")
        return problems

    # -- placing layers and parameters at the initializers' dotted names -----------------------------------
    def _place(self, dotted, value, fallback):
        """Set ``value`` at the dotted path (containers made as needed); the fallback name, then numbered
        variants of it, where the path is taken or unusable."""
        for candidate in [dotted, fallback] + [f"{fallback}_{i}" for i in range(1, 100)]:
            parts = [re.sub(r"\W", "_", part) for part in candidate.split(".")]
            if not all(parts) or parts[0].startswith("_"):
                continue
            parent = self
            for part in parts[:-1]:
                child = vars(parent).get(part)
                if child is None and not hasattr(parent, part):
                    child = nn.Module()
                    setattr(parent, part, child)
                if not isinstance(child, nn.Module):
                    break
                parent = child
            else:
                if not hasattr(parent, parts[-1]):
                    setattr(parent, parts[-1], value)
                    return
        raise OnnxImportError(f"{self._source}: no free name for initializer {dotted!r}")

    def _layer(self, key, make, names, prefix_from, fallback):
        """One layer per weight initializer (a weight used by two nodes is one reused layer)."""
        if key not in self._layers:
            layer = make()
            prefix = prefix_from.rsplit(".", 1)[0] if "." in prefix_from else fallback
            self._place(prefix, layer, fallback)
            self._layers[key] = (layer, names)
        return self._layers[key][0]

    def _param_for(self, name, array):
        param = Parameter(np.array(array))
        self._place(name, param, "param")
        self._constants.pop(name, None)
        self._params[name] = param

    def _value(self, values, name):
        if name in values:
            return values[name]
        if name in self._params:
            return self._params[name]
        return self._constants[name]

    # -- compiling one node to a convnp call ------------------------------------------------------------------
    def _compile(self, index, node, inits):
        op, attrs = node.op_type, _attributes(node)
        fallback = f"{op.lower()}{index}"
        ins = list(node.input)
        out = node.output[0]
        w = inits.get(ins[1]) if len(ins) > 1 else None

        if op == "Conv" and w is not None:
            bias = ins[2] if len(ins) > 2 and ins[2] else None
            group = attrs.get("group", 1)
            kernel = tuple(w.shape[2:])
            pads = list(attrs.get("pads", [0, 0, 0, 0]))

            symmetric = pads[:2] == pads[2:]

            def make():
                layer = nn.Conv2d(w.shape[1] * group, w.shape[0], kernel, stride=tuple(attrs.get("strides", (1, 1))),
                                  padding=tuple(pads[:2]) if symmetric else 0,
                                  dilation=tuple(attrs.get("dilations", (1, 1))), groups=group,
                                  bias=bias is not None, dtype=w.dtype)
                layer.weight.data = np.array(w)
                if bias is not None:
                    layer.bias.data = np.array(inits[bias]).astype(w.dtype)
                return layer

            layer = self._layer(ins[1], make, [ins[1]] + ([bias] if bias else []), ins[1], fallback)
            if layer.padding != (tuple(pads[:2]) if symmetric else (0, 0)):  # one weight, two paddings
                full = [0, 0, *pads[:2], 0, 0, *pads[2:]]
                return _Step(op, ins[:1], out, lambda args: F.conv2d(pad(args[0], full, 0.0), layer.weight, layer.bias,
                                                                     layer.stride, 0, layer.dilation, layer.groups))
            if symmetric:  # called as a module, so tracing tools (summary, viz) see a Conv2d call
                return _Step(op, ins[:1], out, lambda args: layer(args[0]))
            return _Step(op, ins[:1], out, lambda args: layer(pad(args[0], [0, 0, *pads[:2], 0, 0, *pads[2:]], 0.0)))

        if op == "Gemm" and w is not None and w.ndim == 2 and attrs.get("alpha", 1.0) == 1.0 and \
                attrs.get("beta", 1.0) == 1.0 and (len(ins) < 3 or not ins[2] or
                                                   (ins[2] in inits and inits[ins[2]].ndim == 1)):
            weight = w if attrs.get("transB", 0) else w.T
            bias = ins[2] if len(ins) > 2 and ins[2] else None

            def make():
                layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=w.dtype)
                layer.weight.data = np.array(weight)
                if bias is not None:
                    layer.bias.data = np.array(inits[bias]).astype(w.dtype)
                return layer

            layer = self._layer(ins[1], make, [ins[1]] + ([bias] if bias else []), ins[1], fallback)
            return _Step(op, ins[:1], out, lambda args: layer(args[0]))

        if op == "BatchNormalization":
            scale, shift, mean, var = (inits[n] if n in inits else self._constants[n] for n in ins[1:5])
            momentum = float(f"{1.0 - attrs.get('momentum', 0.9):.6g}")  # ONNX's momentum is 1 - PyTorch's

            def make():
                layer = nn.BatchNorm2d(len(scale), eps=attrs.get("epsilon", 1e-5), momentum=momentum, dtype=scale.dtype)
                layer.weight.data, layer.bias.data = np.array(scale), np.array(shift).astype(scale.dtype)
                layer.running_mean[...], layer.running_var[...] = mean, var
                return layer

            named = ins[1] if ins[1].endswith(".weight") else ins[3]
            layer = self._layer(ins[1], make, list(ins[1:5]), named, fallback)

            def run(args):
                if layer.training:
                    layer.num_batches_tracked += 1
                return F.batch_norm(args[0], layer.running_mean, layer.running_var, layer.weight, layer.bias,
                                    training=layer.training, momentum=layer.momentum, eps=layer.eps)
            return _Step(op, ins[:1], out, run)

        stateless = self._stateless_layer(op, attrs)
        if stateless is not None:  # a layer module too, so tracing tools see e.g. the ReLU after a conv
            self._place(fallback, stateless, fallback)
            return _Step(op, ins[:1], out, lambda args: stateless(args[0]))
        return _Step(op, ins, out, self._generic(op, attrs, ins))

    @staticmethod
    def _stateless_layer(op, attrs):
        simple = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}
        if op in simple:
            return simple[op]()
        if op == "LeakyRelu":
            return nn.LeakyReLU(attrs.get("alpha", 0.01))
        if op == "GlobalAveragePool":
            return nn.AdaptiveAvgPool2d(1)
        if op == "Flatten" and attrs.get("axis", 1) == 1:
            return nn.Flatten()
        if op in ("MaxPool", "AveragePool") and not attrs.get("ceil_mode", 0):
            kernel, pads = tuple(attrs["kernel_shape"]), list(attrs.get("pads", [0] * 4))
            stride = tuple(attrs.get("strides", (1, 1)))
            fits = len(kernel) == 2 and pads[:2] == pads[2:] and all(p <= k // 2 for p, k in zip(pads, kernel))
            if op == "MaxPool" and fits:
                return nn.MaxPool2d(kernel, stride, tuple(pads[:2]))
            if op == "AveragePool" and fits and (attrs.get("count_include_pad", 0) or not any(pads)):
                return nn.AvgPool2d(kernel, stride, tuple(pads[:2]))
        return None

    def _generic(self, op, attrs, ins):
        """The runner of a node whose inputs are all values (or constants) at run time."""
        opset = self._opset
        unary = {"Relu": F.relu, "Sigmoid": F.sigmoid, "Tanh": F.tanh, "Exp": lambda x: _t(x).exp(),
                 "Log": lambda x: _t(x).log(), "Neg": lambda x: -_t(x), "Identity": lambda x: x,
                 "GlobalAveragePool": lambda x: F.adaptive_avg_pool2d(x, 1)}
        if op in unary:
            fn = unary[op]
            return lambda args: fn(args[0])
        if op == "LeakyRelu":
            return lambda args: F.leaky_relu(args[0], attrs.get("alpha", 0.01))
        binary = {"Add": F.add, "Sub": F.sub, "Mul": F.mul, "Div": F.div, "MatMul": F.matmul}
        if op in binary:
            fn = binary[op]
            return lambda args: fn(_t(args[0]), args[1])
        if op == "Pow":
            return lambda args: _t(args[0]) ** float(_constant(args[1], "Pow's exponent")[0])
        if op == "Gemm":
            def gemm(args):
                b = _t(args[1]).T if attrs.get("transB", 0) else args[1]
                y = F.matmul(args[0], b) * attrs.get("alpha", 1.0)
                if len(args) > 2 and args[2] is not None:
                    y = y + _t(args[2]) * attrs.get("beta", 1.0)
                return y
            return gemm
        if op == "Flatten":
            axis = attrs.get("axis", 1)

            def flatten(args):
                x = _t(args[0])
                a = axis % x.ndim if x.ndim else 0
                return F.reshape(x, (int(np.prod(x.shape[:a])), -1))
            return flatten
        if op == "Reshape":
            def reshape(args):
                x, shape = _t(args[0]), [int(v) for v in _constant(args[1], "Reshape's shape")]
                if not attrs.get("allowzero", 0):
                    shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
                return F.reshape(x, shape)
            return reshape
        if op == "Transpose":
            def transpose(args):  # no perm: reverse the axes (ONNX's default)
                x = _t(args[0])
                return x.permute(*(attrs["perm"] if "perm" in attrs else reversed(range(x.ndim))))
            return transpose
        if op == "Concat":
            def concat(args):
                if not any(isinstance(a, Tensor) and a.requires_grad for a in args):  # shapes, constants
                    return np.concatenate([np.atleast_1d(_array(a)) for a in args], axis=attrs["axis"])
                return F.concatenate([_t(a) for a in args], axis=attrs["axis"])
            return concat
        if op in ("Softmax", "LogSoftmax"):
            fn = F.softmax if op == "Softmax" else F.log_softmax
            if opset >= 13:
                return lambda args: fn(args[0], attrs.get("axis", -1))

            def old_softmax(args):  # before opset 13: over all axes from `axis` on, flattened (default 1)
                x = _t(args[0])
                axis = attrs.get("axis", 1) % x.ndim
                flat = F.reshape(x, (int(np.prod(x.shape[:axis])), -1))
                return F.reshape(fn(flat, -1), x.shape)
            return old_softmax
        if op in ("MaxPool", "AveragePool"):
            return _pool_runner(op, attrs)
        if op == "Dropout":
            return lambda args: F.dropout(args[0], float(attrs.get("ratio", _ratio(args))), self.training)
        if op == "Pad":
            def run_pad(args):
                x = _t(args[0])
                pads = list(attrs["pads"]) if "pads" in attrs else [int(v) for v in _constant(args[1], "Pad's pads")]
                value = attrs.get("value", 0.0)
                if len(args) > 2 and args[2] is not None:
                    value = float(_constant(args[2], "Pad's constant_value")[0])
                if len(args) > 3 and args[3] is not None:
                    raise ValueError("Pad with an axes input is not supported")
                return pad(x, pads, value)
            return run_pad
        if op == "Shape":  # shape arithmetic (x.reshape(x.shape[0], -1) in torch) runs on plain int64 arrays
            return lambda args: np.array(_t(args[0]).shape[attrs.get("start", 0):attrs.get("end")], np.int64)
        if op == "Gather":
            axis = attrs.get("axis", 0)

            def gather(args):
                data, index = args[0], _constant(args[1], "Gather's indices").reshape(np.shape(_array(args[1])))
                if isinstance(data, Tensor) and data.requires_grad:
                    return data[(slice(None),) * (axis % data.ndim) + (index,)]
                return np.take(_array(data), index, axis=axis)
            return gather
        if op == "ConstantOfShape":
            from onnx import numpy_helper

            fill = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
            return lambda args: np.full([int(n) for n in _constant(args[0], "ConstantOfShape's shape")], fill[0])
        if op == "Cast":
            from onnx import helper

            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(attrs["to"]))

            def cast(args):
                x = args[0]
                if isinstance(x, Tensor) and x.requires_grad:
                    if x.dtype != dtype:
                        raise ValueError(f"Cast of a value that needs gradients from {x.dtype} to {dtype}")
                    return x
                return _array(x).astype(dtype)
            return cast
        if op == "Slice":
            def run_slice(args):
                x = args[0]
                starts, ends = (_constant(a, "Slice's starts/ends") for a in args[1:3])
                ndim = len(np.shape(_array(x)))
                given = len(args) > 3 and args[3] is not None
                axes = _constant(args[3], "Slice's axes") if given else range(len(starts))
                given = len(args) > 4 and args[4] is not None
                steps = _constant(args[4], "Slice's steps") if given else [1] * len(starts)
                index = [slice(None)] * ndim
                for axis, start, end, step in zip(axes, starts, ends, steps):
                    index[int(axis) % ndim] = slice(int(start), int(end), int(step))
                if isinstance(x, Tensor) and x.requires_grad:
                    return x[tuple(index)]
                return _array(x)[tuple(index)]
            return run_slice
        if op in ("Unsqueeze", "Squeeze"):
            def squeeze(args):
                x = args[0]
                axes = attrs.get("axes")
                if axes is None and len(args) > 1 and args[1] is not None:
                    axes = [int(a) for a in _constant(args[1], f"{op}'s axes")]
                shape = list(np.shape(_array(x)))
                if op == "Unsqueeze":
                    for a in sorted(a % (len(shape) + len(axes)) for a in axes):
                        shape.insert(a, 1)
                else:
                    drop = {a % len(shape) for a in axes} if axes else {i for i, n in enumerate(shape) if n == 1}
                    shape = [n for i, n in enumerate(shape) if i not in drop]
                return F.reshape(x, shape) if isinstance(x, Tensor) and x.requires_grad else \
                    np.reshape(_array(x), shape)
            return squeeze
        if op in ("ReduceMean", "ReduceSum"):
            fn = F.mean if op == "ReduceMean" else F.sum

            def reduce(args):
                x = _t(args[0])
                axes = attrs.get("axes")
                if axes is None and len(args) > 1 and args[1] is not None:
                    axes = [int(a) for a in _constant(args[1], f"{op}'s axes")]
                if not axes:
                    if attrs.get("noop_with_empty_axes", 0):
                        return x
                    axes = list(range(x.ndim))
                return fn(x, axis=tuple(axes), keepdims=bool(attrs.get("keepdims", 1)))
            return reduce
        raise OnnxImportError(f"{self._source}: op {op} is not supported")  # (listed by _unsupported first)

    # -- running -------------------------------------------------------------------------------------------------
    def forward(self, x):
        x = _t(x)
        expected = self._input_shape
        if expected and (x.ndim != len(expected) or any(e and e != s for e, s in zip(expected[1:], x.shape[1:]))):
            shown = "x".join("N" if e is None else str(e) for e in expected)
            raise ValueError(f"OnnxModel from {self._source}: expected input of shape ({shown}), got {tuple(x.shape)}")
        values = {self._input: x}
        for step in self._steps:
            args = [None if not name else self._value(values, name) for name in step.inputs]
            values[step.output] = step.run(args)
        return _t(self._value(values, self._output))

    def extra_repr(self):
        return f"{len(self._steps)} nodes from {self._source}"


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _constant(value, what):
    if isinstance(value, Tensor) and value.requires_grad:
        raise ValueError(f"{what} must be a constant, not a value computed in the graph")
    return np.asarray(value.data if isinstance(value, Tensor) else value).reshape(-1)


def _array(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _ratio(args):
    return float(_constant(args[1], "Dropout's ratio")[0]) if len(args) > 1 and args[1] is not None else 0.5


def _attributes(node):
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def pad(x, pads, value):
    """x: (d0, d1, ...) padded with ``value``: pads = [begin_0, begin_1, ..., end_0, end_1, ...] (ONNX's
    order), built from concatenations so the gradient flows back through convnp's Concatenate."""
    x = _t(x)
    ndim = x.ndim
    for axis in range(ndim):
        begin, end = pads[axis], pads[axis + ndim]
        if begin < 0 or end < 0:
            raise ValueError(f"negative pads {pads} (cropping) are not supported")
        if begin == 0 and end == 0:
            continue
        parts = []
        for size in (begin, None, end):
            if size is None:
                parts.append(x)
            elif size:
                shape = list(x.shape)
                shape[axis] = size
                parts.append(Tensor(np.full(shape, value, dtype=x.dtype)))
        x = F.concatenate(parts, axis=axis)
    return x


def _pool_runner(op, attrs):
    kernel = tuple(attrs["kernel_shape"])
    stride = tuple(attrs.get("strides", (1,) * len(kernel)))
    pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    include_pad = bool(attrs.get("count_include_pad", 0))  # ONNX's default (0) is not PyTorch's (1)

    def run(args):
        x = _t(args[0])
        begin, end = list(pads[:2]), list(pads[2:])
        if ceil_mode:  # PyTorch's rule: round the output size up, unless the last window would start in the padding
            for i in range(2):
                size = x.shape[2 + i] + begin[i] + end[i]
                out = -(-(size - kernel[i]) // stride[i]) + 1
                if (out - 1) * stride[i] >= x.shape[2 + i] + begin[i]:
                    out -= 1
                end[i] += max(0, (out - 1) * stride[i] + kernel[i] - size)
        simple = begin == end and all(p <= k // 2 for p, k in zip(begin, kernel))
        if op == "MaxPool":
            if simple:
                return F.max_pool2d(x, kernel, stride, tuple(begin))
            return F.max_pool2d(pad(x, [0, 0, *begin, 0, 0, *end], -np.inf), kernel, stride, 0)

        def average(t):
            if simple:
                return F.avg_pool2d(t, kernel, stride, tuple(begin))
            return F.avg_pool2d(pad(t, [0, 0, *begin, 0, 0, *end], 0.0), kernel, stride, 0)

        y = average(x)
        if include_pad or not any(begin + end):
            return y
        counted = average(Tensor(np.ones((1, 1) + x.shape[2:], dtype=x.dtype))).data  # real values per window
        return y / counted
    return run
