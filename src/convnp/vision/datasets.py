"""Datasets with torchvision's call shape: ``MNIST(root, train=True, transform=None,
target_transform=None, download=False)``, ``FashionMNIST``, ``CIFAR10``, ``ImageFolder``.

A sample is ``(image, target)``: a Pillow image (mode 'L' for MNIST, 'RGB' for CIFAR-10 and image
folders) passed through ``transform``, and an int class passed through ``target_transform``, as in
torchvision.  ``.data`` holds the uint8 pixels ((N, 28, 28) or (N, 32, 32, 3)), ``.targets`` the
labels and ``.classes`` the class names.

Where the files are read from: ``root`` in convnp's layout (``root/mnist/*.gz``,
``root/cifar-10-batches-bin/``), else ``root`` in torchvision's layout for MNIST
(``root/MNIST/raw/``), else convnp's data directory (``$CONVNP_DATA``, see ``convnp datasets``), so
``datasets.MNIST('data', download=True)`` finds the MNIST convnp already has.  torchvision's
pickled CIFAR-10 (``cifar-10-batches-py``) is not read: convnp never unpickles; use the binary version.
"""
from pathlib import Path

import numpy as np

from ..data import datasets as convnp_datasets
from ..data.idx import read_idx


class VisionDataset:
    """Base: ``transform`` / ``target_transform`` applied in ``__getitem__``."""

    def __init__(self, root=None, transform=None, target_transform=None):
        self.root = root
        self.transform, self.target_transform = transform, target_transform

    def _finish(self, image, target):
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self):
        return f"Dataset {type(self).__name__}\n    Number of datapoints: {len(self)}\n    Root location: {self.root}"


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("convnp.vision needs Pillow for images: pip install 'convnp[tools]'") from None
    return Image


class MNIST(VisionDataset):
    """MNIST digits: 60,000 training or 10,000 test images, 28x28, classes '0 - zero' ... '9 - nine'."""

    folder, torchvision_folder = "mnist", "MNIST"
    files = convnp_datasets.MNIST_FILES
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine"]

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        super().__init__(root, transform, target_transform)
        self.train = train
        split = "train" if train else "test"
        images, labels = self._read(split, download)
        self.data, self.targets = images, labels.astype(np.int64)

    def _read(self, split, download):
        names = list(self.files[split])
        if self.root is not None:
            root = Path(self.root).expanduser()
            for folder in (root / self.folder, root / self.torchvision_folder / "raw"):
                for candidates in (names, [name[:-3] for name in names]):  # .gz, or unpacked as torchvision leaves them
                    paths = [folder / name for name in candidates]
                    if all(path.exists() for path in paths):
                        return read_idx(paths[0]), read_idx(paths[1])
        image_path, label_path = convnp_datasets.fetch(self.folder, self.files[split], download=download)
        return read_idx(image_path), read_idx(label_path)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        image = _pillow().fromarray(self.data[index])  # uint8 (28, 28): mode "L"
        return self._finish(image, int(self.targets[index]))


class FashionMNIST(MNIST):
    """Fashion-MNIST: MNIST's format and sizes, ten kinds of clothing."""

    folder, torchvision_folder = "fashion-mnist", "FashionMNIST"
    files = convnp_datasets.FASHION_MNIST_FILES
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class CIFAR10(VisionDataset):
    """CIFAR-10 (the binary version): 50,000 training or 10,000 test RGB images, 32x32."""

    classes = list(convnp_datasets.CIFAR10_CLASSES)

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        super().__init__(root, transform, target_transform)
        self.train = train
        has_files = root is not None and (Path(root).expanduser() / convnp_datasets.CIFAR10_FOLDER).is_dir()
        split = "train" if train else "test"
        data = convnp_datasets.cifar10(split, root=Path(root).expanduser() if has_files else None)
        self.data = np.ascontiguousarray((data.x * 255).round().astype(np.uint8).transpose(0, 2, 3, 1))  # N, H, W, C
        self.targets = [int(t) for t in data.y]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self._finish(_pillow().fromarray(self.data[index]), self.targets[index])


IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path):
    """torchvision's default loader: the file as an RGB Pillow image."""
    with open(path, "rb") as file:
        image = _pillow().open(file)
        return image.convert("RGB")


class ImageFolder(VisionDataset):
    """``root/<class>/<image>``: classes are the sorted sub-folder names; ``samples`` lists
    (path, class index); images are loaded when indexed (RGB by default, like torchvision)."""

    def __init__(self, root, transform=None, target_transform=None, loader=pil_loader, is_valid_file=None):
        super().__init__(root, transform, target_transform)
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"ImageFolder: {root}: no such folder")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: {root}: no class sub-folders; expected {root}/<class>/<images>")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        valid = is_valid_file or (lambda path: str(path).lower().endswith(IMG_EXTENSIONS))
        self.samples = []
        for name in self.classes:
            files = sorted(p for p in (root / name).rglob("*") if p.is_file() and valid(str(p)))
            self.samples += [(str(p), self.class_to_idx[name]) for p in files]
        if not self.samples:
            raise FileNotFoundError(f"ImageFolder: found no valid image files in the class folders of {root} "
                                    f"(extensions: {', '.join(IMG_EXTENSIONS)})")
        self.imgs, self.targets, self.loader = self.samples, [t for _, t in self.samples], loader

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        return self._finish(self.loader(path), target)
