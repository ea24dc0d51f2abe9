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
        # JPEG (CMYK, EXIF) blurs the edge a little; the halves stay white and black
        tolerance = 0.06 if paths[mode].suffix == ".jpg" else 0.005
        assert np.abs(x[:, :, :13] - 1).max() < tolerance and np.abs(x[:, :, 17:]).max() < tolerance, mode


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
                   "--channels", "1", "--epochs", "12", "--lr", "0.02", "--out", str(root / "run"), "--no-progress"])
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
        assert f"holds a ShapeNet model, which is not one of convnp's models: pass the code that defines it, " \
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
