"""Issue 17: loads all-or-nothing and bounded, run folders locked, atomic writes, no silent wrong answers."""
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import bad_files
import convnp
from convnp import checkpoint, cli, files, functional as F, models, nn, optim, recipes
from convnp.checkpoint import CheckpointError
from convnp.data import ArrayDataset, CorruptDataError, DataLoader, read_idx
from convnp.data.images import ImageError, open_image_checked
from convnp.predict import BlankImageWarning, predict_arrays, preprocess
from convnp.tensor import Tensor
from convnp.train import evaluate, fit

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return bad_files.good_checkpoint(tmp_path_factory.mktemp("run") / "run")


def _peak_bytes(function):
    """Peak Python + NumPy allocation (tracemalloc sees NumPy's buffers) while ``function`` runs."""
    tracemalloc.start()
    try:
        function()
    except (ValueError, OSError):
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# --- load_state_dict: everything or nothing ------------------------------------------------------------------
@pytest.mark.parametrize("bad_value, fragment", [(np.zeros((3,), np.complex64), "dtype complex64"),
                                                 (np.array(["a", "b", "c"]), "dtype <U1"),
                                                 (np.ones(3, bool), "dtype bool"),
                                                 (np.zeros(4, np.float32), "shape (4,)")])
def test_load_state_dict_loads_everything_or_nothing(bad_value, fragment):
    model = models.TinyCNN(num_classes=3)
    before = model.state_dict()
    state = {key: np.full_like(value, 7) for key, value in before.items()}
    last_key = list(state)[-1]  # the LAST key is bad: the earlier ones must not have been assigned
    assert state[last_key].shape == (3,)
    state[last_key] = bad_value
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_load_state_dict_still_takes_torch_tensors_and_integers():
    model = nn.Linear(2, 3)
    model.load_state_dict({"weight": torch.ones(3, 2, requires_grad=True), "bias": np.arange(3)})
    assert model.weight.data.dtype == np.float32 and model.bias.data.tolist() == [0, 1, 2]


# --- restore checks what a file may set --------------------------------------------------------------------------
def _rewrite(path, out, change):
    meta, members = bad_files.read_archive(path)
    change(meta)
    return bad_files.write_archive(out, meta, list(members.items()))


def _fresh(info):
    recipe = recipes.Recipe.from_dict(info.recipe)
    model = recipes.build_model(recipe, info.preprocessing)
    optimizer = recipes.build_optimizer(recipe, model)
    scheduler, _ = recipes.build_scheduler(recipe, optimizer, 2)
    return model, optimizer, scheduler


def test_restore_refuses_scheduler_attributes_it_does_not_have(good, tmp_path):
    path = _rewrite(good, tmp_path / "x.npz", lambda m: m["scheduler"]["state"].update(forward="evil"))
    info = checkpoint.load(path)
    model, optimizer, scheduler = _fresh(info)
    with pytest.raises(CheckpointError, match=r"x\.npz: its scheduler state has key\(s\) forward"):
        checkpoint.restore(info, model, optimizer, scheduler)
    assert not hasattr(scheduler, "forward")


def test_restore_refuses_optimizer_hyperparameters_of_the_wrong_kind(good, tmp_path):
    def change(meta):
        meta["optimizer"]["state"]["param_groups"][0]["betas"] = "fast"

    info = checkpoint.load(_rewrite(good, tmp_path / "betas.npz", change))
    model, optimizer, scheduler = _fresh(info)
    betas = optimizer.param_groups[0]["betas"]
    with pytest.raises(CheckpointError, match=r"betas\.npz: optimizer\.state\.param_groups\[0\]\.betas is 'fast'"):
        checkpoint.restore(info, model, optimizer, scheduler)
    assert optimizer.param_groups[0]["betas"] == betas


# --- bounded memory --------------------------------------------------------------------------------------------
def test_crafted_checkpoints_are_refused_before_allocating(good, tmp_path):
    corpus = {bad.path.name: bad.path for bad in bad_files.checkpoint_corpus(tmp_path / "c", good)}
    for name in ("header-lies.npz", "bomb.npz"):  # 4 TB declared; 64 MiB behind a 64 KB member
        assert _peak_bytes(lambda name=name: checkpoint.load(corpus[name])) < 8 << 20, name


def test_the_total_size_of_a_checkpoint_is_capped(good, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="members would take more than 1,000 bytes"):
        checkpoint.load(good)


def test_model_arguments_from_a_file_are_bounded(good, tmp_path):
    def change(meta):
        meta["model"] = {"name": "mlp", "class": "MLP", "args": {"in_features": 1 << 20, "hidden": [1 << 20],
                                                                  "num_classes": 3}}
    path = _rewrite(good, tmp_path / "mlp.npz", change)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"mlp\.npz: model\.args\.in_features: is 1048576, which is no axis "
                                              r"length of the stored weights"):
        checkpoint.load_model(path)
    assert time.perf_counter() - start < 5  # refused from the metadata, not after building a 4 TB model
    from convnp.checkpoint_schema import SchemaError, check_model

    with pytest.raises(SchemaError, match=r"model\.args: asks for layers of up to 1048576 x 1048576"):
        check_model({"name": "mlp", "class": "MLP", "args": {"in_features": 1 << 20, "hidden": [1 << 20]}})


def test_an_idx_gzip_bomb_is_read_only_up_to_its_declared_size(tmp_path):
    bomb = next(bad.path for bad in bad_files.idx_corpus(tmp_path) if bad.path.name == "bomb.gz")
    assert bomb.stat().st_size < 100_000  # 48 MiB of zeros behind a 10x28x28 header
    assert _peak_bytes(lambda: read_idx(bomb)) < 2 << 20
    huge = next(bad.path for bad in bad_files.idx_corpus(tmp_path / "2") if bad.path.name == "huge-header.gz")
    assert _peak_bytes(lambda: read_idx(huge)) < 1 << 20


def test_a_20000x20000_png_is_refused_quickly_and_cheaply(tmp_path):
    bomb = next(bad.path for bad in bad_files.image_corpus(tmp_path) if bad.path.name.startswith("huge"))
    start = time.perf_counter()
    with pytest.raises(ImageError, match="huge-20000x20000.png"):
        open_image_checked(bomb)
    assert time.perf_counter() - start < 2
    assert _peak_bytes(lambda: open_image_checked(bomb)) < 8 << 20


def test_the_pixel_cap_is_ours_not_only_pillows(tmp_path, monkeypatch):
    from PIL import Image

    from convnp.data import images

    Image.new("L", (300, 200)).save(tmp_path / "wide.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 50_000)
    with pytest.raises(ImageError, match=r"wide\.png: a 300x200 image is refused \(at most 50,000 pixels\)"):
        open_image_checked(tmp_path / "wide.png")


# --- no silent wrong answers -----------------------------------------------------------------------------------
def test_a_zero_std_gives_an_error_not_an_answer(good, tmp_path):
    model, info = checkpoint.load_model(good)
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    prep = dict(info.preprocessing, std=[0.0])  # given through the API: it reaches the model as inf
    with np.errstate(all="ignore"):
        x = preprocess(tmp_path / "p.png", prep)[None]
    with pytest.raises(ValueError, match="the model's outputs are not finite"):
        predict_arrays(model, x, info.classes)


def test_a_blank_picture_gets_a_warning(good, tmp_path):
    from PIL import Image

    _, info = checkpoint.load_model(good)
    Image.new("RGB", (30, 20), (40, 90, 200)).save(tmp_path / "blue.png")
    with pytest.warns(BlankImageWarning, match=r"blue\.png: the picture is blank"):
        preprocess(tmp_path / "blue.png", info.preprocessing)


def test_empty_class_lists_and_datasets_are_errors(tmp_path):
    with pytest.raises(ValueError, match="the class list is empty"):
        ArrayDataset(np.zeros((2, 1, 4, 4)), [0, 0], [])
    with pytest.raises(TypeError, match="complex"):
        ArrayDataset(np.zeros((2, 1, 4, 4), complex), [0, 0], ["a"])
    model = models.TinyCNN(num_classes=3)
    empty = DataLoader((np.zeros((0, 1, 8, 8)), np.zeros(0)), 4)
    with pytest.raises(ValueError, match="yielded no batches"):
        fit(model, empty, optimizer=optim.SGD(model.parameters(), lr=0.1), log=None, progress=False)
    with pytest.raises(ValueError, match="yielded no batches"):
        evaluate(model, empty)
    from convnp.data import datasets, write_idx

    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.gz: holds no images"):
        datasets.mnist("train", root=tmp_path, download=False)


# --- the Python API ------------------------------------------------------------------------------------------------
def test_an_empty_batch_goes_through_a_convolution_like_pytorch():
    convnp.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, padding=1)
    x = Tensor(np.zeros((0, 2, 5, 5), np.float32), requires_grad=True)
    y = layer(x)
    F.cross_entropy(nn.Linear(75, 4)(F.flatten(y, 1)), np.zeros(0, np.int64), reduction="sum").backward()
    t_layer = torch.nn.Conv2d(2, 3, 3, padding=1)
    t_x = torch.zeros((0, 2, 5, 5), requires_grad=True)
    t_layer(t_x).sum().backward()
    assert y.shape == tuple(t_layer(t_x).shape) == (0, 3, 5, 5)
    assert x.grad.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(layer.weight.grad, t_layer.weight.grad.numpy())  # zeros
    with pytest.raises(ValueError, match="the batch is empty, so its mean loss is undefined"):
        F.cross_entropy(Tensor(np.zeros((0, 4), np.float32)), np.zeros(0, np.int64))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, "<U2", object])
def test_complex_and_string_inputs_are_refused_at_the_door(dtype):
    x = np.zeros((1, 1, 4, 4), dtype=dtype)
    for call in (lambda: nn.Conv2d(1, 2, 3)(Tensor(x)), lambda: F.relu(x), lambda: nn.Linear(16, 2)(F.flatten(x, 1)),
                 lambda: F.max_pool2d(x, 2)):
        with pytest.raises(TypeError, match="convnp ops take real numbers"):
            call()


@pytest.mark.parametrize("batch_size", [2.5, "3", True, None])
def test_data_loader_rejects_a_non_integer_batch_size(batch_size):
    with pytest.raises(TypeError, match="batch_size must be a whole number"):
        DataLoader((np.zeros((4, 1, 2, 2)), np.zeros(4)), batch_size)
    assert len(DataLoader((np.zeros((4, 1, 2, 2)), np.zeros(4)), np.int64(3))) == 2


# --- regular files only --------------------------------------------------------------------------------------------
def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # Opening a FIFO for reading blocks until a writer comes: these calls return at once only if they stat first.
    for call, error in ((checkpoint.load, CheckpointError), (open_image_checked, ImageError),
                        (read_idx, CorruptDataError)):
        start = time.perf_counter()
        with pytest.raises(error, match=r"pipe is a named pipe \(FIFO\), not a regular"):
            call(fifo)
        assert time.perf_counter() - start < 1


# --- run folders -------------------------------------------------------------------------------------------------
def _holder_process(folder):
    """A live process holding ``folder``'s lock until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from convnp.files import RunLock
        lock = RunLock({str(folder)!r}).acquire()
        print("locked", flush=True)
        sys.stdin.read()
        lock.release()
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(SRC)})
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_training_into_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holder_process(out)
    try:
        status = cli.main(["train", "--dataset", "lines", "--epochs", "1", "--out", str(out)])
        err = capsys.readouterr().err
        assert status == 1
        assert f"{out} is in use by another convnp run (pid {holder.pid}" in err and "\n" not in err.strip()
        assert not (out / "last.npz").exists()
    finally:
        holder.communicate("")
    assert not (out / files.LOCK_NAME).exists()  # released by its holder


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_stale_temporaries_removed(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / files.LOCK_NAME).write_text(dead.stdout)
    (out / ".last.npz.k2j3h4.tmp").write_bytes(b"half a checkpoint")
    (out / ".history.json.x8y9.tmp").write_text('{"hist')
    (out / "notes.txt").write_text("mine")
    status = cli.main(["train", "--dataset", "lines", "--epochs", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "removed 2 temporary file(s) an interrupted write left" in printed
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "history.csv", "history.json", "last.npz",
                                                     "notes.txt", "training_curves.png"]


def test_history_is_written_atomically_and_a_write_error_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    path.write_text('{"old": true}')

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match=r"cannot write .*history\.json: No space left on device"):
        recipes.write_history(path, {"epoch": [1]}, recipes.Recipe(), {})
    assert json.loads(path.read_text()) == {"old": True}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]  # and no temporary left


def test_resuming_a_step_schedule_with_more_epochs_says_what_it_does(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--dataset", "lines", "--scheduler", "step", "--epochs", "3", "--out", out]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", out, "--resume", "--epochs", "4"]) == 0
    printed = capsys.readouterr().out
    assert ("the step schedule keeps its step size of 1 epoch(s) from the 3-epoch plan: the lr is divided by 10 "
            "every 1 epochs up to epoch 4") in printed
    history = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    lrs = history["lr"]
    assert len(lrs) == 4 and np.allclose(np.array(lrs[1:]) / np.array(lrs[:-1]), 0.1)  # as announced


def test_save_refuses_what_load_would_refuse(tmp_path):
    model = models.TinyCNN(num_classes=3)
    for preprocessing, fragment in (({"classes": []}, "preprocessing.classes: must have 1.."),
                                    ({"std": [0.0]}, r"preprocessing.std\[0\]: must be > 0"),
                                    ({"notes": "x"}, r"preprocessing: unknown key\(s\) notes")):
        with pytest.raises(ValueError, match=fr"save .*bad\.npz: {fragment}"):
            checkpoint.save(tmp_path / "bad.npz", model, preprocessing=preprocessing)
    with pytest.raises(ValueError, match=r"arrays/0: holds dtype <U1"):
        checkpoint.save(tmp_path / "bad.npz", model, labels=np.array(["a", "b"]))
    assert list(tmp_path.iterdir()) == []  # nothing written
