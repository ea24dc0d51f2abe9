"""Pictures of a network as PNG files: filters, feature maps, ReLU, max pooling, training curves,
confusion matrix, misclassified images and saliency.

Every ``plot_*`` function takes explicit arrays or a model and an output path, writes one PNG there
(creating its folder) and returns the path.  Each figure has a title, labelled axes or a colour bar;
the title is also stored in the PNG's ``Title`` text chunk.  matplotlib runs on its Agg backend
(files only, no window), selected here before pyplot is imported.

The numbers behind a picture come from functions you can call on their own: ``conv_feature_maps``,
``max_pool_winners``, ``confusion_matrix``, ``most_confident_mistakes``, ``predict_proba``,
``saliency_map``.  A model may live on the GPU (``model.to("cuda")``): its inputs go to its device and
every array these functions return is a host (NumPy) copy.
"""
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .. import (
    functional as F,  # noqa: E402
    nn,  # noqa: E402
)
from ..backend import to_device, to_numpy  # noqa: E402
from ..files import atomic_write  # noqa: E402
from ..metrics import confusion_matrix  # noqa: E402  (re-exported: viz.confusion_matrix)
from ..nn import eval_mode, model_device, on_model_device  # noqa: E402
from ..tensor import Tensor, no_grad  # noqa: E402
from .summary import trace  # noqa: E402

__all__ = [
    "first_conv", "conv_feature_maps", "relu_maps", "max_pool_winners", "confusion_matrix", "most_confident_mistakes",
    "predict_proba", "saliency_map",
    "plot_filters", "plot_feature_maps", "plot_relu_before_after", "plot_max_pool", "plot_training_curves",
    "plot_confusion_matrix", "plot_misclassified", "plot_saliency",
]

DPI = 100
WINNER_COLOR = "#f5c518"   # gold: the cell that wins its pooling window
DIVERGING = "RdBu_r"       # negative blue, zero white, positive red


# --- helpers ----------------------------------------------------------------------------------------------
def _save(fig, path, title, extra=None):
    """Write ``fig`` to ``path`` as PNG (title in the Title text chunk, written atomically), close it,
    return the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"viz: figures are written as PNG, got the path {str(path)!r} (use a .png name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Title": title, "Software": "convnp.viz"}
    metadata.update(extra or {})
    try:  # atomically: a killed run leaves the old picture or the new one, never half a PNG
        atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=DPI, metadata=metadata))
    finally:
        plt.close(fig)
    return path


def _as_image_batch(image):
    """(H, W), (C, H, W) or (1, C, H, W) -> float32 (1, C, H, W)."""
    array = to_numpy(image.data if isinstance(image, Tensor) else image).astype(np.float32, copy=False)
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] != 1:
        raise ValueError(f"viz: expected one image (H, W), (C, H, W) or (1, C, H, W), got shape {array.shape}")
    return array


def _show_image(ax, image_chw, title=None):
    """Draw a (C, H, W) image: grey for one channel, RGB (rescaled to [0, 1]) for three."""
    if image_chw.shape[0] == 3:
        rgb = np.transpose(image_chw, (1, 2, 0))
        low, high = rgb.min(), rgb.max()
        ax.imshow((rgb - low) / (high - low) if high > low else np.zeros_like(rgb))
        im = None
    else:
        im = ax.imshow(image_chw[0], cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return im


def _symmetric_limit(*arrays):
    limit = max(float(np.max(np.abs(a))) if np.size(a) else 0.0 for a in arrays)
    return limit if limit > 0 else 1.0


def _grid(count, max_cols=8):
    cols = min(count, max_cols)
    return math.ceil(count / cols), cols


def first_conv(model):
    """The first ``Conv2d`` of ``model`` (in attribute order), or a ValueError if it has none."""
    for _, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError(f"viz: {type(model).__name__} has no Conv2d layer")


def _eval_trace(model, batch):
    with eval_mode(model), no_grad():
        return trace(model, on_model_device(model, batch))


def conv_feature_maps(model, image):
    """Outputs of every Conv2d call for one image -> [(name, (C, H, W) array)] in call order.

    These are the pre-activation maps (the convolution's output, before any ReLU), in eval mode.
    """
    _, calls = _eval_trace(model, _as_image_batch(image))
    return [(_label(call), np.array(to_numpy(call.output.data[0]))) for call in sorted(calls, key=lambda c: c.exit)
            if isinstance(call.module, nn.Conv2d)]


def _label(call):
    """'conv1' for a named attribute, 'layer 0 (Conv2d)' for a Sequential position."""
    last = call.name.rsplit(".", 1)[-1]
    return f"layer {call.name} ({call.type})" if last.isdigit() else call.name


# --- filters -------------------------------------------------------------------------------------------------
def plot_filters(model_or_weight, path, title=None, annotate=None):
    """The first conv layer's filters as a grid (or any (F, C, kh, kw) weight array).

    One panel per filter and input channel, on a diverging colour map centred on zero (blue
    negative, white zero, red positive) with one symmetric scale and colour bar for all of them.
    ``annotate`` (default: when the kernels are at most 3x3 and there are at most 32 panels) writes
    each weight in its cell.
    """
    if isinstance(model_or_weight, nn.Module):
        conv = first_conv(model_or_weight)
        weight, name = to_numpy(conv.weight.data), f"{type(model_or_weight).__name__} first conv {conv!r}"
    else:
        weight = to_numpy(model_or_weight.data if isinstance(model_or_weight, Tensor) else model_or_weight)
        name = f"weights {weight.shape}"
    if weight.ndim != 4:
        raise ValueError(f"plot_filters: expected a model or (F, C, kh, kw) weights, got shape {weight.shape}")
    f, c, kh, kw = weight.shape
    panels = f * c
    if annotate is None:
        annotate = kh <= 3 and kw <= 3 and panels <= 32
    rows, cols = (f, c) if c > 1 else _grid(f)
    limit = _symmetric_limit(weight)
    side = max(1.5, 0.3 * max(kh, kw))
    fig, axes = plt.subplots(rows, cols, figsize=(max(side * cols + 1.6, 5.0), side * rows + 1.2), squeeze=False)
    image = None
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= panels:
            ax.axis("off")
            continue
        filt, chan = (index // c, index % c) if c > 1 else (index, 0)
        kernel = weight[filt, chan]
        image = ax.imshow(kernel, cmap=DIVERGING, vmin=-limit, vmax=limit)
        ax.set_title(f"filter {filt}" + (f", in ch {chan}" if c > 1 else ""), fontsize=8)
        if annotate:
            for (i, j), value in np.ndenumerate(kernel):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(value) > 0.6 * limit else "black")
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.85)
    bar.set_label("weight (0 = white)")
    title = title or f"First-layer filters: {f} x {c} kernels of {kh}x{kw}"
    fig.suptitle(title + f"\n{name}", fontsize=10)
    return _save(fig, path, title)


# --- feature maps -----------------------------------------------------------------------------------------
def plot_feature_maps(model, image, path, max_channels=8, title=None):
    """The input image and the feature maps of every conv layer for it: one row per conv layer,
    one panel per channel (the first ``max_channels``), one diverging colour scale per layer
    (symmetric around 0) with its colour bar.  The maps are the convolutions' outputs before ReLU.
    """
    batch = _as_image_batch(image)
    maps = conv_feature_maps(model, batch)
    if not maps:
        raise ValueError(f"plot_feature_maps: {type(model).__name__} has no Conv2d layer")
    cols = max(min(max_channels, m.shape[0]) for _, m in maps)
    rows = len(maps) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 1.8, 1.7 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    im = _show_image(axes[0, 0], batch[0], f"input {batch.shape[2]}x{batch.shape[3]}")
    axes[0, 0].set_ylabel("input", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.9).set_label("pixel value")
    for ax in axes[0, 1:]:
        ax.axis("off")
    for row, (name, fmap) in enumerate(maps, start=1):
        shown = min(max_channels, fmap.shape[0])
        limit = _symmetric_limit(fmap[:shown])
        for ch in range(cols):
            ax = axes[row, ch]
            if ch >= shown:
                ax.axis("off")
                continue
            im = ax.imshow(fmap[ch], cmap=DIVERGING, vmin=-limit, vmax=limit)
            ax.set_title(f"ch {ch}", fontsize=8)
        more = f"\n(first {shown} of {fmap.shape[0]})" if shown < fmap.shape[0] else ""
        axes[row, 0].set_ylabel(f"{name}\n{fmap.shape[0]}@{fmap.shape[1]}x{fmap.shape[2]}{more}", fontsize=8)
        fig.colorbar(im, ax=axes[row, :].tolist(), shrink=0.9).set_label(f"{name} output", fontsize=8)
    title = title or f"{type(model).__name__}: feature maps of every conv layer (before ReLU)"
    fig.suptitle(title, fontsize=11)
    return _save(fig, path, title)


def relu_maps(model, image, layer=None):
    """One conv layer's maps before and after its ReLU -> (label, before (C, H, W), after (C, H, W)).

    ``layer`` names the Conv2d (default: the first one called).  'after' is the output of the ReLU call
    that consumed the conv's output when the model has one, else ``relu`` of it.
    """
    _, calls = _eval_trace(model, _as_image_batch(image))
    calls = sorted(calls, key=lambda c: c.exit)
    convs = [c for c in calls if isinstance(c.module, nn.Conv2d) and (layer is None or c.name == layer)]
    if not convs:
        known = [c.name for c in calls if isinstance(c.module, nn.Conv2d)]
        raise ValueError(f"relu_maps: no Conv2d called {layer!r} in {type(model).__name__}; conv layers: {known}")
    conv = convs[0]
    before = np.array(to_numpy(conv.output.data[0]))
    for call in calls:
        if call.inputs and call.inputs[0] is conv.output and type(call.module).__name__ == "ReLU":
            return _label(conv), before, np.array(to_numpy(call.output.data[0]))
    return _label(conv), before, F.relu(Tensor(before)).data


def plot_relu_before_after(model, image, path, layer=None, max_channels=6, title=None):
    """One conv layer's maps before and after its ReLU, side by side, on one colour scale (see
    ``relu_maps``).  With a diverging scale centred on 0, every negative (blue) value on the left is
    white on the right."""
    label, before, after = relu_maps(model, image, layer)
    shown = min(max_channels, before.shape[0])
    limit = _symmetric_limit(before[:shown])
    fig, axes = plt.subplots(shown, 2, figsize=(5.2, 2.0 * shown + 1.0), squeeze=False)
    for ch in range(shown):
        for col, (maps, which) in enumerate(((before, "before ReLU"), (after, "after ReLU"))):
            ax = axes[ch, col]
            im = ax.imshow(maps[ch], cmap=DIVERGING, vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            negative = int((maps[ch] < 0).sum())
            ax.set_title(f"{which}: {negative} negative", fontsize=8)
        axes[ch, 0].set_ylabel(f"ch {ch}", fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8).set_label(f"{label} activation")
    title = title or f"{label}: the same maps before and after ReLU\n(one colour scale; negatives become 0)"
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, title)


# --- max pooling -----------------------------------------------------------------------------------------
def max_pool_winners(x, kernel_size=2, stride=None, padding=0):
    """Max-pool a 2-D map and find the cells that win -> (pooled (H_out, W_out), wins (H, W) int).

    ``wins[i, j]`` counts the windows whose maximum is cell (i, j) (0 or 1 without overlap).  The
    winners come from convnp's own backward pass: the gradient of sum(max_pool2d(x)) is 1 at each
    window's first maximum (PyTorch's tie rule) and 0 elsewhere.
    """
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"max_pool_winners: expected a 2-D map (H, W), got shape {array.shape}")
    xt = Tensor(array[None, None], requires_grad=True)
    y = F.max_pool2d(xt, kernel_size, stride, padding)
    y.sum().backward()
    return y.data[0, 0], np.rint(xt.grad[0, 0]).astype(np.int64)


def plot_max_pool(x, path, kernel_size=2, stride=None, title=None):
    """A small map with its numbers, the pooling windows outlined and each window's winning cell
    filled gold, next to the pooled output.  The pixel box of the input grid is stored in the PNG's
    ``convnp:input_grid`` text chunk (x0, y0, x1, y1 from the top left) so a test can find the cells."""
    array = np.asarray(x)
    pooled, wins = max_pool_winners(array, kernel_size, stride)
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    h, w = array.shape
    oh, ow = pooled.shape
    cell = 0.8  # inches per cell, the same in both grids
    fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(max(cell * (w + ow) + 3.5, 8.0), cell * max(h, oh) + 1.8),
                                        gridspec_kw={"width_ratios": [w, ow]})

    def draw_grid(ax, values, highlight):
        rows, cols = values.shape
        ax.set_xlim(-0.5, cols - 0.5)
        ax.set_ylim(rows - 0.5, -0.5)
        ax.set_aspect("equal")
        for (i, j), value in np.ndenumerate(values):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=WINNER_COLOR if highlight[i, j] else "white",
                                   edgecolor="#999999", linewidth=0.8))
            text = f"{value:g}" if float(value).is_integer() else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=12,
                    fontweight="bold" if highlight[i, j] else "normal")
        ax.set_xticks(range(cols))
        ax.set_yticks(range(rows))
        ax.set_xlabel("column")
        ax.set_ylabel("row")

    draw_grid(ax_in, array, wins > 0)
    overlapping = sh < kh or sw < kw
    if not overlapping:  # outline every pooling window
        for i in range(oh):
            for j in range(ow):
                ax_in.add_patch(Rectangle((j * sw - 0.5, i * sh - 0.5), kw, kh, fill=False, edgecolor="black",
                                          linewidth=2.5))
        note = ""
    else:  # outlines of overlapping windows would cover the grid: show the first two, mark double wins
        ax_in.add_patch(Rectangle((-0.45, -0.45), kw - 0.1, kh - 0.1, fill=False, edgecolor="black", linewidth=2.5))
        if ow > 1:
            ax_in.add_patch(Rectangle((sw - 0.4, -0.4), kw - 0.2, kh - 0.2, fill=False, edgecolor="#444444",
                                      linewidth=2, linestyle="--"))
        for (i, j), count in np.ndenumerate(wins):
            if count > 1:
                ax_in.text(j + 0.42, i - 0.3, f"x{count}", ha="right", va="center", fontsize=8)
        note = "\n(windows overlap: the first two outlined; xN = wins N windows)"
    ax_in.set_title(f"input {h}x{w}: windows {kh}x{kw}, stride {sh}; gold = window maximum{note}", fontsize=10)
    draw_grid(ax_out, pooled, np.ones(pooled.shape, dtype=bool))
    ax_out.set_title(f"max-pooled output {pooled.shape[0]}x{pooled.shape[1]}", fontsize=10)
    title = title or f"Max pooling {kh}x{kw}, stride {sh}: each output is its window's largest value"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.canvas.draw()
    box = ax_in.get_window_extent()
    height = fig.bbox.height
    grid = [box.x0, height - box.y1, box.x1, height - box.y0]
    return _save(fig, path, title, {"convnp:input_grid": json.dumps([round(v, 2) for v in grid])})


# --- training -------------------------------------------------------------------------------------------
def plot_training_curves(history, path, title=None):
    """Loss and accuracy per epoch, train and validation, from ``fit``'s history (a dict of lists:
    train_loss, train_accuracy and optionally epoch, val_loss, val_accuracy).  The one training-curves
    plotter: ``convnp train`` writes its training_curves.png with it too.

    With an ``lr`` entry (the learning rate as each epoch starts) a third panel shows the schedule (a
    one-cycle run's warm-up and decay); the best validation epoch is marked by a dotted line in every panel."""
    train_loss = list(history.get("train_loss") or [])
    if not train_loss:
        raise ValueError("plot_training_curves: the history has no 'train_loss' values")
    epochs = np.asarray(history.get("epoch") or range(1, len(train_loss) + 1))
    lrs = [value for value in history.get("lr") or [] if value is not None]
    panels = 3 if lrs else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    ax_loss, ax_acc = axes[0], axes[1]
    if lrs:
        ax_lr = axes[2]
        ax_lr.plot(epochs[:len(lrs)], lrs, "o-", color="tab:green", label="lr")
        ax_lr.set_xlabel("epoch")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_title("learning rate (start of epoch)", fontsize=10)
        ax_lr.grid(alpha=0.3)
        ax_lr.set_xticks(epochs if len(epochs) <= 20 else epochs[:: math.ceil(len(epochs) / 10)])
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        for split, style in (("train", "o-"), ("val", "s--")):
            values = list(history.get(f"{split}_{key}") or [])
            if values:
                name = "validation" if split == "val" else split
                ax.plot(epochs[:len(values)], values, style, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: math.ceil(len(epochs) / 10)])
    val_acc = list(history.get("val_accuracy", []))
    if val_acc:
        best = int(np.argmax(val_acc))
        ax_acc.annotate(f"best val {val_acc[best]:.3f}", (epochs[best], val_acc[best]), textcoords="offset points",
                        xytext=(0, -18), ha="center", fontsize=8)
        for ax in axes:  # the epoch best.npz holds
            ax.axvline(epochs[best], color="gray", linestyle=":", linewidth=1, label=None)
    title = title or f"Training curves ({len(epochs)} epochs)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path, title)


def plot_confusion_matrix(y_true, y_pred, path, class_names=None, title=None):
    """The confusion matrix with its counts written in the cells and a colour bar."""
    k = len(class_names) if class_names is not None else None
    matrix = confusion_matrix(y_true, y_pred, k)
    k = matrix.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    longest = max(len(n) for n in names)
    side = max(0.6 * k, 2.5)
    fig, ax = plt.subplots(figsize=(side + 2.5 + 0.08 * longest, side + 1.5 + 0.08 * longest))
    im = ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > 0.5 * matrix.max() else "black")
    ax.set_xticks(range(k), names, rotation=45 if longest > 2 else 0, ha="right" if longest > 2 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(ax.images[0], ax=ax).set_label("images")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    title = title or f"Confusion matrix: {matrix.sum()} images, accuracy {accuracy:.1%}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    del im
    return _save(fig, path, title)


def predict_proba(model, images, batch_size=256):
    """Softmax probabilities (N, K) of ``model`` in eval mode (no graph, in batches)."""
    images = np.asarray(images, dtype=np.float32)
    out = []
    with eval_mode(model), no_grad():
        for start in range(0, len(images), batch_size):
            batch = on_model_device(model, images[start:start + batch_size])
            out.append(to_numpy(F.softmax(model(batch), dim=1).data))
    return np.concatenate(out)


def most_confident_mistakes(probs, y_true, n=16):
    """Indices of the misclassified images, most confident first (by the predicted class's probability)."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = probs[wrong, pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:n]


def plot_misclassified(images, y_true, probs, path, class_names=None, n=16, title=None):
    """A grid of the ``n`` most confidently misclassified images, each titled true -> predicted (p)."""
    images, y_true, probs = np.asarray(images), np.asarray(y_true), np.asarray(probs)
    chosen = most_confident_mistakes(probs, y_true, n)
    names = list(class_names) if class_names is not None else [str(i) for i in range(probs.shape[1])]
    wrong_total = int((probs.argmax(axis=1) != y_true).sum())
    rows, cols = _grid(max(len(chosen), 1), 8)
    fig, axes = plt.subplots(rows, cols, figsize=(max(1.6 * cols + 0.4, 6.0), 1.9 * rows + 0.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if len(chosen) == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    for ax, index in zip(axes.flat, chosen):
        pred = int(probs[index].argmax())
        image = images[index] if images[index].ndim == 3 else images[index][None]
        _show_image(ax, image, f"true {names[y_true[index]]}\npred {names[pred]} ({probs[index, pred]:.2f})")
        ax.axis("on")
    title = title or (f"Most confident mistakes: {len(chosen)} of {wrong_total} misclassified "
                      f"(of {len(y_true)} images)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, title)


# --- saliency ---------------------------------------------------------------------------------------------
def saliency_map(model, image, target=None):
    """Gradient of a class score with respect to the input pixels (Simonyan et al., 2014).

    Returns (gradient (C, H, W), target class, score): the score is the model's raw output (logit)
    for ``target`` (default: the predicted class), computed in eval mode.
    """
    x = on_model_device(model, _as_image_batch(image)).requires_grad_()
    with eval_mode(model):
        logits = model(x)
    if target is None:
        target = int(logits.data[0].argmax())
    if not 0 <= target < logits.shape[1]:
        raise ValueError(f"saliency_map: target {target} is not a class of a model with {logits.shape[1]} outputs")
    onehot = np.zeros(logits.shape, dtype=logits.data.dtype)
    onehot[0, target] = 1.0
    logits.backward(gradient=to_device(onehot, model_device(model)))
    for p in model.parameters():  # the weights' gradients are a by-product nobody asked for
        p.grad = None
    return to_numpy(x.grad[0]), target, float(logits.data[0, target])


def plot_saliency(model, image, path, target=None, class_names=None, title=None):
    """The image, |d score / d pixel| (maximum over channels) and the two overlaid."""
    batch = _as_image_batch(image)
    grad, target, score = saliency_map(model, batch, target)
    heat = np.abs(grad).max(axis=0)
    name = class_names[target] if class_names is not None else str(target)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    im = _show_image(axes[0], batch[0], "input")
    if im is not None:
        fig.colorbar(im, ax=axes[0], shrink=0.8).set_label("pixel value")
    hm = axes[1].imshow(heat, cmap="hot")
    axes[1].set_title("|gradient of the class score|", fontsize=9)
    fig.colorbar(hm, ax=axes[1], shrink=0.8).set_label("|d score / d pixel|")
    _show_image(axes[2], batch[0], "overlay on the image")
    level = heat / heat.max() if heat.max() > 0 else heat
    rgba = plt.get_cmap("hot")(level)
    rgba[..., 3] = 0.85 * level  # transparent where the gradient is small, so the image shows through
    axes[2].imshow(rgba)
    fig.colorbar(hm, ax=axes[2], shrink=0.8).set_label("|d score / d pixel|")
    for ax in axes:
        ax.set_xlabel("x (pixel)")
        ax.set_ylabel("y (pixel)")
    title = title or f"Saliency for class {name} (score {score:.2f})"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path, title)
