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
