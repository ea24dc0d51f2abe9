"""A corpus of bad files (tests/bad_files.py, made in tmp_path) through the API and through the CLI.

Every entry must end in convnp's own error whose one-line message names the file and says what is wrong;
through the command line: a non-zero exit status, one line on stderr, no traceback, and no file changed.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import bad_files
from convnp import checkpoint, cli
from convnp.checkpoint import CheckpointError
from convnp.data import CorruptDataError, DataLoader, read_idx, write_idx
from convnp.data.images import ImageError, open_image_checked
from convnp.predict import BlankImageWarning, predict_arrays, predict_files
from convnp.train import evaluate

SRC = Path(__file__).resolve().parents[1] / "src"
MNIST_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good = bad_files.good_checkpoint(root / "run")
    return SimpleNamespace(root=root, good=good,
                           checkpoints=bad_files.checkpoint_corpus(root / "checkpoints", good),
                           images=bad_files.image_corpus(root / "images"),
                           idx=bad_files.idx_corpus(root / "idx"))


def _fingerprint(folder):
    """{path: sha256 of a regular file, or its kind} of everything under ``folder``."""
    result = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_fifo() or path.is_dir():
            result[str(path)] = "fifo" if path.is_fifo() else "dir"
        else:
            result[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def _assert_one_line(message, bad):
    assert "\n" not in message.strip(), message
    assert str(bad.path) in message, message
    assert bad.fragment in message, (bad.fragment, message)


def test_the_corpus_covers_each_class_of_bad_input(corpus):
    sizes = {kind: len(getattr(corpus, kind)) for kind in ("checkpoints", "images", "idx")}
    assert sizes["checkpoints"] >= 60 and sizes["images"] >= 9 and sizes["idx"] >= 9, sizes
    biggest = max(p.stat().st_size for p in corpus.root.rglob("*") if p.is_file())
    assert biggest < 1 << 20  # small files only (the bombs are small on disk)
    print(f"bad-input corpus: {sum(sizes.values())} files ({sizes}), the largest {biggest:,} bytes")


# --- the API -------------------------------------------------------------------------------------------------
def test_bad_checkpoints_through_the_api(corpus):
    for bad in corpus.checkpoints:
        if bad.stage == "load":
            with pytest.raises(CheckpointError) as caught:
                checkpoint.load_model(bad.path)
            _assert_one_line(str(caught.value), bad)
        else:  # it loads, but answers are not finite: an error, never '0 <0.1%'
            model, info = checkpoint.load_model(bad.path)
            x = np.zeros((2, *info.input_size), np.float32)
            with pytest.raises(ValueError) as caught:
                predict_arrays(model, x, info.classes, where=str(bad.path))
            _assert_one_line(str(caught.value), bad)
            with pytest.raises(ValueError, match="not finite"):
                evaluate(model, DataLoader((x, np.zeros(2, np.int64)), 2))


def test_bad_images_through_the_api(corpus):
    model, info = checkpoint.load_model(corpus.good)
    for bad in corpus.images:
        if bad.stage == "warn":
            with pytest.warns(BlankImageWarning) as caught:
                predict_files(model, info, [bad.path])
            _assert_one_line(str(caught[0].message), bad)
            continue
        with pytest.raises(ImageError) as caught:
            open_image_checked(bad.path)
        _assert_one_line(str(caught.value), bad)


def test_bad_idx_files_through_the_api(corpus):
    for bad in corpus.idx:
        with pytest.raises(CorruptDataError) as caught:
            read_idx(bad.path)
        _assert_one_line(str(caught.value), bad)


# --- the CLI, in this process (every entry) -------------------------------------------------------------------
def _run_cli(argv, capsys):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_bad_checkpoints_through_the_cli(corpus, capsys):
    before = _fingerprint(corpus.root)
    for bad in corpus.checkpoints:
        for argv in (["evaluate", bad.path], ["predict", bad.path, corpus.images[0].path.parent / "good.png"]):
            status, _, err = _run_cli(argv, capsys)
            assert status == 1, (argv, err)
            assert "Traceback" not in err
            _assert_one_line(err, bad)
    assert _fingerprint(corpus.root) == before  # nothing damaged, nothing half-written


def test_bad_images_through_the_cli(corpus, capsys):
    before = _fingerprint(corpus.root)
    for bad in corpus.images:
        status, out, err = _run_cli(["predict", corpus.good, bad.path], capsys)
        assert "Traceback" not in err
        if bad.stage == "warn":
            assert status == 0 and f"{bad.path}: " in out
            assert err.startswith("convnp predict: warning: ")
        else:
            assert status == 1, err
        _assert_one_line(err, bad)
    assert _fingerprint(corpus.root) == before


def _mnist_folder(root, bad_path, name):
    """A data folder whose MNIST file ``name`` is ``bad_path`` (a link to it) and the rest valid."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    os.symlink(bad_path, folder / name)
    return root


def test_bad_idx_files_through_the_cli(corpus, capsys, monkeypatch, tmp_path):
    before = _fingerprint(corpus.idx[0].path.parent)
    for i, bad in enumerate(corpus.idx):
        data = _mnist_folder(tmp_path / f"data{i}", bad.path, "train-images-idx3-ubyte.gz")
        monkeypatch.setenv("CONVNP_DATA", str(data))
        status, _, err = _run_cli(["train", "--dataset", "mnist", "--epochs", "1", "--out", tmp_path / f"out{i}"],
                                  capsys)
        assert status == 1, err
        assert "Traceback" not in err
        assert str(data / "mnist" / "train-images-idx3-ubyte.gz") in err and bad.fragment in err, err
        assert "\n" not in err.strip()
    assert _fingerprint(corpus.idx[0].path.parent) == before


# --- the CLI, as real processes (a sample of each class) -------------------------------------------------------
def test_a_sample_through_real_processes(corpus, tmp_path):
    by_name = {bad.path.name: bad for bad in corpus.checkpoints + corpus.images}
    runs = [(["evaluate", by_name[name].path], by_name[name])
            for name in ("random.npz", "fifo.npz", "bomb.npz", "header-lies.npz", "std-zero.npz", "inf-weights.npz",
                         "recipe-root.npz", "nan-weights.npz", "weights-complex64.npz")]
    runs += [(["predict", corpus.good, by_name[name].path], by_name[name])
             for name in ("huge-20000x20000.png", "fifo.png", "truncated.png")]
    env = {**os.environ, "PYTHONPATH": str(SRC), "CONVNP_DEBUG": ""}
    processes = [(subprocess.Popen([sys.executable, "-m", "convnp", *map(str, argv)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env), bad) for argv, bad in runs]
    for process, bad in processes:
        _, err = process.communicate(timeout=120)  # a FIFO that was opened would hang here
        assert process.returncode == 1, err
        assert "Traceback" not in err
        _assert_one_line(err, bad)
