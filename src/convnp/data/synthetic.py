"""Procedural image sets that need no files: quick to make, fully seeded, easy to reason about.

``geometric_digits``: 10 classes of 28x28 shapes, a stand-in for MNIST in seconds-long tests.
``oriented_lines``: 3 classes of 8x8 line patterns, small enough to read the learned filters by eye.
"""
import numpy as np

from convnp.data.array_dataset import ArrayDataset, check_split

GEOMETRIC_CLASSES = [
    "ring", "vertical bar", "horizontal bar", "diagonal band", "plus",
    "x", "square outline", "triangle", "diamond", "dot",
]
GEOMETRIC_NOISE = 0.05
SPLIT_STREAMS = {"train": 0, "test": 1}  # each split draws from its own seeded stream

LINE_CLASSES = ["vertical", "horizontal", "diagonal"]
LINE_NOISE = 0.15
LINE_MAX_ROLL = 2


def geometric_digits(split="train", n=2000, seed=0, shift=0):
    """``n`` images of 10 shapes -> ArrayDataset, x: (n, 1, 28, 28) in [0, 1], y: (n,).

    Shapes are drawn at intensity 1 around the centre (13.5, 13.5), fit in a 23x23 box, and get
    Gaussian pixel noise (sigma 0.05), clipped to [0, 1]. ``shift`` > 0 moves each image's shape by a
    random whole number of pixels in -shift..shift along each axis. Classes are balanced (counts differ
    by at most one). "train" and "test" come from independent streams of the same ``seed``.
    """
    check_split(split, SPLIT_STREAMS)
    rng = np.random.default_rng([seed, SPLIT_STREAMS[split]])
    labels = rng.permutation(np.arange(n) % 10)
    offsets = rng.integers(-shift, shift + 1, size=(n, 2))
    # Pixel-centre coordinates relative to each image's (shifted) shape centre:
    # y (n, 28, 1) and x (n, 1, 28), broadcasting to (n, 28, 28).
    grid = np.arange(28) - 13.5
    y = grid[None, :, None] - offsets[:, 0, None, None]
    x = grid[None, None, :] - offsets[:, 1, None, None]

    images = np.zeros((n, 28, 28), dtype=np.float32)
    for label in range(10):
        chosen = labels == label
        images[chosen] = _shape_mask(label, y[chosen], x[chosen])
    images += rng.normal(0.0, GEOMETRIC_NOISE, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return ArrayDataset(images[:, None], labels, GEOMETRIC_CLASSES, name=f"geometric-{split}")


def _shape_mask(label, y, x):
    """Boolean mask of shape ``label`` given pixel coordinates y (rows, down) and x (columns)."""
    in_box = (np.abs(y) < 10) & (np.abs(x) < 10)
    vertical = (np.abs(x) < 2) & (np.abs(y) < 10)
    horizontal = (np.abs(y) < 2) & (np.abs(x) < 10)
    main_diagonal = (np.abs(y - x) <= 2) & in_box   # top-left to bottom-right
    anti_diagonal = (np.abs(y + x) <= 2) & in_box
    box_distance = np.maximum(np.abs(y), np.abs(x))
    if label == 0:
        radius = np.sqrt(y**2 + x**2)
        return (radius >= 8) & (radius <= 11)
    if label == 1:
        return vertical
    if label == 2:
        return horizontal
    if label == 3:
        return main_diagonal
    if label == 4:
        return vertical | horizontal
    if label == 5:
        return main_diagonal | anti_diagonal
    if label == 6:
        return (box_distance > 7) & (box_distance < 10)
    if label == 7:  # apex at the top (y = -10), base along y = +10
        return (y > -10) & (y < 10) & (np.abs(x) < (y + 10) / 2)
    if label == 8:
        return np.abs(y) + np.abs(x) < 10
    return box_distance < 3


def oriented_lines_patterns():
    """The three clean 8x8 patterns -> (3, 8, 8) float32: vertical, horizontal, diagonal.

    vertical: columns 3 and 4 are 1; horizontal: rows 3 and 4; diagonal: 1 on the main diagonal and
    0.4 on the two diagonals beside it.
    """
    vertical = np.zeros((8, 8))
    vertical[:, 3:5] = 1.0
    diagonal = np.eye(8) + 0.4 * (np.eye(8, k=1) + np.eye(8, k=-1))
    return np.stack([vertical, vertical.T, diagonal]).astype(np.float32)


def oriented_lines(split="train", n=600, val_fraction=0.2, seed=0):
    """Noisy, rolled copies of the three line patterns -> ArrayDataset, x: (m, 1, 8, 8), y: (m,).

    ``n`` images are made from ``seed``: each pattern is rolled (with wrap-around, ``np.roll``) by
    -2..2 pixels along both axes, gets Gaussian noise (sigma 0.15) and is clipped to [0, 1]. The last
    ``round(n * val_fraction)`` of them form the "val" split (also called "test"), the rest "train".
    """
    check_split(split, ("train", "val", "test"))
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 3)
    rolls = rng.integers(-LINE_MAX_ROLL, LINE_MAX_ROLL + 1, size=(n, 2))
    # Rolling by (dy, dx): output pixel (r, c) takes pattern pixel ((r - dy) % 8, (c - dx) % 8).
    rows = (np.arange(8)[None, :] - rolls[:, :1]) % 8
    cols = (np.arange(8)[None, :] - rolls[:, 1:]) % 8
    images = oriented_lines_patterns()[labels[:, None, None], rows[:, :, None], cols[:, None, :]]
    images += rng.normal(0.0, LINE_NOISE, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)

    n_train = n - round(n * val_fraction)
    part = slice(0, n_train) if split == "train" else slice(n_train, n)
    return ArrayDataset(images[part, None], labels[part], LINE_CLASSES, name=f"lines-{split}")
