import numpy as np
import pytest

# The entropy coder of Deep Compression, tested where it is defined (not public compression API).
from tfrobust.compression.shared import huffman_code_lengths, huffman_decode, huffman_encode


@pytest.mark.parametrize("symbols, alphabet", [
    (np.array([], np.int64), 4),
    (np.array([3, 3, 3, 3], np.int64), 4),  # one used symbol
    (np.array([0, 1], np.int64), 2),
    (np.random.default_rng(0).integers(0, 33, 5000), 33),
    (np.minimum(np.random.default_rng(1).geometric(0.2, 20000) - 1, 255), 256),
])
def test_huffman_encode_decode_round_trips_exactly(symbols, alphabet):
    data = huffman_encode(symbols, alphabet)
    out = huffman_decode(data)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, symbols)


def test_code_lengths_are_optimal_on_a_known_distribution():
    # counts 1, 1, 2, 4 -> the optimal tree has depths 3, 3, 2, 1
    np.testing.assert_array_equal(huffman_code_lengths([1, 1, 2, 4]), [3, 3, 2, 1])
    np.testing.assert_array_equal(huffman_code_lengths([0, 5, 0]), [0, 1, 0])


def test_code_is_complete_and_within_one_bit_of_entropy(rng):
    symbols = np.minimum(rng.geometric(0.3, 50000) - 1, 31)
    counts = np.bincount(symbols, minlength=32)
    lengths = huffman_code_lengths(counts)
    used = counts > 0
    assert np.sum(2.0 ** -lengths[used]) == pytest.approx(1.0)  # Kraft equality: a full tree
    p = counts[used] / counts.sum()
    entropy = -np.sum(p * np.log2(p))
    mean_len = np.sum(p * lengths[used])
    assert entropy <= mean_len < entropy + 1
    payload = len(huffman_encode(symbols, 32)) - 12 - 32
    assert payload == int(np.ceil(np.sum(counts * lengths) / 8))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="symbols"):
        huffman_encode(np.array([0, 5]), 4)
    with pytest.raises(TypeError, match="symbols"):
        huffman_encode(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="magic"):
        huffman_decode(b"nope" + bytes(20))
    data = huffman_encode(np.arange(8).repeat(50), 8)
    with pytest.raises(ValueError, match="truncated"):
        huffman_decode(data[:-10])
    with pytest.raises(ValueError, match="counts"):
        huffman_code_lengths([1, -1])
