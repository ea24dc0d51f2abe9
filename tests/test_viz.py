"""convnp.inspect.viz: the numbers behind each picture against PyTorch (or a hand count), and facts
about the PNG files themselves; and the `convnp viz` command with a stand-in checkpoint loader."""
import argparse
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import convnp
from convnp import data, models, optim
from convnp.errors import UserError
from convnp.inspect import commands, viz
from convnp.train import fit

tnn = torch.nn


def torch_simplecnn(model):
    twin = tnn.Sequential(tnn.Conv2d(1, 4, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(4, 8, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(392, 10))
    twin.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()})
    return twin.eval()


@pytest.fixture(scope="module")
def simplecnn():
    convnp.manual_seed(1)
    return models.SimpleCNN()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)


@pytest.fixture(scope="module")
def trained_tiny():
    """TinyCNN after two epochs on the oriented lines: some right, some wrong."""
    convnp.manual_seed(0)
    model = models.TinyCNN()
    train, val = data.oriented_lines("train"), data.oriented_lines("val")
    opt = optim.Adam(model.parameters(), lr=0.01)
    history = fit(model, data.DataLoader(train, 32, shuffle=True, seed=0), data.DataLoader(val, 64),
                               opt, epochs=2, log=None, progress=False)
    return model, val, history


def assert_png(path, title_words=(), min_size=(250, 180)):
    """A real PNG of plausible size whose title is stored and drawn (dark pixels in the top band)."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.format == "PNG"
        width, height = im.size
        assert width >= min_size[0] and height >= min_size[1]
        title = im.info.get("Title", "")
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert title, "no title stored"
    for word in title_words:
        assert word.lower() in title.lower(), (word, title)
    top = pixels[: max(int(0.12 * height), 12)]
    assert (top < 128).any(), "nothing drawn in the title band"
    assert pixels.std() > 10, "a blank picture"
    assert path.stat().st_size < 400_000
    return title


# --- feature maps, ReLU, saliency: the numbers against PyTorch ---------------------------------------------
def test_conv_feature_maps_match_torch(simplecnn, image):
    maps = viz.conv_feature_maps(simplecnn, image)
    twin = torch_simplecnn(simplecnn)
    with torch.no_grad():
        x = torch.from_numpy(image[None])
        first = twin[0](x)
        second = twin[3](twin[2](twin[1](first)))
    assert [name for name, _ in maps] == ["layer 0 (Conv2d)", "layer 3 (Conv2d)"]
    np.testing.assert_allclose(maps[0][1], first[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(maps[1][1], second[0].numpy(), rtol=1e-4, atol=1e-5)


def test_relu_maps_match_torch(simplecnn, image):
    label, before, after = viz.relu_maps(simplecnn, image, layer="3")
    twin = torch_simplecnn(simplecnn)
    with torch.no_grad():
        pre = twin[:4](torch.from_numpy(image[None]))[0].numpy()
    assert label == "layer 3 (Conv2d)"
    np.testing.assert_allclose(before, pre, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(after, np.maximum(pre, 0), rtol=1e-4, atol=1e-5)
    assert (before < 0).any() and (after >= 0).all()
    with pytest.raises(ValueError, match="no Conv2d called 'fc'"):
        viz.relu_maps(simplecnn, image, layer="fc")


def test_saliency_is_the_input_gradient_of_the_class_score(simplecnn, image):
    grad, target, score = viz.saliency_map(simplecnn, image, target=7)
    twin = torch_simplecnn(simplecnn)
    x = torch.from_numpy(image[None]).requires_grad_(True)
    logits = twin(x)
    logits[0, 7].backward()
    assert target == 7 and score == pytest.approx(logits[0, 7].item(), rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(grad, x.grad[0].numpy(), rtol=1e-3, atol=1e-6)
    assert all(p.grad is None for p in simplecnn.parameters())
    _, predicted, _ = viz.saliency_map(simplecnn, image)
    assert predicted == int(logits.argmax())


def test_predict_proba_matches_torch_softmax(simplecnn):
    x = np.random.default_rng(1).random((5, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(torch_simplecnn(simplecnn)(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(viz.predict_proba(simplecnn, x, batch_size=2), expected, rtol=1e-4, atol=1e-6)


# --- max pooling: winners against torch's argmax, in the numbers and in the pixels ---------------------------
def torch_winners(x, kernel, stride):
    _, idx = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(np.float64))[None, None], kernel, stride,
                                            return_indices=True)
    mask = np.zeros(x.size, dtype=bool)
    mask[idx.numpy().ravel()] = True
    return mask.reshape(x.shape)


MAPS = [
    (np.array([[1, 3, 2, 1], [4, 2, 0, 1], [5, 1, 7, 8], [2, 6, 3, 4]]), 2, None),
    (np.array([[5, 5, 1, 0, 2, 2], [5, 5, 3, 3, 2, 2], [0, 9, 1, 1, 4, 0], [9, 0, 1, 1, 0, 4],
               [7, 1, 2, 8, 6, 6], [1, 7, 8, 2, 6, 6]]), 2, None),        # ties: the first maximum wins
    (np.random.default_rng(3).integers(0, 10, (7, 7)), 3, 2),              # overlapping windows, floor size
]


@pytest.mark.parametrize("x, kernel, stride", MAPS)
def test_max_pool_winners_equal_torch_argmax(x, kernel, stride):
    pooled, wins = viz.max_pool_winners(x, kernel, stride)
    expected = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(np.float64))[None, None], kernel, stride)
    np.testing.assert_array_equal(pooled, expected[0, 0].numpy())
    np.testing.assert_array_equal(wins > 0, torch_winners(x, kernel, stride))
    assert wins.sum() == pooled.size  # every window has exactly one winner


@pytest.mark.parametrize("x, kernel, stride", MAPS)
def test_max_pool_figure_marks_torchs_winners(tmp_path, x, kernel, stride):
    path = viz.plot_max_pool(x, tmp_path / "pool.png", kernel, stride)
    assert_png(path, ["max pooling"])
    with Image.open(path) as im:
        x0, y0, x1, y1 = json.loads(im.info["convnp:input_grid"])
        rgb = np.asarray(im.convert("RGB"), dtype=np.int32)
    rows, cols = x.shape
    cell_w, cell_h = (x1 - x0) / cols, (y1 - y0) / rows
    gold = np.array([0xF5, 0xC5, 0x18])
    marked = np.zeros(x.shape, dtype=bool)
    for i in range(rows):
        for j in range(cols):  # a point inside the cell, away from its number and its borders
            px, py = int(x0 + (j + 0.2) * cell_w), int(y0 + (i + 0.2) * cell_h)
            colour = rgb[py, px]
            is_gold = np.abs(colour - gold).max() < 40
            assert is_gold or (colour > 230).all(), (i, j, colour)
            marked[i, j] = is_gold
    np.testing.assert_array_equal(marked, torch_winners(x, kernel, stride))


# --- confusion matrix and mistakes ------------------------------------------------------------------------------
def test_confusion_matrix_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    np.testing.assert_array_equal(viz.confusion_matrix(y_true, y_pred, 4),
                                  metrics.confusion_matrix(y_true, y_pred, labels=range(4)))


def test_most_confident_mistakes_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.7, 0.3]])
    y = np.array([0, 0, 1, 0, 0])
    # wrong: 1 (p 0.8), 2 (p 0.6), 3 (p 0.95) -> most confident first
    assert viz.most_confident_mistakes(probs, y).tolist() == [3, 1, 2]
    assert viz.most_confident_mistakes(probs, y, n=1).tolist() == [3]


# --- every picture: a valid PNG with its title ------------------------------------------------------------------
def test_every_plot_writes_a_titled_png(tmp_path, trained_tiny, simplecnn, image):
    model, val, history = trained_tiny
    probs = viz.predict_proba(model, val.x)
    pred = probs.argmax(axis=1)
    assert (pred != val.y).any(), "the fixture should leave some mistakes to draw"
    paths = {
        "filters": viz.plot_filters(model, tmp_path / "filters.png"),
        "filters-array": viz.plot_filters(np.random.default_rng(0).normal(size=(4, 3, 5, 5)), tmp_path / "w.png"),
        "feature": viz.plot_feature_maps(simplecnn, image, tmp_path / "sub" / "maps.png"),
        "relu": viz.plot_relu_before_after(simplecnn, image, tmp_path / "relu.png"),
        "curves": viz.plot_training_curves(history, tmp_path / "curves.png"),
        "confusion": viz.plot_confusion_matrix(val.y, pred, tmp_path / "confusion.png", class_names=val.classes),
        "mistakes": viz.plot_misclassified(val.x, val.y, probs, tmp_path / "mistakes.png", class_names=val.classes),
        "saliency": viz.plot_saliency(simplecnn, image, tmp_path / "saliency.png"),
    }
    words = {"filters": ["filters"], "filters-array": ["filters"], "feature": ["feature maps"],
             "relu": ["relu"], "curves": ["training curves"], "confusion": ["confusion matrix"],
             "mistakes": ["mistakes"], "saliency": ["saliency"]}
    for key, path in paths.items():
        assert path.exists() and path.suffix == ".png"
        assert_png(path, words[key])
    errors = int((pred != val.y).sum())
    with Image.open(paths["mistakes"]) as im:
        assert f"of {errors} misclassified" in im.info["Title"]
    with Image.open(paths["confusion"]) as im:
        assert f"accuracy {np.mean(pred == val.y):.1%}" in im.info["Title"]


def test_filter_picture_is_centred_on_zero(tmp_path):
    """A weight of exactly 0 is drawn white and the largest |weight| at full strength, red or blue."""
    weight = np.zeros((1, 1, 3, 3))
    weight[0, 0, 0, 0], weight[0, 0, 2, 2] = 2.0, -1.0
    path = viz.plot_filters(weight, tmp_path / "f.png", annotate=False)
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int32)
    reds = (rgb[..., 0] > 80) & (rgb[..., 0] - rgb[..., 2] > 60)
    blues = (rgb[..., 2] - rgb[..., 0] > 60)
    assert reds.sum() > 100 and blues.sum() > 100  # the +2 cell and the -1 cell (plus the colour bar)


def test_plot_errors_are_explained(tmp_path, simplecnn):
    with pytest.raises(ValueError, match="PNG"):
        viz.plot_filters(simplecnn, tmp_path / "f.jpg")
    with pytest.raises(ValueError, match=r"\(F, C, kh, kw\)"):
        viz.plot_filters(np.zeros((3, 3)), tmp_path / "f.png")
    with pytest.raises(ValueError, match="no Conv2d"):
        viz.plot_filters(models.MLP(), tmp_path / "f.png")
    with pytest.raises(ValueError, match="train_loss"):
        viz.plot_training_curves({}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="one image"):
        viz.plot_feature_maps(simplecnn, np.zeros((2, 1, 28, 28)), tmp_path / "m.png")


# --- `convnp viz` with a stand-in checkpoint loader ---------------------------------------------------------------
def run_cli(argv):
    parser = argparse.ArgumentParser(prog="convnp")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_viz_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def fake_checkpoints(monkeypatch, trained_tiny):
    """convnp.checkpoint.load_model(path) -> (model, info), as the checkpoint module will provide it."""
    model, _, history = trained_tiny
    module = types.ModuleType("convnp.checkpoint")
    module.load_model = lambda path: (model, {"history": history, "dataset": "lines"})
    monkeypatch.setitem(sys.modules, "convnp.checkpoint", module)
    monkeypatch.setattr(convnp, "checkpoint", module, raising=False)
    return module


def test_viz_command_draws_everything(tmp_path, fake_checkpoints, capsys):
    ckpt = tmp_path / "run.npz"
    ckpt.write_bytes(b"stand-in")
    assert run_cli(["viz", str(ckpt), "--out", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    names = ["filters", "feature_maps", "relu", "saliency", "training_curves", "confusion", "misclassified",
             "max_pool"]
    for name in names:
        path = tmp_path / "figs" / f"{name}.png"
        assert f"wrote {path}" in out
        assert_png(path)
    assert "input image: lines test image 0" in out


def test_viz_command_with_an_image_file(tmp_path, fake_checkpoints, capsys):
    ckpt = tmp_path / "run.npz"
    ckpt.write_bytes(b"stand-in")
    picture = np.zeros((8, 8), dtype=np.uint8)
    picture[:, 3:5] = 255
    Image.fromarray(picture).save(tmp_path / "line.png")
    assert run_cli(["viz", str(ckpt), "--what", "feature-maps,saliency", "--image", str(tmp_path / "line.png"),
                    "--out", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["feature_maps.png", "saliency.png"]
    np.save(tmp_path / "x.npy", picture.astype(np.float32) / 255)
    assert run_cli(["viz", str(ckpt), "--what", "relu", "--image", str(tmp_path / "x.npy"),
                    "--out", str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o2" / "relu.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["missing.npz", "--out", "o"], "checkpoint missing.npz does not exist"),
    (["CKPT", "--what", "filters", "pictures", "--out", "o"], "unknown --what 'pictures'"),
    (["CKPT", "--what", "feature-maps", "--image", "nope.png", "--out", "o"], "--image nope.png does not exist"),
    (["CKPT", "--what", "confusion", "--data", "no-such-set", "--out", "o"], "cannot load dataset 'no-such-set'"),
    (["CKPT", "--data", "lines", "--index", "5000", "--out", "o"], "--index 5000 is outside"),
])
def test_viz_command_user_errors(tmp_path, monkeypatch, fake_checkpoints, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "CKPT").write_bytes(b"stand-in")
    with pytest.raises(UserError) as caught:
        run_cli(["viz"] + argv)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_viz_command_explicit_kind_it_cannot_draw(tmp_path, monkeypatch, trained_tiny):
    model, _, _ = trained_tiny
    module = types.ModuleType("convnp.checkpoint")
    module.load_model = lambda path: (model, {})
    monkeypatch.setitem(sys.modules, "convnp.checkpoint", module)
    (tmp_path / "c.npz").write_bytes(b"x")
    with pytest.raises(UserError, match="cannot draw curves: the checkpoint holds no training history"):
        run_cli(["viz", str(tmp_path / "c.npz"), "--what", "curves", "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="cannot draw saliency: no input image"):
        run_cli(["viz", str(tmp_path / "c.npz"), "--what", "saliency", "--out", str(tmp_path / "o")])


def test_preprocess_applies_the_checkpoints_normalisation():
    x = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    info = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.5]}
    expected = (x - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array([0.2, 0.25, 0.5])[:, None, None]
    np.testing.assert_allclose(commands.preprocess(x, info), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(commands.preprocess(x, {}), x)


# --- `convnp viz` end to end, with real checkpoints --------------------------------------------------------------
def test_viz_command_on_a_real_checkpoint(tmp_path, trained_tiny, capsys):
    checkpoint = pytest.importorskip("convnp.checkpoint")
    model, val, history = trained_tiny
    path = checkpoint.save(tmp_path / "run" / "last.npz", model, epoch=2, history=history,
                           preprocessing={"dataset": "lines", "input_size": [1, 8, 8], "classes": val.classes})
    assert run_cli(["viz", str(path), "--out", str(tmp_path / "figs"), "--index", "3"]) == 0
    out = capsys.readouterr().out
    for name in ["filters", "feature_maps", "relu", "saliency", "training_curves", "confusion", "misclassified",
                 "max_pool"]:
        assert_png(tmp_path / "figs" / f"{name}.png")
    assert "input image: lines test image 3" in out and "skipped" not in out
    # the filters drawn are the checkpoint's: the picture is the same as one drawn from the model itself
    viz.plot_filters(model, tmp_path / "direct.png")
    with Image.open(tmp_path / "direct.png") as a, Image.open(tmp_path / "figs" / "filters.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_viz_command_on_a_broken_checkpoint(tmp_path):
    pytest.importorskip("convnp.checkpoint")
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError) as caught:
        run_cli(["viz", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")])
    text = str(caught.value)
    assert "bad.npz" in text and "\n" not in text


def test_viz_image_is_prepared_like_predict(tmp_path, monkeypatch, capsys):
    """viz --image goes through predict's loader: a dark digit on a light, larger picture is inverted,
    boxed and centred like MNIST, so viz explains what predict classifies (not a resized negative)."""
    checkpoint = pytest.importorskip("convnp.checkpoint")
    from convnp.predict import preprocess as predict_preprocess
    from convnp.recipes import LAYOUTS

    prep = {"dataset": "mnist", "mean": [0.1307], "std": [0.3081], "input_size": [1, 28, 28],
            "classes": [str(k) for k in range(10)], "layout": dict(LAYOUTS["mnist"])}
    path = checkpoint.save(tmp_path / "m.npz", models.LeNet5(), preprocessing=prep)
    picture = np.full((60, 40), 250, dtype=np.uint8)
    picture[10:50, 18:24] = 10  # a dark "1" on a light page
    Image.fromarray(picture).save(tmp_path / "one.png")
    seen = {}

    def record(model, image, out):
        seen["image"] = image
        return out

    monkeypatch.setattr(viz, "plot_feature_maps", record)
    assert run_cli(["viz", str(path), "--what", "feature-maps", "--image", str(tmp_path / "one.png"),
                    "--out", str(tmp_path / "o")]) == 0
    expected = predict_preprocess(tmp_path / "one.png", prep)
    np.testing.assert_allclose(seen["image"], expected, rtol=1e-6, atol=1e-6)
    background = (0 - 0.1307) / 0.3081  # inverted: the page became black, like MNIST's background
    assert seen["image"].shape == (1, 28, 28) and np.isclose(seen["image"][0, 0, 0], background, atol=1e-4)
    assert "prepared as convnp predict does" in capsys.readouterr().out
