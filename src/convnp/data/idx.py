"""The IDX file format of MNIST and Fashion-MNIST, read and written with NumPy.

An IDX file is a header followed by the raw array, big-endian::

    bytes 0-1   0x00 0x00
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     ndim
    then        ndim sizes, each a big-endian uint32
    then        prod(sizes) items of the type, C order

The files are usually gzip-compressed; ``read_idx`` recognises gzip by its magic bytes (1f 8b), not
by the file name.
"""
import gzip
import math
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

IDX_TYPE_CODES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class CorruptDataError(ValueError):
    """A data file exists but its contents are not what its format promises."""


MAX_IDX_BYTES = 8 << 30  # the most data a header may declare (MNIST's training images: 47 MB)


def read_idx(path):
    """Read an IDX file (gzip'd or raw) -> ndarray of shape ``sizes`` in the file's dtype (native order).

    Raises ``CorruptDataError`` naming the file when the gzip stream is broken, the magic number is
    wrong, or the data is shorter or longer than the header says.  Memory is bounded by the header: a
    gzip'd file is decompressed as a stream, and never more than the declared size plus one byte.
    """
    from convnp.files import open_regular

    path = Path(path)
    with open_regular(path, "IDX", CorruptDataError) as raw_file:
        gzipped = raw_file.read(2) == GZIP_MAGIC
        raw_file.seek(0)
        if gzipped:
            with gzip.GzipFile(fileobj=raw_file) as stream:
                return _read_idx_stream(path, stream)
        return _read_idx_stream(path, raw_file)


READ_CHUNK = 1 << 22  # bytes read at a time: memory grows with what a file holds, not with what it claims


def _read_exactly(path, stream, count):
    """Up to ``count`` bytes from ``stream`` (fewer only at its end) -> uint8 array; a broken gzip stream
    names the file."""
    chunks, total = [], 0
    try:
        while total < count:
            chunk = np.empty(min(READ_CHUNK, count - total), dtype=np.uint8)
            view, filled = memoryview(chunk), 0
            while filled < len(chunk):
                got = stream.readinto(view[filled:])
                if not got:
                    break
                filled += got
            chunks.append(chunk[:filled])
            total += filled
            if filled < len(chunk):
                break
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptDataError(f"{path}: corrupt gzip data ({error})") from None
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint8)


def _read_idx_stream(path, stream):
    head = _read_exactly(path, stream, 4)
    if len(head) < 4:
        raise CorruptDataError(f"{path}: not an IDX file: only {len(head)} bytes, "
                               "a header needs at least 4")
    if head[0] != 0 or head[1] != 0:
        raise CorruptDataError(
            f"{path}: not an IDX file: magic number starts with {head[:2].tobytes().hex()}, expected 0000"
        )
    type_code, ndim = int(head[2]), int(head[3])
    if type_code not in IDX_TYPE_CODES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPE_CODES)
        raise CorruptDataError(f"{path}: unknown IDX type code 0x{type_code:02X} (known: {known})")
    if ndim == 0 or ndim > 32:
        raise CorruptDataError(f"{path}: IDX header says the array has {ndim} dimensions (1..32 supported)")
    header_size = 4 + 4 * ndim
    sizes_bytes = _read_exactly(path, stream, 4 * ndim)
    if len(sizes_bytes) < 4 * ndim:
        raise CorruptDataError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} bytes, "
            f"found {4 + len(sizes_bytes)}"
        )
    shape = tuple(int(size) for size in sizes_bytes.view(">u4"))
    dtype = IDX_TYPE_CODES[type_code]

    expected = math.prod(shape) * dtype.itemsize
    sizes = "x".join(str(size) for size in shape)
    if dtype.itemsize > 1:
        sizes += f" x {dtype.itemsize}-byte {dtype.name}"
    if math.prod(size for size in shape if size) * dtype.itemsize > MAX_IDX_BYTES:  # zeros aside: absurd
        raise CorruptDataError(f"{path}: IDX header says {sizes} = {expected:,} bytes of data, more than the "
                               f"{MAX_IDX_BYTES:,} convnp reads")
    payload = _read_exactly(path, stream, expected + 1)  # one byte more tells trailing data from none
    found = len(payload)
    if found != expected:
        problem = "truncated IDX file" if found < expected else "IDX file has trailing bytes"
        shown = f"{found}" if found < expected else f"at least {found}"
        raise CorruptDataError(
            f"{path}: {problem}: header says {sizes} = {expected} bytes of data, found {shown}"
        )
    array = payload.view(dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def write_idx(path, array):
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends in ``.gz``."""
    path = Path(path)
    array = np.asarray(array)
    codes_by_kind = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPE_CODES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes_by_kind:
        raise ValueError(f"{path}: IDX cannot store dtype {array.dtype} (supported: uint8, int8, "
                         "int16, int32, float32, float64)")
    if array.ndim == 0 or array.ndim > 255 or any(size >= 2**32 for size in array.shape):
        raise ValueError(f"{path}: IDX cannot store an array of shape {array.shape}")
    header = bytes([0, 0, codes_by_kind[native], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if path.name.endswith(".gz"):
        with gzip.GzipFile(path, "wb", mtime=0) as file:
            file.write(header + payload)
    else:
        path.write_bytes(header + payload)
