"""Offline-first loaders for Fashion-MNIST and MNIST."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from tfrobust import _validate as V
from tfrobust.data._idx import IDXFormatError, read_idx


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before reading it."""

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    split_sizes: dict
    class_names: tuple[str, ...]
    debian_dirs: tuple[str, ...]  # where Debian's package puts the IDX files
    keras_cache_subdir: str  # folder (or .npz file) under ~/.keras/datasets
    debian_package: str | None


_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        image_shape=(28, 28, 1),
        num_classes=10,
        split_sizes={"train": 60000, "test": 10000},
        class_names=_FASHION_CLASSES,
        debian_dirs=("/usr/share/datasets/fashion-mnist",),
        keras_cache_subdir="fashion-mnist",
        debian_package="dataset-fashion-mnist",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        image_shape=(28, 28, 1),
        num_classes=10,
        split_sizes={"train": 60000, "test": 10000},
        class_names=tuple(str(i) for i in range(10)),
        debian_dirs=("/usr/share/datasets/mnist",),
        keras_cache_subdir="mnist.npz",
        debian_package=None,
    ),
}

_SPLITS = {"train": "train", "test": "t10k"}


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset was found in any searched place and it could not be downloaded."""


def dataset_info(name: str) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of ``name`` (``"fashion_mnist"`` or ``"mnist"``)."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset. Expected one of {sorted(DATASETS)}. Received: name={name!r}")
    return DATASETS[name]


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _idx_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = _SPLITS[split]
    for suffix in (".gz", ""):
        images = folder / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.is_file() and labels.is_file():
            return images, labels
    return None


def _candidates(info: DatasetInfo, data_dir) -> list[tuple[str, Path]]:
    """The ordered list of (origin, folder-or-file) places searched for ``info``."""
    places: list[tuple[str, Path]] = []
    alt = info.name.replace("_", "-")
    for origin, root in (("data_dir", data_dir), ("$TFROBUST_DATA_DIR", os.environ.get("TFROBUST_DATA_DIR"))):
        if root:
            root = Path(root).expanduser()
            places += [(origin, root), (origin, root / info.name), (origin, root / alt)]
    places += [("debian", Path(d)) for d in info.debian_dirs]
    places.append(("keras cache", _keras_cache_dir() / info.keras_cache_subdir))
    return places


@functools.lru_cache(maxsize=8)
def _read_pair(images_path: str, labels_path: str, mtime_key: tuple) -> tuple[np.ndarray, np.ndarray]:
    del mtime_key  # part of the cache key only: a replaced file is read again
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    return images, labels


def _read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as f:
            return f[f"x_{split}"], f[f"y_{split}"]
    except (OSError, KeyError, ValueError) as e:
        raise IDXFormatError(f"{path}: not a valid Keras dataset archive ({e})") from e


def _validate(info: DatasetInfo, split: str, images: np.ndarray, labels: np.ndarray, source) -> None:
    n = info.split_sizes[split]
    h, w, _ = info.image_shape
    if images.shape != (n, h, w):
        raise IDXFormatError(
            f"{source}: images have shape {images.shape}, expected {(n, h, w)} for {info.name}/{split}"
        )
    if labels.shape != (n,):
        raise IDXFormatError(f"{source}: labels have shape {labels.shape}, expected {(n,)}")
    if labels.size and int(labels.max()) >= info.num_classes:
        raise IDXFormatError(f"{source}: label {int(labels.max())} out of range [0, {info.num_classes})")


def _download(info: DatasetInfo, split: str):
    """Let Keras download into its cache; returns (images, labels) or raises with the reason."""
    # Deferred: loading the offline IDX files must not import TensorFlow / Keras (seconds); only a
    # download needs them.
    from tfrobust._keras import keras

    loader = getattr(keras.datasets, info.name)
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def _fix_command(info: DatasetInfo) -> str:
    parts = []
    if info.debian_package:
        parts.append(f"`apt-get install {info.debian_package}` (as root)")
    parts.append(
        "or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
        "and t10k-labels-idx1-ubyte.gz in a folder and pass it as `data_dir` or set "
        "$TFROBUST_DATA_DIR"
    )
    return " ".join(parts)


def load_raw(name: str, split: str, *, data_dir=None, download: bool = True):
    """Load ``(images uint8 [N, H, W], labels uint8 [N], source)`` without conversion.

    See :func:`load_dataset` for the search order.
    """
    info = dataset_info(name)
    if split not in _SPLITS:
        raise ValueError(f"Unknown split. Expected one of {sorted(_SPLITS)}. Received: split={split!r}")
    searched = []
    for origin, place in _candidates(info, data_dir):
        searched.append(f"{place} ({origin})")
        if place.suffix == ".npz":
            if place.is_file():
                images, labels = _read_npz(place, split)
                _validate(info, split, images, labels, place)
                return images, labels, str(place)
            continue
        files = _idx_files(place, split) if place.is_dir() else None
        if files:
            key = tuple(p.stat().st_mtime_ns for p in files)
            images, labels = _read_pair(str(files[0]), str(files[1]), key)
            _validate(info, split, images, labels, files[0])
            return images, labels, str(place)
    reason = "download disabled (download=False)"
    if download:
        searched.append("Keras download")
        try:
            images, labels = _download(info, split)
            _validate(info, split, images, labels, "Keras download")
            return images, labels, "keras download"
        except IDXFormatError:
            raise
        except Exception as e:  # noqa: BLE001 - any network failure is reported, not raised raw
            reason = f"download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    raise DatasetNotFoundError(
        f"Dataset {name!r} ({split}) not found. Searched, in order: "
        + "; ".join(searched)
        + f". {reason}. Fix: {_fix_command(info)}."
    )


def load_dataset(name: str, split: str = "train", *, data_dir=None, download: bool = True,
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST or MNIST as float32 NHWC images in [0, 1] and int64 labels.

    Search order (the first place holding the four IDX files wins):

    1. ``data_dir`` (also ``data_dir/<name>`` and ``data_dir/<name-with-dashes>``);
    2. ``$TFROBUST_DATA_DIR`` (same sub-folders);
    3. Debian's package folder (``/usr/share/datasets/fashion-mnist`` from ``dataset-fashion-mnist``);
    4. the Keras cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``);
    5. a Keras download into that cache when ``download=True`` and the network allows.

    Every file is validated: IDX magic numbers, header sizes against the payload (a truncated file
    raises :class:`IDXFormatError`), the split's image count and label range.

    Args:
      name: ``"fashion_mnist"`` or ``"mnist"``.
      split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
      data_dir: an explicit folder to search first.
      download: allow the Keras download as the last resort.
      limit: keep only the first ``limit`` examples (deterministic; both splits are close to
        class-balanced in their first thousands).

    Returns:
      ``(x, y)``: ``x`` float32 of shape ``[N, 28, 28, 1]`` in [0, 1], ``y`` int64 of shape ``[N]``.

    Raises:
      ValueError: unknown name or split, bad ``limit``.
      IDXFormatError: a found file is corrupt or truncated.
      DatasetNotFoundError: nothing found; the message lists every place searched and the fix.

    Example:
      >>> x, y = load_dataset("fashion_mnist", "test")  # doctest: +SKIP
      >>> x.shape, x.dtype, y[:3]  # doctest: +SKIP
      ((10000, 28, 28, 1), dtype('float32'), array([9, 2, 1]))
    """
    if limit is not None:
        V.integer("limit", limit, minimum=1)
    images, labels, _ = load_raw(name, split, data_dir=data_dir, download=download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32)[..., None] / np.float32(255.0)
    return x, labels.astype(np.int64)


def as_tf_dataset(x, y=None, *, batch_size: int = 128, shuffle: bool = False, seed: int | None = None,
                  repeat: bool = False, drop_remainder: bool = False, prefetch: bool = True,
                  autotune: bool = False):
    """Wrap arrays in a batched ``tf.data.Dataset``.

    tf.data's autotuning is off by default (``autotune=False``): its optimizer thread can miss the
    wake-up sent when an iterator is deleted (TF 2.21: ``Model::OptimizeLoop`` re-checks
    ``IsCancelled()`` before the ``CancellationManager`` sets it, then sleeps out its period), and
    deleting the iterator joins that thread, so the end of an epoch or of a ``for`` loop over the
    dataset could block until the optimizer's next tick (its period doubles from 10 ms: 5.1 s,
    10.2 s, 20.5 s, 41 s after the iterator was created). Keras' NumPy-fed ``fit``/``predict``
    build such an autotuned pipeline internally and stall the same way; this one has no parallel
    stage for the autotuner to size, so nothing is lost by turning it off.

    Args:
      x: images ``[N, ...]``.
      y: labels ``[N]`` or None (then the dataset yields images only).
      batch_size: positive batch size.
      shuffle: reshuffle every epoch with a buffer holding the whole set.
      seed: shuffle seed (reproducible order across runs).
      repeat: repeat forever.
      drop_remainder: drop the last partial batch.
      prefetch: prefetch with ``AUTOTUNE``.
      autotune: keep tf.data's autotuning (``tf.data.Options().autotune.enabled``) on, e.g. for a
        heavy ``map(num_parallel_calls=AUTOTUNE)`` added downstream (options propagate to it).
    """
    import tensorflow as tf

    V.integer("batch_size", batch_size, minimum=1)
    if y is not None and len(x) != len(y):
        raise ValueError(f"`x` and `y` must have the same length. Received: len(x)={len(x)}, len(y)={len(y)}")
    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    if not autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.with_options(options)
    return ds
