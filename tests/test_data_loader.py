"""DataLoader: batch counts, shuffling that covers every index once, seeds, transforms."""
import numpy as np
import pytest

from convnp import backend
from convnp.data import ArrayDataset, DataLoader


def numbered_data(n):
    """x[i] is filled with the value i, so a batch reveals which indices it holds."""
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 1, 2, 2)).copy()
    return x, np.arange(n) % 10


def indices_of(xb):
    return xb[:, 0, 0, 0].astype(int)


@pytest.mark.parametrize("n, batch_size, drop_last, expected_sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, False, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
])
def test_batch_count_and_sizes(n, batch_size, drop_last, expected_sizes):
    loader = DataLoader(numbered_data(n), batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(expected_sizes)
    assert [len(xb) for xb, _ in batches] == expected_sizes
    if batches:
        np.testing.assert_array_equal(np.concatenate([indices_of(xb) for xb, _ in batches]),
                                      np.arange(sum(expected_sizes)))


def test_batch_dtypes_and_labels_follow_images():
    x, y = numbered_data(7)
    loader = DataLoader((x.astype(np.float64), y.astype(np.int32)), batch_size=4, shuffle=True, seed=0)
    for xb, yb in loader:
        assert xb.dtype == np.float32 and yb.dtype == np.int64 and xb.shape[1:] == (1, 2, 2)
        np.testing.assert_array_equal(yb, indices_of(xb) % 10)


def test_shuffle_covers_every_index_once_and_changes_each_epoch():
    loader = DataLoader(numbered_data(103), batch_size=10, shuffle=True, seed=1)
    epochs = [np.concatenate([indices_of(xb) for xb, _ in loader]) for _ in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(103))
        assert not np.array_equal(order, np.arange(103))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_same_seed_same_orders_across_runs():
    def orders(seed):
        loader = DataLoader(ArrayDataset(*numbered_data(50), classes=list("0123456789")),
                            batch_size=8, shuffle=True, seed=seed)
        return [np.concatenate([indices_of(xb) for xb, _ in loader]) for _ in range(2)]

    np.testing.assert_array_equal(orders(5), orders(5))
    assert not np.array_equal(orders(5)[0], orders(6)[0])


def test_seed_none_follows_manual_seed():
    def first_order():
        loader = DataLoader(numbered_data(30), batch_size=30, shuffle=True)
        return indices_of(next(iter(loader))[0])

    backend.manual_seed(123)
    a = first_order()
    backend.manual_seed(123)
    np.testing.assert_array_equal(first_order(), a)


def test_rng_state_resumes_the_same_order():
    loader = DataLoader(numbered_data(40), batch_size=40, shuffle=True, seed=2)
    list(loader)
    state = loader.rng.bit_generator.state
    second_epoch = indices_of(next(iter(loader))[0])
    resumed = DataLoader(numbered_data(40), batch_size=40, shuffle=True, seed=999)
    resumed.rng.bit_generator.state = state
    np.testing.assert_array_equal(indices_of(next(iter(resumed))[0]), second_epoch)


def test_transform_gets_batch_and_generator_and_data_is_untouched():
    x, y = numbered_data(6)
    original = x.copy()
    seen = []

    def transform(xb, rng):
        seen.append(isinstance(rng, np.random.Generator))
        return xb * 2

    loader = DataLoader((x, y), batch_size=4, transform=transform)
    batches = [xb for xb, _ in loader]
    assert seen == [True, True]
    np.testing.assert_array_equal(np.concatenate(batches), original * 2)
    np.testing.assert_array_equal(x, original)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        DataLoader((np.zeros((5, 1, 2, 2)), np.zeros(4)))
