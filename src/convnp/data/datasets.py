"""Datasets as ArrayDatasets: x (N, C, H, W) float32 in [0, 1], y (N,) int64.

Files are looked up under the data directory (``data_dir()``: ``$CONVNP_DATA`` or a per-user cache),
or under ``root`` when given: ``root/mnist``, ``root/fashion-mnist``, ``root/cifar-10-batches-bin``.
"""
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convnp.data.array_dataset import ArrayDataset, check_split
from convnp.data.download import MIRRORS, data_dir, fetch
from convnp.data.idx import CorruptDataError, read_idx
from convnp.data.images import image_to_array, open_image_checked
from convnp.data.synthetic import geometric_digits, oriented_lines, oriented_lines_patterns  # noqa: F401
from convnp.data.transforms import resize_bilinear

MNIST_FILES = {
    "train": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    },
    "test": {
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}
FASHION_MNIST_FILES = {
    "train": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    },
    "test": {
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

DATASET_NAMES = ("mnist", "fashion-mnist", "digits", "geometric", "lines", "cifar10")


def mnist(split="train", root=None, download=True):
    """MNIST handwritten digits -> x: (60000 or 10000, 1, 28, 28), y: digit 0..9."""
    return _idx_dataset("mnist", MNIST_FILES, MNIST_CLASSES, split, root, download)


def fashion_mnist(split="train", root=None, download=True):
    """Fashion-MNIST clothing images -> x: (60000 or 10000, 1, 28, 28), y: 0..9 (see ``classes``)."""
    return _idx_dataset("fashion-mnist", FASHION_MNIST_FILES, FASHION_MNIST_CLASSES,
                        split, root, download)


def _idx_dataset(name, files_by_split, classes, split, root, download):
    check_split(split, files_by_split)
    images_path, labels_path = fetch(name, files_by_split[split], root=root, download=download)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise CorruptDataError(f"{images_path}: expected uint8 images (N, H, W), "
                               f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise CorruptDataError(f"{labels_path}: expected uint8 labels (N,), "
                               f"got {labels.dtype} {labels.shape}")
    if len(images) == 0:
        raise CorruptDataError(f"{images_path}: holds no images (an empty dataset)")
    if len(images) != len(labels):
        raise CorruptDataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= len(classes):
        raise CorruptDataError(f"{labels_path}: label {labels.max()} found, "
                               f"labels must be 0..{len(classes) - 1}")
    x = images[:, None].astype(np.float32)
    x /= 255
    return ArrayDataset(x, labels, classes, name=f"{name}-{split}")


def digits(split="train", size=8, test_fraction=0.2, seed=0):
    """scikit-learn's bundled 8x8 digits (1,797 images in all) -> x: (N, 1, size, size), y: 0..9.

    Pixel values 0..16 are scaled to [0, 1]. The split is stratified: each class puts
    ``round(test_fraction * its count)`` randomly chosen (seeded) images in "test", the rest in
    "train". ``size`` other than 8 resizes with NumPy bilinear interpolation (``resize_bilinear``,
    PyTorch's align_corners=False convention); ``size=28`` gives MNIST-shaped images.
    """
    check_split(split, ("train", "test"))
    if not 0 < test_fraction < 1:
        raise ValueError(f"digits: test_fraction must be between 0 and 1, got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("digits() needs scikit-learn: pip install 'convnp[tools]'") from None
    bundle = load_digits()
    images = bundle.images.astype(np.float32) / 16
    labels = bundle.target.astype(np.int64)

    rng = np.random.default_rng(seed)
    test_indices = []
    for label in range(10):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_indices.append(members[:round(test_fraction * len(members))])
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[np.concatenate(test_indices)] = True
    chosen = in_test if split == "test" else ~in_test

    x = images[chosen][:, None]
    if size != 8:
        x = resize_bilinear(x, size, size)
    return ArrayDataset(x, labels[chosen], MNIST_CLASSES, name=f"digits-{split}")


def image_folder(path, size=(28, 28), mode="L", skip_bad=False):
    """One sub-folder per class of PNG/JPEG files -> x: (N, 1 or 3, height, width), y: class index.

    Classes are the sorted sub-folder names. Every image is converted to ``mode`` ("L" grayscale or
    "RGB") by ``convnp.data.images.image_to_array`` (as ``predict`` does: 16-bit, palette, RGBA, CMYK,
    EXIF-rotated pictures read correctly) and resized to ``size`` = (height, width) with Pillow's
    bilinear filter. Unreadable files are collected and reported together in one ``CorruptDataError``;
    with ``skip_bad=True`` they are skipped with a warning instead. Files with other extensions are ignored.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("image_folder() needs Pillow: pip install 'convnp[tools]'") from None
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if mode not in ("L", "RGB"):
        raise ValueError(f"image_folder: mode must be 'L' or 'RGB', got {mode!r}")
    height, width = (size, size) if isinstance(size, int) else size
    class_folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_folders:
        raise ValueError(f"{root}: no class sub-folders; expected {root}/<class name>/<image files>")

    images, labels, bad_files = [], [], []
    for label, folder in enumerate(class_folders):
        files = sorted(file for file in folder.iterdir()
                       if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        for file in files:
            try:  # the conversion predict uses (16-bit, palette, RGBA, CMYK, EXIF orientation)
                pixels = image_to_array(open_image_checked(file, exif_transpose=True), 1 if mode == "L" else 3)
                planes = [Image.fromarray(plane).resize((width, height), Image.Resampling.BILINEAR)
                          for plane in pixels]
            except (OSError, ValueError) as error:
                bad_files.append(f"  {file}: {error}")
                continue
            images.append(np.clip(np.stack([np.asarray(plane, dtype=np.float32) for plane in planes]), 0, 1))
            labels.append(label)

    if bad_files:
        message = f"{root}: {len(bad_files)} unreadable image file(s):\n" + "\n".join(bad_files)
        if not skip_bad:
            raise CorruptDataError(message)
        warnings.warn(message + "\nThey were skipped.", stacklevel=2)
    if not images:
        raise ValueError(f"{root}: no readable images")
    x = np.stack(images).astype(np.float32)
    return ArrayDataset(x, labels, [folder.name for folder in class_folders], name=root.name)


def cifar10(split="train", root=None):
    """CIFAR-10 from its binary version -> x: (50000 or 10000, 3, 32, 32), y: 0..9 (airplane..truck).

    Reads ``root/cifar-10-batches-bin/data_batch_{1..5}.bin`` (train) or ``test_batch.bin`` (test);
    each file is a sequence of 3073-byte records: a label byte, then 3x32x32 pixel bytes
    (the red, green and blue planes).
    """
    check_split(split, CIFAR10_FILES)
    root = data_dir() if root is None else Path(root)
    folder = root / CIFAR10_FOLDER
    paths = [folder / name for name in CIFAR10_FILES[split]]
    missing = [path for path in paths if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"cifar10: {len(missing)} file(s) missing:\n" + "".join(f"  {path}\n" for path in missing)
            + f"Download {CIFAR10_URL} and extract it into {root} (it unpacks to {CIFAR10_FOLDER}/).\n"
            + "The data folder is chosen by the CONVNP_DATA environment variable."
        )
    batches = [_read_cifar10_batch(path) for path in paths]
    x = np.concatenate([images for images, _ in batches]).astype(np.float32)
    x /= 255
    y = np.concatenate([labels for _, labels in batches])
    return ArrayDataset(x, y, CIFAR10_CLASSES, name=f"cifar10-{split}")


def _read_cifar10_batch(path):
    """One CIFAR-10 .bin file -> images (n, 3, 32, 32) uint8, labels (n,) uint8."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR10_RECORD_BYTES:
        raise CorruptDataError(
            f"{path}: size {raw.size} bytes is not a positive multiple of {CIFAR10_RECORD_BYTES} "
            "(1 label byte + 3x32x32 pixel bytes per image)"
        )
    records = raw.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0]
    if labels.max() >= 10:
        first_bad = int(np.argmax(labels >= 10))
        raise CorruptDataError(f"{path}: record {first_bad} has label {labels[first_bad]}, "
                               "labels must be 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_dataset(name, split="train", **kwargs):
    """The dataset called ``name`` (one of DATASET_NAMES); ``kwargs`` go to its function."""
    if name == "mnist":
        return mnist(split, **kwargs)
    if name == "fashion-mnist":
        return fashion_mnist(split, **kwargs)
    if name == "digits":
        return digits(split, **kwargs)
    if name == "geometric":
        return geometric_digits(split, **kwargs)
    if name == "lines":
        return oriented_lines(split, **kwargs)
    if name == "cifar10":
        return cifar10(split, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")


@dataclass
class DatasetStatus:
    """What ``available_datasets`` reports for one dataset."""

    name: str
    available: bool
    location: str      # where it was found, or where it is looked for
    how_to_get: str    # empty when nothing is missing


def available_datasets(root=None):
    """For each of DATASET_NAMES: is it here, where, how to get what is missing -> [DatasetStatus]."""
    root = data_dir() if root is None else Path(root)
    statuses = []
    for name, files_by_split in (("mnist", MNIST_FILES), ("fashion-mnist", FASHION_MNIST_FILES)):
        folder = root / name
        missing = _missing_files(folder, files_by_split)
        how = ""
        if missing:
            source = MIRRORS[name][0] if MIRRORS[name] else "its mirrors"
            how = (f"downloaded on first use from {source}; offline, put {', '.join(missing)} "
                   f"in {folder} (the folder is chosen by CONVNP_DATA)")
        statuses.append(DatasetStatus(name, not missing, str(folder), how))

    has_sklearn = importlib.util.find_spec("sklearn") is not None
    statuses.append(DatasetStatus("digits", has_sklearn, "bundled with scikit-learn",
                                  "" if has_sklearn else "pip install 'convnp[tools]' (scikit-learn)"))
    statuses.append(DatasetStatus("geometric", True, "generated in memory", ""))
    statuses.append(DatasetStatus("lines", True, "generated in memory", ""))

    folder = root / CIFAR10_FOLDER
    missing = _missing_files(folder, CIFAR10_FILES)
    how = f"download {CIFAR10_URL} and extract it into {root}" if missing else ""
    statuses.append(DatasetStatus("cifar10", not missing, str(folder), how))
    return statuses


def _missing_files(folder, files_by_split):
    """Names of the files (of every split) that are not in ``folder``."""
    return [name for names in files_by_split.values() for name in names if not (folder / name).exists()]
