"""convnp.predict: pictures of any size or colour prepared like MNIST digits."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from convnp import models
from convnp.predict import load_image, predict_arrays, preprocess, softmax, to_model_input
from convnp.recipes import LAYOUTS

MNIST_PREP = {"dataset": "mnist", "input_size": [1, 28, 28], "channels": 1, "mean": [0.1307], "std": [0.3081],
              "classes": [str(k) for k in range(10)], "layout": LAYOUTS["mnist"]}


def _seven(ink=(20, 20, 30), paper=(255, 255, 255), size=(200, 150), mode="RGB"):
    """A dark '7' stroke on a light 200x150 background (the drawing spans 81x96 pixels)."""
    image = Image.new(mode, size, paper)
    ImageDraw.Draw(image).line([(60, 30), (140, 30), (90, 125)], fill=ink, width=9)
    return image


def _ink_box(x, threshold=0.2):
    rows, cols = np.flatnonzero((x > threshold).any(axis=1)), np.flatnonzero((x > threshold).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def _centre_of_mass(x):
    ys, xs = np.indices(x.shape)
    return (ys * x).sum() / x.sum(), (xs * x).sum() / x.sum()


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_dark_digit_on_white_becomes_an_mnist_style_input(tmp_path, suffix):
    path = tmp_path / f"seven{suffix}"
    _seven().save(path)
    x = to_model_input(load_image(path), MNIST_PREP)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    x = x[0]
    # inverted: light strokes on a black background, full contrast
    assert x.max() == pytest.approx(1.0, abs=0.02)
    assert np.abs(x[:3]).max() < 0.05 and np.abs(x[:, :2]).max() < 0.05
    # the bounding box's longer side (the height: 96 px of 81 x 96) is 20 px; the aspect ratio is kept
    top, bottom, left, right = _ink_box(x)
    height, width = bottom - top + 1, right - left + 1
    assert height in (20, 21)
    assert abs(width / height - (81 + 9) / (95 + 9)) < 0.12
    # centred by centre of mass (within the half pixel that whole-pixel placement allows)
    cy, cx = _centre_of_mass(x)
    assert abs(cy - 13.5) <= 0.55 and abs(cx - 13.5) <= 0.55


def test_light_on_dark_and_dark_on_light_give_the_same_input():
    dark_on_light = to_model_input(_seven(), MNIST_PREP)
    light_on_dark = to_model_input(_seven(ink=(235, 235, 225), paper=(0, 0, 0)), MNIST_PREP)
    np.testing.assert_allclose(light_on_dark, dark_on_light, atol=0.03)


def test_colour_grey_paper_transparency_and_size_do_not_matter():
    reference = to_model_input(_seven(), MNIST_PREP)
    variants = {
        "blue ink on yellow paper": _seven(ink=(10, 10, 140), paper=(250, 240, 150)),
        "grey paper": _seven(ink=(40, 40, 40), paper=(180, 180, 180)),
        "transparent background": _seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA"),
        "grayscale 'L' image": _seven(ink=20, paper=255, mode="L"),
    }
    for name, image in variants.items():
        np.testing.assert_allclose(to_model_input(image, MNIST_PREP), reference, atol=0.08, err_msg=name)
    big = _seven().resize((800, 600), Image.Resampling.BICUBIC)
    assert np.abs(to_model_input(big, MNIST_PREP) - reference).mean() < 0.03


def test_a_wide_shape_keeps_its_aspect_ratio():
    image = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(image).rectangle([50, 100, 249, 149], fill="black")  # 200 x 50
    x = to_model_input(image, MNIST_PREP)[0]
    top, bottom, left, right = _ink_box(x)
    assert (right - left + 1, bottom - top + 1) == (20, 5)


def test_layouts_without_a_box_are_plain_resizes():
    prep = {"input_size": [1, 8, 8], "layout": LAYOUTS["lines"]}
    image = Image.new("L", (80, 80), 0)
    ImageDraw.Draw(image).rectangle([30, 0, 49, 79], fill=255)  # a vertical bar, already light on dark
    x = to_model_input(image, prep)[0]
    assert x.shape == (8, 8)
    np.testing.assert_allclose(x[:, 3:5], 1.0, atol=0.08)  # Lanczos rings slightly
    np.testing.assert_allclose(x[:, :2], 0.0, atol=0.08)
    rgb = to_model_input(Image.new("RGB", (50, 40), (255, 0, 0)), {"input_size": [3, 32, 32], "layout": None})
    assert rgb.shape == (3, 32, 32)
    np.testing.assert_allclose(rgb[:, 5, 5], [1.0, 0.0, 0.0])


def test_preprocess_normalises_like_training(tmp_path):
    _seven().save(tmp_path / "seven.png")
    normalised = preprocess(tmp_path / "seven.png", MNIST_PREP)
    raw = to_model_input(load_image(tmp_path / "seven.png"), MNIST_PREP)
    np.testing.assert_allclose(normalised, (raw - 0.1307) / 0.3081, rtol=1e-6)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png: not a readable image"):
        load_image(tmp_path / "notes.png")


def test_predict_arrays_returns_the_top_classes_with_softmax_probabilities():
    model = models.TinyCNN(num_classes=3)
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    top = predict_arrays(model, x, ["a", "b", "c"], top=3)
    model.eval()
    from convnp.tensor import Tensor

    probs = softmax(model(Tensor(x)).data.astype(np.float64))
    for row, p in zip(top, probs):
        assert [name for name, _ in row] == [["a", "b", "c"][k] for k in np.argsort(-p)]
        np.testing.assert_allclose([q for _, q in row], np.sort(p)[::-1])
        assert sum(q for _, q in row) == pytest.approx(1.0)
