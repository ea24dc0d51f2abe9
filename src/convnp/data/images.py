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


def open_image_checked(path, exif_transpose=False):
    """Open and decode the image file ``path`` -> a loaded PIL image (the file is closed again).

    ``exif_transpose``: turn the picture upright by its EXIF orientation (camera photos).  Raises
    FileNotFoundError for a missing file and ImageError naming the file for anything else."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ImportError("reading image files needs Pillow: pip install 'convnp[tools]'") from None
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
