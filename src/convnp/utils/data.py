"""``torch.utils.data``'s shape: map-style datasets and a DataLoader over any object with
``__len__`` and ``__getitem__``.

    from convnp.utils.data import DataLoader, TensorDataset, random_split
    train, val = random_split(TensorDataset(images, labels), [0.9, 0.1], generator=convnp.Generator().manual_seed(0))
    for x, y in DataLoader(train, batch_size=64, shuffle=True):
        ...

Batches are made by ``default_collate``, as in PyTorch: samples that are tuples give a tuple of
batched fields, arrays/tensors/numbers are stacked into convnp Tensors (Python floats become float64,
ints int64, as PyTorch's do), dicts are collated key by key.  A ``TensorDataset`` (or any dataset of arrays built here)
is batched by fancy indexing instead of one ``__getitem__`` per sample: the fast path.  (The
array-backed ``convnp.data.DataLoader``, which yields NumPy batches and takes a per-batch transform,
stays as it is.)  ``num_workers`` is accepted and ignored: loading runs in the calling thread.
"""
import math
from bisect import bisect_right

import numpy as np

from ..backend import Generator, rng_of
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "DataLoader", "default_collate",
           "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler", "Generator"]


class Dataset:
    """Base class of map-style datasets: implement ``__getitem__(index)`` and ``__len__()``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


def _as_array(value):
    return value.data if isinstance(value, Tensor) else np.asarray(value)


class TensorDataset(Dataset):
    """Samples are tuples ``(tensors[0][i], tensors[1][i], ...)``; every tensor has the same first size."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(np.asarray(t)) for t in tensors)
        sizes = {len(t) for t in self.tensors}
        if len(sizes) != 1:
            raise ValueError(f"TensorDataset: size mismatch between tensors "
                             f"(first dimensions {[len(t) for t in self.tensors]})")

    def __getitem__(self, index):
        return tuple(Tensor(t.data[index]) for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])

    def batch(self, indices):
        """The fast path: the samples at ``indices`` already collated (one fancy index per tensor)."""
        return tuple(Tensor(t.data[indices]) for t in self.tensors)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __getitem__(self, index):
        if isinstance(index, (list, np.ndarray)):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)

    def batch(self, indices):
        if not hasattr(self.dataset, "batch"):
            raise AttributeError("batch")
        return self.dataset.batch(np.asarray(self.indices)[indices])


class ConcatDataset(Dataset):
    """Several datasets one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]))

    def __len__(self):
        return int(self.cumulative_sizes[-1]) if self.cumulative_sizes else 0

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"ConcatDataset: index {index} out of range for length {len(self)}")
            index += len(self)
        which = bisect_right(self.cumulative_sizes, index)
        start = 0 if which == 0 else int(self.cumulative_sizes[which - 1])
        return self.datasets[which][index - start]


def random_split(dataset, lengths, generator=None):
    """Split into non-overlapping random Subsets of the given lengths (or fractions summing to 1; the
    remainder of rounding goes round-robin to the first subsets, as in PyTorch)."""
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = [int(math.floor(n * fraction)) for fraction in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length of the "
                         f"input dataset ({n})")
    order = rng_of(generator).permutation(n)
    subsets, start = [], 0
    for length in lengths:
        subsets.append(Subset(dataset, order[start:start + length]))
        start += length
    return subsets


# --- samplers ------------------------------------------------------------------------------------------
class Sampler:
    """Yields dataset indices; ``__len__`` says how many."""

    def __init__(self, data_source=None):
        pass


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation of the indices each epoch (or ``num_samples`` draws with replacement)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source, self.replacement, self.generator = data_source, replacement, generator
        self._num_samples = num_samples

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        rng = rng_of(self.generator)
        n = len(self.data_source)
        if self.replacement:
            return iter(rng.integers(0, n, size=self.num_samples).tolist())
        return iter(rng.permutation(n)[:self.num_samples].tolist())

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    def __init__(self, indices, generator=None):
        self.indices, self.generator = list(indices), generator

    def __iter__(self):
        return (self.indices[i] for i in rng_of(self.generator).permutation(len(self.indices)))

    def __len__(self):
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups a sampler's indices into lists of ``batch_size`` (the last one shorter unless drop_last)."""

    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return math.ceil(len(self.sampler) / self.batch_size)


# --- collation and the loader ----------------------------------------------------------------------------
def default_collate(batch):
    """A list of samples -> one batch: tuples/lists field by field, dicts key by key, tensors, arrays
    and numbers stacked into Tensors (Python float -> float64 and int -> int64, as in PyTorch),
    strings left as they come."""
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor(np.stack([sample.data for sample in batch]))
    if isinstance(first, np.ndarray):
        return Tensor(np.stack(batch))
    if isinstance(first, (bool, np.bool_)):
        return Tensor(np.asarray(batch, dtype=np.bool_))
    if isinstance(first, (int, np.integer)):
        return Tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(first, np.floating):
        return Tensor(np.asarray(batch, dtype=first.dtype))
    if isinstance(first, float):  # float64, as PyTorch's default_collate makes Python floats
        return Tensor(np.asarray(batch, dtype=np.float64))
    if isinstance(first, (str, bytes)):
        return batch
    if isinstance(first, dict):
        return {key: default_collate([sample[key] for sample in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(sample) != len(first) for sample in batch):
            raise RuntimeError("default_collate: each element in the batch should be of equal size")
        fields = [default_collate(list(values)) for values in zip(*batch)]
        return type(first)(fields) if isinstance(first, tuple) and not hasattr(first, "_fields") else \
            (type(first)(*fields) if hasattr(first, "_fields") else fields)
    if hasattr(first, "__array__"):  # e.g. a PIL image: as an array
        return Tensor(np.stack([np.asarray(sample) for sample in batch]))
    raise TypeError(f"default_collate: batch must contain tensors, arrays, numbers, dicts or lists; "
                    f"found {type(first).__name__}")


class DataLoader:
    """``DataLoader(dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
    num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, generator=None)``, like PyTorch.

    Each epoch with ``shuffle=True`` draws a new permutation from ``generator`` (a convnp.Generator,
    a numpy Generator, or convnp's global generator by default).  ``batch_size=None`` yields single
    samples, uncollated batching off."""

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 generator=None, persistent_workers=False, prefetch_factor=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: the dataset must have __len__ and __getitem__ (a map-style dataset), "
                            f"got {type(dataset).__name__}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError("DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, "
                             "sampler, and drop_last")
        self.dataset, self.num_workers, self.generator = dataset, num_workers, generator
        self.collate_fn = collate_fn
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        if batch_sampler is None and batch_size is not None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_sampler = batch_sampler
        self.batch_size, self.drop_last = batch_size, drop_last

    def __len__(self):
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)

    def __iter__(self):
        if self.batch_sampler is None:
            for index in self.sampler:
                sample = self.dataset[index]
                yield self.collate_fn(sample) if self.collate_fn is not None else sample
            return
        fast = self.collate_fn is None and hasattr(self.dataset, "batch")
        for indices in self.batch_sampler:
            if fast:
                try:
                    yield self.dataset.batch(np.asarray(indices, dtype=np.int64))
                    continue
                except AttributeError:
                    fast = False
            samples = [self.dataset[i] for i in indices]
            yield (self.collate_fn or default_collate)(samples)

