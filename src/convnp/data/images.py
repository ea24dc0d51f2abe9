"""Opening image files that may be hostile or broken: one checked entry point for every image convnp reads.

    image = open_image_checked("digit.png")     # a loaded PIL image; ImageError (a ValueError) names the file

Checked before decoding: the path is a regular file (a FIFO or device is refused without being opened), and
the picture's declared size is at most MAX_IMAGE_PIXELS (a 20000x20000 PNG of a few KB would otherwise
expand to gigabytes).  While decoding, Pillow's decompression-bomb warning is an error, and any decoder
failure (truncated data, bad chunks, an unknown format) becomes one ImageError naming the file.
"""
import struct
import warnings
import zlib
from pathlib import Path

MAX_IMAGE_PIXELS = 50_000_000  # about 7000x7000: a photo from a big camera; 20000x20000 is refused


class ImageError(ValueError):
    """An image file that cannot be used: not an image, broken, too large, or not a regular file."""


def pillow():
    """The ``PIL.Image`` module (Pillow, the tools extra); ImportError naming the extra when it is missing."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading or resizing images needs Pillow: pip install 'convnp[tools]'") from None
    return Image


def open_image_checked(path, exif_transpose=False):
    """Open and decode the image file ``path`` -> a loaded PIL image (the file is closed again).

    ``exif_transpose``: turn the picture upright by its EXIF orientation (camera photos).  Raises
    FileNotFoundError for a missing file and ImageError naming the file for anything else."""
    Image = pillow()
    from PIL import ImageOps

    from convnp.files import open_regular

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    failures = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError,
                TypeError, ZeroDivisionError, MemoryError, Image.DecompressionBombError,
                Image.DecompressionBombWarning)
    with open_regular(path, "image", ImageError) as file:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # "Corrupt EXIF data"
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(file) as image:
                    width, height = image.size
                    if width * height > MAX_IMAGE_PIXELS or width < 1 or height < 1:
                        raise ImageError(f"{path}: a {width}x{height} image is refused (at most "
                                         f"{MAX_IMAGE_PIXELS:,} pixels)")
                    image.load()
                    return ImageOps.exif_transpose(image) if exif_transpose else image.copy()
        except ImageError:
            raise
        except failures as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ImageError(f"{path}: not a readable image ({reason})") from None


def image_to_array(image, channels):
    """A PIL image of any mode -> float32 (channels, H, W) in [0, 1], channels 1 (grayscale) or 3 (RGB).

    16-bit and 32-bit grayscale ('I;16', 'I') are scaled by their bit depth (not clipped to white, which
    ``convert('L')`` would do), float images ('F') are clipped to [0, 1], palette and CMYK images are
    converted through RGB, and transparent pixels (RGBA, LA, a palette with transparency) are laid on
    white.  The one conversion of convnp's image folders and of ``predict`` for such models."""
    import numpy as np

    if channels not in (1, 3):
        raise ValueError(f"cannot prepare pictures with {channels} channels (1 grayscale or 3 RGB)")
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = np.asarray(image, dtype=np.float64)
        if mode == "F":
            gray = np.clip(gray, 0.0, 1.0)
        elif mode.startswith("I;16") or gray.max(initial=0) > 255:
            gray = np.clip(gray / 65535, 0.0, 1.0)
        else:  # 'I' holding 8-bit values
            gray = np.clip(gray / 255, 0.0, 1.0)
        gray = gray.astype(np.float32)[None]
        return gray if channels == 1 else np.repeat(gray, 3, axis=0)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)  # on white
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    if channels == 3:
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's 'L'
    return gray[None].astype(np.float32)


def fit_array(pixels, height, width):
    """float32 (C, H0, W0) -> (C, height, width): the centre crop with the target's aspect ratio, resized
    with Pillow's Lanczos filter (torchvision's Resize + CenterCrop, in one step)."""
    import numpy as np

    Image = pillow()
    _, h0, w0 = pixels.shape
    if h0 * width > w0 * height:  # too tall: crop rows
        crop_h, crop_w = max(1, round(w0 * height / width)), w0
    else:
        crop_h, crop_w = h0, max(1, round(h0 * width / height))
    top, left = (h0 - crop_h) // 2, (w0 - crop_w) // 2
    out = np.empty((pixels.shape[0], height, width), dtype=np.float32)
    for c, plane in enumerate(pixels[:, top:top + crop_h, left:left + crop_w]):
        resized = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize(
            (int(width), int(height)), Image.Resampling.LANCZOS)
        out[c] = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return out


def read_image_array(path, channels, height, width):
    """An image file -> float32 (channels, height, width) in [0, 1]: opened with ``open_image_checked``
    (EXIF orientation applied), converted by ``image_to_array``, fitted by ``fit_array``."""
    return fit_array(image_to_array(open_image_checked(path, exif_transpose=True), channels), height, width)


def open_image_header(path):
    """(mode, whether a palette image's colours are all gray) of an image file, without decoding its pixels."""
    from convnp.files import open_regular

    Image = pillow()

    with open_regular(Path(path), "image", ImageError) as file:
        try:
            with Image.open(file) as image:
                mode = image.mode
                gray = False
                if mode == "P":
                    colours = image.getpalette() or []
                    gray = all(colours[i] == colours[i + 1] == colours[i + 2] for i in range(0, len(colours) - 2, 3))
                return mode, gray
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError(f"{path}: not a readable image ({' '.join(str(error).split())})") from None
