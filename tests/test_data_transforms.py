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


# --- colour jitter: hand-computed values, colorsys and PIL as the independent truth -------------------------
def colour_batch(n=3, h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 3, h, w))
    x[0, :, 0, :6] = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5], [0, 0, 0]]).T  # ties, gray
    return x


def test_rgb_to_hsv_and_back_follow_colorsys_pixel_by_pixel():
    import colorsys

    from convnp.data.transforms import hsv_to_rgb, rgb_to_hsv

    x = colour_batch()
    h, s, v = rgb_to_hsv(x)
    pixels = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    expected = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in pixels]).reshape(*h.shape, 3)
    np.testing.assert_allclose(np.stack((h, s, v), axis=-1), expected, atol=1e-12)
    hsv = np.random.default_rng(1).uniform(0, 1, (2, 4, 6, 3))
    rgb = np.array([colorsys.hsv_to_rgb(*p) for p in hsv.reshape(-1, 3)]).reshape(hsv.shape).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(hsv_to_rgb(hsv[..., 0], hsv[..., 1], hsv[..., 2]), rgb, atol=1e-12)


def test_hue_turns_pure_red_to_green_blue_and_yellow_and_follows_colorsys():
    import colorsys

    from convnp.data.transforms import adjust_hue

    red = np.zeros((4, 3, 1, 1), np.float32)
    red[:, 0] = 1
    turned = adjust_hue(red, [1 / 3, -1 / 3, 1 / 6, 0])[:, :, 0, 0]  # one turn per image
    np.testing.assert_allclose(turned, [[0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 0]], atol=1e-6)
    assert turned.dtype == np.float32
    x = colour_batch()
    turns = [0.05, -0.4, 0.25]
    out = adjust_hue(x, turns)
    for k, turn in enumerate(turns):
        for i, j in np.ndindex(x.shape[2:]):
            h, s, v = colorsys.rgb_to_hsv(*x[k, :, i, j])
            np.testing.assert_allclose(out[k, :, i, j], colorsys.hsv_to_rgb((h + turn) % 1, s, v), atol=1e-12)


def test_saturation_zero_gives_the_luma_gray_and_matches_pil():
    Image = pytest.importorskip("PIL.Image")
    ImageEnhance = pytest.importorskip("PIL.ImageEnhance")
    from convnp.data.transforms import adjust_saturation

    red = np.zeros((1, 3, 1, 1))
    red[0, 0] = 1
    np.testing.assert_allclose(adjust_saturation(red, [0])[0, :, 0, 0], [0.299, 0.299, 0.299])  # 0.299 R
    picture = (np.random.default_rng(2).uniform(0, 1, (9, 11, 3)) * 255).astype(np.uint8)
    for factor in (0.0, 0.6, 1.4):
        theirs = np.asarray(ImageEnhance.Color(Image.fromarray(picture)).enhance(factor), np.float64) / 255
        ours = adjust_saturation(picture.transpose(2, 0, 1)[None] / 255.0, [factor])[0].transpose(1, 2, 0)
        np.testing.assert_allclose(ours, theirs, atol=2 / 255)  # PIL rounds its gray and its blend to bytes


def test_brightness_and_contrast_match_pil_and_contrast_zero_is_the_mean_luma():
    Image = pytest.importorskip("PIL.Image")
    ImageEnhance = pytest.importorskip("PIL.ImageEnhance")
    from convnp.data.transforms import adjust_brightness, adjust_contrast

    picture = (np.random.default_rng(3).uniform(0, 1, (9, 11, 3)) * 255).astype(np.uint8)
    x = picture.transpose(2, 0, 1)[None] / 255.0
    gray = 0.299 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2]
    np.testing.assert_allclose(adjust_contrast(x, [0]), np.full_like(x, gray.mean()), atol=1e-12)
    for adjust, enhancer in ((adjust_brightness, ImageEnhance.Brightness), (adjust_contrast, ImageEnhance.Contrast)):
        for factor in (0.7, 1.3):
            theirs = np.asarray(enhancer(Image.fromarray(picture)).enhance(factor), np.float64) / 255
            ours = adjust(x, [factor])[0].transpose(1, 2, 0)
            np.testing.assert_allclose(ours, theirs, atol=2 / 255, err_msg=enhancer.__name__)


def test_color_jitter_draws_per_image_and_leaves_grayscale_colourless():
    from convnp.data.transforms import ColorJitter, adjust_hue, adjust_saturation

    same = np.repeat(colour_batch(n=1).astype(np.float32), 4, axis=0)  # four copies of one picture
    jitter = ColorJitter(saturation=0.5, hue=0.2)
    out = jitter(same, np.random.default_rng(7))
    draws = np.random.default_rng(7)
    saturation, turn = draws.uniform(0.5, 1.5, 4), draws.uniform(-0.2, 0.2, 4)
    np.testing.assert_allclose(out, adjust_hue(adjust_saturation(same, saturation), turn), atol=1e-6)
    assert all(not np.allclose(out[0], out[k]) for k in (1, 2, 3))  # each copy got its own factors
    gray = np.random.default_rng(8).uniform(0, 1, (2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(jitter(gray, np.random.default_rng(0)), gray)
    with pytest.raises(ValueError, match="hue in"):
        ColorJitter(hue=0.6)


def test_color_jitter_follows_torchvision_when_it_is_installed():
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torchvision.transforms.functional")
    from convnp.data.transforms import adjust_contrast, adjust_hue, adjust_saturation

    x = colour_batch(n=1).astype(np.float32)
    image = torch.from_numpy(x[0])
    for ours, theirs in ((adjust_hue(x, [0.13]), functional.adjust_hue(image, 0.13)),
                         (adjust_saturation(x, [0.4]), functional.adjust_saturation(image, 0.4)),
                         (adjust_contrast(x, [1.5]), functional.adjust_contrast(image, 1.5))):
        np.testing.assert_allclose(ours[0], theirs.numpy(), atol=1e-5)
