"""Per-image transforms with torchvision's names and arguments, for Pillow images and for arrays /
Tensors: ``Compose([RandomCrop(28, padding=2), ToTensor(), Normalize((0.1307,), (0.3081,))])``.

``ToTensor`` turns a Pillow image or an (H, W[, C]) array into a (C, H, W) float32 Tensor (uint8
scaled to [0, 1]); the geometric transforms take either a Pillow image (and use Pillow, as torchvision
does) or a (C, H, W) / (H, W) array or Tensor (computed with NumPy).  Randomness comes from convnp's
generator (``convnp.manual_seed``): the same distributions as torchvision's, not the same draws.
Differences: Resize on arrays/tensors is plain bilinear without antialiasing; RandomRotation on
arrays/tensors uses nearest-neighbour sampling about the image centre.
(The batch transforms of ``convnp.data.transforms`` work on whole (N, C, H, W) arrays instead.)
"""
import math
import numbers

import numpy as np

from ..backend import default_rng
from ..tensor import Tensor

__all__ = ["Compose", "ToTensor", "Normalize", "Resize", "CenterCrop", "RandomCrop", "RandomHorizontalFlip",
           "RandomVerticalFlip", "RandomRotation", "Lambda", "InterpolationMode"]


class InterpolationMode:
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _is_pil(image):
    return type(image).__module__.startswith("PIL.")


def _pil_filter(mode):
    from PIL import Image
    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}[mode]


def _array(image):
    """(array, rewrap): the pixels as a (C, H, W) or (H, W) ndarray, and how to give back the input's type."""
    if isinstance(image, Tensor):
        return image.data, Tensor
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W) or (C, H, W), got shape {array.shape}")
    return array, lambda a: a


def _size_pair(size, where):
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    if len(size) == 1:
        return int(size[0]), int(size[0])
    if len(size) != 2:
        raise ValueError(f"{where}: size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self):
        return "Compose(\n" + "".join(f"    {t!r}\n" for t in self.transforms) + ")"


class Lambda:
    def __init__(self, lambd):
        self.lambd = lambd

    def __call__(self, image):
        return self.lambd(image)


class ToTensor:
    """Pillow image or (H, W[, C]) array -> (C, H, W) float32 Tensor; uint8 values divided by 255."""

    def __call__(self, image):
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ValueError(f"ToTensor: expected an image (H, W) or (H, W, C), got shape {array.shape}")
        chw = np.ascontiguousarray(array.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            return Tensor(chw.astype(np.float32) / np.float32(255))
        return Tensor(chw.astype(np.float32) if chw.dtype.kind != "f" else chw)

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """(C, H, W) Tensor -> (x - mean[c]) / std[c] per channel."""

    def __init__(self, mean, std, inplace=False):
        self.mean, self.std = list(np.atleast_1d(mean)), list(np.atleast_1d(std))
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std evaluated to zero, leading to division by zero: {std}")

    def __call__(self, x):
        tensor = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        if tensor.ndim < 3:
            raise ValueError(f"Normalize: expected a (C, H, W) tensor, got shape {tensor.shape}")
        channels = tensor.shape[-3]
        if len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
            raise ValueError(f"Normalize: {len(self.mean)} means / {len(self.std)} stds for {channels} channels")
        shape = (-1, 1, 1)
        mean = np.asarray(self.mean, dtype=tensor.dtype).reshape(shape)
        std = np.asarray(self.std, dtype=tensor.dtype).reshape(shape)
        return (tensor - Tensor(mean)) / Tensor(std)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


class Resize:
    """An int resizes the SHORTER side to it, keeping the aspect ratio; (h, w) resizes exactly."""

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
        self.size, self.interpolation = size, interpolation

    def _target(self, height, width):
        if isinstance(self.size, numbers.Number) or len(self.size) == 1:
            short = int(self.size if isinstance(self.size, numbers.Number) else self.size[0])
            if height <= width:
                return short, int(short * width / height)
            return int(short * height / width), short
        return _size_pair(self.size, "Resize")

    def __call__(self, image):
        if _is_pil(image):
            height, width = self._target(image.height, image.width)
            return image.resize((width, height), _pil_filter(self.interpolation))
        from ..functional import interpolate
        array, rewrap = _array(image)
        height, width = self._target(*array.shape[-2:])
        batch = array.reshape((1, -1) + array.shape[-2:]).astype(np.float32 if array.dtype.kind != "f" else array.dtype)
        mode = "nearest" if self.interpolation == InterpolationMode.NEAREST else "bilinear"
        resized = interpolate(Tensor(batch), size=(height, width), mode=mode).data
        return rewrap(resized.reshape(array.shape[:-2] + (height, width)))

    def __repr__(self):
        return f"Resize(size={self.size}, interpolation={self.interpolation})"


def _crop(image, top, left, height, width):
    if _is_pil(image):
        return image.crop((left, top, left + width, top + height))
    array, rewrap = _array(image)
    return rewrap(np.ascontiguousarray(array[..., top:top + height, left:left + width]))


def _image_size(image):
    if _is_pil(image):
        return image.height, image.width
    return _array(image)[0].shape[-2:]


def _pad(image, left, top, right, bottom, fill=0, mode="constant"):
    if _is_pil(image):
        array = np.asarray(image)
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (array.ndim - 2)
        padded = np.pad(array, widths, mode=_NUMPY_PAD[mode], **_fill_argument(mode, fill))
        from PIL import Image
        return Image.fromarray(padded)
    array, rewrap = _array(image)
    widths = [(0, 0)] * (array.ndim - 2) + [(top, bottom), (left, right)]
    return rewrap(np.pad(array, widths, mode=_NUMPY_PAD[mode], **_fill_argument(mode, fill)))


def _fill_argument(mode, fill):
    return {"constant_values": fill} if mode == "constant" else {}


_NUMPY_PAD = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


class CenterCrop:
    """The central (h, w) window (torchvision's rounding); smaller images are zero-padded first."""

    def __init__(self, size):
        self.size = _size_pair(size, "CenterCrop")

    def __call__(self, image):
        height, width = _image_size(image)
        crop_h, crop_w = self.size
        if crop_h > height or crop_w > width:
            pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
            image = _pad(image, pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2)
            height, width = _image_size(image)
        top, left = int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))
        return _crop(image, top, left, crop_h, crop_w)

    def __repr__(self):
        return f"CenterCrop(size={self.size})"


class RandomCrop:
    """A random (h, w) window, after optional ``padding`` (int, (lr, tb) or (l, t, r, b)) and
    ``pad_if_needed``; ``fill`` and ``padding_mode`` as in torchvision."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = _size_pair(size, "RandomCrop")
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = padding, pad_if_needed, fill, padding_mode
        if padding_mode not in _NUMPY_PAD:
            raise ValueError(f"RandomCrop: padding_mode must be one of {', '.join(_NUMPY_PAD)}, got {padding_mode!r}")

    def __call__(self, image):
        if self.padding is not None:
            pads = [self.padding] * 4 if isinstance(self.padding, numbers.Number) else list(self.padding)
            if len(pads) == 2:
                pads = pads * 2
            image = _pad(image, *pads, fill=self.fill, mode=self.padding_mode)
        height, width = _image_size(image)
        crop_h, crop_w = self.size
        if self.pad_if_needed and (height < crop_h or width < crop_w):
            extra_w, extra_h = max(crop_w - width, 0), max(crop_h - height, 0)
            image = _pad(image, extra_w, extra_h, extra_w, extra_h, self.fill, self.padding_mode)
            height, width = _image_size(image)
        if height < crop_h or width < crop_w:
            raise ValueError(f"RandomCrop: required crop size {self.size} is larger than the input image size "
                             f"{(height, width)}")
        rng = default_rng()
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        return _crop(image, top, left, crop_h, crop_w)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, image):
        if default_rng().random() >= self.p:
            return image
        if _is_pil(image):
            from PIL import Image
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array, rewrap = _array(image)
        return rewrap(np.ascontiguousarray(array[..., ::-1]))

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


class RandomVerticalFlip(RandomHorizontalFlip):
    def __call__(self, image):
        if default_rng().random() >= self.p:
            return image
        if _is_pil(image):
            from PIL import Image
            return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        array, rewrap = _array(image)
        return rewrap(np.ascontiguousarray(array[..., ::-1, :]))


class RandomRotation:
    """Rotate by an angle drawn uniformly from (-degrees, degrees) (or the given (min, max)),
    counter-clockwise, about the centre; uncovered pixels get ``fill``."""

    def __init__(self, degrees, interpolation=InterpolationMode.NEAREST, expand=False, center=None, fill=0):
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError("RandomRotation: if degrees is a single number, it must be positive")
            degrees = (-degrees, degrees)
        self.degrees = (float(degrees[0]), float(degrees[1]))
        self.interpolation, self.expand, self.center, self.fill = interpolation, expand, center, fill

    def __call__(self, image):
        angle = float(default_rng().uniform(*self.degrees))
        return rotate(image, angle, self.interpolation, self.expand, self.center, self.fill)

    def __repr__(self):
        return f"RandomRotation(degrees={self.degrees})"


def rotate(image, angle, interpolation=InterpolationMode.NEAREST, expand=False, center=None, fill=0):
    """Rotate ``angle`` degrees counter-clockwise.  Pillow images use Pillow's rotate; arrays and
    Tensors (C, H, W) are sampled nearest-neighbour: each output pixel takes the input pixel the
    inverse rotation lands on (about the centre ((W-1)/2, (H-1)/2)), else ``fill``."""
    if _is_pil(image):
        return image.rotate(angle, _pil_filter(interpolation), expand=expand, center=center, fillcolor=fill)
    if expand:
        raise NotImplementedError("rotate: expand=True is only supported for Pillow images")
    array, rewrap = _array(image)
    height, width = array.shape[-2:]
    cy, cx = ((height - 1) / 2, (width - 1) / 2) if center is None else (center[1], center[0])
    theta = math.radians(angle)
    rows, columns = np.mgrid[0:height, 0:width]
    dy, dx = rows - cy, columns - cx
    # output (x, y) comes from input rotated back by -angle; image rows grow downwards, so a
    # counter-clockwise turn on screen is a clockwise one in (row, column) coordinates
    source_x = cx + dx * math.cos(theta) - dy * math.sin(theta)
    source_y = cy + dx * math.sin(theta) + dy * math.cos(theta)
    sx, sy = np.rint(source_x).astype(np.int64), np.rint(source_y).astype(np.int64)
    inside = (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
    out = np.full(array.shape, fill, dtype=array.dtype)
    out[..., inside] = array[..., sy[inside], sx[inside]]
    return rewrap(out)
