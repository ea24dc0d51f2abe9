"""Property-based fuzzing of the three parsers that read files: the checkpoint loader, the IDX reader and
the image loader.  Any input must end in a value or in convnp's own exception, within a time and memory bound.

``make test`` runs CONVNP_FUZZ_EXAMPLES (default 25) examples per property, derandomized; ``make fuzz``
runs many more with fresh randomness.
"""
import gzip
import json
import os
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import bad_files
from convnp import checkpoint, recipes
from convnp.checkpoint import CheckpointError
from convnp.data import CorruptDataError, read_idx
from convnp.data.images import ImageError, open_image_checked

EXAMPLES = int(os.environ.get("CONVNP_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="CONVNP_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large], database=None)
SECONDS = 5.0           # per example, on a loaded 2-core machine
PEAK_BYTES = 64 << 20   # per example: tracemalloc's peak (it sees NumPy's buffers)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Valid inputs to mutate: a real checkpoint, IDX files (raw and gzip'd), small images of several formats."""
    from PIL import Image

    from convnp.data import write_idx

    root = tmp_path_factory.mktemp("seeds")
    good = bad_files.good_checkpoint(root / "run")
    rng = np.random.default_rng(0)
    write_idx(root / "raw.idx", rng.integers(0, 256, (3, 5, 4), dtype=np.uint8))
    write_idx(root / "gz.idx.gz", rng.integers(0, 256, (3, 5, 4), dtype=np.uint8))
    write_idx(root / "float.idx", rng.random((2, 3)))
    images = []
    picture = Image.fromarray((rng.random((12, 10, 3)) * 255).astype(np.uint8))
    for name, options in (("a.png", {}), ("a.jpg", {"quality": 80}), ("a.gif", {}), ("a.bmp", {}),
                          ("a.tiff", {}), ("a.webp", {}), ("a.ppm", {})):
        try:
            picture.save(root / name, **options)
        except (OSError, KeyError):  # a format this Pillow cannot write
            continue
        images.append((root / name).read_bytes())
    return Seeds(checkpoint=good.read_bytes(), meta=bad_files.read_archive(good),
                 preprocessing=checkpoint.load(good).preprocessing,
                 idx=[(root / n).read_bytes() for n in ("raw.idx", "gz.idx.gz", "float.idx")], images=images)


class Seeds(dict):
    def __repr__(self):  # hypothesis prints the arguments of a failing example: not 30 KB of bytes
        return "seeds"


def _bounded(call, allowed):
    """Run ``call``; it may return or raise one of ``allowed``, within SECONDS and PEAK_BYTES."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = call()
    except allowed as error:
        result = error
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - start < SECONDS
    assert peak < PEAK_BYTES, peak
    return result


def _mutate(data, draw_edits):
    """Apply a list of edits: ('flip', position, byte), ('cut', position), ('insert', position, bytes)."""
    data = bytearray(data)
    for edit in draw_edits:
        if not data:
            break
        position = edit[1] % len(data)
        if edit[0] == "flip":
            data[position] ^= edit[2] or 1
        elif edit[0] == "cut":
            del data[position:]
        else:
            data[position:position] = edit[2]
    return bytes(data)


EDITS = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 30)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=16)),
), min_size=1, max_size=8)


# --- the checkpoint loader ------------------------------------------------------------------------------------
@FUZZ
@given(edits=EDITS)
def test_fuzz_checkpoint_bytes(seeds, tmp_path, edits):
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(_mutate(seeds["checkpoint"], edits))

    def load():
        model, info = checkpoint.load_model(path)
        return info

    result = _bounded(load, (CheckpointError,))
    if isinstance(result, CheckpointError):
        assert str(path) in str(result) and "\n" not in str(result)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def _paths(value, prefix=()):
    """Every path (tuple of keys/indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_metadata(seeds, tmp_path, data):
    """Replace one value anywhere in the metadata with random JSON: load, rebuild and resume-restore either work
    or raise CheckpointError naming the file; never another exception."""
    meta, members = seeds["meta"]
    meta = json.loads(json.dumps(meta))
    paths = sorted((p for p in _paths(meta) if p), key=repr)
    target = data.draw(st.sampled_from(paths))
    value = data.draw(JSON_VALUES)
    parent = meta
    for key in target[:-1]:
        parent = parent[key]
    parent[target[-1]] = value
    path = bad_files.write_archive(tmp_path / "meta.npz", meta, list(members.items()))

    def load_and_resume():
        info = checkpoint.load(path)
        model, _ = checkpoint.load_model(path)
        if not info.get("recipe"):
            return info  # nothing to resume (the CLI says so)
        recipe = recipes.Recipe.from_dict(info.recipe)
        model = recipes.build_model(recipe, seeds["preprocessing"])  # as `train --resume`: sized by the data
        optimizer = recipes.build_optimizer(recipe, model)
        scheduler, _ = recipes.build_scheduler(recipe, optimizer, 2)
        checkpoint.restore(info, model, optimizer, scheduler)
        return info

    result = _bounded(load_and_resume, (CheckpointError,))
    if isinstance(result, CheckpointError):
        assert str(path) in str(result) and "\n" not in str(result), str(result)


# --- the IDX reader ----------------------------------------------------------------------------------------------
IDX_HEADERS = st.builds(
    lambda code, sizes: bytes([0, 0, code, len(sizes)]) + b"".join(s.to_bytes(4, "big") for s in sizes),
    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
    st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), min_size=0, max_size=4))


@FUZZ
@given(header=IDX_HEADERS, payload=st.binary(max_size=400), zipped=st.booleans(), mutate=st.booleans(),
       edits=EDITS, seed_index=st.integers(0, 2))
def test_fuzz_idx_reader(seeds, tmp_path, header, payload, zipped, mutate, edits, seed_index):
    if mutate:  # a valid file, damaged
        content = _mutate(seeds["idx"][seed_index], edits)
    else:       # a made-up header and payload
        content = header + payload
        if zipped:
            content = gzip.compress(content, mtime=0)
    path = tmp_path / "fuzzed-idx"
    path.write_bytes(content)
    result = _bounded(lambda: read_idx(path), (CorruptDataError,))
    if isinstance(result, CorruptDataError):
        assert str(path) in str(result)
    else:
        assert isinstance(result, np.ndarray) and result.dtype.isnative


# --- the image loader -----------------------------------------------------------------------------------------------
@FUZZ
@given(seed_index=st.integers(0, 100), edits=EDITS)
def test_fuzz_image_loader(seeds, tmp_path, seed_index, edits):
    images = seeds["images"]
    path = tmp_path / "fuzzed-image"
    path.write_bytes(_mutate(images[seed_index % len(images)], edits))
    result = _bounded(lambda: open_image_checked(path), (ImageError,))
    if isinstance(result, ImageError):
        assert str(path) in str(result) and "\n" not in str(result)
    else:
        np.asarray(result.convert("L"))  # a decoded image converts


def test_the_seeds_are_valid(seeds, tmp_path):
    """The unmutated inputs load: the fuzzing starts from real files."""
    assert len(seeds["images"]) >= 5
    for i, content in enumerate(seeds["images"]):
        (tmp_path / f"{i}").write_bytes(content)
        open_image_checked(tmp_path / f"{i}")
    for i, content in enumerate(seeds["idx"]):
        (tmp_path / f"idx{i}").write_bytes(content)
        assert read_idx(tmp_path / f"idx{i}").size
    (tmp_path / "c.npz").write_bytes(seeds["checkpoint"])
    checkpoint.load_model(tmp_path / "c.npz")
