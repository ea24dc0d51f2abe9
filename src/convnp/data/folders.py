"""Your own images: a folder of class sub-folders, read into arrays once and cached.

    splits = folder_splits("photos")                  # {'train': Path, 'val': Path or None, 'test': ...}
    train = folder_dataset("photos/train", size=(32, 32), channels=3)   # x: (N, 3, 32, 32), y, classes

Two layouts are understood (torchvision's ImageFolder and its usual split variant):

    photos/<class>/<image files>                      one folder: train (a validation split is held out)
    photos/train/<class>/..., photos/val/<class>/..., photos/test/<class>/...    separate splits

Every image goes through ``convnp.data.images.read_image_array`` (any mode: 16-bit, palette, RGBA,
CMYK, EXIF-rotated; centre crop to the target aspect ratio; Lanczos resize), the same conversion
``convnp predict`` applies to a picture for a model trained on a folder.

The decoded arrays are cached in a ``.npz`` (uint8 pixels, labels, and the list of files with their
sizes and modification times) inside ``root/.convnp-cache/``, or in the data directory's
``folder-cache/`` when the folder cannot be written.  A cache whose file list, sizes, mtimes, image
size or channels differ from the folder's is ignored and rewritten.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from convnp.data.array_dataset import ArrayDataset
from convnp.data.images import read_image_array

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_NAMES = ("train", "val", "test")
CACHE_FOLDER = ".convnp-cache"
CACHE_VERSION = 1


def folder_splits(root):
    """{'train': Path, 'val': Path or None, 'test': Path or None} for the folder ``root`` (see the module
    docstring).  Raises FileNotFoundError / ValueError naming the folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (--data expects a folder of class sub-folders)")
    if (root / "train").is_dir():
        return {name: (root / name if (root / name).is_dir() else None) for name in SPLIT_NAMES}
    return {"train": root, "val": None, "test": None}


def list_images(root):
    """(sorted class names, [(relative path, label)]) of the class sub-folders of ``root``."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root}: no class sub-folders; expected {root}/<class name>/<image files>")
    files = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not found:
            raise ValueError(f"{root / name}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        files += [(str(p.relative_to(root)), label) for p in found]
    return classes, files


def _signature(root, files, size, channels):
    """What the cache must match: every file's name, size and mtime, the image size and channels."""
    entries = []
    for relative, label in files:
        stat = os.stat(Path(root) / relative)
        entries.append([relative, label, stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"version": CACHE_VERSION, "size": list(size), "channels": channels, "files": entries})
    return hashlib.sha256(text.encode()).hexdigest()


def _cache_paths(root, size, channels):
    """The cache file inside the folder, then the one in the data directory (for a read-only folder)."""
    from convnp.data.download import data_dir

    root = Path(root).resolve()
    name = f"{size[0]}x{size[1]}x{channels}.npz"
    key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return [root / CACHE_FOLDER / name, Path(data_dir()) / "folder-cache" / f"{root.name}-{key}-{name}"]


def _read_cache(paths, signature, count):
    for path in paths:
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as cached:
                if str(cached["signature"]) != signature or len(cached["y"]) != count:
                    continue
                return cached["x"], cached["y"], path
        except (OSError, ValueError, KeyError):
            continue  # a broken or foreign file: decode again, and overwrite it
    return None


def _write_cache(paths, x, y, signature):
    from convnp.files import atomic_write

    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda file: np.savez(file, x=x, y=y, signature=np.array(signature)))
            return path
        except OSError:
            continue
    return None


def _progress(total, log):
    """A tqdm bar on a terminal when tqdm is installed; else nothing per image (one log line is written)."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="decoding images", unit="img", leave=False, file=sys.stderr)


def folder_dataset(root, size=(32, 32), channels=3, cache=True, log=None, name=None):
    """The class sub-folders of ``root`` -> ArrayDataset x: (N, channels, height, width) float32 in [0, 1].

    Classes are the sorted sub-folder names (images in nested folders count for their class).  Unreadable
    files are reported together, each named, in one ValueError.  ``cache``: read/write the decoded-array
    cache (see the module docstring).  ``log``: a function given one line when images are decoded."""
    root = Path(root)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    classes, files = list_images(root)
    signature = _signature(root, files, (height, width), channels)
    paths = _cache_paths(root, (height, width), channels)
    found = _read_cache(paths, signature, len(files)) if cache else None
    if found is not None:
        x, y, _ = found
    else:
        if log is not None:
            log(f"decoding {len(files):,} images of {len(classes)} classes in {root} to {channels}x{height}x{width}"
                f" (once: the arrays are cached)")
        x = np.empty((len(files), channels, height, width), dtype=np.uint8)
        y = np.array([label for _, label in files], dtype=np.int64)
        bad = []
        bar = _progress(len(files), log)
        for i, (relative, _) in enumerate(files):
            try:
                pixels = read_image_array(root / relative, channels, height, width)
            except (OSError, ValueError) as error:
                bad.append(f"  {root / relative}: {' '.join(str(error).split())}")
                continue
            finally:
                if bar is not None:
                    bar.update(1)
            x[i] = np.round(pixels * 255).astype(np.uint8)
        if bar is not None:
            bar.close()
        if bad:
            raise ValueError(f"{root}: {len(bad)} unreadable image file(s):\n" + "\n".join(bad[:20])
                             + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""))
        if cache:
            written = _write_cache(paths, x, y, signature)
            if log is not None and written is None:
                log(f"could not write the image cache ({paths[0]} or {paths[1]}); the images are decoded each run")
    images = x.astype(np.float32)
    images /= 255
    return ArrayDataset(images, y, classes, name=name or root.name)


def stratified_split(labels, fraction, seed):
    """(train indices, validation indices), both sorted: each class gives round(fraction * its count)
    randomly chosen (seeded) members to validation, at least one when it has two or more members."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 1])
    val = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = round(fraction * len(members))
        if fraction > 0 and len(members) > 1:
            n_val = min(max(n_val, 1), len(members) - 1)
        val.append(members[:n_val])
    val = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def image_channels(root, sample=200):
    """1 when the first ``sample`` images of each class of ``root`` are all grayscale, else 3 (read
    from the file headers only: nothing is decoded)."""
    from convnp.data.images import open_image_header

    classes, files = list_images(root)
    per_class = {}
    for relative, label in files:
        per_class.setdefault(label, []).append(relative)
    for names in per_class.values():
        for relative in names[:sample]:
            mode, palette_gray = open_image_header(Path(root) / relative)
            if mode not in GRAY_MODES and not palette_gray:
                return 3
    return 1
