"""Batch transforms for (N, C, H, W) float arrays, applied by the DataLoader as ``transform(x, rng)``.

Each transform returns a new array and leaves its input unchanged. Random ones draw from the
``numpy.random.Generator`` they are given, so a seeded loader gives reproducible augmentation.
"""
import numpy as np


class Normalize:
    """y[:, c] = (x[:, c] - mean[c]) / std[c]; ``mean``, ``std``: one number per channel or one for all."""

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float32))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float32))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError(f"Normalize: mean and std must be numbers or 1-D, "
                             f"got shapes {self.mean.shape} and {self.std.shape}")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.tolist()}")

    def __call__(self, x, rng=None):
        _check_batch("Normalize", x)
        channels = x.shape[1]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values.size not in (1, channels):
                raise ValueError(f"Normalize: {values.size} {name} values for a batch with "
                                 f"{channels} channels")
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def __repr__(self):
        return f"Normalize(mean={_short(self.mean)}, std={_short(self.std)})"


class RandomShift:
    """Translate each image by whole pixels dy, dx drawn from -max_shift..max_shift; zero fill."""

    def __init__(self, max_shift):
        if max_shift < 0:
            raise ValueError(f"RandomShift: max_shift must be >= 0, got {max_shift}")
        self.max_shift = int(max_shift)

    def __call__(self, x, rng):
        _check_batch("RandomShift", x)
        dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=(2, len(x)))
        return shift_images(x, dy, dx)

    def __repr__(self):
        return f"RandomShift(max_shift={self.max_shift})"


class RandomCrop:
    """Zero-pad by ``padding`` on every side, then cut a random ``size`` window from each image.

    x: (N, C, H, W) -> (N, C, size_h, size_w); ``size`` is an int (square) or (height, width).
    """

    def __init__(self, size, padding=0):
        self.size = (size, size) if np.isscalar(size) else tuple(size)
        self.padding = int(padding)

    def __call__(self, x, rng):
        _check_batch("RandomCrop", x)
        out_h, out_w = self.size
        padded_h, padded_w = x.shape[2] + 2 * self.padding, x.shape[3] + 2 * self.padding
        if out_h > padded_h or out_w > padded_w:
            raise ValueError(f"RandomCrop: crop {out_h}x{out_w} is larger than the padded image "
                             f"{padded_h}x{padded_w}")
        top = rng.integers(0, padded_h - out_h + 1, size=len(x))
        left = rng.integers(0, padded_w - out_w + 1, size=len(x))
        return crop_windows(_zero_pad(x, self.padding), top, left, out_h, out_w)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, x, rng):
        _check_batch("RandomHorizontalFlip", x)
        flip = rng.random(len(x)) < self.p
        return np.where(flip[:, None, None, None], x[..., ::-1], x)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomAffine:
    """A random rotation, zoom and shift per image (torchvision's RandomRotation + RandomResizedCrop +
    RandomAffine translate, in one resampling).  x: (N, C, H, W) -> the same shape.

    Each image shows a square crop whose side is a fraction drawn from ``crop`` (lo, hi) of the image's
    (1: the whole image; smaller: zoomed in), turned by an angle drawn from -``degrees``..``degrees`` and
    moved by up to ``translate`` of the side in each direction.  Bilinear, edges clamped; vectorised over
    the batch (``affine_sample``)."""

    def __init__(self, degrees=0.0, crop=(1.0, 1.0), translate=0.0):
        low, high = crop
        if degrees < 0 or translate < 0 or not 0 < low <= high:
            raise ValueError(f"RandomAffine: degrees and translate must be >= 0 and crop (lo, hi) with "
                             f"0 < lo <= hi, got degrees {degrees}, crop {crop}, translate {translate}")
        self.degrees, self.crop, self.translate = float(degrees), (float(low), float(high)), float(translate)

    def __call__(self, x, rng):
        _check_batch("RandomAffine", x)
        n = len(x)
        angle = np.deg2rad(rng.uniform(-self.degrees, self.degrees, n))
        side = rng.uniform(*self.crop, n)
        shift = rng.uniform(-self.translate, self.translate, (2, n))
        return affine_sample(x, angle, side, shift[0], shift[1])

    def __repr__(self):
        return f"RandomAffine(degrees={self.degrees:g}, crop={self.crop}, translate={self.translate:g})"


class ColorJitter:
    """Per image: brightness, contrast, saturation and hue jitter, in that order, with torchvision's
    formulas (``adjust_brightness`` ... ``adjust_hue``; torchvision shuffles the order, this keeps it fixed).
    Factors b, c, s are drawn from 1 +- ``brightness``, ``contrast``, ``saturation`` and the hue turn from
    -``hue``..``hue`` (a fraction of the colour circle, at most 0.5), independently for each image; a 0 turns
    that jitter off.  Saturation and hue change 3-channel (RGB) images only: a grayscale image has neither.
    x: (N, C, H, W) in [0, 1] (before normalisation) -> same shape, clipped to [0, 1] after each step."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
        if not all(0 <= value < 1 for value in (brightness, contrast, saturation)) or not 0 <= hue <= 0.5:
            raise ValueError(f"ColorJitter: brightness, contrast and saturation must be in [0, 1) and hue in "
                             f"[0, 0.5], got {brightness}, {contrast}, {saturation}, {hue}")
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.hue = float(saturation), float(hue)

    def __call__(self, x, rng):
        _check_batch("ColorJitter", x)
        n, dtype = len(x), x.dtype
        if self.brightness:
            x = adjust_brightness(x, rng.uniform(1 - self.brightness, 1 + self.brightness, n))
        if self.contrast:
            x = adjust_contrast(x, rng.uniform(1 - self.contrast, 1 + self.contrast, n))
        if self.saturation:
            factor = rng.uniform(1 - self.saturation, 1 + self.saturation, n)
            x = adjust_saturation(x, factor) if x.shape[1] == 3 else x
        if self.hue:
            turn = rng.uniform(-self.hue, self.hue, n)
            x = adjust_hue(x, turn) if x.shape[1] == 3 else x
        return np.array(x, dtype=dtype)  # a new array even when every jitter is off

    def __repr__(self):
        return (f"ColorJitter(brightness={self.brightness:g}, contrast={self.contrast:g}, "
                f"saturation={self.saturation:g}, hue={self.hue:g})")


LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L") and torchvision's rgb_to_grayscale


def luma(x):
    """x: (N, 3, H, W) RGB -> (N, 1, H, W) gray, 0.299 R + 0.587 G + 0.114 B; a 1-channel x is its own luma."""
    if x.shape[1] == 1:
        return x
    return (LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2])[:, None].astype(x.dtype)


def _per_image(factor, x):
    return np.asarray(factor, dtype=x.dtype).reshape(-1, 1, 1, 1)


def adjust_brightness(x, factor):
    """x: (N, C, H, W), factor: (N,) -> clip(x * factor, 0, 1)."""
    return np.clip(x * _per_image(factor, x), 0, 1)


def adjust_contrast(x, factor):
    """x: (N, C, H, W), factor: (N,) -> clip(m + factor (x - m), 0, 1), m: the image's mean luma (0 gives a
    flat image of that gray)."""
    m = luma(x).mean(axis=(1, 2, 3), keepdims=True)
    return np.clip(m + _per_image(factor, x) * (x - m), 0, 1)


def adjust_saturation(x, factor):
    """x: (N, 3, H, W), factor: (N,) -> clip(g + factor (x - g), 0, 1), g: each pixel's luma (0: grayscale)."""
    g = luma(x)
    return np.clip(g + _per_image(factor, x) * (x - g), 0, 1)


def adjust_hue(x, turn):
    """x: (N, 3, H, W) in [0, 1], turn: (N,) fractions of the colour circle -> the HSV hue of every pixel
    moved by ``turn`` (mod 1), saturation and value kept: pure red turned by 1/3 is pure green."""
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb((h + np.asarray(turn, dtype=x.dtype).reshape(-1, 1, 1)) % 1.0, s, v)


def rgb_to_hsv(x):
    """x: (N, 3, H, W) RGB in [0, 1] -> (h, s, v), each (N, H, W): the formulas of ``colorsys.rgb_to_hsv``,
    vectorised (h in [0, 1); gray pixels get h = s = 0)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = np.maximum(np.maximum(r, g), b)
    spread = v - np.minimum(np.minimum(r, g), b)
    gray = spread == 0
    s = np.where(gray, 0, spread / np.where(v == 0, 1, v))
    divisor = np.where(gray, 1, spread)
    rc, gc, bc = (v - r) / divisor, (v - g) / divisor, (v - b) / divisor
    h = np.where(v == r, bc - gc, np.where(v == g, 2 + rc - bc, 4 + gc - rc))
    h = np.where(gray, 0, (h / 6) % 1.0)
    return h.astype(x.dtype), s.astype(x.dtype), v


def hsv_to_rgb(h, s, v):
    """(h, s, v), each (N, H, W), h in [0, 1) -> (N, 3, H, W) RGB: ``colorsys.hsv_to_rgb``, vectorised."""
    sector = np.floor(h * 6)
    f = h * 6 - sector
    sector = sector.astype(np.intp) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # in sector k, (r, g, b) = (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)
    r = np.choose(sector, (v, q, p, p, t, v))
    g = np.choose(sector, (t, v, v, q, p, p))
    b = np.choose(sector, (p, p, t, v, v, q))
    return np.clip(np.stack((r, g, b), axis=1), 0, 1).astype(v.dtype)


def affine_sample(x, angle, side, shift_x, shift_y):
    """x: (N, C, H, W) -> (N, C, H, W): output pixel (i, j) of image k samples x[k] bilinearly at

        [sx, sy] = side_k * R(angle_k) @ [u_j, v_i] + [shift_x_k, shift_y_k]

    in coordinates from -1 to 1 across the image (u along the width, v along the height); positions
    outside are clamped to the edge.  side 1, angle 0, shift 0 gives x back."""
    n, _, h, w = x.shape
    v, u = np.meshgrid((np.arange(h) + 0.5) / h * 2 - 1, (np.arange(w) + 0.5) / w * 2 - 1, indexing="ij")
    cos = (np.cos(angle) * side)[:, None, None]
    sin = (np.sin(angle) * side)[:, None, None]
    sx = cos * u - sin * v + np.asarray(shift_x)[:, None, None]
    sy = sin * u + cos * v + np.asarray(shift_y)[:, None, None]
    px = np.clip((sx + 1) / 2 * w - 0.5, 0, w - 1)
    py = np.clip((sy + 1) / 2 * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(px).astype(np.intp), np.floor(py).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    k = np.arange(n)[:, None, None]
    top = x[k, :, y0, x0] * (1 - fx) + x[k, :, y0, x1] * fx   # (N, H, W, C): the indexed axes come first
    bottom = x[k, :, y1, x0] * (1 - fx) + x[k, :, y1, x1] * fx
    return np.ascontiguousarray((top * (1 - fy) + bottom * fy).transpose(0, 3, 1, 2)).astype(x.dtype)


AUGMENT_POLICIES = ("none", "light", "standard")


def augment_policy(name):
    """The transforms of ``--augment NAME`` (before normalisation) -> a list:

    none: nothing;  light: horizontal flips, crops of 90-100% of the side, shifts up to 5%;
    standard: flips, crops of 75-100%, rotations up to 10 degrees, shifts up to 10%, brightness, contrast
    and (colour images) saturation jitter of 20% and hue turns of up to 0.05 of the colour circle."""
    if name == "none":
        return []
    if name == "light":
        return [RandomHorizontalFlip(), RandomAffine(crop=(0.9, 1.0), translate=0.05)]
    if name == "standard":
        return [RandomHorizontalFlip(), RandomAffine(degrees=10, crop=(0.75, 1.0), translate=0.1),
                ColorJitter(0.2, 0.2, saturation=0.2, hue=0.05)]
    raise ValueError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENT_POLICIES)}")


class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, rng):
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def __repr__(self):
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


def shift_images(x, dy, dx):
    """x: (N, C, H, W), dy, dx: (N,) ints -> (N, C, H, W): image i moved dy[i] down, dx[i] right.

    out[i, :, r, c] = x[i, :, r - dy[i], c - dx[i]], and 0 where that falls outside the image.
    """
    dy, dx = np.asarray(dy), np.asarray(dx)
    pad = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    height, width = x.shape[2:]
    return crop_windows(_zero_pad(x, pad), pad - dy, pad - dx, height, width)


def crop_windows(x, top, left, out_h, out_w):
    """x: (N, C, H, W), top, left: (N,) ints -> (N, C, out_h, out_w).

    Window i is x[i, :, top[i]:top[i] + out_h, left[i]:left[i] + out_w].

    One advanced-indexing gather for the whole batch, no loop over images.
    """
    rows = np.asarray(top)[:, None] + np.arange(out_h)     # (N, out_h)
    cols = np.asarray(left)[:, None] + np.arange(out_w)    # (N, out_w)
    images = np.arange(len(x))[:, None, None, None]
    channels = np.arange(x.shape[1])[None, :, None, None]
    return x[images, channels, rows[:, None, :, None], cols[:, None, None, :]]


def resize_bilinear(x, height, width):
    """x: (..., H, W) -> (..., height, width), bilinear interpolation.

    Pixel centres are aligned as in PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)``:
    output pixel i samples input position (i + 0.5) * H / height - 0.5, clamped to the image.
    Outputs are convex combinations of inputs, so [0, 1] data stays in [0, 1].
    """
    in_h, in_w = x.shape[-2:]
    top, bottom, weight_y = _bilinear_taps(in_h, height)
    left, right, weight_x = _bilinear_taps(in_w, width)
    weight_y = weight_y[:, None].astype(x.dtype)
    weight_x = weight_x.astype(x.dtype)
    rows = x[..., top, :] * (1 - weight_y) + x[..., bottom, :] * weight_y
    return rows[..., left] * (1 - weight_x) + rows[..., right] * weight_x


def _bilinear_taps(in_size, out_size):
    """The two source indices and the weight of the second, for each output position along one axis."""
    source = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, source - low


def _short(values):
    return "[" + ", ".join(f"{value:.6g}" for value in values) + "]"


def _zero_pad(x, pad):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x


def _check_batch(name, x):
    if np.ndim(x) != 4:
        raise ValueError(f"{name}: expected a batch of shape (N, C, H, W), got shape {np.shape(x)}")
