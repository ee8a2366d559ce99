import gzip
import struct

import numpy as np
import pytest

from tfrobust.data import IDXFormatError, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix, rng):
    arr = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    path = tmp_path / f"x-idx3-ubyte{suffix}"
    write_idx(path, arr)
    np.testing.assert_array_equal(read_idx(path, expected_ndim=3), arr)


def test_idx_header_is_big_endian_magic_2051_for_images(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros((2, 3, 4), np.uint8))
    assert struct.unpack(">I", path.read_bytes()[:4])[0] == 2051  # MNIST's documented magic


def test_idx_truncated_payload_is_an_error(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IDXFormatError, match="truncated"):
        read_idx(path)


def test_idx_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros((3,), np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(IDXFormatError, match="trailing"):
        read_idx(path)


def test_idx_bad_magic_is_an_error(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00\x00\x00\x00")  # float type
    with pytest.raises(IDXFormatError, match="magic"):
        read_idx(path)


def test_idx_wrong_rank_is_an_error(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros((3,), np.uint8))
    with pytest.raises(IDXFormatError, match="dimensions"):
        read_idx(path, expected_ndim=3)


def test_idx_cut_gzip_stream_is_an_error(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00" * 10000)[:50])
    with pytest.raises(IDXFormatError, match="gzip"):
        read_idx(path)


def test_idx_too_short_for_header(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(IDXFormatError, match="too short"):
        read_idx(path)
