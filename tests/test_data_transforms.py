"""Batch transforms checked against loop/np.roll oracles and the formulas they claim."""
import numpy as np
import pytest

from convnp.data import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
    resize_bilinear,
    shift_images,
)


def shifted_by_roll(image, dy, dx):
    """Oracle: np.roll, then zero the rows/columns that wrapped around."""
    out = np.roll(image, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


def test_normalize_per_channel():
    rng = np.random.default_rng(0)
    x = rng.random((4, 3, 5, 6)).astype(np.float32)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.25, 2.0]
    y = Normalize(mean, std)(x, rng)
    for c in range(3):
        np.testing.assert_allclose(y[:, c], (x[:, c] - mean[c]) / std[c], rtol=1e-6)
    assert y.dtype == np.float32


def test_normalize_scalar_and_channel_mismatch():
    x = np.full((2, 1, 3, 3), 0.5, np.float32)
    np.testing.assert_allclose(Normalize(0.1307, 0.3081)(x), (0.5 - 0.1307) / 0.3081, rtol=1e-6)
    with pytest.raises(ValueError, match="2 mean values for a batch with 1 channels"):
        Normalize([0.1, 0.2], [1.0, 1.0])(x)


@pytest.mark.parametrize("dy, dx", [(0, 0), (1, 0), (0, -2), (2, 3), (-3, -1), (-1, 2)])
def test_shift_single_pixel_matches_roll(dy, dx):
    image = np.zeros((1, 1, 7, 6), np.float32)
    image[0, 0, 3, 2] = 1.0
    out = shift_images(image, [dy], [dx])
    np.testing.assert_array_equal(out, shifted_by_roll(image, dy, dx))
    if 0 <= 3 + dy < 7 and 0 <= 2 + dx < 6:
        assert out[0, 0, 3 + dy, 2 + dx] == 1.0 and out.sum() == 1.0
    else:
        assert out.sum() == 0.0


def test_shift_whole_batch_with_different_offsets():
    rng = np.random.default_rng(1)
    x = rng.random((16, 3, 9, 8)).astype(np.float32)
    dy, dx = rng.integers(-3, 4, 16), rng.integers(-3, 4, 16)
    out = shift_images(x, dy, dx)
    for i in range(16):
        np.testing.assert_array_equal(out[i], shifted_by_roll(x[i], dy[i], dx[i]))


def test_random_shift_offsets_within_range_and_all_used():
    image = np.zeros((400, 1, 9, 9), np.float32)
    image[:, 0, 4, 4] = 1.0
    out = RandomShift(2)(image, np.random.default_rng(0))
    rows, cols = np.nonzero(out[:, 0].sum(axis=2))[1], np.nonzero(out[:, 0].sum(axis=1))[1]
    assert len(rows) == 400 and out.sum() == 400  # each pixel stays inside the 9x9 image
    assert set(rows - 4) == {-2, -1, 0, 1, 2} and set(cols - 4) == {-2, -1, 0, 1, 2}
    assert image.sum() == 400  # input untouched


def test_random_crop_is_a_window_of_the_padded_image():
    rng = np.random.default_rng(2)
    x = rng.random((10, 3, 8, 8)).astype(np.float32)
    out = RandomCrop(8, padding=2)(x, np.random.default_rng(3))
    assert out.shape == (10, 3, 8, 8)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(10):
        windows = [padded[i, :, t:t + 8, l:l + 8] for t in range(5) for l in range(5)]
        assert any(np.array_equal(out[i], w) for w in windows)
    small = RandomCrop((3, 5))(x, rng)
    assert small.shape == (10, 3, 3, 5)
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(13, padding=2)(x, rng)


def test_horizontal_flip():
    rng = np.random.default_rng(4)
    x = rng.random((200, 2, 3, 5)).astype(np.float32)
    always = RandomHorizontalFlip(p=1.0)(x, rng)
    np.testing.assert_array_equal(always, x[:, :, :, ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x, rng), x)
    half = RandomHorizontalFlip()(x, rng)
    flipped = np.array([np.array_equal(half[i], x[i, :, :, ::-1]) for i in range(200)])
    kept = np.array([np.array_equal(half[i], x[i]) for i in range(200)])
    assert np.all(flipped ^ kept) and 60 < flipped.sum() < 140


def test_compose_applies_in_order_and_seeded_runs_repeat():
    x = np.random.default_rng(5).random((6, 1, 6, 6)).astype(np.float32)
    pipeline = Compose([RandomShift(1), Normalize(0.5, 0.25)])
    a = pipeline(x, np.random.default_rng(9))
    b = pipeline(x, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    shifted = RandomShift(1)(x, np.random.default_rng(9))
    np.testing.assert_allclose(a, (shifted - 0.5) / 0.25, rtol=1e-6)


def test_transforms_reject_unbatched_input():
    with pytest.raises(ValueError, match=r"RandomShift: expected a batch of shape \(N, C, H, W\)"):
        RandomShift(1)(np.zeros((28, 28)), np.random.default_rng())


def test_resize_bilinear_against_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).random((3, 2, 5, 7)).astype(np.float32)
    for size in [(5, 7), (11, 9), (28, 28), (3, 4)]:
        expected = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="bilinear",
                                                   align_corners=False).numpy()
        np.testing.assert_allclose(resize_bilinear(x, *size), expected, atol=1e-6)
