import math

import numpy as np
import pytest

from tfrobust import models
from tfrobust.compression import decode_stream, deep_compress, load_stream_weights

# Building blocks tested where they are defined (not part of the public compression API).
from tfrobust.compression.shared import Codebook, encode, kmeans_1d


def _numpy_kmeans(values, k, iters=30):
    c = np.linspace(values.min(), values.max(), k)
    a = None
    for _ in range(iters):
        new = np.argmin(np.abs(values[:, None] - c[None, :]), axis=1)
        if a is not None and np.array_equal(new, a):
            break
        a = new
        for j in range(k):
            if np.any(a == j):
                c[j] = values[a == j].mean()
    return c, a


def test_kmeans_matches_a_numpy_reference(rng):
    values = rng.normal(size=2000)
    c, a = kmeans_1d(values, 16)
    ref_c, ref_a = _numpy_kmeans(values, 16)
    np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a, ref_a)
    with pytest.raises(ValueError, match="k"):
        kmeans_1d(values, 0)


def _codebooks_for(model, rng, density, bits):
    books = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        shape = layer.kernel.shape
        k = 2 ** bits
        index = rng.integers(0, k, size=shape)
        index[rng.random(shape) > density] = -1
        book = Codebook(rng.normal(size=k).astype(np.float32), index)
        layer.kernel.assign(book.weights())
        books[layer.name] = book
    return books


@pytest.mark.parametrize("gap_bits", [2, 5])
def test_decode_reproduces_clustered_sparse_weights_exactly(rng, gap_bits):
    model = models.lenet_300_100(input_shape=(8, 8, 1))
    books = _codebooks_for(model, rng, density=0.05, bits=4)
    stream, stats = encode(model, books, gap_bits=gap_bits)
    decoded = decode_stream(stream)
    for layer in model.layers:
        for got, want in zip(decoded.get(layer.name, []), layer.get_weights()):
            np.testing.assert_array_equal(got, want)
    # filler zeros: a gap d needs floor((d - 1) / 2^gap_bits) of them
    for name, book in books.items():
        positions = np.flatnonzero(book.index.ravel() >= 0)
        gaps = np.diff(np.concatenate([[-1], positions]))
        expected = int(np.sum((gaps - 1) // 2 ** gap_bits))
        (st,) = [v for v in stats[name].values() if "fillers" in v]
        assert st["fillers"] == expected and st["entries"] == len(positions) + expected
    fresh = models.lenet_300_100(input_shape=(8, 8, 1))
    load_stream_weights(fresh, stream)
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_encode_refuses_a_codebook_that_does_not_match(rng):
    model = models.lenet_300_100(input_shape=(8, 8, 1))
    books = _codebooks_for(model, rng, density=0.5, bits=2)
    books["fc1"].centroids = books["fc1"].centroids + 1.0
    with pytest.raises(ValueError, match="fc1"):
        encode(model, books)


def test_deep_compression_pipeline_is_exact_and_reports_the_paper_rate(small_data):
    x, y = small_data
    model = models.lenet_300_100()
    sparsity = {"fc1": 0.92, "fc2": 0.91, "logits": 0.74}
    res = deep_compress(model, x, y, sparsity=sparsity, cluster_bits=5, prune_epochs=1, finetune_epochs=1)
    decoded = decode_stream(res.stream)
    for layer in model.layers:
        for got, want in zip(decoded.get(layer.name, []), layer.get_weights()):
            np.testing.assert_array_equal(got, want)
    for row in res.layers:
        kernel = model.get_layer(row["layer"]).kernel.numpy()
        n = np.count_nonzero(res.codebooks[row["layer"]].index >= 0)
        assert 1 - n / kernel.size == pytest.approx(sparsity[row["layer"]], abs=1e-3)
        assert len(np.unique(kernel[kernel != 0])) <= 32
        assert row["clustering_rate"] == pytest.approx(n * 32 / (n * math.log2(row["k"]) + row["k"] * 32))
    assert res.encoded_bytes == len(res.stream)
    assert res.compression_ratio == pytest.approx(4 * model.count_params() / len(res.stream))
    assert res.compression_ratio > 20


def test_bad_arguments_raise(small_data):
    x, y = small_data
    with pytest.raises(ValueError, match="cluster_bits"):
        deep_compress(models.lenet_300_100(), x, y, cluster_bits=0)
    with pytest.raises(ValueError, match="prune_epochs"):
        deep_compress(models.lenet_300_100(), x, y, prune_epochs=-1)
    with pytest.raises(ValueError, match="magic"):
        decode_stream(b"garbage!")
