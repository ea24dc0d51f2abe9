"""Classify image files with a trained model, preparing each picture the way the training images were.

    model, info = convnp.checkpoint.load_model("runs/lenet5/best.npz")
    for path, top in predict_files(model, info, ["seven.jpg"]):
        print(path, top)                      # [('7', 0.97), ('1', 0.02), ('9', 0.004)]

``to_model_input`` reproduces the MNIST recipe (LeCun et al.) for a picture of any size or colour:

1. grayscale (transparent pixels are laid on a background that contrasts with the drawing);
2. the background level is the median of the pixels on the image border; a light background is
   inverted, so the drawing becomes light on dark, like MNIST;
3. contrast is stretched: background -> 0, the brightest ink -> 1;
4. the ink's bounding box (pixels above 0.2) is cut out and resized, aspect ratio kept, so that its
   longer side is ``layout['box']`` pixels (20 for MNIST), with an anti-aliasing filter;
5. it is placed in the model's input size (28x28) so that its centre of mass (``centre='mass'``, MNIST)
   or its bounding box (``centre='box'``) lies at the centre;
6. the training normalisation (mean/std) is applied.

Datasets without such a layout (CIFAR-10, the 8x8 lines) are simply resized.  Models trained on an
image folder (``layout['fit'] == 'crop'``) get exactly the folder reader's conversion
(``convnp.data.images.read_image_array``: any mode, 16-bit included, centre crop, Lanczos resize).

This is the one image loader: ``convnp predict``, ``convnp viz --image`` and the explorer all prepare
pictures with ``load_model_input`` (an image file or a .npy array) and ``normalize``.
"""
import warnings
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .data.images import fit_array, image_to_array, open_image_checked, pillow
from .nn import eval_mode, on_model_device
from .tensor import no_grad

INK_THRESHOLD = 0.2


def load_image(path):
    """Open an image file with Pillow (``convnp.data.images.open_image_checked``: regular files only, a pixel
    cap, decoder errors named); FileNotFoundError / ImageError (a ValueError) name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such image file")
    return open_image_checked(path, exif_transpose=True)


def _grayscale(image):
    """PIL image -> float32 (H, W) in [0, 1]; transparency is flattened onto a contrasting background."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        alpha = rgba[..., 3]
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        opaque = alpha > 0.5
        background = 1.0 if (not opaque.any() or gray[opaque].mean() < 0.5) else 0.0
        return gray * alpha + background * (1 - alpha)
    if image.mode in ("I", "I;16", "F"):
        array = np.asarray(image, dtype=np.float32)
        span = array.max() - array.min()
        return (array - array.min()) / span if span > 0 else np.zeros_like(array)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def _border_median(gray):
    width = max(1, min(gray.shape) // 20)
    border = np.concatenate([gray[:width].ravel(), gray[-width:].ravel(), gray[:, :width].ravel(),
                             gray[:, -width:].ravel()])
    return float(np.median(border))


def _resize(array, width, height):
    Image = pillow()
    resized = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32)).resize(
        (int(width), int(height)), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def to_model_input(image, preprocessing):
    """A PIL image -> float32 (C, H, W) in [0, 1], prepared like the training images (not normalised)."""
    channels, height, width = preprocessing["input_size"]
    layout = preprocessing.get("layout") or {}
    if layout.get("fit") == "crop":  # an image-folder model: the folder reader's own conversion, no layout
        return fit_array(image_to_array(image, channels), height, width)
    if channels == 3:
        rgb = image.convert("RGB").resize((width, height), _lanczos())
        return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255
    if channels != 1:
        raise ValueError(f"cannot prepare pictures for a model with {channels} input channels")

    gray = _grayscale(image)
    background = _border_median(gray)
    if layout.get("invert", "auto") == "auto" and background > 0.5:
        gray, background = 1.0 - gray, 1.0 - background
    peak = float(gray.max())
    ink = np.clip((gray - background) / (peak - background), 0, 1) if peak - background > 0.05 else \
        np.zeros_like(gray)
    box = layout.get("box")
    rows, cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1)), np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if box is None or rows.size == 0:
        return _resize(ink, width, height)[None]

    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = min(box / crop.shape[0], box / crop.shape[1])
    new_h = min(height, max(1, round(crop.shape[0] * scale)))
    new_w = min(width, max(1, round(crop.shape[1] * scale)))
    small = _resize(crop, new_w, new_h)
    canvas = np.zeros((height, width), dtype=np.float32)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    if layout.get("centre") == "mass" and small.sum() > 0:
        ys, xs = np.indices(small.shape)
        centre_y = (ys * small).sum() / small.sum()
        centre_x = (xs * small).sum() / small.sum()
        # Put the centre of mass at the image centre ((H - 1) / 2, (W - 1) / 2), keeping the whole box inside.
        top = int(np.clip(round((height - 1) / 2 - centre_y), 0, height - new_h))
        left = int(np.clip(round((width - 1) / 2 - centre_x), 0, width - new_w))
    canvas[top:top + new_h, left:left + new_w] = small
    return canvas[None]


def _lanczos():
    return pillow().Resampling.LANCZOS


def load_model_input(path, preprocessing):
    """An image file (PNG, JPEG, ...: ``to_model_input(load_image(path))``) or a .npy array (H, W) or
    (C, H, W) already in [0, 1] -> float32 (C, H, W), prepared like the training images, not normalised.
    ``preprocessing`` needs ``input_size`` (C, H, W) for image files; errors name the file."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return to_model_input(load_image(path), preprocessing)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({' '.join(str(error).split())})") from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.dtype.kind not in "fiub":
        raise ValueError(f"{path} holds a {array.dtype} array of shape {array.shape}; expected numbers of shape "
                         f"(H, W) or (C, H, W)")
    return array.astype(np.float32)


def normalize(images, preprocessing):
    """(C, H, W) or (N, C, H, W) in [0, 1] -> (x - mean) / std per channel, with the training
    normalisation that ``preprocessing`` records (unchanged when it records none)."""
    images = np.asarray(images, dtype=np.float32)
    mean, std = preprocessing.get("mean"), preprocessing.get("std")
    if mean is None or std is None:
        return images
    mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return (images - mean) / std


class BlankImageWarning(UserWarning):
    """A picture given to predict is blank or of one colour: its prediction means nothing."""


def preprocess(path, preprocessing):
    """An image file (or .npy array) -> the normalised float32 (C, H, W) array the model takes.

    Warns (BlankImageWarning) when the prepared picture is blank: one colour, or no drawing found."""
    x = load_model_input(path, preprocessing)
    if x.size and float(x.max()) == float(x.min()):
        warnings.warn(f"{path}: the picture is blank or of one colour (nothing to classify), so its "
                      f"prediction means nothing", BlankImageWarning, stacklevel=2)
    return normalize(x, preprocessing)


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predict_arrays(model, x, class_names, top=3, where="the model"):
    """x: (N, C, H, W) normalised -> for each image, the ``top`` (class name, probability) pairs.

    Non-finite outputs (NaN/inf weights, a zero std) raise ValueError naming ``where`` (e.g. the
    checkpoint): they would otherwise show up as a confident-looking ranking of NaNs.  ``x`` goes to the
    model's device (a model on the GPU computes there); the ranking is made on the host."""
    x = on_model_device(model, np.asarray(x, dtype=np.float32))
    with eval_mode(model), no_grad(), np.errstate(all="ignore"):
        logits = to_numpy(model(x).data).astype(np.float64)
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise ValueError(f"{where}: the model's outputs are not finite (NaN or inf) for {int(bad.sum())} of "
                         f"{len(logits)} input(s): its weights or its normalisation (std) are broken")
    probs = softmax(logits)
    names = list(class_names) if class_names else [str(k) for k in range(probs.shape[1])]
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [[(names[k], float(p[k])) for k in row] for row, p in zip(order, probs)]


def predict_files(model, info, paths, top=3):
    """-> [(path, [(class name, probability), ...])] for each image file, best first."""
    preprocessing = info.get("preprocessing") if isinstance(info, dict) else info
    if not preprocessing or "input_size" not in preprocessing:
        raise ValueError(f"{info.get('path', 'the checkpoint')} records no preprocessing (input size, "
                         f"normalisation), so pictures cannot be prepared for it")
    x = np.stack([preprocess(path, preprocessing) for path in paths])
    where = info.get("path", "the model") if isinstance(info, dict) else "the model"
    return list(zip(paths, predict_arrays(model, x, preprocessing.get("classes"), top, where=where)))
