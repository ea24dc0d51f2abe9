"""DataLoader: mini-batches of an in-memory dataset, optionally shuffled and transformed."""
import math

import numpy as np

from convnp import backend


class DataLoader:
    """Iterate over ``data`` in mini-batches ``(xb, yb)``: xb float32 (B, C, H, W), yb int64 (B,).

    ``data`` is a dataset with ``.x`` and ``.y`` (e.g. ArrayDataset) or a pair ``(x, y)``.
    Each epoch with ``shuffle=True`` draws a fresh permutation of the indices from ``self.rng``
    (a ``numpy.random.Generator`` seeded with ``seed``), so epochs differ from one another but a run
    repeats exactly with the same seed. With ``seed=None`` the generator is seeded from convnp's
    global generator (``convnp.backend.manual_seed``). Batches are gathered by fancy indexing: only
    the batch is copied, never the whole dataset. ``transform(xb, rng)`` (see transforms.py) is
    applied to each batch with the same generator; save ``loader.rng.bit_generator.state`` to resume.
    """

    def __init__(self, data, batch_size=64, shuffle=False, seed=None, drop_last=False, transform=None):
        x, y = (data.x, data.y) if hasattr(data, "x") else data
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"DataLoader: {len(x)} images but {len(y)} labels")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be a whole number, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        if seed is None:
            seed = backend.default_rng().integers(2**63)
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        """Number of batches per epoch."""
        if self.drop_last:
            return len(self.x) // self.batch_size
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size]
            xb = np.asarray(self.x[batch], dtype=np.float32)
            yb = np.asarray(self.y[batch], dtype=np.int64)
            if self.transform is not None:
                xb = self.transform(xb, self.rng)
            yield xb, yb
