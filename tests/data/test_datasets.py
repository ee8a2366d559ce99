import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from tfrobust import data

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_fashion_mnist_train_has_60000_balanced_images_with_published_mean(fashion_train):
    x, y = fashion_train
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (60000,) and np.issubdtype(y.dtype, np.integer)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 6000))
    assert abs(float(x.mean()) - 72.94 / 255) < 0.001


def test_fashion_mnist_test_has_10000_images(fashion_test):
    x, y = fashion_test
    assert x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 1000))


def test_limit_takes_the_first_examples(fashion_test):
    x, y = data.load_dataset("fashion_mnist", "test", limit=7, download=False)
    np.testing.assert_array_equal(x, fashion_test[0][:7])
    np.testing.assert_array_equal(y, fashion_test[1][:7])


def _copy_dataset(dst: Path, corrupt=None):
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        os.symlink(DEBIAN / name, dst / name)
    if corrupt:
        target = dst / corrupt
        raw = gzip.decompress((DEBIAN / corrupt).read_bytes())
        target.unlink()
        target.write_bytes(gzip.compress(raw[: len(raw) - 1000], compresslevel=1))


def test_explicit_data_dir_is_searched_first(tmp_path):
    _copy_dataset(tmp_path / "fashion_mnist")
    _, _, source = data.load_raw("fashion_mnist", "test", data_dir=tmp_path, download=False)
    assert source == str(tmp_path / "fashion_mnist")


def test_env_data_dir_is_searched_before_debian(tmp_path, monkeypatch):
    _copy_dataset(tmp_path)
    monkeypatch.setenv("TFROBUST_DATA_DIR", str(tmp_path))
    _, _, source = data.load_raw("fashion_mnist", "test", download=False)
    assert source == str(tmp_path)


def test_truncated_dataset_file_raises_a_clear_error(tmp_path):
    _copy_dataset(tmp_path, corrupt="t10k-images-idx3-ubyte.gz")
    with pytest.raises(data.IDXFormatError, match="truncated"):
        data.load_dataset("fashion_mnist", "test", data_dir=tmp_path, download=False)


def test_wrong_image_count_is_rejected(tmp_path):
    _copy_dataset(tmp_path)
    for name, arr in (("t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8)),
                      ("t10k-labels-idx1-ubyte.gz", np.zeros((5,), np.uint8))):
        (tmp_path / name).unlink()
        data.write_idx(tmp_path / name, arr)
    with pytest.raises(data.IDXFormatError, match="expected"):
        data.load_dataset("fashion_mnist", "test", data_dir=tmp_path, download=False)


def test_missing_dataset_error_lists_every_place_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("TFROBUST_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    missing = tmp_path / "no-debian"
    patched = dataclasses.replace(data.DATASETS["fashion_mnist"], debian_dirs=(str(missing),))
    monkeypatch.setitem(data.DATASETS, "fashion_mnist", patched)
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("fashion_mnist", "train", data_dir=tmp_path / "mine", download=False)
    msg = str(err.value)
    for place in (tmp_path / "mine", missing, tmp_path / "keras" / "datasets" / "fashion-mnist"):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "TFROBUST_DATA_DIR" in msg


def test_keras_cache_npz_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, 60000, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, 10000, dtype=np.uint8)}
    np.savez(tmp_path / "datasets" / "mnist.npz", **arrays)
    x, y = data.load_dataset("mnist", "test", download=False)
    np.testing.assert_array_equal(y, arrays["y_test"])
    np.testing.assert_allclose(x[..., 0], arrays["x_test"] / 255.0, atol=1e-7)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "cifar100", "split": "train"}, "name"),
    ({"name": "fashion_mnist", "split": "validation"}, "split"),
    ({"name": "fashion_mnist", "split": "test", "limit": 0}, "limit"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_dataset(**kwargs, download=False)


def test_as_tf_dataset_batches_and_reshuffles_reproducibly():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    ds = data.as_tf_dataset(x, y, batch_size=4, shuffle=True, seed=3)
    first = [b[1].numpy().tolist() for b in ds]
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(sum(first, [])) == list(range(10))
    again = [b[1].numpy().tolist() for b in data.as_tf_dataset(x, y, batch_size=4, shuffle=True, seed=3)]
    assert first == again
    plain = [b.numpy()[:, 0].tolist() for b in data.as_tf_dataset(x, batch_size=5)]
    assert plain == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_as_tf_dataset_turns_off_the_autotune_thread_unless_asked():
    # tf.data's autotune thread can miss the cancellation wake-up and make deleting an iterator
    # block for up to its period (5.1 s, 10.2 s, ...): see as_tf_dataset's docstring.
    x = np.zeros((8, 1), np.float32)
    assert data.as_tf_dataset(x, batch_size=4).options().autotune.enabled is False
    assert data.as_tf_dataset(x, batch_size=4, autotune=True).options().autotune.enabled is not False
    assert len(list(data.as_tf_dataset(x, batch_size=4, shuffle=True, seed=0))) == 2


def test_as_tf_dataset_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        data.as_tf_dataset(np.zeros((2, 1)), batch_size=0)
    with pytest.raises(ValueError, match="same length"):
        data.as_tf_dataset(np.zeros((2, 1)), np.zeros(3), batch_size=1)
