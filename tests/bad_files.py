"""Bad files made on the spot: a corpus of broken, crafted and unusual checkpoints, images and IDX files.

Each corpus entry is ``Bad(path, fragment, stage)``: loading ``path`` must fail with convnp's own error,
whose one-line message names the file and contains ``fragment`` (the field or what is wrong).  ``stage``
says where it fails: 'load' (the file itself), 'output' (it loads, but the model's outputs are not finite),
'warn' (a blank picture: a warning, not an error).  Everything is small (the largest file is ~70 KB).
"""
import gzip
import io
import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convnp import checkpoint, recipes
from convnp.data import write_idx

META = checkpoint.META_KEY + ".npy"


@dataclass
class Bad:
    path: Path
    fragment: str
    stage: str = "load"


# --- building archives by hand ------------------------------------------------------------------------------
def npy_bytes(array, version=None):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), version=version, allow_pickle=True)
    return buffer.getvalue()


def read_archive(path):
    """-> (metadata dict, {member name: bytes}) of a checkpoint."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(np.load(io.BytesIO(members.pop(META))).tobytes())
    return meta, members


def write_archive(path, meta, members, compress=zipfile.ZIP_STORED):
    """A checkpoint-shaped zip: metadata (dict, or raw bytes) first, then ``members`` ({name: bytes})."""
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        archive.writestr(META, npy_bytes(np.frombuffer(text, dtype=np.uint8)))
        for name, data in members:
            archive.writestr(name, data)
    return path


def good_checkpoint(folder):
    """A real `convnp train` run (TinyCNN on the 8x8 lines, one epoch) -> its last.npz."""
    recipe = recipes.default_recipe("lines", epochs=1, batch_size=64)
    recipe.dataset_options = {"n": 90}
    result = recipes.run(recipe, out=folder, log=None, progress=False)
    return result.files["last"]


def npy_header(descr, shape):
    """A version 1.0 .npy header declaring ``descr`` and ``shape`` (padded to 64 bytes like NumPy's)."""
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


# --- the checkpoint corpus -----------------------------------------------------------------------------------
def checkpoint_corpus(folder, good):
    """Bad checkpoints made from the good one -> [Bad]."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta, members = read_archive(good)
    corpus = []

    def variant(name, fragment, change=None, members_of=None, stage="load"):
        new_meta = json.loads(json.dumps(meta))
        if change is not None:
            change(new_meta)
        new_members = members_of(dict(members)) if members_of else members
        path = write_archive(folder / name, new_meta, list(new_members.items()))
        corpus.append(Bad(path, fragment, stage))

    def raw(name, content, fragment):
        path = folder / name
        path.write_bytes(content)
        corpus.append(Bad(path, fragment))

    # not checkpoints at all
    raw("text.npz", b"epoch 3, accuracy 99%\n", "not a convnp checkpoint (.npz)")
    raw("random.npz", np.random.default_rng(0).bytes(4096), "not a convnp checkpoint (.npz)")
    raw("empty.npz", b"", "not a convnp checkpoint (.npz)")
    raw("pickle.npz", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.", "not a convnp checkpoint")
    raw("single.npz", npy_bytes(np.zeros(3)), "single .npy array")
    raw("truncated.npz", good.read_bytes()[: good.stat().st_size // 2], "not a convnp checkpoint (.npz)")
    plain = folder / "plain.npz"
    np.savez(plain, weights=np.zeros(3))
    corpus.append(Bad(plain, "no '__convnp_checkpoint__' entry"))
    objects = folder / "objects.npz"
    with zipfile.ZipFile(objects, "w") as archive:
        archive.writestr(META, npy_bytes(np.array([{"format": "convnp-checkpoint"}], dtype=object)))
    corpus.append(Bad(objects, "holds dtype object"))
    fifo = folder / "fifo.npz"
    os.mkfifo(fifo)
    corpus.append(Bad(fifo, "named pipe (FIFO)"))
    empty_folder = folder / "run-folder"
    empty_folder.mkdir()
    corpus.append(Bad(empty_folder, "is a folder"))

    # the archive's members
    first_weight = next(name for name in members if name.startswith("model/"))
    shape = np.load(io.BytesIO(members[first_weight])).shape
    variant("duplicate.npz", "twice", members_of=lambda m: m)
    with zipfile.ZipFile(folder / "duplicate.npz", "a") as archive:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": exactly what this file is for
            archive.writestr(first_weight, members[first_weight])
    variant("unknown-member.npz", "unknown archive member 'evil.npy'",
            members_of=lambda m: {**m, "evil.npy": npy_bytes(np.zeros(2))})
    variant("unreferenced-array.npz", "arrays/999: is an archive member the metadata does not refer to",
            members_of=lambda m: {**m, "arrays/999.npy": npy_bytes(np.zeros(2))})
    variant("bad-key.npz", "is not a state_dict key",
            members_of=lambda m: {**m, "model/../../etc.npy": npy_bytes(np.zeros(2, np.float32))})
    for dtype, fragment in ((np.complex64, "holds dtype complex64"), ("<U3", "holds dtype <U3"),
                            (bool, "must hold real floating-point numbers, got dtype bool"),
                            (np.int32, "must hold real floating-point numbers, got dtype int32")):
        tag = np.dtype(dtype).name
        variant(f"weights-{tag}.npz", fragment,
                members_of=lambda m, d=dtype: {**m, first_weight: npy_bytes(np.zeros(shape, dtype=d))})
    variant("weights-object.npz", "holds dtype object",
            members_of=lambda m: {**m, first_weight: npy_bytes(np.array([None] * 2, dtype=object))})
    # header says more data than there is: refused before allocating 4 TB
    liar = npy_header("<f4", (10**12,)) + bytes(16)
    variant("header-lies.npz", "declares shape (1000000000000,)", members_of=lambda m: {**m, first_weight: liar})
    variant("npy-version-3.npz", "format version (3, 0)",
            members_of=lambda m: {**m, first_weight: npy_bytes(np.zeros(shape, np.float32), version=(3, 0))})
    bomb = folder / "bomb.npz"  # 64 MiB of zeros deflated to ~64 KB
    write_archive(bomb, meta, [(n, b) for n, b in members.items() if n != first_weight])
    with zipfile.ZipFile(bomb, "a") as archive:
        archive.writestr(first_weight, npy_header("<f4", ((64 << 20) // 4,)) + bytes(64 << 20),
                         compress_type=zipfile.ZIP_DEFLATED)
    corpus.append(Bad(bomb, "a compression bomb"))
    variant("nan-weights.npz", "not finite", stage="output",
            members_of=lambda m: {**m, first_weight: npy_bytes(np.full(shape, np.nan, np.float32))})
    variant("inf-weights.npz", "not finite", stage="output",
            members_of=lambda m: {**m, first_weight: npy_bytes(np.full(shape, np.inf, np.float32))})
    not_json = folder / "not-json.npz"
    write_archive(not_json, b"{\"format\": \"convnp-checkpoint\", \xff", list(members.items()))
    corpus.append(Bad(not_json, "metadata is not JSON"))
    nested = folder / "nested.npz"
    write_archive(nested, b"[" * 100_000 + b"]" * 100_000, list(members.items()))
    corpus.append(Bad(nested, "metadata is not JSON"))

    # metadata fields
    def setter(*keys_and_value):
        *keys, value = keys_and_value

        def change(m):
            target = m
            for key in keys[:-1]:
                target = target[key]
            if value is DELETE:
                del target[keys[-1]]
            else:
                target[keys[-1]] = value
        return change

    fields = [
        ("format-version-0", "format_version: must be in 1..1", ("format_version", 0)),
        ("format-version-str", "format_version: must be an integer", ("format_version", "1")),
        ("format-version-new", "format version 99", ("format_version", 99)),
        ("format-missing", "missing key(s) format_version", ("format_version", DELETE)),
        ("unknown-top-key", "unknown key(s) evil", ("evil", 1)),
        ("epoch-negative", "epoch: must be in", ("epoch", -1)),
        ("epoch-float", "epoch: must be an integer", ("epoch", 1.5)),
        ("model-name-unknown", "which convnp.models does not list", ("model", "name", "resnet9000")),
        ("model-class-code", "model.class: must be a Python name", ("model", "class", "os.system('x')")),
        ("arg-negative", "model.args.num_classes: must be in 1..", ("model", "args", "num_classes", -1)),
        ("arg-huge", "model.args.num_classes: must be in 1..", ("model", "args", "num_classes", 10**9)),
        ("arg-string", "model.args.num_classes: must be an integer", ("model", "args", "num_classes", "3")),
        ("arg-bool", "model.args.in_channels: must be an integer, got bool", ("model", "args", "in_channels", True)),
        ("arg-unknown", "TinyCNN takes no argument 'root'", ("model", "args", "root", 1)),
        ("input-size-two", "preprocessing.input_size: must have 3..3 items", ("preprocessing", "input_size", [1, 8])),
        ("input-size-zero", "preprocessing.input_size[1]: must be in 1..", ("preprocessing", "input_size", [1, 0, 8])),
        ("input-size-huge", "preprocessing.input_size[2]: must be in 1..4096",
         ("preprocessing", "input_size", [1, 8, 100000])),
        ("input-size-float", "preprocessing.input_size[0]: must be an integer",
         ("preprocessing", "input_size", [1.0, 8, 8])),
        ("std-zero", "preprocessing.std[0]: must be > 0", ("preprocessing", "std", [0.0])),
        ("std-negative", "preprocessing.std[0]: must be > 0", ("preprocessing", "std", [-1.0])),
        ("mean-string", "preprocessing.mean[0]: must be a number", ("preprocessing", "mean", ["0.5"])),
        ("mean-nan", "preprocessing.mean[0]: must be finite", ("preprocessing", "mean", [float("nan")])),
        ("classes-empty", "preprocessing.classes: must have 1..", ("preprocessing", "classes", [])),
        ("classes-int", "preprocessing.classes[1]: must be a string", ("preprocessing", "classes", ["a", 2, "c"])),
        ("classes-not-list", "preprocessing.classes: must be a list", ("preprocessing", "classes", "abc")),
        ("layout-centre", "preprocessing.layout.centre: must be one of", ("preprocessing", "layout", "centre", "x")),
        ("prep-unknown", "preprocessing: unknown key(s) root", ("preprocessing", "root", "/etc")),
        ("optimizer-lr-string", "lr: must be a number", ("optimizer", "state", "param_groups", 0, "lr", "fast")),
        ("optimizer-lr-inf", "lr: must be finite", ("optimizer", "state", "param_groups", 0, "lr", float("inf"))),
        ("optimizer-params-twice", "is listed twice", ("optimizer", "state", "param_groups", 0, "params", [0, 0])),
        ("scheduler-optimizer", "may not replace its optimizer", ("scheduler", "state", "optimizer", 1)),
        ("rng-generator", "rng_state.bit_generator: must be 'PCG64'", ("rng_state", "bit_generator", "MT19937")),
        ("rng-negative", "rng_state.state.state: must be in", ("rng_state", "state", "state", -5)),
        ("loader-rng-missing", "loader_rng_state: missing key(s) uinteger", ("loader_rng_state", "uinteger", DELETE)),
        ("history-strings", "history.train_loss[0]: must be a number", ("history", "train_loss", ["low"])),
        ("history-epoch", "history.epoch[0]: must be in 1..", ("history", "epoch", [0])),
        ("history-diverged", "history.diverged: must be true or false", ("history", "diverged", "no")),
        ("recipe-root", "recipe.dataset_options.root: is not an option of dataset lines",
         ("extra", "recipe", "dataset_options", "root", "/etc")),
        ("recipe-download", "recipe.dataset_options.download: is not an option",
         ("extra", "recipe", "dataset_options", "download", True)),
        ("recipe-n-huge", "recipe.dataset_options.n: must be in 1..100000",
         ("extra", "recipe", "dataset_options", "n", 10**9)),
        ("recipe-field", "recipe: unknown field(s) data_dir", ("extra", "recipe", "data_dir", "/tmp")),
        ("recipe-lr", "recipe.lr: must be > 0", ("extra", "recipe", "lr", -1.0)),
        ("best-epoch", "best.epoch: must be an integer", ("extra", "best", "epoch", "2")),
        ("extra-reserved", "extra.epoch: clashes", ("extra", "epoch", 3)),
        ("array-reference", "refers to array '999'", ("history", "train_loss", {"__array__": "999"})),
    ]
    for name, fragment, keys_and_value in fields:
        variant(f"{name}.npz", fragment, setter(*keys_and_value))
    return corpus


DELETE = object()


# --- images ---------------------------------------------------------------------------------------------------
def image_corpus(folder):
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = []
    big = folder / "huge-20000x20000.png"
    Image.new("1", (20000, 20000)).save(big, optimize=True)  # ~50 KB on disk, 400 million pixels
    corpus.append(Bad(big, "exceeds limit"))
    good = folder / "good.png"
    picture = np.zeros((28, 28), np.uint8)
    picture[6:22, 12:16] = 255
    Image.fromarray(picture).save(good)
    data = good.read_bytes()
    for name, content, fragment in [
        ("truncated.png", data[: len(data) // 2], "not a readable image"),
        ("text.png", b"a picture of a seven\n", "not a readable image"),
        ("random.jpg", np.random.default_rng(1).bytes(2000), "not a readable image"),
        ("empty.png", b"", "not a readable image"),
        ("bad-crc.png", data[:40] + bytes([data[40] ^ 0xFF]) + data[41:], "not a readable image"),
    ]:
        path = folder / name
        path.write_bytes(content)
        corpus.append(Bad(path, fragment))
    fifo = folder / "fifo.png"
    os.mkfifo(fifo)
    corpus.append(Bad(fifo, "named pipe (FIFO)"))
    sub = folder / "folder.png"
    sub.mkdir()
    corpus.append(Bad(sub, "is a folder"))
    corpus.append(Bad(Path("/dev/zero"), "is a device"))
    blank = folder / "blank.png"
    Image.new("L", (40, 30), color=200).save(blank)
    corpus.append(Bad(blank, "blank or of one colour", stage="warn"))
    return corpus


# --- IDX files --------------------------------------------------------------------------------------------------
def idx_header(type_code, shape):
    return bytes([0, 0, type_code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


def idx_corpus(folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = []

    def gz(name, payload_chunks, fragment):
        path = folder / name
        with gzip.GzipFile(path, "wb", mtime=0) as file:
            for chunk in payload_chunks:
                file.write(chunk)
        corpus.append(Bad(path, fragment))

    zeros = bytes(1 << 20)
    gz("bomb.gz", [idx_header(0x08, (10, 28, 28))] + [zeros] * 48, "trailing bytes")  # 48 MiB behind 7,840 bytes
    gz("huge-header.gz", [idx_header(0x08, (2**32 - 1, 2**32 - 1, 1))], "more than the")
    gz("truncated-data.gz", [idx_header(0x08, (10, 28, 28)), bytes(100)], "truncated IDX file")
    gz("magic.gz", [b"\x08\x03\x00\x00" + bytes(10)], "not an IDX file")
    gz("type.gz", [b"\x00\x00\x42\x01" + bytes(8)], "unknown IDX type code 0x42")
    good = folder / "good.gz"
    write_idx(good, np.zeros((5, 28, 28), np.uint8))
    data = good.read_bytes()
    for name, content, fragment in [("cut.gz", data[: len(data) - 9], "corrupt gzip data"),
                                    ("flipped.gz", data[:12] + bytes(b ^ 0x5A for b in data[12:30]) + data[30:],
                                     "corrupt gzip data"),
                                    ("empty.gz", b"", "only 0 bytes")]:
        path = folder / name
        path.write_bytes(content)
        corpus.append(Bad(path, fragment))
    fifo = folder / "fifo.gz"
    os.mkfifo(fifo)
    corpus.append(Bad(fifo, "named pipe (FIFO)"))
    sub = folder / "folder.gz"
    sub.mkdir()
    corpus.append(Bad(sub, "is a folder"))
    return corpus
