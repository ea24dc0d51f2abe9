"""safetensors: convnp's writer and reader against the safetensors package, and files that lie."""
import json
import struct

import numpy as np
import pytest

import convnp
from convnp.interop.safetensors import SafetensorsError

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def small_vgg():
    convnp.manual_seed(0)
    model = convnp.models.SmallVGG(num_classes=5, widths=(4, 8))
    model.features[1].running_mean[...] = np.arange(4) / 7  # buffers that are not their initial values
    model.features[1].num_batches_tracked[...] = 3
    return model


def test_the_safetensors_package_reads_what_convnp_writes(tmp_path):
    model = small_vgg()
    path = convnp.save_safetensors(model, tmp_path / "vgg.safetensors", preprocessing={"dataset": "cifar10"})
    theirs = safetensors_numpy.load_file(str(path))
    state = model.state_dict()
    assert theirs.keys() == state.keys()
    for key, value in state.items():
        assert theirs[key].dtype == value.dtype and theirs[key].shape == value.shape, key
        np.testing.assert_array_equal(theirs[key], value)
    from safetensors import safe_open

    with safe_open(str(path), "np") as file:
        meta = json.loads(file.metadata()["convnp"])
    assert meta["model"] == "smallvgg" and meta["model_args"]["widths"] == [4, 8]
    assert meta["preprocessing"] == {"dataset": "cifar10"}


def test_convnp_reads_what_the_safetensors_package_writes(tmp_path):
    arrays = {"w": np.random.rand(3, 2, 5).astype(np.float32), "n": np.array(4, dtype=np.int64),
              "d": np.random.rand(7), "h": np.arange(6, dtype=np.float16).reshape(2, 3)}
    safetensors_numpy.save_file(arrays, str(tmp_path / "x.safetensors"))
    weights = convnp.load_safetensors(tmp_path / "x.safetensors")
    assert weights.metadata == {} and weights.state_dict.keys() == arrays.keys()
    for key, value in arrays.items():
        assert weights.state_dict[key].dtype == value.dtype and weights.state_dict[key].shape == value.shape
        np.testing.assert_array_equal(weights.state_dict[key], value)


def test_round_trip_into_a_model(tmp_path):
    model = small_vgg()
    convnp.save_safetensors(model, tmp_path / "m.safetensors")
    convnp.manual_seed(1)
    other = convnp.models.SmallVGG(num_classes=5, widths=(4, 8))
    weights = convnp.load_safetensors(tmp_path / "m.safetensors", model=other)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
    assert weights.metadata["model_class"] == "SmallVGG"


def _rewrite_header(path, edit):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["fc"].update(shape=[3, 5]), "needs 60 bytes, its header gives it 24"),
    (lambda h: h["fc"].update(data_offsets=[0, 10**9]), "needs 24 bytes"),
    (lambda h: (h["fc"].update(data_offsets=[24, 48]), h["b"].update(data_offsets=[0, 8])), "ends at byte 48"),
    (lambda h: h["fc"].update(dtype="Q9"), "malformed header entry"),
])
def test_a_lying_header_is_an_error_naming_the_file(tmp_path, edit, message):
    path = tmp_path / "lie.safetensors"
    convnp.save_safetensors({"fc": np.ones((2, 3), np.float32), "b": np.zeros(2, np.float32)}, path)
    _rewrite_header(path, edit)
    with pytest.raises(SafetensorsError, match=message) as caught:
        convnp.load_safetensors(path)
    assert str(path) in str(caught.value)


def test_truncated_and_non_safetensors_files(tmp_path):
    path = tmp_path / "w.safetensors"
    convnp.save_safetensors({"fc": np.ones((20, 30), np.float32)}, path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(SafetensorsError, match="ends at byte 2,400 but the file holds only 2,300"):
        convnp.load_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    with pytest.raises(SafetensorsError, match="tiny.safetensors is not a safetensors file"):
        convnp.load_safetensors(tmp_path / "tiny.safetensors")
    (tmp_path / "png.safetensors").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SafetensorsError, match="png.safetensors is not a safetensors file"):
        convnp.load_safetensors(tmp_path / "png.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        convnp.load_safetensors(tmp_path / "nope.safetensors")


def test_a_missing_tensor_names_the_file_and_key_and_changes_nothing(tmp_path):
    model = small_vgg()
    state = model.state_dict()
    del state["classifier.bias"]
    path = convnp.save_safetensors(state, tmp_path / "partial.safetensors")
    other = convnp.models.SmallVGG(num_classes=5, widths=(4, 8))
    before = other.state_dict()
    with pytest.raises(SafetensorsError, match=r"partial.safetensors lacks tensor\(s\) classifier.bias"):
        convnp.load_safetensors(path, model=other)
    for key, value in before.items():
        np.testing.assert_array_equal(other.state_dict()[key], value)


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "w.safetensors"
    convnp.save_safetensors({"a": np.ones(3, np.float32)}, path)
    old = path.read_bytes()
    with pytest.raises(ValueError, match="dtype complex128"):
        convnp.save_safetensors({"a": np.ones(3, np.float32), "z": np.ones(2, complex)}, path)
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_a_write_that_fails_half_way_leaves_the_old_file(tmp_path, monkeypatch):
    import convnp.interop.safetensors as module

    path = tmp_path / "w.safetensors"
    convnp.save_safetensors({"a": np.ones(3, np.float32)}, path)
    old = path.read_bytes()

    class FailingStruct:
        @staticmethod
        def pack(*args):
            raise OSError("disk full")

    monkeypatch.setattr(module, "struct", FailingStruct)
    with pytest.raises(OSError, match="disk full"):
        convnp.save_safetensors({"a": np.zeros(3, np.float32)}, path)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
