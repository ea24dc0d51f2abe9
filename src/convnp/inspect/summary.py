"""``summary(model, input_size)``: a torchinfo-style table of a network, layer by layer.

    >>> print(convnp.summary(convnp.models.LeNet5(), (1, 28, 28)))

One row per module call (type, depth-index, output shape with the batch, parameters, mult-adds,
receptive field), then the totals.  The returned ``Summary`` is also data: ``.rows`` (``Row``
dataclasses), ``.total_params``, ``.trainable_params``, ``.total_mult_adds``, ``.flops`` and the
estimated sizes in bytes and MB.

How the rows are found: one forward pass on zeros of the input size, in eval mode and under
``no_grad()``, with every module's ``forward`` temporarily wrapped (an instance attribute, removed
again in a ``finally``) so each call is recorded in the order it happens.  No hooks are needed in the
engine.  A module called twice (LeNet5's shared ``pool`` and ``relu``) gives two rows, like torchinfo;
the second is marked recursive and its parameters are not counted again.

Conventions (chosen to agree with torchinfo 1.8, checked in tests/test_summary.py):

* Mult-adds (MACs), per call of a leaf module, for each parameter named ``weight`` or ``bias``:
  convolutions count ``param.size * N * H_out * W_out`` (the weight term is exactly the
  k_h*k_w*C_in/groups*C_out*H_out*W_out multiply-adds per image; the bias adds one per output
  element); every other layer counts ``param.size * N`` (exact for Linear on (N, in) inputs; for
  BatchNorm it is 2 C per sample, a convention rather than its real cost).  Layers without
  parameters (ReLU, pooling, Flatten) count 0.  FLOPs are reported as 2 x MACs.
* Parameters: each parameter once (a shared module's second call adds nothing); buffers such as
  BatchNorm's running statistics are not parameters.  Non-trainable = parameters with
  ``requires_grad=False``.
* Sizes are estimates in MB of 10^6 bytes: the input array; "forward/backward pass" = 2 x the bytes of
  the outputs of every layer call that has parameters (the activation and its gradient; torchinfo's
  rule: outputs of ReLU/pool are not counted); the parameters; and their sum.  torchinfo's input size
  adds Python's ~64-byte object overhead of the tensor storage (``sys.getsizeof``); this one is the
  array's bytes alone.
* Rows: torchinfo's, in the same order, with the same depth-index numbering (a running count per depth).
  One difference: a container whose forward never runs (a ModuleList the model loops over) is listed
  above each run of its children; torchinfo inserts the SAME row object each time, so all its copies
  show the last index and "(recursive)", while here each copy is numbered and only later ones are
  recursive.

Receptive field (not in torchinfo), computed analytically along the calls: the input pixel has size 1
and jump 1; a convolution or pooling with kernel k, stride s, dilation d maps
``r_out = r_in + (d (k - 1)) * j_in`` and ``j_out = j_in * s``; elementwise layers (activations,
batch norm in eval mode, dropout) and Flatten (a reshape: each unit keeps the field of the unit it
came from) change nothing; a Linear layer on features that came from an image, and adaptive average
pooling to 1x1, see the whole input ("global").  Padding does not enter the size: it is the extent of
the window in input pixels (units near the border see part of it outside the image).
"""
import math
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..backend import CPU, device_of, to_device
from ..nn import eval_mode
from ..nn.module import Parameter
from ..tensor import Tensor, no_grad

__all__ = ["summary", "Summary", "Row", "trace", "Call"]

MB = 1e6


# --- recording the calls of a forward pass ------------------------------------------------------------
@dataclass
class Call:
    """One call of one module during a traced forward pass."""

    name: str            # dotted attribute path ('' for the model itself)
    module: object
    depth: int           # 0 for the model, 1 for its children, ...
    inputs: tuple        # the positional arguments it received
    output: object = None
    entry: int = 0       # order in which the calls started (containers before their children)
    exit: int = -1       # order in which they finished (-1: never finished)

    @property
    def type(self):
        return type(self.module).__name__

    @property
    def is_leaf(self):
        return not any(True for _ in self.module.children())


def _module_names(model):
    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), (name, module))
    return names


def trace(model, *inputs, **kwargs):
    """Run ``model(*inputs, **kwargs)`` once and return ``(output, calls)``: a ``Call`` for every call
    of every module (the model included), in the order the calls started.

    Each module's ``forward`` is replaced, for the duration of the call only, by a wrapper stored as an
    instance attribute (``Module.__call__`` looks it up there first); the ``finally`` removes the
    wrappers even when the forward pass raises.  Gradients are recorded as usual, so you can call
    ``backward`` on an intermediate output afterwards (with ``requires_grad`` inputs).
    """
    calls = []
    counter = {"exit": 0}
    patched = []

    def wrap(name, module):
        bound = module.forward
        depth = 0 if name == "" else name.count(".") + 1

        def forward(*args, **kw):
            call = Call(name, module, depth, args, entry=len(calls))
            calls.append(call)
            out = bound(*args, **kw)
            call.output = out
            call.exit = counter["exit"]
            counter["exit"] += 1
            return out

        return forward

    try:
        for name, module in _module_names(model).values():
            own = vars(module).get("forward", _MISSING)
            module.forward = wrap(name, module)
            patched.append((module, own))
        output = model(*inputs, **kwargs)
    finally:
        for module, own in patched:
            if own is _MISSING:
                vars(module).pop("forward", None)
            else:
                module.forward = own
    return output, calls


_MISSING = object()


# --- receptive fields --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    size: tuple          # (h, w) in input pixels
    jump: tuple          # (h, w): input pixels between neighbouring units
    is_global: bool = False
    spatial: bool = True  # the units still sit on a grid (False after Flatten)


ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(int(v) for v in value)


def _window_field(field_in, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel), _pair(stride), _pair(dilation)
    (rh, rw), (jh, jw) = field_in.size, field_in.jump
    return _Field((rh + dh * (kh - 1) * jh, rw + dw * (kw - 1) * jw), (jh * sh, jw * sw))


def _next_field(module, field_in, in_shape, out_shape, image_hw):
    """Receptive field of a leaf module's output given its input's field (None: unknown/not an image)."""
    if field_in is None:
        return None
    if field_in.is_global:
        return field_in
    whole = _Field(image_hw, (0, 0), is_global=True, spatial=False)
    if isinstance(module, nn.Conv2d):
        return _window_field(field_in, module.kernel_size, module.stride, module.dilation)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return _window_field(field_in, module.kernel_size, module.stride, getattr(module, "dilation", 1))
    if isinstance(module, nn.AdaptiveAvgPool2d):
        (h, w), (oh, ow) = in_shape[2:], out_shape[2:]
        if (oh, ow) == (1, 1):
            return whole
        # PyTorch's bins: [floor(i H / o), ceil((i + 1) H / o)); exact when o divides H.
        kernel = (max(math.ceil((i + 1) * h / oh) - (i * h) // oh for i in range(oh)),
                  max(math.ceil((i + 1) * w / ow) - (i * w) // ow for i in range(ow)))
        return _window_field(field_in, kernel, (max(h // oh, 1), max(w // ow, 1)), 1)
    if isinstance(module, nn.Linear):
        return whole
    if isinstance(module, nn.Flatten):
        return _Field(field_in.size, field_in.jump, spatial=False)
    if isinstance(module, ELEMENTWISE):
        return field_in
    if in_shape is not None and out_shape is not None and tuple(in_shape) == tuple(out_shape):
        return field_in  # an unknown layer that keeps the shape: assume it works unit by unit
    return None


# --- the table ---------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the summary: one call of one module."""

    name: str                    # attribute path, e.g. 'conv1' or 'layers.1' ('' for the model)
    type: str                    # class name, e.g. 'Conv2d'
    depth: int                   # 0 for the model, 1 for its children, ...
    index: int                   # torchinfo's depth-index: running count of rows at this depth
    output_shape: tuple | None   # with the batch size; None for a container that was never called
    num_params: int              # parameters of the module and its sub-modules
    trainable_params: int
    macs: int                    # mult-adds of this call (containers: the sum over the leaves inside)
    rf_size: tuple | None        # (h, w) receptive field in input pixels; the whole input when global
    rf_jump: tuple | None        # (h, w) input pixels between neighbouring units; None when global
    rf_global: bool = False      # every output unit sees the whole input
    is_leaf: bool = True         # no sub-modules
    recursive: bool = False      # a later call of a module already listed (its parameters not re-counted)
    own_params: int = 0          # parameters held by the module itself (not by sub-modules)
    output_bytes: int = 0

    @property
    def label(self):
        """'Conv2d (conv1): 1-1', torchinfo's layer name with var_names and depth."""
        text = self.type + (f" ({self.name})" if self.name else "")
        return text + (f": {self.depth}-{self.index}" if self.depth > 0 else "")


@dataclass
class Summary:
    """The result of ``summary``: ``str(s)`` is the table; every number is also a field."""

    model_name: str
    input_size: tuple
    rows: list
    total_params: int
    trainable_params: int
    total_mult_adds: int
    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int

    @property
    def non_trainable_params(self):
        return self.total_params - self.trainable_params

    @property
    def macs(self):
        return self.total_mult_adds

    @property
    def flops(self):
        """Floating-point operations of one forward pass: one multiply and one add per MAC."""
        return 2 * self.total_mult_adds

    @property
    def total_bytes(self):
        return self.input_bytes + self.forward_backward_bytes + self.params_bytes

    @property
    def input_mb(self):
        return self.input_bytes / MB

    @property
    def forward_backward_mb(self):
        return self.forward_backward_bytes / MB

    @property
    def params_mb(self):
        return self.params_bytes / MB

    @property
    def total_mb(self):
        return self.total_bytes / MB

    def row(self, name):
        """The first row of the module called ``name`` (e.g. 'conv2' or '3'); KeyError if none."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"summary of {self.model_name} has no layer named {name!r}; layers: "
                       f"{', '.join(repr(r.name) for r in self.rows if r.name)}")

    def leaf_rows(self):
        return [row for row in self.rows if row.is_leaf]

    def __str__(self):
        return format_table(self)

    __repr__ = __str__


def _shape_text(shape):
    return "--" if shape is None else "[" + ", ".join(str(n) for n in shape) + "]"


def _params_text(row):
    if row.is_leaf:
        count, trainable = row.num_params, row.trainable_params
    else:  # like torchinfo: a container shows only the parameters it holds itself
        count, trainable = row.own_params, row.own_params
    if count == 0:
        return "--"
    if row.recursive:
        return "(recursive)"
    return f"{count:,}" if trainable else f"({count:,})"


def _pair_text(pair):
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _rf_texts(row):
    if row.rf_size is None:
        return "--", "--"
    if row.rf_global:
        return "global", "--"
    return f"{row.rf_size[0]}x{row.rf_size[1]}", _pair_text(row.rf_jump)


def _tree_prefix(depth):
    if depth == 0:
        return ""
    return "│    " * (depth - 2) + ("├─" if depth == 1 else "│    └─")


def _readable(number):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if number >= scale:
            return f"{number / scale:.2f} {unit}"
    return f"{number}"


def format_table(s):
    header = ["Layer (type (var_name):depth-idx)", "Output Shape", "Param #", "Mult-Adds", "RF size", "RF jump"]
    body = []
    for row in s.rows:
        leaf_macs = f"{row.macs:,}" if (row.is_leaf and row.macs > 0) else "--"
        size, jump = _rf_texts(row)
        body.append([_tree_prefix(row.depth) + row.label, _shape_text(row.output_shape), _params_text(row),
                     leaf_macs, size, jump])
    widths = [max(len(r[i]) for r in body + [header]) + 3 for i in range(len(header))]
    widths[-1] -= 3

    def line(cells):
        return "".join(cell.ljust(width) if i < 2 else cell.rjust(width - 3) + "   "
                       for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    total_width = sum(widths)
    divider, thin = "=" * total_width, "-" * total_width
    lines = [divider, line(header), divider] + [line(cells) for cells in body] + [divider]
    lines += [
        f"Total params: {s.total_params:,}",
        f"Trainable params: {s.trainable_params:,}",
        f"Non-trainable params: {s.non_trainable_params:,}",
        f"Total mult-adds (MACs): {s.total_mult_adds:,} ({_readable(s.total_mult_adds)})",
        f"FLOPs (2 x MACs): {s.flops:,} ({_readable(s.flops)})",
        thin,
        f"Input size (MB, estimate): {s.input_mb:0.2f}",
        f"Forward/backward pass size (MB, estimate): {s.forward_backward_mb:0.2f}",
        f"Params size (MB, estimate): {s.params_mb:0.2f}",
        f"Estimated total size (MB): {s.total_mb:0.2f}",
        thin,
        f"Input: {_shape_text(s.input_size)}.  RF size: the receptive field of one output unit in input pixels;",
        "RF jump: input pixels between neighbouring units; global: every unit sees the whole input.",
        divider,
    ]
    return "\n".join(lines)


# --- summary() ---------------------------------------------------------------------------------------------
def _input_shape(input_size, batch_size):
    try:
        size = tuple(int(n) for n in input_size)
    except (TypeError, ValueError):
        raise TypeError(f"summary: input_size must be a sequence of ints such as (1, 28, 28), "
                        f"got {input_size!r}") from None
    if not size or min(size) < 1:
        raise ValueError(f"summary: input_size must be non-empty with every size >= 1, got {size}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"summary: batch_size must be >= 1, got {batch_size}")
    if len(size) == 4:
        if batch_size is not None and batch_size != size[0]:
            raise ValueError(f"summary: input_size {size} already has a batch size ({size[0]}); "
                             f"give (C, H, W) with batch_size={batch_size}, or (N, C, H, W) alone")
        return size
    return (1 if batch_size is None else int(batch_size),) + size


def _model_dtype(model):
    for p in model.parameters():
        if p.data.dtype.kind == "f":
            return p.data.dtype
    return np.float32


def _param_counts(module):
    params = list(module.parameters())
    return (int(sum(p.numel() for p in params)), int(sum(p.numel() for p in params if p.requires_grad)))


def _own_params(module):
    return int(sum(v.numel() for v in vars(module).values() if isinstance(v, Parameter)))


def _leaf_macs(module, out_shape):
    """torchinfo's rule (see the module docstring)."""
    if out_shape is None or len(out_shape) == 0:
        return 0
    macs = 0
    is_conv = "Conv" in type(module).__name__
    for name, p in module.named_parameters():
        if name in ("weight", "bias"):
            per = out_shape[0] * math.prod(out_shape[2:]) if is_conv else out_shape[0]
            macs += p.numel() * per
        elif "weight" in name or "bias" in name:
            macs += math.prod(out_shape[:2]) * p.numel()
    return int(macs)


def _first_tensor(values):
    for value in values:
        if isinstance(value, Tensor):
            return value
    return None


def summary(model, input_size, batch_size=None, verbose=0):
    """Summarise ``model`` for inputs of ``input_size`` -> ``Summary`` (print it for the table).

    input_size: the shape of one example, e.g. (1, 28, 28) or (784,), to which the batch size
        (``batch_size``, default 1) is prepended; or a full (N, C, H, W) shape, as torchinfo takes it.
        Any number of input channels.
    verbose: 1 prints the table as well, like torchinfo's default.  convnp's default is 0 because the
        returned Summary's repr is the table: a REPL or notebook shows it once, where torchinfo's
        print-and-return shows it twice; in a script, ``print(convnp.summary(...))`` or ``verbose=1``.
    """
    shape = _input_shape(input_size, batch_size)
    where = next((device_of(p.data) for p in model.parameters()), CPU)  # a model on the GPU is traced there
    x = Tensor(to_device(np.zeros(shape, dtype=_model_dtype(model)), where))
    try:
        with eval_mode(model), no_grad():
            _, calls = trace(model, x)
    except (ValueError, TypeError) as error:
        raise ValueError(f"summary: {type(model).__name__} cannot take an input of shape {shape}: {error}") \
            from error
    result = _build(model, shape, x, calls)
    if verbose:
        print(result)
    return result


def _build(model, shape, x, calls):
    names = _module_names(model)
    # Receptive fields, along the calls in the order they finished.
    image_hw = tuple(shape[2:]) if len(shape) == 4 else None
    start = _Field((1, 1), (1, 1)) if image_hw else None
    fields = {id(x): start}
    keep_alive = [x]
    last = start
    call_fields = {}
    for call in sorted((c for c in calls if c.exit >= 0), key=lambda c: c.exit):
        tensor_in = _first_tensor(call.inputs)
        out = call.output if isinstance(call.output, Tensor) else None
        if call.is_leaf:
            field_in = fields.get(id(tensor_in), last) if tensor_in is not None else last
            in_shape = tuple(tensor_in.shape) if tensor_in is not None else None
            out_shape = tuple(out.shape) if out is not None else None
            result = _next_field(call.module, field_in, in_shape, out_shape, image_hw)
        else:  # a container: the field of what it returns, as far as its leaves tell
            result = fields.get(id(out), last) if out is not None else last
        call_fields[call.entry] = result
        if out is not None:
            fields[id(out)] = result
            keep_alive.append(out)
        last = result

    # Rows in the order the calls started (torchinfo's pre-hook order).
    rows, seen = [], set()
    for call in calls:
        out_shape = tuple(call.output.shape) if isinstance(call.output, Tensor) else None
        total, trainable = _param_counts(call.module)
        rf = call_fields.get(call.entry)
        is_leaf = call.is_leaf
        rows.append(Row(
            name=call.name, type=call.type, depth=call.depth, index=0, output_shape=out_shape,
            num_params=total, trainable_params=trainable,
            macs=_leaf_macs(call.module, out_shape) if is_leaf else 0,
            rf_size=None if rf is None else tuple(rf.size),
            rf_jump=None if (rf is None or rf.is_global) else tuple(rf.jump),
            rf_global=bool(rf is not None and rf.is_global), is_leaf=is_leaf,
            recursive=id(call.module) in seen, own_params=_own_params(call.module),
            output_bytes=int(call.output.data.nbytes) if isinstance(call.output, Tensor) else 0))
        seen.add(id(call.module))
    # Containers' MACs: the sum over the leaf rows nested under them.
    for i, row in enumerate(rows):
        if not row.is_leaf:
            j = i + 1
            while j < len(rows) and rows[j].depth > row.depth:
                if rows[j].is_leaf:
                    row.macs += rows[j].macs
                j += 1
    rows = _add_missing_containers(rows, names, seen)
    counters = {}
    for row in rows:
        counters[row.depth] = counters.get(row.depth, 0) + 1
        row.index = counters[row.depth]

    total_params = sum(r.num_params for r in rows if r.is_leaf and not r.recursive)
    trainable = sum(r.trainable_params for r in rows if r.is_leaf and not r.recursive)
    # parameters held directly by containers (torchinfo's "leftover" parameters)
    for module in {id(m): m for m in model.modules()}.values():
        if any(True for _ in module.children()):
            for value in vars(module).values():
                if isinstance(value, Parameter):
                    total_params += value.numel()
                    trainable += value.numel() if value.requires_grad else 0
    return Summary(
        model_name=type(model).__name__, input_size=shape, rows=rows,
        total_params=int(total_params), trainable_params=int(trainable),
        total_mult_adds=int(sum(r.macs for r in rows if r.is_leaf)),
        input_bytes=int(x.data.nbytes),
        forward_backward_bytes=int(2 * sum(r.output_bytes for r in rows if r.is_leaf and r.num_params > 0)),
        params_bytes=int(sum(p.data.nbytes for p in model.parameters())),
    )


def _add_missing_containers(rows, names, seen):
    """Insert a row for a container whose forward never ran (a ModuleList the model iterates over)
    above the first of its children, as torchinfo does."""
    by_name = {name: module for name, module in names.values()}
    result, open_path = [], {}
    for row in rows:
        parts = row.name.split(".") if row.name else []
        for d in range(1, row.depth):
            parent_name = ".".join(parts[:d])
            parent = by_name.get(parent_name)
            if parent is None:
                continue
            current = open_path.get(d)
            if current is not None and current.name == parent_name:
                continue
            total, trainable = _param_counts(parent)
            result.append(Row(name=parent_name, type=type(parent).__name__, depth=d, index=0, output_shape=None,
                              num_params=total, trainable_params=trainable, macs=0, rf_size=None, rf_jump=None,
                              is_leaf=False, recursive=id(parent) in seen, own_params=_own_params(parent)))
            seen.add(id(parent))
            open_path[d] = result[-1]
        open_path[row.depth] = row
        for deeper in [d for d in open_path if d > row.depth]:
            del open_path[deeper]
        result.append(row)
    return result
