"""A small real project from the command line (issue 16): your own image folder (three classes of shapes,
mixed sizes and image modes), your own model class, and the run features around them (validation split,
fine-tuning, freezing, resuming and extending, early stopping, refusing a used --out, CSV history)."""
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from convnp import checkpoint
from convnp.cli import main
from convnp.data import folders, image_folder
from convnp.data.images import image_to_array, open_image_checked, read_image_array
from convnp.predict import to_model_input

sys.path.insert(0, str(Path(__file__).parent))
from shape_folder import CLASSES, MODEL_CODE, make_shape_folder, save_as  # noqa: E402

pytest.importorskip("PIL")


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- reading unusual images the way predict does ----------------------------------------------------------
@pytest.fixture
def half_white(tmp_path):
    """The same picture (left half white, right half black, 20x30) saved in every mode."""
    pixels = np.zeros((20, 30))
    pixels[:, :15] = 1.0
    paths = {}
    for mode in ("L", "RGB", "I;16", "P", "RGBA", "CMYK", "EXIF"):
        save_as(pixels, tmp_path / mode.replace(";", ""), mode)
        paths[mode] = next(tmp_path.glob(mode.replace(";", "") + ".*"))
    return pixels, paths


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "P", "RGBA", "CMYK", "EXIF"])
def test_every_image_mode_reads_as_the_picture_it_shows(half_white, mode):
    pixels, paths = half_white
    for channels in (1, 3):
        x = read_image_array(paths[mode], channels, 20, 30)
        assert x.shape == (channels, 20, 30) and x.dtype == np.float32
        if paths[mode].suffix == ".jpg":  # JPEG (CMYK, EXIF) rings in the 8x8 block holding the edge
            assert np.abs(x[:, :, :8] - 1).max() < 0.08 and np.abs(x[:, :, 16:]).max() < 0.08, mode
        else:
            assert np.abs(x[:, :, :15] - 1).max() < 0.005 and np.abs(x[:, :, 15:]).max() < 0.005, mode


def test_a_16_bit_png_is_not_white_in_image_folder_and_reads_as_predict_reads_it(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ramp = (np.linspace(0, 1, 32)[None, :].repeat(16, 0) * 65535).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a" / "ramp.png")
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "b" / "black.png")
    assert open_image_checked(tmp_path / "a" / "ramp.png").mode.startswith("I")
    dataset = image_folder(tmp_path, size=(16, 32), mode="L")
    row = dataset.x[0, 0, 8]
    np.testing.assert_allclose(row, np.linspace(0, 1, 32), atol=0.02)  # a ramp, not all white
    prep = {"input_size": [1, 16, 32], "layout": {"box": None, "centre": None, "invert": "never", "fit": "crop"}}
    image = open_image_checked(tmp_path / "a" / "ramp.png", exif_transpose=True)
    np.testing.assert_array_equal(to_model_input(image, prep), read_image_array(tmp_path / "a" / "ramp.png", 1, 16, 32))
    np.testing.assert_allclose(image_to_array(image, 3)[:, 0], np.repeat(ramp[:1] / 65535, 3, 0), atol=1e-6)


def test_transparent_pixels_lie_on_white_and_exif_turns_the_picture_upright(tmp_path):
    from PIL import Image

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[:5, :, 3] = 255  # the top half opaque green, the bottom transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    x = read_image_array(tmp_path / "a.png", 3, 10, 10)
    np.testing.assert_allclose(x[:, 0, 0], [0, 1, 0]) and np.testing.assert_allclose(x[:, 9, 0], [1, 1, 1])
    tall = np.zeros((10, 20), np.uint8)
    tall[:, :10] = 255  # stored 10x20, left half white; orientation 6 shows it turned 90 degrees clockwise
    image = Image.fromarray(tall)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "e.jpg", exif=exif.tobytes(), quality=95)
    column = read_image_array(tmp_path / "e.jpg", 1, 20, 10)[0, :, 5]
    assert column[:9].min() > 0.9 and column[11:].max() < 0.1  # the white half is now on top


# --- the folder reader: layouts, cache, split ------------------------------------------------------------
def test_folder_dataset_caches_the_decoded_arrays_and_notices_a_changed_file(tmp_path, monkeypatch):
    root = make_shape_folder(tmp_path / "shapes", per_class=4)
    lines = []
    first = folders.folder_dataset(root, size=(12, 12), channels=1, log=lines.append)
    assert first.x.shape == (12, 1, 12, 12) and first.classes == list(CLASSES) and len(lines) == 1
    assert list((root / ".convnp-cache").glob("*.npz"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(folders, "read_image_array", no_decoding)
    again = folders.folder_dataset(root, size=(12, 12), channels=1, log=lines.append)
    np.testing.assert_array_equal(again.x, first.x)
    assert len(lines) == 1  # no second "decoding" line
    monkeypatch.undo()

    changed = next((root / "circle").iterdir())
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same content, newer mtime
    folders.folder_dataset(root, size=(12, 12), channels=1, log=lines.append)
    assert len(lines) == 2  # decoded again
    folders.folder_dataset(root, size=(10, 12), channels=1, log=lines.append)
    assert len(lines) == 3  # another size is another cache


def test_folder_errors_name_the_folder_and_every_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        folders.folder_splits(tmp_path / "nowhere")
    root = make_shape_folder(tmp_path / "shapes", per_class=2)
    (root / "cross" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"1 unreadable image file\(s\):\n  .*broken.png"):
        folders.folder_dataset(root, size=8, channels=1)


def test_stratified_split_keeps_every_class_in_proportion():
    labels = np.repeat([0, 1, 2], [50, 20, 10])
    train, val = folders.stratified_split(labels, 0.1, seed=3)
    assert np.bincount(labels[val]).tolist() == [5, 2, 1]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(80))
    again, _ = folders.stratified_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(train, again)


def test_image_channels_says_1_for_gray_pictures_and_3_for_colour(tmp_path):
    from PIL import Image

    for name, colour in (("gray", None), ("colour", (200, 10, 10))):
        (tmp_path / name / "k").mkdir(parents=True)
        picture = np.full((6, 6, 3), 90, np.uint8)
        if colour:
            picture[0, 0] = colour
        Image.fromarray(picture[..., 0] if colour is None else picture).save(tmp_path / name / "k" / "a.png")
    assert folders.image_channels(tmp_path / "gray") == 1 and folders.image_channels(tmp_path / "colour") == 3


# --- the whole project from the command line ---------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A shape-folder project with train/val/test folders and a model class of its own, trained once."""
    root = tmp_path_factory.mktemp("project")
    make_shape_folder(root / "shapes", per_class=24, splits=True)
    (root / "shape_models.py").write_text(MODEL_CODE)
    code = f"{root / 'shape_models.py'}:ShapeNet"
    status = main(["train", "--data", str(root / "shapes"), "--model-code", code, "--model-args", '{"width": 8}',
                   "--channels", "1", "--epochs", "15", "--lr", "0.02", "--out", str(root / "run"), "--no-progress"])
    assert status == 0
    return root, code


def test_a_custom_model_trains_on_an_image_folder_and_evaluates_on_the_untouched_test_split(project, capsys):
    root, code = project
    best = checkpoint.load(root / "run" / "best.npz")
    assert best.model_class == "ShapeNet" and best.classes == list(CLASSES) and best.input_size == [1, 16, 16]
    assert best.recipe["model_code"] == code and best.recipe["model_args"] == {"width": 8}
    assert best.recipe["data"] == str((root / "shapes").resolve()) and best.recipe["image_size"] == [16, 16]
    status, out, err = run_cli(capsys, "evaluate", root / "run" / "best.npz", "--data", root / "shapes",
                               "--model-code", code)
    assert status == 0, err
    assert f"on {root / 'shapes'} test: 24 images" in out
    accuracy = float(out.split("accuracy ")[1].split("%")[0])
    assert accuracy >= 90  # chance is 33%
    lines = out.splitlines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted class):")
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in lines[start + 2:start + 5]])
    assert matrix.sum(axis=1).tolist() == [8, 8, 8] and np.trace(matrix) == round(accuracy * 24 / 100)
    # precision, recall and F1 per class, as scikit-learn computes them from the same predictions
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rows, cols = np.nonzero(matrix)
    y_true, y_pred = np.repeat(rows, matrix[rows, cols]), np.repeat(cols, matrix[rows, cols])
    expected = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, labels=range(3), zero_division=0)
    for k, line in enumerate(lines[lines.index("per-class accuracy:") + 2:start]):
        precision, recall, f1 = (float(v) for v in line.split()[-3:])
        assert (precision, recall, f1) == pytest.approx([expected[0][k], expected[1][k], expected[2][k]], abs=6e-5)


def test_the_train_log_says_which_split_is_which(tmp_path, capsys):
    make_shape_folder(tmp_path / "one", per_class=10)  # one folder of classes: validation is held out
    status, out, err = run_cli(capsys, "train", "--data", tmp_path / "one", "--model", "simplecnn", "--epochs", "1",
                               "--out", tmp_path / "run", "--no-progress")
    assert status == 0, err
    assert "27 training, 3 validation and 0 test images, 3x28x28, 3 classes" in out
    assert "validation: 0.1 of train held out, stratified by class (seed 0); no test split" in out
    status, out, err = run_cli(capsys, "evaluate", tmp_path / "run" / "best.npz", "--data", tmp_path / "one")
    assert status == 0, err
    assert "no test/ folder: evaluating on the run's validation images" in out and "val: 3 images" in out


def test_a_users_model_needs_its_code_named_and_the_message_says_what_to_pass(project, capsys):
    root, code = project
    picture = next((root / "shapes" / "test" / "cross").iterdir())
    for command in (["evaluate", root / "run" / "best.npz", "--data", root / "shapes"],
                    ["predict", root / "run" / "best.npz", picture],
                    ["viz", root / "run" / "best.npz", "--out", root / "viz"],
                    ["summary", root / "run" / "best.npz"]):
        status, _, err = run_cli(capsys, *command)
        assert status == 1
        assert f"holds a ShapeNet model, which convnp.models does not list: pass the code that defines it, " \
               f"--model-code {code}" in err
    status, _, err = run_cli(capsys, "evaluate", root / "run" / "best.npz", "--model-code", code)
    assert status == 1 and f"give it again: --data {(root / 'shapes').resolve()}" in err


def test_predict_viz_and_summary_with_the_users_class(project, capsys):
    root, code = project
    pictures = [next((root / "shapes" / "test" / kind).glob(f"{kind}00{i}.*")) for i, kind in
                ((0, "circle"), (2, "cross"), (3, "stripes"))]  # an L, a 16-bit and a palette picture
    status, out, err = run_cli(capsys, "predict", root / "run" / "best.npz", *pictures, "--model-code", code)
    assert status == 0, err
    assert [line.split(": ")[1].split()[0] for line in out.splitlines()] == ["circle", "cross", "stripes"]
    status, out, err = run_cli(capsys, "viz", root / "run" / "best.npz", "--model-code", code, "--out", root / "viz",
                               "--image", pictures[1], "--what", "filters", "feature-maps", "curves")
    assert status == 0, err
    assert {p.name for p in (root / "viz").iterdir()} >= {"filters.png", "feature_maps.png", "training_curves.png"}
    status, out, err = run_cli(capsys, "summary", root / "run" / "best.npz", "--model-code", code)
    assert status == 0, err
    assert "ShapeNet" in out and "[1, 1, 16, 16]" in out
    trained = sum(int(np.prod(v.shape)) for v in checkpoint.load(root / "run" / "best.npz").model_state.values())
    assert f"Total params: {trained:,}" in out


def test_fine_tune_with_frozen_layers_then_resume_and_extend(project, capsys):
    root, code = project
    common = ("--data", root / "shapes", "--model-code", code, "--no-progress")
    status, out, err = run_cli(capsys, "train", *common, "--init-from", root / "run" / "best.npz", "--freeze",
                               "conv1", "--epochs", "2", "--scheduler", "none", "--lr", "0.005", "--out", root / "ft")
    assert status == 0, err
    assert "frozen: conv1 (80 parameters not trained)" in out
    start = checkpoint.load(root / "run" / "best.npz").model_state
    tuned = checkpoint.load(root / "ft" / "last.npz")
    np.testing.assert_array_equal(tuned.model_state["conv1.weight"], start["conv1.weight"])
    assert not np.array_equal(tuned.model_state["fc.weight"], start["fc.weight"])
    assert tuned.recipe["freeze"] == ["conv1"]
    # extend the finished run by two epochs: the frozen layer stays frozen, the history grows
    status, out, err = run_cli(capsys, "train", "--resume", "--out", root / "ft", *common, "--epochs", "4")
    assert status == 0, err
    assert "resuming from" in out and "epoch 3/4" in out and "epoch 1/4" not in out
    extended = checkpoint.load(root / "ft" / "last.npz")
    assert extended.epoch == 4 and extended.history["epoch"] == [1, 2, 3, 4]
    np.testing.assert_array_equal(extended.model_state["conv1.weight"], start["conv1.weight"])
    with open(root / "ft" / "history.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["val_loss"]) == pytest.approx(extended.history["val_loss"][-1], rel=1e-5)
    assert json.loads((root / "ft" / "history.json").read_text())["history"]["epoch"] == [1, 2, 3, 4]
    # resuming needs the folder and the code named again, and says so
    status, _, err = run_cli(capsys, "train", "--resume", "--out", root / "ft", "--model-code", code, "--epochs", "5")
    assert status == 1 and f"resume with --data {(root / 'shapes').resolve()}" in err
    status, _, err = run_cli(capsys, "train", "--resume", "--out", root / "ft", "--data", root / "shapes",
                             "--epochs", "5")
    assert status == 1 and f"resume with --model-code {code}" in err


def test_a_used_out_folder_is_refused_without_force_and_an_unwritable_one_before_training(project, tmp_path, capsys):
    root, code = project
    args = ("train", "--data", root / "shapes", "--model-code", code, "--epochs", "1", "--no-progress")
    status, _, err = run_cli(capsys, *args, "--out", root / "run")
    assert status == 1 and "holds another run (last.npz, best.npz, history.json, history.csv)" in err
    assert "--resume" in err and "--force" in err
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    status, out, err = run_cli(capsys, *args, "--out", blocked)
    assert status == 1 and "is a file, not a folder" in err and "epoch 1" not in out
    status, _, err = run_cli(capsys, *args, "--out", tmp_path / "again")
    assert status == 0, err
    status, _, err = run_cli(capsys, *args, "--out", tmp_path / "again", "--force")
    assert status == 0, err


def test_patience_stops_a_run_that_no_longer_improves(tmp_path, capsys):
    make_shape_folder(tmp_path / "shapes", per_class=10)
    status, out, err = run_cli(capsys, "train", "--data", tmp_path / "shapes", "--model", "simplecnn",
                               "--epochs", "30", "--patience", "2", "--lr", "1e-12", "--scheduler", "none",
                               "--out", tmp_path / "run", "--no-progress")
    assert status == 0, err
    history = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert checkpoint.load(tmp_path / "run" / "last.npz").epoch == len(history["epoch"])
    assert "early stopping: val_loss has not improved for 2 epoch(s)" in history["stop_reason"]
    assert len(history["epoch"]) < 30


def test_bad_flags_of_the_project_options_name_the_flag(tmp_path, capsys):
    for argv, expected in ((["--data", tmp_path, "--image-size", "0"], "argument --image-size: expected N or HxW"),
                           (["--model-args", "[1]"], "argument --model-args: expected a JSON object"),
                           (["--model-code", "nofile.py:Net"], "--model-code nofile.py: no such Python file"),
                           (["--freeze", "conv1"], "--freeze needs --init-from"),
                           (["--data", tmp_path / "nowhere"], "no such folder")):
        status, _, err = run_cli(capsys, "train", *argv, "--out", tmp_path / "out")
        assert status in (1, 2) and expected in err, (argv, err)


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
def test_extending_a_finished_run_replans_its_schedule_as_if_planned_for_the_longer_run(tmp_path, capsys, scheduler):
    make_shape_folder(tmp_path / "shapes", per_class=6)
    common = ("--data", tmp_path / "shapes", "--model", "simplecnn", "--scheduler", scheduler, "--batch-size", "8",
              "--no-progress")
    assert run_cli(capsys, "train", *common, "--epochs", "4", "--out", tmp_path / "straight")[0] == 0
    assert run_cli(capsys, "train", *common, "--epochs", "2", "--out", tmp_path / "short")[0] == 0
    status, out, err = run_cli(capsys, "train", "--resume", "--out", tmp_path / "short", "--data", tmp_path / "shapes",
                               "--epochs", "4", "--no-progress")
    assert status == 0, err
    assert "re-planned for 4, continuing from the current step" in out
    straight = checkpoint.load(tmp_path / "straight" / "last.npz").history["lr"]
    extended = checkpoint.load(tmp_path / "short" / "last.npz").history["lr"]
    assert len(extended) == 4
    np.testing.assert_allclose(extended[2:], straight[2:], rtol=1e-12)  # epochs 3 and 4 on the 4-epoch plan
    assert extended[1] != straight[1]  # epoch 2 ran on the 2-epoch plan


# --- augmentation policies ------------------------------------------------------------------------------------
def test_affine_sample_is_identity_rot90_and_an_exact_zoom_on_a_ramp():
    from convnp.data.transforms import affine_sample

    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 8, 8)).astype(np.float32)
    zeros, ones = np.zeros(3), np.ones(3)
    np.testing.assert_allclose(affine_sample(x, zeros, ones, zeros, zeros), x, atol=1e-6)
    turned = affine_sample(x, np.full(3, np.pi / 2), ones, zeros, zeros)
    np.testing.assert_allclose(turned, np.rot90(x, 1, axes=(2, 3)), atol=1e-5)
    ramp = np.tile(np.arange(8, dtype=np.float64), (1, 1, 8, 1))  # value = column index
    zoomed = affine_sample(ramp, np.zeros(1), np.full(1, 0.5), np.zeros(1), np.zeros(1))
    np.testing.assert_allclose(zoomed[0, 0, 3], 1.75 + np.arange(8) / 2)  # the central half, bilinear: exact
    moved = affine_sample(ramp, np.zeros(1), np.ones(1), np.full(1, 0.25), np.zeros(1))  # a quarter of -1..1
    np.testing.assert_allclose(moved[0, 0, 0], np.minimum(np.arange(8) + 1, 7))


def test_color_jitter_and_the_policies():
    from convnp.data.transforms import AUGMENT_POLICIES, ColorJitter, augment_policy

    rng = np.random.default_rng(1)
    x = rng.uniform(0.3, 0.7, (4, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(ColorJitter(0, 0)(x, rng), x)
    jittered = ColorJitter(0, 0.2)(x, rng)  # contrast only, no clipping at these values: the mean luma stays
    luma = lambda images: np.tensordot([0.299, 0.587, 0.114], images, axes=([0], [1])).mean(axis=(1, 2))
    np.testing.assert_allclose(luma(jittered), luma(x), atol=1e-6)
    assert not np.allclose(jittered, x)
    assert augment_policy("none") == [] and AUGMENT_POLICIES == ("none", "light", "standard")
    for name in ("light", "standard"):
        y = x
        for transform in augment_policy(name):
            y = transform(y, rng)
        assert y.shape == x.shape and y.dtype == x.dtype and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match="unknown augmentation 'heavy'"):
        augment_policy("heavy")


def test_augment_standard_on_the_command_line(tmp_path, capsys):
    make_shape_folder(tmp_path / "shapes", per_class=6)
    status, out, err = run_cli(capsys, "train", "--data", tmp_path / "shapes", "--model", "simplecnn", "--augment",
                               "standard", "--epochs", "1", "--out", tmp_path / "run", "--no-progress")
    assert status == 0, err
    assert "standard augmentation" in out
    assert checkpoint.load(tmp_path / "run" / "last.npz").recipe["augment_policy"] == "standard"
    status, _, err = run_cli(capsys, "train", "--augment", "heavy", "--out", tmp_path / "x")
    assert status == 2 and "argument --augment" in err


def test_log_tensorboard_writes_event_files_or_names_the_package(tmp_path, capsys):
    import importlib.util

    make_shape_folder(tmp_path / "shapes", per_class=4)
    status, out, err = run_cli(capsys, "train", "--data", tmp_path / "shapes", "--model", "simplecnn", "--epochs", "1",
                               "--log", "tensorboard", "--out", tmp_path / "run", "--no-progress")
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        assert status == 1 and "needs the tensorboard package: pip install tensorboard" in err
        assert not (tmp_path / "run" / "last.npz").exists()  # refused before training
    else:
        assert status == 0, err
        assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_without_tqdm_and_matplotlib_training_logs_lines_and_skips_the_png(tmp_path, capsys, monkeypatch):
    make_shape_folder(tmp_path / "shapes", per_class=4)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # importing them now raises ImportError
    monkeypatch.setitem(sys.modules, "convnp.inspect.viz", None)
    status, out, err = run_cli(capsys, "train", "--data", tmp_path / "shapes", "--model", "simplecnn", "--epochs", "2",
                               "--progress", "--out", tmp_path / "run")
    assert status == 0, err
    assert "epoch 1/2  loss" in out and "epoch 2/2  loss" in out
    assert "training_curves.png skipped: drawing it needs matplotlib (pip install 'convnp[tools]')" in out
    assert not (tmp_path / "run" / "training_curves.png").exists() and (tmp_path / "run" / "best.npz").exists()


# --- an nn.Sequential needs no code ----------------------------------------------------------------------------
def test_a_sequential_of_convnp_layers_is_stored_as_data_and_rebuilt_without_code(tmp_path, capsys):
    from convnp import nn
    from convnp.tensor import Tensor, no_grad

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                          nn.MaxPool2d(2), nn.Dropout(0.1), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    prep = {"dataset": None, "mean": [0.5], "std": [0.25], "input_size": [1, 8, 8], "classes": ["a", "b", "c"],
            "layout": {"box": None, "centre": None, "invert": "never", "fit": "crop"}}
    checkpoint.save(tmp_path / "seq.npz", model, preprocessing=prep)
    rebuilt, info = checkpoint.load_model(tmp_path / "seq.npz")
    assert [type(layer).__name__ for layer in rebuilt] == [type(layer).__name__ for layer in model]
    assert rebuilt[0].bias is None and rebuilt[2].negative_slope == 0.2 and rebuilt[0].padding == (1, 1)
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    model.eval()
    with no_grad():
        np.testing.assert_array_equal(rebuilt(Tensor(x)).data, model(Tensor(x)).data)
    from PIL import Image

    Image.fromarray((x[0, 0] * 255).astype(np.uint8)).save(tmp_path / "a.png")
    status, out, err = run_cli(capsys, "predict", tmp_path / "seq.npz", tmp_path / "a.png")
    assert status == 0, err
    assert out.startswith(f"{tmp_path / 'a.png'}: ")


@pytest.mark.parametrize("layers, fragment", [
    ([["Exec", {}]], "model.layers[0][0]: must be one of Conv2d"),
    ([["Linear", {"in_features": 64, "out_features": 3, "bias": "yes"}]], "model.layers[0][1].bias: must be true"),
    ([["Linear", {"in_features": 1 << 20, "out_features": 1 << 20, "bias": True}]], "model.layers[0][1].in_features"),
    ([["ReLU", {"inplace": True}]], "model.layers[0][1]"),
])
def test_a_tampered_sequential_structure_is_refused_naming_the_field(tmp_path, layers, fragment):
    import re

    from convnp import nn

    checkpoint.save(tmp_path / "seq.npz", nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    with np.load(tmp_path / "seq.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays[checkpoint.META_KEY].tobytes())
    assert meta["model"]["layers"] == [["Flatten", {"start_dim": 1, "end_dim": -1}],
                                       ["Linear", {"in_features": 64, "out_features": 3, "bias": True}]]
    meta["model"]["layers"] = layers
    arrays[checkpoint.META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(checkpoint.CheckpointError, match=re.escape(fragment)):
        checkpoint.load(tmp_path / "bad.npz")


def test_summary_verbose_prints_like_torchinfo_and_its_repr_is_the_table(capsys):
    import convnp
    from convnp.models import SimpleCNN

    result = convnp.summary(SimpleCNN(in_channels=3), (3, 28, 28))
    assert capsys.readouterr().out == ""
    assert repr(result) == str(result) and "[1, 3, 28, 28]" in str(result)
    convnp.summary(SimpleCNN(in_channels=3), (3, 28, 28), verbose=1)
    assert capsys.readouterr().out.strip() == str(result).strip()


def test_the_curves_gain_a_learning_rate_panel_when_the_history_has_lr(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from convnp.inspect.viz import plot_training_curves

    history = {"epoch": [1, 2, 3], "train_loss": [1.0, 0.6, 0.5], "train_accuracy": [0.5, 0.7, 0.8],
               "val_loss": [0.9, 0.7, 0.8], "val_accuracy": [0.6, 0.8, 0.7]}
    plot_training_curves(history, tmp_path / "two.png")
    plot_training_curves({**history, "lr": [0.001, 0.008, 0.002]}, tmp_path / "three.png")
    with Image.open(tmp_path / "two.png") as two, Image.open(tmp_path / "three.png") as three:
        assert three.size[0] == pytest.approx(1.5 * two.size[0], rel=0.02) and three.size[1] == two.size[1]


def test_viz_without_matplotlib_names_the_extra(tmp_path, capsys, monkeypatch):
    from convnp import nn

    checkpoint.save(tmp_path / "m.npz", nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    monkeypatch.setitem(sys.modules, "convnp.inspect.viz", None)
    status, _, err = run_cli(capsys, "viz", tmp_path / "m.npz", "--out", tmp_path / "figs")
    assert status == 1 and "drawing figures needs matplotlib" in err and "pip install 'convnp[tools]'" in err


# --- install and demo -----------------------------------------------------------------------------------------
def test_make_demo_installs_the_tools_extra_only_and_make_test_the_dev_extra():
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make")
    root = Path(__file__).resolve().parents[1]
    demo = subprocess.run(["make", "-n", "-B", "demo"], cwd=root, capture_output=True, text=True).stdout
    test = subprocess.run(["make", "-n", "-B", "test"], cwd=root, capture_output=True, text=True).stdout
    assert "-e '.[tools]'" in demo and "torch" not in demo and "[dev]" not in demo
    assert "-e '.[dev]'" in test and "torch==" in test


def test_the_demo_ends_with_the_data_folder_to_export_and_the_next_commands(monkeypatch, tmp_path):
    from convnp.demo import next_steps

    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "data"))
    text = next_steps(Path("runs/demo"), "mnist")
    assert f"export CONVNP_DATA={tmp_path / 'data'}" in text
    for command in ("convnp evaluate runs/demo/best.npz", "convnp predict runs/demo/best.npz",
                    "convnp viz runs/demo/best.npz --out runs/demo/viz", "convnp explore runs/demo/best.npz"):
        assert command in text


def test_the_package_license_is_an_spdx_string():
    import tomllib

    with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)
    assert project["project"]["license"] == "MIT"
    assert any(req.startswith("setuptools>=77") for req in project["build-system"]["requires"])


def test_dataset_folder_path_is_the_same_as_data(tmp_path, capsys):
    make_shape_folder(tmp_path / "shapes", per_class=4)
    status, out, err = run_cli(capsys, "train", "--dataset", f"folder:{tmp_path / 'shapes'}", "--model", "simplecnn",
                               "--epochs", "1", "--out", tmp_path / "run", "--no-progress")
    assert status == 0, err
    assert checkpoint.load(tmp_path / "run" / "last.npz").recipe["data"] == str((tmp_path / "shapes").resolve())


def test_model_code_by_module_path_and_its_errors(tmp_path, monkeypatch):
    from convnp.models.user_code import load_model_class

    (tmp_path / "my_shape_models.py").write_text(MODEL_CODE + "\nNOT_A_MODULE = 3\n")
    (tmp_path / "broken_models.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = load_model_class("my_shape_models:ShapeNet")
    assert cls.__name__ == "ShapeNet" and cls(width=4).fc.weight.shape == (3, 64)
    with pytest.raises(ValueError, match="has no nn.Module subclass named 'NOT_A_MODULE'"):
        load_model_class("my_shape_models:NOT_A_MODULE")
    with pytest.raises(ValueError, match="cannot import module no_such_models .*PYTHONPATH"):
        load_model_class("no_such_models:Net")
    with pytest.raises(ValueError, match="importing .*broken_models.py failed: RuntimeError: boom"):
        load_model_class(f"{tmp_path / 'broken_models.py'}:Net")
    with pytest.raises(ValueError, match="FILE.py:CLASS or MODULE:CLASS"):
        load_model_class("ShapeNet")


def test_early_stopping_restores_the_best_weights_when_asked():
    from types import SimpleNamespace

    from convnp import nn
    from convnp.train import EarlyStopping, StopTraining

    model = nn.Linear(2, 2)
    history = {"epoch": [], "val_loss": []}
    state = SimpleNamespace(model=model, history=history, epoch=0)
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    stopper.on_train_begin(state)
    weights = []
    for epoch, loss in enumerate([0.9, 0.5, 0.7, 0.8]):  # best after epoch 2, then two worse epochs
        model.weight.data = np.full((2, 2), float(epoch), dtype=np.float32)
        weights.append(model.weight.data.copy())
        history["epoch"].append(epoch + 1)
        history["val_loss"].append(loss)
        state.epoch = epoch
        try:
            stopper.on_epoch_end(state)
        except StopTraining as stop:
            assert "best 0.5000 at epoch 2" in str(stop) and epoch == 3
    stopper.on_train_end(state)
    np.testing.assert_array_equal(model.weight.data, weights[1])
    plain = EarlyStopping(patience=5)
    plain.on_train_begin(state)
    plain.on_train_end(state)
    np.testing.assert_array_equal(model.weight.data, weights[1])  # left alone without restore_best_weights
