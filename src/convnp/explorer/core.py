"""``Explorer``: everything the explorer page shows, computed by convnp, as plain methods returning JSON-ready
dicts (the HTTP layer in ``server.py`` only routes to them).

    ex = Explorer(convnp.models.LeNet5(), info)   # info: a Checkpoint (or {'preprocessing': {...}}), optional
    ex.model_info()                               # layer table (convnp.summary rows), classes, input size
    ex.forward({"sample": 0})                     # every layer's output, logits, probabilities, top classes
    ex.conv({"input": "line7", "kernel": "sobel_x", "stride": 1, "padding": 0})   # output + every term
    ex.stack({"input_shape": [1, 28, 28], "blocks": [{"type": "conv", "out_channels": 6, "kernel": 5}]})
    ex.field({"layer": 3, "unit": [2, 5]})        # the input pixels that unit can see

Requests are dicts (parsed JSON); a bad one raises ``RequestError`` whose message is convnp's own.
One lock serialises the model's forward passes (``trace`` patches the modules while it runs).
"""
import threading

import numpy as np

from .. import functional as F, nn
from ..backend import to_numpy
from ..data.images import pillow
from ..inspect.summary import summary, trace
from ..tensor import Tensor, no_grad
from .arrays import RequestError, decode, encode

# --- panel 1: the tutorials' kernels and inputs -----------------------------------------------------------
KERNELS = {
    "sobel_x": ("Sobel x", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "sobel_y": ("Sobel y", [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "horizontal_edge": ("horizontal edge", [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
    "vertical_edge": ("vertical edge", [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
    "blur": ("blur (box)", [[1 / 9] * 3] * 3),
    "sharpen": ("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "horizontal_bar": ("horizontal bar", [[-0.6] * 3, [1.1] * 3, [-0.6] * 3]),
}


def _edge8():
    image = np.zeros((8, 8), dtype=np.float32)
    image[:, 4:] = 1.0
    return image


def _line7():
    image = np.zeros((7, 7), dtype=np.float32)
    image[:, 3] = 1.0
    return image


CONV_INPUTS = {
    "edge8": ("8x8 edge (right half bright)", _edge8),
    "line7": ("7x7 vertical line", _line7),
    "ticket4": ("4x4 patch with a bright blob", lambda: np.array(
        [[0.05, 0.08, 0.06, 0.07], [0.12, 0.92, 0.88, 0.09], [0.08, 0.90, 0.93, 0.11], [0.06, 0.07, 0.09, 0.05]],
        dtype=np.float32)),
}
MAX_CONV_SIDE = 64
DRAWN_CONV_SIDE = 14

# --- panel 4: the blocks of the cake builder ---------------------------------------------------------------
BLOCK_TYPES = ("conv", "maxpool", "avgpool", "gap", "batchnorm", "relu", "flatten", "linear", "dropout")
PRESETS = {
    "lenet5": {"label": "LeNet-5 (1x28x28)", "input_shape": [1, 28, 28], "blocks": [
        {"type": "conv", "out_channels": 6, "kernel": 5}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
        {"type": "conv", "out_channels": 16, "kernel": 5}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
        {"type": "flatten"}, {"type": "linear", "out_features": 120}, {"type": "relu"},
        {"type": "linear", "out_features": 84}, {"type": "relu"}, {"type": "linear", "out_features": 10}]},
    "tinycnn": {"label": "TinyCNN (1x8x8)", "input_shape": [1, 8, 8], "blocks": [
        {"type": "conv", "out_channels": 3, "kernel": 3}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
        {"type": "flatten"}, {"type": "linear", "out_features": 3}]},
    "smallvgg": {"label": "small VGG (3x32x32)", "input_shape": [3, 32, 32], "blocks": [
        block for width in (32, 64, 128) for block in (
            {"type": "conv", "out_channels": width, "kernel": 3, "padding": 1, "bias": False},
            {"type": "batchnorm"}, {"type": "relu"},
            {"type": "conv", "out_channels": width, "kernel": 3, "padding": 1, "bias": False},
            {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2})
    ] + [{"type": "gap"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]},
}
PRESETS["lenet5-classic"] = {"label": "LeNet-5 classic (3x32x32)", "input_shape": [3, 32, 32],
                             "blocks": PRESETS["lenet5"]["blocks"]}
MAX_BLOCKS = 64
MAX_STACK_VALUES = 50_000_000  # parameters or activations of one stack


def _leaf_calls(calls):
    return [call for call in calls if call.is_leaf]


def _as_int(block, key, default, where, minimum=0):
    value = block.get(key, default)
    if value is None or value == "":
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise RequestError(f"{where}: {key} must be a whole number, got {value!r}")
    if value < minimum:
        raise RequestError(f"{where}: {key} must be >= {minimum}, got {int(value)}")
    return int(value)


class Explorer:
    """The computations behind the explorer page, for one model.

    model: any ``convnp.nn.Module`` taking (N, C, H, W) images.
    info: a ``Checkpoint`` (``convnp.checkpoint.load_model``'s second value), or a dict with a
        'preprocessing' entry (input_size, mean, std, classes, layout, dataset), or None: then
        ``input_size`` (C, H, W) must be given unless the model is one of convnp.models.
    samples: (images (N, C, H, W) in [0, 1] before normalisation, labels (N,)) offered as test images;
        by default up to one image per class from the test split of the model's dataset when it is on disk.
    live: a ``TrainingMonitor`` whose snapshot ``live()`` returns (``train --explore``).
    """

    def __init__(self, model=None, info=None, *, input_size=None, samples=None, live=None, source=None):
        self.lock = threading.Lock()
        self.live_monitor = live
        self.source = source
        self.model = None
        if model is not None:
            self.set_model(model, info, input_size=input_size, samples=samples, source=source)

    # --- the model ---------------------------------------------------------------------------------------
    def set_model(self, model, info=None, *, input_size=None, samples=None, source=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Explorer: model must be a convnp.nn.Module, got {type(model).__name__}")
        preprocessing = dict((info or {}).get("preprocessing") or {})
        if input_size is not None:
            preprocessing["input_size"] = [int(n) for n in input_size]
        if "input_size" not in preprocessing:
            preprocessing["input_size"] = _default_input_size(model)
        channels = preprocessing["input_size"][0]
        preprocessing.setdefault("mean", [0.0] * channels)
        preprocessing.setdefault("std", [1.0] * channels)
        preprocessing.setdefault("layout", {"box": None, "centre": None, "invert": "auto"})
        model.eval()
        with no_grad():
            try:
                logits = model(nn.on_model_device(model, np.zeros([1, *preprocessing["input_size"]], dtype=np.float32)))
            except (ValueError, TypeError) as error:
                raise ValueError(f"Explorer: {type(model).__name__} does not take inputs of shape "
                                 f"{preprocessing['input_size']}: {error}") from None
        if logits.ndim != 2:
            raise ValueError(f"Explorer: {type(model).__name__} must return (N, classes) logits, got shape "
                             f"{tuple(logits.shape)}")
        preprocessing.setdefault("classes", [str(k) for k in range(logits.shape[1])])
        with self.lock:
            self.model, self.info, self.preprocessing = model, info, preprocessing
            self.summary = summary(model, tuple(preprocessing["input_size"]))
            self.samples = _samples(preprocessing, info, samples)
            self.source = source or (info or {}).get("path") or self.source
            self.model_version = getattr(self, "model_version", 0) + 1

    def _require_model(self):
        if self.model is None:
            raise RequestError("no model is loaded yet (training has not written its first checkpoint)")

    def model_info(self):
        """GET /api/model: the layer table as convnp.summary gives it, classes, input size, preprocessing."""
        if self.model is None:
            return {"model": None, "live": self.live_monitor is not None, "version": 0}
        s = self.summary
        rows = [{
            "name": r.name, "type": r.type, "depth": r.depth, "label": r.label, "is_leaf": r.is_leaf,
            "output_shape": None if r.output_shape is None else list(r.output_shape), "params": r.num_params,
            "trainable_params": r.trainable_params, "macs": r.macs, "flops": 2 * r.macs,
            "rf_size": None if r.rf_size is None else list(r.rf_size),
            "rf_jump": None if r.rf_jump is None else list(r.rf_jump), "rf_global": r.rf_global,
            "recursive": r.recursive} for r in s.rows]
        prep = self.preprocessing
        return {
            "model": s.model_name, "source": self.source, "version": self.model_version,
            "input_size": list(prep["input_size"]), "classes": list(prep["classes"]),
            "preprocessing": {key: prep.get(key) for key in ("dataset", "mean", "std", "layout", "input_size")},
            "rows": rows,
            "totals": {"params": s.total_params, "trainable_params": s.trainable_params, "macs": s.total_mult_adds,
                       "flops": s.flops},
            "samples": [{"index": i, "label": int(label), "class": _class_name(prep, label)}
                        for i, label in enumerate(self.samples[1])],
            "live": self.live_monitor is not None,
            "summary_text": str(s),
        }

    # --- panel 2: forward --------------------------------------------------------------------------------
    def model_input(self, request):
        """-> (normalised input (C, H, W), the same before normalisation in [0, 1] for display)."""
        prep = self.preprocessing
        if "sample" in request:
            index = request["sample"]
            count = len(self.samples[0])
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
                raise RequestError(f"sample must be an index from 0 to {count - 1}, got {index!r}" if count else
                                   "this model has no test images on disk; draw one instead")
            raw = self.samples[0][index].astype(np.float32)
        elif "drawing" in request:
            raw = _prepare_drawing(decode(request["drawing"], "drawing", ndim=(2, 3)), prep)
        elif "input" in request:
            x = decode(request["input"], "input", ndim=3)
            if list(x.shape) != list(prep["input_size"]):
                raise RequestError(f"input must have shape {prep['input_size']} (C, H, W), got {list(x.shape)}")
            return x, None
        else:
            raise RequestError("give one of 'sample' (an index), 'drawing' (a grey canvas) or 'input' (C, H, W)")
        return _normalise(raw, prep), raw

    def forward(self, request):
        """POST /api/forward: {sample | drawing | input} -> every leaf layer's output, logits, probabilities."""
        self._require_model()
        x, raw = self.model_input(request)
        top = request.get("top", 5)
        with self.lock:
            model = self.model
            model.eval()
            with no_grad():
                logits, calls = trace(model, nn.on_model_device(model, x[None]))
            fields = _fields(self.summary, calls, x.shape[1:])
        logits = to_numpy(logits.data).astype(np.float32)[0]
        probabilities = _softmax(logits.astype(np.float64))
        order = np.argsort(-probabilities, kind="stable")[:max(1, min(int(top), len(logits)))]
        producers = {}
        layers = []
        for index, call in enumerate(_leaf_calls(calls)):
            source = next((producers[id(a)] for a in call.inputs if isinstance(a, Tensor) and id(a) in producers), -1)
            out = call.output
            layers.append({"index": index, "name": call.name, "type": call.type, "input_from": source,
                           "shape": list(out.shape[1:]), "output": encode(out.data[0]),
                           "has_filter": isinstance(call.module, nn.Conv2d), "field": fields[index]})
            producers[id(out)] = index
        prep = self.preprocessing
        return {
            "input": encode(x), "display": None if raw is None else encode(raw), "layers": layers,
            "logits": encode(logits), "probabilities": encode(probabilities.astype(np.float32)),
            "top": [{"index": int(k), "class": _class_name(prep, k), "probability": float(probabilities[k])}
                    for k in order],
            "label": int(self.samples[1][request["sample"]]) if "sample" in request else None,
        }

    def layer_filter(self, request):
        """POST /api/filter {layer: leaf index or name} -> the conv layer's weight (F, C/groups, kh, kw), bias."""
        self._require_model()
        module, name = self._leaf_module(request.get("layer"))
        if not isinstance(module, nn.Conv2d):
            raise RequestError(f"layer {name!r} is a {type(module).__name__}, not a Conv2d: it has no filters")
        return {"name": name, "weight": encode(module.weight.data),
                "bias": None if module.bias is None else encode(module.bias.data),
                "stride": list(module.stride), "padding": list(module.padding), "dilation": list(module.dilation),
                "groups": module.groups}

    def _leaf_module(self, layer):
        leaves = [(row.name, row) for row in self.summary.rows if row.is_leaf]
        modules = dict(self.model.named_modules())
        if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < len(leaves):
            name = leaves[layer][0]
        elif isinstance(layer, str) and layer in modules:
            name = layer
        else:
            raise RequestError(f"layer must be a leaf index from 0 to {len(leaves) - 1} or a module name, "
                               f"got {layer!r}")
        return modules[name], name

    # --- panel 3: receptive fields ----------------------------------------------------------------------
    def field(self, request):
        """POST /api/field {layer: leaf index, unit: [row, col]} -> the input pixels the unit can see:
        box [top, left, bottom, right] (inclusive, clipped to the image), the unclipped window, its size."""
        self._require_model()
        with self.lock:
            _, calls = _zero_trace(self.model, self.preprocessing["input_size"])
            fields = _fields(self.summary, calls, self.preprocessing["input_size"][1:])
            shapes = [tuple(c.output.shape[1:]) for c in _leaf_calls(calls)]
        layer = request.get("layer")
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(fields):
            raise RequestError(f"layer must be a leaf index from 0 to {len(fields) - 1}, got {layer!r}")
        return unit_field(fields[layer], shapes[layer], request.get("unit"), self.preprocessing["input_size"][1:])

    def race(self, request):
        """POST /api/race {patch: p} -> the receptive field after each layer of the model (convnp.summary)
        and of a ViT with patch size p: its patch embedding is a Conv2d(k=p, stride=p), whose
        convnp.summary field is p x p; an attention block mixes every token (the whole image)."""
        self._require_model()
        channels, height, width = self.preprocessing["input_size"]
        patch = _as_int(request, "patch", 4, "race", minimum=1)
        if patch > min(height, width):
            raise RequestError(f"race: patch size {patch} is larger than the {height}x{width} image")
        cnn = [{"name": r.name, "type": r.type, "rf_size": None if r.rf_size is None else list(r.rf_size),
                "rf_jump": None if r.rf_jump is None else list(r.rf_jump), "rf_global": r.rf_global,
                "output_shape": list(r.output_shape[1:])} for r in self.summary.rows if r.is_leaf]
        embed = nn.Sequential(nn.Conv2d(channels, 8, patch, stride=patch))
        row = summary(embed, (channels, height, width)).leaf_rows()[0]
        tokens = row.output_shape[2] * row.output_shape[3]
        vit = [{"name": f"patch embedding (Conv2d {patch}x{patch}, stride {patch})", "rf_size": list(row.rf_size),
                "rf_jump": list(row.rf_jump), "rf_global": False, "tokens": tokens},
               {"name": f"attention block 1 (every one of the {tokens} tokens attends to all)",
                "rf_size": [height, width], "rf_jump": None, "rf_global": True, "tokens": tokens}]
        return {"input_size": [channels, height, width], "patch": patch, "cnn": cnn, "vit": vit}

    # --- panel 1: one convolution, term by term ----------------------------------------------------------
    def conv(self, request):
        """POST /api/conv {input: name | array (H, W) | drawing, kernel: name | (k, k) list, stride, padding}
        -> the image, padded image, kernel, output (convnp.functional.conv2d) and, for every output
        position, the window and the products kernel * window that its value sums."""
        image = self._conv_image(request.get("input", "line7"))
        kernel = request.get("kernel", "sobel_x")
        if isinstance(kernel, str):
            if kernel not in KERNELS:
                raise RequestError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)} or give a "
                                   f"3x3 or 5x5 list of numbers")
            kernel = np.array(KERNELS[kernel][1], dtype=np.float32)
        else:
            kernel = decode(kernel, "kernel", ndim=2)
            if kernel.shape[0] != kernel.shape[1] or kernel.shape[0] not in (1, 2, 3, 4, 5, 6, 7):
                raise RequestError(f"kernel must be square, 1x1 to 7x7 (3x3 or 5x5 as in the tutorials), got "
                                   f"{kernel.shape[0]}x{kernel.shape[1]}")
        stride = _as_int(request, "stride", 1, "conv2d")
        padding = _as_int(request, "padding", 0, "conv2d")
        if padding > MAX_CONV_SIDE:
            raise RequestError(f"conv2d: padding {padding} is more than the {MAX_CONV_SIDE} pixels this panel shows")
        try:
            y = F.conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding).data[0, 0]
        except ValueError as error:
            raise RequestError(str(error)) from None
        padded = np.pad(image, padding)
        k = kernel.shape[0]
        windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k))[::stride, ::stride]
        windows = np.ascontiguousarray(windows[:y.shape[0], :y.shape[1]])
        return {"image": encode(image), "padded": encode(padded), "kernel": encode(kernel), "stride": stride,
                "padding": padding, "output": encode(y), "windows": encode(windows),
                "products": encode(windows * kernel)}

    def _conv_image(self, value):
        if isinstance(value, str):
            if value in CONV_INPUTS:
                return CONV_INPUTS[value][1]()
            if value == "digit":
                self._require_model()
                if not len(self.samples[0]):
                    raise RequestError("this model has no test images on disk; draw one instead")
                return _downsample(self.samples[0][0][0], DRAWN_CONV_SIDE)
            raise RequestError(f"unknown input {value!r}; choose one of {', '.join(CONV_INPUTS)}, digit, or give an "
                               f"array")
        if isinstance(value, dict) and "drawing" in value:
            drawing = decode(value["drawing"], "drawing", ndim=2)
            return _downsample(drawing.astype(np.float32) / (255.0 if drawing.dtype == np.uint8 else 1.0),
                               DRAWN_CONV_SIDE)
        image = decode(value, "input", ndim=2)
        if max(image.shape) > MAX_CONV_SIDE:
            raise RequestError(f"input: at most {MAX_CONV_SIDE}x{MAX_CONV_SIDE} pixels, got {list(image.shape)}")
        return image

    # --- panel 4: the cake builder ------------------------------------------------------------------------
    def stack(self, request):
        """POST /api/stack {input_shape: [C, H, W], blocks: [...]} -> one row per block (output shape,
        parameters, MACs, FLOPs, receptive field: convnp.summary of the nn.Sequential built), totals and
        the Python code; or {error, block}: convnp's message and the index of the block that fails."""
        shape = request.get("input_shape")
        if (not isinstance(shape, list) or len(shape) not in (1, 3)
                or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 4096 for n in shape)):
            raise RequestError(f"input_shape must be [C, H, W] (or [features]) of whole numbers from 1 to 4096, got "
                               f"{shape!r}")
        blocks = request.get("blocks")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise RequestError("blocks must be a list of {type: ..., ...} objects")
        if len(blocks) > MAX_BLOCKS:
            raise RequestError(f"at most {MAX_BLOCKS} blocks, got {len(blocks)}")
        modules, codes = [], []
        current = (1, *shape)
        for index, block in enumerate(blocks):
            try:
                module, code = _build_block(block, current, index)
                count = sum(p.numel() for p in module.parameters())
                if count > MAX_STACK_VALUES:
                    raise RequestError(f"block {index + 1} ({code}): {count:,} parameters is more than this panel "
                                       f"builds ({MAX_STACK_VALUES:,})")
                with no_grad():
                    module.eval()
                    out = module(Tensor(np.zeros(current, dtype=np.float32)))
                if out.numel() > MAX_STACK_VALUES:
                    raise RequestError(f"block {index + 1} ({code}): an output of {out.numel():,} values is too large")
            except (ValueError, TypeError) as error:
                message = str(error)
                return {"error": message, "block": index, "rows": [], "code": _code(codes)}
            modules.append(module)
            codes.append(code)
            current = tuple(out.shape)
        model = nn.Sequential(*modules)
        s = summary(model, tuple(shape))
        rows = [{"block": i, "type": r.type, "output_shape": list(r.output_shape), "params": r.num_params,
                 "macs": r.macs, "flops": 2 * r.macs, "rf_size": None if r.rf_size is None else list(r.rf_size),
                 "rf_jump": None if r.rf_jump is None else list(r.rf_jump), "rf_global": r.rf_global,
                 "code": codes[i]} for i, r in enumerate(s.leaf_rows())]
        return {"error": None, "block": None, "rows": rows, "input_shape": [1, *shape],
                "totals": {"params": s.total_params, "macs": s.total_mult_adds, "flops": s.flops},
                "code": _code(codes), "summary_text": str(s)}

    def presets(self):
        """GET /api/presets: the kernels, conv inputs and cake presets the page offers."""
        return {"kernels": {key: {"label": label, "values": values} for key, (label, values) in KERNELS.items()},
                "conv_inputs": {key: label for key, (label, _) in CONV_INPUTS.items()},
                "stacks": PRESETS, "block_types": list(BLOCK_TYPES)}

    # --- panel 5: live training ---------------------------------------------------------------------------
    def live(self):
        """GET /api/live: the training monitor's latest snapshot ({active: false} without one)."""
        if self.live_monitor is None:
            return {"active": False}
        return self.live_monitor.snapshot()

    def open_latest(self):
        """POST /api/live/open: load the latest checkpoint the run wrote into panels 2-3."""
        monitor = self.live_monitor
        path = None if monitor is None else monitor.latest_checkpoint()
        if path is None:
            raise RequestError("no checkpoint has been written yet")
        from ..checkpoint import load_model

        model, info = load_model(path)
        self.set_model(model, info, source=str(path))
        return self.model_info()


# --- helpers ----------------------------------------------------------------------------------------------------
def _default_input_size(model):
    from .. import models

    channels = getattr(model, "in_channels", 1)
    if isinstance(model, models.LeNet5):
        return [channels, model.input_size, model.input_size]
    sides = {models.SimpleCNN: 28, models.TinyCNN: 8, models.SmallVGG: 32}
    for cls, side in sides.items():
        if isinstance(model, cls):
            return [channels, side, side]
    raise ValueError(f"Explorer: give input_size=(C, H, W) for a {type(model).__name__} model (or a checkpoint "
                     f"info with preprocessing)")


def _class_name(prep, k):
    classes = prep.get("classes") or []
    return str(classes[k]) if k < len(classes) else str(k)


def _softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _normalise(x, prep):
    """The training normalisation, as ``convnp.predict.preprocess`` applies it."""
    mean = np.asarray(prep.get("mean") or [0.0], dtype=np.float32)[:, None, None]
    std = np.asarray(prep.get("std") or [1.0], dtype=np.float32)[:, None, None]
    return ((x - mean) / std).astype(np.float32)


def _prepare_drawing(drawing, prep):
    """A drawn canvas (H, W) or (H, W, 3) of uint8 (or floats in [0, 1]) -> the model input before
    normalisation, through ``convnp.predict.to_model_input`` (what ``convnp predict`` does to a file)."""
    from ..predict import to_model_input

    if drawing.dtype != np.uint8:
        drawing = (np.clip(drawing, 0, 1) * 255).round().astype(np.uint8)
    if drawing.ndim == 3 and drawing.shape[2] != 3:
        raise RequestError(f"drawing: expected (H, W) grey or (H, W, 3) colour pixels, got {list(drawing.shape)}")
    image = pillow().fromarray(drawing, mode="L" if drawing.ndim == 2 else "RGB")
    try:
        return to_model_input(image, prep).astype(np.float32)
    except ValueError as error:
        raise RequestError(f"drawing: {error}") from None


def _downsample(image, side):
    Image = pillow()
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize((side, side),
                                                                                   Image.Resampling.LANCZOS)
    return np.round(np.clip(np.asarray(picture, dtype=np.float32), 0, 1), 2).astype(np.float32)


def _samples(prep, info, samples):
    """(images (N, C, H, W) in [0, 1], labels (N,)): given ones, else one per class from the test split."""
    if samples is not None:
        x, y = samples
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or list(x.shape[1:]) != list(prep["input_size"]):
            raise ValueError(f"Explorer: samples must be (N, {', '.join(map(str, prep['input_size']))}) images, got "
                             f"shape {x.shape}")
        return x, np.asarray(y, dtype=np.int64)
    empty = (np.zeros((0, *prep["input_size"]), dtype=np.float32), np.zeros(0, dtype=np.int64))
    name = prep.get("dataset")
    if not name:
        return empty
    from ..data import load_dataset

    recipe = (info or {}).get("recipe") or {}
    options = dict(recipe.get("dataset_options") or {}) if recipe.get("dataset") == name else {}
    if name in ("mnist", "fashion-mnist"):
        options["download"] = False
    try:
        test = load_dataset(name, "test", **options)
    except (OSError, ValueError, ImportError, TypeError):
        return empty
    if list(test.x.shape[1:]) != list(prep["input_size"]):
        return empty
    picks = [int(np.flatnonzero(test.y == k)[0]) for k in range(len(prep.get("classes") or [])) if (test.y == k).any()]
    picks += [i for i in range(min(len(test.y), 20)) if i not in picks][:max(0, 12 - len(picks))]
    return np.asarray(test.x[picks], dtype=np.float32), np.asarray(test.y[picks], dtype=np.int64)


def _zero_trace(model, input_size):
    model.eval()
    with no_grad():
        return trace(model, nn.on_model_device(model, np.zeros([1, *input_size], dtype=np.float32)))


def _fields(s, calls, image_hw):
    """For each leaf call: its receptive field as {size, jump, start, global} in input pixels.

    size and jump come from the convnp.summary rows; start (the input coordinate of the top-left pixel of
    unit (0, 0)'s window, negative where the window hangs over the padding) follows the calls:
    a convolution or pooling with padding p moves it by -p * jump_in, other layers keep it.
    """
    rows = [r for r in s.rows if r.is_leaf]
    leaves = _leaf_calls(calls)
    starts = {}
    result = []
    previous = {"start": [0, 0], "jump": [1, 1]}
    for row, call in zip(rows, leaves):
        source = next((starts[id(a)] for a in call.inputs if isinstance(a, Tensor) and id(a) in starts),
                      {"start": [0, 0], "jump": [1, 1]} if not result else previous)
        start = list(source["start"])
        padding = getattr(call.module, "padding", 0)
        if isinstance(call.module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and source["jump"] is not None:
            pad = (padding, padding) if isinstance(padding, int) else tuple(padding)
            start = [start[0] - pad[0] * source["jump"][0], start[1] - pad[1] * source["jump"][1]]
        spatial = call.output.ndim == 4
        field = {"size": None if row.rf_size is None else list(row.rf_size),
                 "jump": None if row.rf_jump is None else list(row.rf_jump),
                 "start": start, "global": row.rf_global, "spatial": spatial,
                 # the (C, H, W) grid the units sit on: a flattened vector's unit k is pixel k of it
                 "grid": list(call.output.shape[1:]) if spatial else source.get("grid")}
        if row.rf_global:
            field["size"] = list(image_hw)
        result.append(field)
        starts[id(call.output)] = field
        previous = field
    return result


def unit_field(field, shape, unit, image_hw):
    """The window in input pixels of ``unit`` (row, col) of a layer with ``field`` and output ``shape``."""
    height, width = image_hw
    if field["size"] is None:
        raise RequestError("the receptive field of this layer is unknown (it does not act on image pixels)")
    if field["global"] or (not field["spatial"] and not field.get("grid")):
        return {"global": True, "box": [0, 0, height - 1, width - 1], "window": [0, 0, height - 1, width - 1],
                "size": [height, width], "jump": None, "unit": unit}
    if not field["spatial"]:  # a flattened map: unit [0, k] is channel k // (H W), pixel k % (H W)
        channels, rows, cols = field["grid"]
        if (not isinstance(unit, list) or len(unit) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                       for v in unit)
                or not 0 <= unit[1] < channels * rows * cols):
            raise RequestError(f"unit must be [0, k] with k below {channels * rows * cols}, got {unit!r}")
        flat = unit[1]
        unit = [(flat // cols) % rows, flat % cols]
        shape = (rows, cols)
    rows, cols = shape[-2], shape[-1]
    if (not isinstance(unit, list) or len(unit) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in unit)
            or not (0 <= unit[0] < rows and 0 <= unit[1] < cols)):
        raise RequestError(f"unit must be [row, col] inside the {rows}x{cols} map, got {unit!r}")
    top = field["start"][0] + unit[0] * field["jump"][0]
    left = field["start"][1] + unit[1] * field["jump"][1]
    bottom, right = top + field["size"][0] - 1, left + field["size"][1] - 1
    box = [max(top, 0), max(left, 0), min(bottom, height - 1), min(right, width - 1)]
    return {"global": False, "box": box, "window": [top, left, bottom, right], "size": field["size"],
            "jump": field["jump"], "unit": unit}


def _build_block(block, current, index):
    """A block description and the current (1, C, H, W) or (1, F) shape -> (module, its Python code)."""
    kind = block.get("type")
    where = f"block {index + 1} ({kind})"
    if kind not in BLOCK_TYPES:
        raise RequestError(f"block {index + 1}: type must be one of {', '.join(BLOCK_TYPES)}, got {kind!r}")
    image = len(current) == 4
    if kind in ("conv", "maxpool", "avgpool", "gap", "batchnorm") and not image and kind != "batchnorm":
        raise ValueError(f"{where}: needs (N, C, H, W) maps, but the block before gives {list(current)} "
                         f"(put it before the flatten)")
    if kind == "conv":
        in_channels = _as_int(block, "in_channels", current[1], where, minimum=1)
        out = _as_int(block, "out_channels", 8, where, minimum=1)
        kernel = _as_int(block, "kernel", 3, where, minimum=1)
        stride = _as_int(block, "stride", 1, where, minimum=1)
        padding = _as_int(block, "padding", 0, where)
        bias = bool(block.get("bias", True))
        extra = (f", stride={stride}" if stride != 1 else "") + (f", padding={padding}" if padding else "") + \
                ("" if bias else ", bias=False")
        return (nn.Conv2d(in_channels, out, kernel, stride=stride, padding=padding, bias=bias),
                f"nn.Conv2d({in_channels}, {out}, kernel_size={kernel}{extra})")
    if kind in ("maxpool", "avgpool"):
        kernel = _as_int(block, "kernel", 2, where, minimum=1)
        stride = _as_int(block, "stride", kernel, where, minimum=1)
        padding = _as_int(block, "padding", 0, where)
        cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
        extra = (f", stride={stride}" if stride != kernel else "") + (f", padding={padding}" if padding else "")
        return cls(kernel, stride=stride, padding=padding), f"nn.{cls.__name__}({kernel}{extra})"
    if kind == "gap":
        return nn.AdaptiveAvgPool2d(1), "nn.AdaptiveAvgPool2d(1)"
    if kind == "batchnorm":
        cls = nn.BatchNorm2d if image else nn.BatchNorm1d
        features = _as_int(block, "num_features", current[1], where, minimum=1)
        return cls(features), f"nn.{cls.__name__}({features})"
    if kind == "relu":
        return nn.ReLU(), "nn.ReLU()"
    if kind == "dropout":
        return nn.Dropout(0.5), "nn.Dropout(0.5)"
    if kind == "flatten":
        return nn.Flatten(), "nn.Flatten()"
    in_features = _as_int(block, "in_features", int(np.prod(current[1:])), where, minimum=1)
    out = _as_int(block, "out_features", 10, where, minimum=1)
    if in_features * out > MAX_STACK_VALUES:
        raise RequestError(f"{where}: Linear({in_features}, {out}) would hold {in_features * out:,} weights, more "
                           f"than this panel builds ({MAX_STACK_VALUES:,})")
    return nn.Linear(in_features, out), f"nn.Linear({in_features}, {out})"


def _code(codes):
    if not codes:
        return "model = nn.Sequential()"
    return "from convnp import nn\n\nmodel = nn.Sequential(\n" + "".join(f"    {c},\n" for c in codes) + ")"
