"""Reader for the IDX format of (Fashion-)MNIST, validating magic numbers and sizes.

IDX layout (LeCun): a 4-byte big-endian magic ``0x00 0x00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the data, row-major. Type ``0x08`` is unsigned byte, the
only type (Fashion-)MNIST uses. Files may be gzip-compressed (the ``.gz`` suffix).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np


class IDXFormatError(ValueError):
    """A file is not a valid IDX file (bad magic, truncated, trailing bytes, bad gzip)."""


_UBYTE = 0x08


def read_idx(path, *, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a ``uint8`` array.

    Args:
      path: the ``.idx*-ubyte`` or ``.idx*-ubyte.gz`` file.
      expected_ndim: if given, the number of dimensions the header must declare (3 for images,
        1 for labels).

    Returns:
      A read-only ``uint8`` array with the shape the header declares.

    Raises:
      IDXFormatError: bad magic number, wrong dimension count, a gzip stream that is cut or
        corrupt, or a payload whose size differs from the header's.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IDXFormatError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    if len(raw) < 4:
        raise IDXFormatError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != _UBYTE or ndim == 0:
        raise IDXFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x000008NN, unsigned "
            "bytes with NN dimensions)"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IDXFormatError(f"{path}: header declares {ndim} dimensions, expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IDXFormatError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(raw) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{path}: {what}: header shape {shape} needs {expected} data bytes, found {actual}"
        )
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)
    return arr


def write_idx(path, array: np.ndarray) -> None:
    """Write a ``uint8`` array as IDX (gzipped when ``path`` ends in ``.gz``). Used by tests."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, _UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
