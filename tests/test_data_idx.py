"""IDX reader/writer: round trips, and errors that name the file for every kind of damage."""
import gzip
import struct

import numpy as np
import pytest

from convnp.data import CorruptDataError, read_idx, write_idx


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (4, 28, 28), (2, 3, 4, 5)])
@pytest.mark.parametrize("suffix", [".idx", ".gz"])
def test_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=shape) * 100).astype(dtype)
    path = tmp_path / f"data{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is a writable array of its own


def test_header_layout_matches_the_format_by_hand(tmp_path):
    """An independent encoding: struct-packed big-endian header and data, as the MNIST page describes."""
    values = [[1, -2, 300], [4, 5, -32768]]
    raw = struct.pack(">BBBB", 0, 0, 0x0B, 2) + struct.pack(">II", 2, 3) + struct.pack(">6h", *sum(values, []))
    path = tmp_path / "by_hand.idx"
    path.write_bytes(raw)
    np.testing.assert_array_equal(read_idx(path), np.array(values, dtype=np.int16))
    write_idx(tmp_path / "ours.idx", np.array(values, dtype=np.int16))
    assert (tmp_path / "ours.idx").read_bytes() == raw


def test_gzip_detected_by_magic_bytes_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "real.gz", array)
    disguised = tmp_path / "no_suffix.idx"
    disguised.write_bytes((tmp_path / "real.gz").read_bytes())
    np.testing.assert_array_equal(read_idx(disguised), array)
    write_idx(tmp_path / "raw.idx", array)
    misnamed = tmp_path / "raw_but_named.gz"
    misnamed.write_bytes((tmp_path / "raw.idx").read_bytes())
    np.testing.assert_array_equal(read_idx(misnamed), array)


def _mnist_header(n):
    return struct.pack(">BBBBIII", 0, 0, 0x08, 3, n, 28, 28)


def test_truncated_file_names_file_and_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as file:
        file.write(_mnist_header(60000) + bytes(1234))
    with pytest.raises(CorruptDataError) as error:
        read_idx(path)
    message = str(error.value)
    assert str(path) in message
    assert "truncated IDX file: header says 60000x28x28 = 47040000 bytes of data, found 1234" in message


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, 3) + bytes([1, 2, 3, 4]))
    with pytest.raises(CorruptDataError, match="trailing bytes.*3 = 3 bytes of data, found at least 4") as error:
        read_idx(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("first_bytes", [b"\x01\x00", b"\x00\x07", b"PK"])
def test_bad_magic_number(tmp_path, first_bytes):
    path = tmp_path / "bad_magic.idx"
    path.write_bytes(first_bytes + bytes([0x08, 1]) + struct.pack(">I", 1) + b"\x05")
    with pytest.raises(CorruptDataError, match="not an IDX file") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_unknown_type_code(tmp_path):
    path = tmp_path / "bad_type.idx"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x05")
    with pytest.raises(CorruptDataError, match="unknown IDX type code 0x0A") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_truncated_header_and_empty_file(tmp_path):
    short_header = tmp_path / "short_header.idx"
    short_header.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 60000))
    with pytest.raises(CorruptDataError, match="truncated IDX header") as error:
        read_idx(short_header)
    assert str(short_header) in str(error.value)
    empty = tmp_path / "empty.idx"
    empty.write_bytes(b"")
    with pytest.raises(CorruptDataError, match="only 0 bytes") as error:
        read_idx(empty)
    assert str(empty) in str(error.value)


@pytest.mark.parametrize("damage", ["cut_stream", "flip_bytes"])
def test_corrupt_gzip_names_file(tmp_path, damage):
    good = gzip.compress(_mnist_header(2) + bytes(range(256)) * 7, mtime=0)
    if damage == "cut_stream":
        bad = good[: len(good) // 2]
    else:
        bad = good[:12] + bytes(b ^ 0xFF for b in good[12:40]) + good[40:]
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bad)
    with pytest.raises(CorruptDataError, match="corrupt gzip") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.uint16))
