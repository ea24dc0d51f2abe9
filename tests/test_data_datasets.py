"""Datasets from small files the tests write, scikit-learn's digits, and the procedural sets."""
import warnings

import numpy as np
import pytest

from convnp.data import (
    DATASET_NAMES,
    ArrayDataset,
    CorruptDataError,
    available_datasets,
    cifar10,
    digits,
    download as download_module,
    fashion_mnist,
    geometric_digits,
    image_folder,
    load_dataset,
    mnist,
    oriented_lines,
    oriented_lines_patterns,
    write_idx,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test here may reach the internet: every mirror points at a port nothing listens on."""
    for name in download_module.MIRRORS:
        monkeypatch.setitem(download_module.MIRRORS, name, ["http://127.0.0.1:9/"])


def write_fake_idx_dataset(folder, split, images, labels):
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


# --- MNIST-format files -------------------------------------------------------------------------

@pytest.mark.parametrize("loader, folder_name", [(mnist, "mnist"), (fashion_mnist, "fashion-mnist")])
def test_idx_datasets_from_a_fake_folder(tmp_path, monkeypatch, loader, folder_name):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = (np.arange(12) % 10).astype(np.uint8)
    write_fake_idx_dataset(tmp_path / folder_name, "test", images, labels)
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path))

    dataset = loader("test")
    assert dataset.x.shape == (12, 1, 28, 28) and dataset.x.dtype == np.float32
    assert dataset.y.dtype == np.int64 and dataset.num_classes == 10
    np.testing.assert_allclose(dataset.x[:, 0] * 255, images, atol=1e-4)
    assert dataset.x[0, 0, 0, 0] == 0.0 and dataset.x[0, 0, 0, 1] == 1.0
    np.testing.assert_array_equal(dataset.y, labels)
    x3, y3 = dataset[3]
    assert x3.shape == (1, 28, 28) and y3 == 3 and len(dataset) == 12


def test_fashion_mnist_class_names(tmp_path):
    images, labels = np.zeros((2, 28, 28), np.uint8), np.array([0, 9], np.uint8)
    write_fake_idx_dataset(tmp_path / "fashion-mnist", "train", images, labels)
    dataset = fashion_mnist("train", root=tmp_path)
    assert dataset.classes[0] == "T-shirt/top" and dataset.classes[9] == "Ankle boot"
    assert dataset.classes[dataset.y[1]] == "Ankle boot"


def test_mismatched_counts_name_both_files(tmp_path):
    write_fake_idx_dataset(tmp_path / "mnist", "train", np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(CorruptDataError, match="5 images .* 4 labels") as error:
        mnist("train", root=tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(error.value) and "train-labels-idx1-ubyte.gz" in str(error.value)


def test_label_out_of_range_names_label_file(tmp_path):
    images, labels = np.zeros((3, 28, 28), np.uint8), np.array([1, 10, 2], np.uint8)
    write_fake_idx_dataset(tmp_path / "mnist", "train", images, labels)
    with pytest.raises(CorruptDataError, match="label 10") as error:
        mnist("train", root=tmp_path)
    assert str(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz") in str(error.value)


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        mnist("validation", root=tmp_path)


# --- scikit-learn digits -----------------------------------------------------------------------

def test_digits_split_sizes_values_and_stratification():
    train, test = digits("train"), digits("test")
    assert len(train) + len(test) == 1797
    assert train.x.shape[1:] == (1, 8, 8)
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0 and train.x.max() == 1.0  # 16 / 16
    counts_all = np.bincount(np.concatenate([train.y, test.y]), minlength=10)
    np.testing.assert_array_equal(np.bincount(test.y, minlength=10), np.round(0.2 * counts_all))
    # The two splits are disjoint: no test image appears in train.
    train_rows = {row.tobytes() for row in train.x.reshape(len(train), -1)}
    duplicates_within_data = 1797 - len(train_rows | {r.tobytes() for r in test.x.reshape(len(test), -1)})
    overlap = sum(row.tobytes() in train_rows for row in test.x.reshape(len(test), -1))
    assert overlap <= duplicates_within_data  # only images that occur twice in the data itself


def test_digits_seed_controls_the_split():
    a, b, c = digits("test", seed=0), digits("test", seed=0), digits("test", seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_digits_upsampled_to_28_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    small, large = digits("train", size=8), digits("train", size=28)
    assert large.x.shape == (len(small), 1, 28, 28)
    assert 0.0 <= large.x.min() and large.x.max() <= 1.0
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(small.x[:50]), size=(28, 28), mode="bilinear", align_corners=False
    ).numpy()
    np.testing.assert_allclose(large.x[:50], expected, atol=1e-6)


# --- geometric digits --------------------------------------------------------------------------

def test_geometric_shapes_balance_and_noise_range():
    dataset = geometric_digits(n=205, seed=3)
    assert dataset.x.shape == (205, 1, 28, 28) and dataset.x.dtype == np.float32
    counts = np.bincount(dataset.y, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 205
    assert dataset.x.min() >= 0.0 and dataset.x.max() <= 1.0
    assert len(set(dataset.classes)) == 10


def test_geometric_is_deterministic_and_splits_differ():
    a, b = geometric_digits(n=50, seed=7, shift=2), geometric_digits(n=50, seed=7, shift=2)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, geometric_digits(n=50, seed=8, shift=2).x)
    assert not np.array_equal(a.x, geometric_digits("test", n=50, seed=7, shift=2).x)


def class_mean(dataset, name):
    return dataset.x[dataset.y == dataset.classes.index(name), 0].mean(axis=0)


def test_geometric_class_specific_facts():
    dataset = geometric_digits(n=200, seed=0)
    vertical, horizontal = class_mean(dataset, "vertical bar"), class_mean(dataset, "horizontal bar")
    centre_columns, centre_rows = slice(12, 16), slice(12, 16)
    outer_columns = np.r_[0:8, 20:28]
    assert vertical[:, centre_columns].mean() > 0.45 > 0.2 > horizontal[:, centre_columns].mean()
    assert vertical[:, outer_columns].mean() < 0.05 < horizontal[:, outer_columns].mean()
    assert horizontal[centre_rows, :].mean() > 0.45 > vertical[centre_rows, :].mean()

    ring = class_mean(dataset, "ring")
    assert ring[11:17, 11:17].mean() < 0.05  # empty middle: noise only
    assert ring[13:15, 3:6].mean() > 0.9     # the rim crosses the centre rows at x = -10.5..-8.5
    assert ring[13:15, 2].mean() < 0.05      # column 2 (x = -11.5) lies outside radius 11

    diagonal = class_mean(dataset, "diagonal band")
    assert np.diag(diagonal)[5:23].mean() > 0.9 and np.diag(diagonal[:, ::-1])[5:11].mean() < 0.1

    triangle = class_mean(dataset, "triangle")
    assert triangle[18:23].sum() > 2 * triangle[5:10].sum()  # wide base at the bottom, apex on top

    dot, diamond = class_mean(dataset, "dot"), class_mean(dataset, "diamond")
    assert dot.sum() < diamond.sum() / 3
    assert dot[11:17, 11:17].mean() > 0.9 and diamond[13:15, 13:15].mean() > 0.9

    square = class_mean(dataset, "square outline")
    assert square[13:15, 13:15].mean() < 0.05 and square[5, 8:20].mean() > 0.9


def test_geometric_shift_moves_the_shape():
    still = geometric_digits(n=100, seed=0, shift=0)
    moved = geometric_digits(n=100, seed=0, shift=3)
    dots = moved.x[moved.y == moved.classes.index("dot"), 0]
    # Centre of mass of each dot: with no shift at (13.5, 13.5); with shift=3 within 3 pixels of it.
    rows = (dots.sum(axis=2) * np.arange(28)).sum(axis=1) / dots.sum(axis=(1, 2))
    assert np.abs(rows - 13.5).max() <= 3.6 and np.abs(rows - 13.5).max() >= 0.9
    still_dots = still.x[still.y == still.classes.index("dot"), 0]
    still_rows = (still_dots.sum(axis=2) * np.arange(28)).sum(axis=1) / still_dots.sum(axis=(1, 2))
    assert np.abs(still_rows - 13.5).max() < 0.5


# --- oriented lines ----------------------------------------------------------------------------

def test_oriented_lines_patterns():
    vertical, horizontal, diagonal = oriented_lines_patterns()
    np.testing.assert_array_equal(vertical.sum(axis=0), [0, 0, 0, 8, 8, 0, 0, 0])
    np.testing.assert_array_equal(horizontal, vertical.T)
    np.testing.assert_array_equal(np.diag(diagonal), np.ones(8))
    assert np.allclose(np.diag(diagonal, 1), 0.4) and np.allclose(np.diag(diagonal, -1), 0.4)
    assert diagonal.sum() == pytest.approx(8 + 0.4 * 14)


def test_oriented_lines_shapes_range_split_and_seed():
    train, val = oriented_lines("train", n=300, seed=4), oriented_lines("val", n=300, seed=4)
    assert train.x.shape == (240, 1, 8, 8) and val.x.shape == (60, 1, 8, 8)
    assert train.classes == ["vertical", "horizontal", "diagonal"]
    assert train.x.min() == 0.0 and train.x.max() == 1.0  # noise clipped at both ends
    np.testing.assert_array_equal(oriented_lines("train", n=300, seed=4).x, train.x)
    np.testing.assert_array_equal(oriented_lines("test", n=300, seed=4).x, val.x)
    assert not np.array_equal(oriented_lines("train", n=300, seed=5).x, train.x)


def test_oriented_lines_are_rolled_noisy_patterns():
    dataset = oriented_lines("train", n=600, val_fraction=0.0, seed=0)
    patterns = oriented_lines_patterns()
    # Each image is nearest to one of the 25 rolls of its own class pattern; the residual is the noise.
    rolls = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    candidates = np.array([[np.roll(p, roll, axis=(0, 1)) for roll in rolls] for p in patterns])  # (3, 25, 8, 8)
    errors = ((dataset.x[:, 0, None, None] - candidates[None]) ** 2).sum(axis=(-2, -1))  # (N, 3, 25)
    assert (errors.min(axis=2).argmin(axis=1) == dataset.y).mean() > 0.98
    own = errors[np.arange(len(dataset)), dataset.y].min(axis=1)
    # sigma 0.15 clipped to [0, 1]: per-pixel mean squared error a little under 0.15**2.
    assert 0.010 < own.mean() / 64 < 0.0225


# --- image folders -----------------------------------------------------------------------------

@pytest.fixture
def image_tree(tmp_path):
    """root/cat: 2 PNGs (grayscale and RGB, different sizes); root/dog: 1 JPEG."""
    from PIL import Image

    root = tmp_path / "pets"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    white_left = np.zeros((40, 30), np.uint8)
    white_left[:, :15] = 255
    Image.fromarray(white_left, mode="L").save(root / "cat" / "a.png")
    red = np.zeros((10, 12, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red, mode="RGB").save(root / "cat" / "b.PNG")
    Image.fromarray(np.full((28, 28, 3), 128, np.uint8), mode="RGB").save(root / "dog" / "c.jpg", quality=95)
    (root / "dog" / "notes.txt").write_text("not an image, ignored")
    return root


def test_image_folder_grayscale(image_tree):
    dataset = image_folder(image_tree, size=(20, 16), mode="L")
    assert dataset.classes == ["cat", "dog"]
    assert dataset.x.shape == (3, 1, 20, 16) and dataset.y.tolist() == [0, 0, 1]
    cat = dataset.x[0, 0]
    assert cat[:, :6].min() == 1.0 and cat[:, 10:].max() == 0.0   # white left half survives resizing
    red_as_gray = 0.299  # Pillow's L = 299/1000 R + 587/1000 G + 114/1000 B
    assert abs(dataset.x[1].mean() - red_as_gray) < 0.01
    assert abs(dataset.x[2].mean() - 128 / 255) < 0.02


def test_image_folder_rgb(image_tree):
    dataset = image_folder(image_tree, size=(28, 28), mode="RGB")
    assert dataset.x.shape == (3, 3, 28, 28)
    red = dataset.x[1]
    np.testing.assert_allclose(red.mean(axis=(1, 2)), [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(dataset.x[0].mean(axis=(1, 2)), [0.5, 0.5, 0.5], atol=0.02)  # gray repeated


def test_image_folder_reports_every_unreadable_file(image_tree):
    (image_tree / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    (image_tree / "dog" / "empty.jpg").write_bytes(b"")
    with pytest.raises(CorruptDataError, match="2 unreadable") as error:
        image_folder(image_tree)
    assert str(image_tree / "cat" / "broken.png") in str(error.value)
    assert str(image_tree / "dog" / "empty.jpg") in str(error.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = image_folder(image_tree, skip_bad=True)
    assert len(dataset) == 3 and "broken.png" in str(caught[0].message)


def test_image_folder_empty_and_missing(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders"):
        image_folder(tmp_path)
    (tmp_path / "only_class").mkdir()
    with pytest.raises(ValueError, match="only_class: no image files"):
        image_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        image_folder(tmp_path / "nowhere")


# --- CIFAR-10 binary files ---------------------------------------------------------------------

def write_cifar_batch(path, labels, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], images.reshape(len(labels), -1)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.tobytes())
    return images


def test_cifar10_reads_records(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    expected_images, expected_labels = [], []
    for i in range(1, 6):
        labels = [(i + k) % 10 for k in range(i)]  # batches of different lengths
        expected_images.append(write_cifar_batch(folder / f"data_batch_{i}.bin", labels, seed=i))
        expected_labels += labels
    train = cifar10("train", root=tmp_path)
    assert train.x.shape == (15, 3, 32, 32) and train.classes[0] == "airplane" and train.classes[9] == "truck"
    np.testing.assert_array_equal(train.y, expected_labels)
    np.testing.assert_allclose(train.x * 255, np.concatenate(expected_images), atol=1e-4)
    # Record layout: byte 1 of a record is the red value of pixel (0, 0), byte 1025 its green.
    raw = (folder / "data_batch_1.bin").read_bytes()
    assert round(train.x[0, 0, 0, 0] * 255) == raw[1] and round(train.x[0, 1, 0, 0] * 255) == raw[1025]


def test_cifar10_bad_size_and_bad_label(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_batch(folder / "test_batch.bin", [1, 2], seed=0)
    with open(folder / "test_batch.bin", "ab") as file:
        file.write(b"\x00" * 10)
    with pytest.raises(CorruptDataError, match="6156 bytes is not a positive multiple of 3073") as error:
        cifar10("test", root=tmp_path)
    assert str(folder / "test_batch.bin") in str(error.value)
    write_cifar_batch(folder / "test_batch.bin", [1, 12], seed=0)
    with pytest.raises(CorruptDataError, match="record 1 has label 12"):
        cifar10("test", root=tmp_path)


def test_cifar10_missing_files_say_where(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        cifar10("test", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-bin" / "test_batch.bin") in str(error.value)
    assert "cifar-10-binary.tar.gz" in str(error.value)


# --- load_dataset / available_datasets ---------------------------------------------------------

def test_load_dataset_dispatches_by_name(tmp_path):
    assert load_dataset("geometric", "train", n=20).x.shape == (20, 1, 28, 28)
    assert load_dataset("lines", "test", n=30).x.shape == (6, 1, 8, 8)
    assert load_dataset("digits", "test").name == "digits-test"
    write_fake_idx_dataset(tmp_path / "mnist", "train", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8))
    assert len(load_dataset("mnist", "train", root=tmp_path)) == 2
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*mnist"):
        load_dataset("imagenet")


def test_available_datasets_reports_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path))
    write_fake_idx_dataset(tmp_path / "mnist", "train", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8))
    write_fake_idx_dataset(tmp_path / "mnist", "test", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8))
    statuses = {status.name: status for status in available_datasets()}
    assert set(statuses) == set(DATASET_NAMES)
    assert statuses["mnist"].available and statuses["mnist"].location == str(tmp_path / "mnist")
    fashion = statuses["fashion-mnist"]
    assert not fashion.available and str(tmp_path / "fashion-mnist") in fashion.how_to_get
    assert "t10k-labels-idx1-ubyte.gz" in fashion.how_to_get
    assert statuses["geometric"].available and statuses["lines"].available
    assert not statuses["cifar10"].available and "cifar-10-binary" in statuses["cifar10"].how_to_get


def test_array_dataset_checks_its_arrays():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ArrayDataset(np.zeros((3, 28, 28)), np.zeros(3), ["a"], name="flat")
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        ArrayDataset(np.zeros((2, 1, 2, 2)), [0, 2], ["a", "b"])
