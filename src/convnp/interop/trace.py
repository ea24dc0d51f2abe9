"""Recording one forward pass as a graph: the ops and the module calls around them.

Every op runs through ``Function.apply``, which calls ``convnp.function.trace_hook`` when it is set; so
a trace sets the hook, wraps each module's ``forward`` for the duration of one call (as
``convnp.inspect.summary.trace`` does) and runs the model once, in eval mode, under ``no_grad``.
The record names every value: ``input`` for the model's input, the state_dict key for a parameter or
buffer, ``t1, t2, ...`` for op outputs and ``const0, const1, ...`` for any other array an op received
(a Python number in ``x * 0.5``, an array built in ``forward``).  Custom ``forward``s with residual
additions, concatenation, reused modules and functional calls are all just ops in this record.

What the record cannot see is Python control flow: the graph is the path the example input took.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import function
from ..tensor import Tensor, no_grad

INPUT = "input"


class TraceError(ValueError):
    """A forward pass that cannot be recorded as a graph (a module returning something other than a Tensor)."""


@dataclass
class OpNode:
    """One op of the traced pass."""

    op: str             # the op's class name in convnp.ops: 'Conv2d', 'Add', 'BatchNorm', ...
    inputs: list        # value names, None where the op received None (a conv without bias)
    attrs: dict         # its keyword attributes; a buffer passed as an array is replaced by its state_dict key
    output: str
    shape: tuple        # the output's shape in the traced pass
    input_shapes: list  # the inputs' shapes (None for None)
    dtype: object       # the output's dtype
    module: str         # path of the module whose own forward ran the op ('' for the model)


@dataclass
class ModuleCall:
    """One call of one module: its input value names, output name and what ran inside, in order."""

    path: str                                  # dotted path in model.named_modules() ('' for the model)
    module: object
    inputs: list
    output: str = None
    items: list = field(default_factory=list)  # OpNodes run by this module's own forward, and ModuleCalls


@dataclass
class Graph:
    root: ModuleCall              # the model's call
    input_shape: tuple
    input_dtype: object
    output: str                   # name of the model's output value
    params: dict                  # {state_dict key: array} for each parameter and buffer the pass used
    constants: dict               # {const name: array}
    aliases: dict                 # {name: earlier name} where a module returned a value unchanged (Dropout in eval)
    module_names: dict            # {id(module): path}

    def nodes(self, call=None):
        """Every OpNode in execution order."""
        for item in (call or self.root).items:
            if isinstance(item, ModuleCall):
                yield from self.nodes(item)
            else:
                yield item

    def resolve(self, name):
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def where(self, node):
        """'in module conv1 (Conv2d)' for error messages."""
        if not node.module:
            return f"in the model's own forward ({type(self.root.module).__name__})"
        module = next(m for m, path in _modules_by_path(self.root.module).items() if path == node.module)
        return f"in module '{node.module}' ({type(module).__name__})"


def _modules_by_path(model):
    return {module: name for name, module in model.named_modules()}


class _Recorder:
    def __init__(self, model):
        self.names, self.keep = {}, []  # id(tensor) -> name; the tensors, kept alive so ids stay unique
        self.param_keys = {id(p): key for key, p in model.named_parameters()}
        self.buffer_keys = {id(b): key for key, b in model.named_buffers()}
        self.params, self.constants, self.aliases = {}, {}, {}
        self.stack = [ModuleCall("<top>", None, [])]
        self.count = 0

    def name_of(self, tensor):
        name = self.names.get(id(tensor))
        if name is not None:
            return name
        key = self.param_keys.get(id(tensor))
        if key is not None:
            self.params[key] = tensor.data
            name = key
        else:
            name = f"const{len(self.constants)}"
            self.constants[name] = np.array(tensor.data)
        self.names[id(tensor)] = name
        self.keep.append(tensor)
        return name

    def new_name(self, tensor):
        self.count += 1
        name = f"t{self.count}"
        self.names[id(tensor)] = name
        self.keep.append(tensor)
        return name

    def hook(self, cls, tensors, attrs, out):
        inputs = [None if t is None else self.name_of(t) for t in tensors]
        attrs = dict(attrs)
        for key, value in attrs.items():
            if isinstance(value, np.ndarray):
                if id(value) in self.buffer_keys:
                    attrs[key] = self.buffer_keys[id(value)]
                    self.params[attrs[key]] = value
                else:
                    attrs[key] = self.name_of(Tensor(value))
        node = OpNode(cls.__name__, inputs, attrs, self.new_name(out), tuple(out.shape),
                      [None if t is None else tuple(t.shape) for t in tensors], out.dtype, self.stack[-1].path)
        self.stack[-1].items.append(node)

    def wrap(self, path, module):
        bound = module.forward

        def forward(*args, **kwargs):
            inputs = [self.name_of(a) if isinstance(a, Tensor) else a for a in args]
            call = ModuleCall(path, module, inputs)
            self.stack[-1].items.append(call)
            self.stack.append(call)
            try:
                out = bound(*args, **kwargs)
            finally:
                self.stack.pop()
            if not isinstance(out, Tensor):
                raise TraceError(f"module '{path or 'the model'}' ({type(module).__name__}) returned a "
                                 f"{type(out).__name__}; a traced forward must return one Tensor")
            old = self.names.get(id(out))
            if old is not None and old in inputs:  # an input returned unchanged (Dropout in eval mode): renamed
                self.aliases[self.new_name(out)] = old
            else:
                self.name_of(out)
            call.output = self.names[id(out)]
            return out

        return forward


_MISSING = object()


def trace(model, example_input):
    """Run ``model(example_input)`` once in eval mode and return its Graph (the model's modes are
    restored afterwards)."""
    x = example_input if isinstance(example_input, Tensor) else Tensor(np.asarray(example_input))
    recorder = _Recorder(model)
    recorder.names[id(x)] = INPUT
    recorder.keep.append(x)
    modes = [(m, m.training) for m in model.modules()]
    patched = []
    previous_hook = function.trace_hook
    try:
        model.eval()
        for name, module in {id(m): (n, m) for n, m in reversed(list(model.named_modules()))}.values():
            patched.append((module, vars(module).get("forward", _MISSING)))
            module.forward = recorder.wrap(name, module)
        function.trace_hook = recorder.hook
        with no_grad():
            model(x)
    finally:
        function.trace_hook = previous_hook
        for module, own in patched:
            if own is _MISSING:
                vars(module).pop("forward", None)
            else:
                module.forward = own
        for module, mode in modes:
            module.training = mode
    root = recorder.stack[0].items[0]
    return Graph(root, tuple(x.shape), x.dtype, root.output, recorder.params, recorder.constants,
                 recorder.aliases, {id(m): n for n, m in reversed(list(model.named_modules()))})
