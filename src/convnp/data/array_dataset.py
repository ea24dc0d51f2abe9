"""ArrayDataset: images and labels held in memory as two NumPy arrays."""
import numpy as np


class ArrayDataset:
    """A labelled image set held in memory.

    x: (N, C, H, W) float32, pixel values in [0, 1]
    y: (N,) int64 class indices in 0..len(classes)-1
    classes: the class names, ``classes[y[i]]`` names image ``i``
    """

    def __init__(self, x, y, classes, name="arrays"):
        if np.iscomplexobj(x) or np.iscomplexobj(y):
            raise TypeError(f"{name}: images and labels must be real numbers, got complex values")
        if len(classes) == 0:
            raise ValueError(f"{name}: the class list is empty; a dataset needs at least one class name")
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if x.ndim != 4:
            raise ValueError(f"{name}: images must have shape (N, C, H, W), got {x.shape}")
        if y.shape != (len(x),):
            raise ValueError(f"{name}: labels must have shape ({len(x)},) to match the images, "
                             f"got {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(f"{name}: labels must lie in 0..{len(classes) - 1}, "
                             f"found {y.min()}..{y.max()}")
        self.x = x
        self.y = y
        self.classes = list(classes)
        self.name = name

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def __repr__(self):
        n, c, h, w = self.x.shape
        return f"ArrayDataset({self.name!r}: {n} images {c}x{h}x{w}, {self.num_classes} classes)"


def check_split(split, known):
    """Raise a ValueError listing the ``known`` split names unless ``split`` is one of them."""
    if split not in known:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(map(repr, known))}")
