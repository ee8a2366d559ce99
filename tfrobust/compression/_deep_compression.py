"""Deep Compression: prune -> cluster (shared weights) -> Huffman-coded sparse storage, as real bytes.

1. **Prune** (Han et al. 2015): magnitude masks, reached gradually (cubic ramp over the pruning
   epochs) while training, so the surviving weights adapt.
2. **Quantize by weight sharing**: per layer, k-means over the surviving weights with ``k = 2^bits``
   clusters and *linear* initialisation (centroids evenly spaced in ``[min w, max w]``, which the
   paper found best); each weight becomes an index ``a(i)``; the centroids are fine-tuned with
   ``dL/dc_j = sum_{i: a(i) = j} dL/dW_i``. Compression rate of clustering alone, for ``n`` stored
   weights of ``b`` bits: ``r = n b / (n log2 k + k b)``.
3. **Huffman-code** the cluster indices and the relative positions of the non-zeros: a weight
   tensor is flattened (C order) and each non-zero is stored as the gap ``d`` to the previous one;
   a gap larger than the span ``2^gap_bits`` is split with *filler zeros* (an entry with gap
   ``2^gap_bits`` and a reserved index ``k`` that decodes to 0), exactly as in the paper's Figure 2
   (8-bit spans for conv, 5-bit for fully connected layers). Both streams are then Huffman coded.

Everything else (biases, weights of other layers) is stored as raw float32, so the size reported
is the size of a complete, decodable model: :func:`decode` rebuilds every weight bit-exactly.

References:
  Han, Mao & Dally, Deep Compression, ICLR 2016, https://arxiv.org/abs/1510.00149
  Han et al., Learning both Weights and Connections for Efficient Neural Networks, NeurIPS 2015,
  https://arxiv.org/abs/1506.02626
"""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import check_tf_keras_model, keras
from tfrobust.compression._huffman import huffman_decode, huffman_encode
from tfrobust.compression._masks import MaskCallback, kernel_layers, magnitude_masks
from tfrobust.data import as_tf_dataset
from tfrobust.utils import markdown_table

__all__ = [
    "Codebook",
    "DeepCompressionResult",
    "decode",
    "deep_compress",
    "encode",
    "kmeans_1d",
    "load_stream_weights",
]

_MAGIC = b"TFRDC1"
_RAW, _SPARSE = 0, 1


def kmeans_1d(values, k: int, *, iters: int = 30):
    """Lloyd's k-means on scalars with linear initialisation.

    Args:
      values: 1-D float array (the surviving weights of one layer).
      k: number of clusters (>= 1).
      iters: Lloyd iterations (stops early when assignments no longer change).

    Returns:
      ``(centroids float32 [k], assignments int64 [len(values)])``; empty clusters keep their
      linear-init position.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    V.integer("k", k, minimum=1)
    if values.size == 0:
        return np.zeros(k, np.float32), np.zeros(0, np.int64)
    centroids = np.linspace(values.min(), values.max(), k)
    assign = None
    for _ in range(iters):
        # 1-D nearest centroid: sort centroids, compare against midpoints
        order = np.argsort(centroids)
        sorted_c = centroids[order]
        mids = (sorted_c[1:] + sorted_c[:-1]) / 2
        new_assign = order[np.searchsorted(mids, values)]
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        sums = np.bincount(assign, weights=values, minlength=k)
        counts = np.bincount(assign, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled]
    return centroids.astype(np.float32), assign.astype(np.int64)


@dataclasses.dataclass
class Codebook:
    """A clustered sparse kernel: ``W.flat[i] = centroids[index[i]]`` where ``index[i] >= 0``, else 0."""

    centroids: np.ndarray  # float32 [k]
    index: np.ndarray  # int64, kernel shape, -1 for pruned weights

    def weights(self) -> np.ndarray:
        ext = np.concatenate([self.centroids.astype(np.float32), np.zeros(1, np.float32)])
        return ext[np.where(self.index >= 0, self.index, len(self.centroids))]


def _layer_kind(layer):
    return "dense" if isinstance(layer, keras.layers.Dense) else "conv"


def _bits_for(layer, bits, name):
    value = bits.get(layer.name, bits.get(_layer_kind(layer))) if isinstance(bits, dict) else bits
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 16:
        raise ValueError(f"`{name}` must be an int in [1, 16] (or a dict of them by layer name or "
                         f"'conv'/'dense'). Received: {name}={bits!r} for layer {layer.name!r}")
    return value


# ---------------------------------------------------------------------------------------------
# the byte stream


def _pack_str(s):
    b = s.encode("utf-8")
    return struct.pack("<H", len(b)) + b


def _sparse_record(codebook: Codebook, gap_bits: int):
    """(bytes, stats) for one clustered sparse tensor: CSR gaps with filler zeros, both Huffman coded."""
    k = len(codebook.centroids)
    flat = codebook.index.ravel()
    positions = np.flatnonzero(flat >= 0)
    span = 2 ** gap_bits
    gaps, idx = [], []
    prev = -1
    fillers = 0
    for p, a in zip(positions.tolist(), flat[positions].tolist()):
        d = p - prev
        while d > span:
            gaps.append(span - 1)
            idx.append(k)  # filler zero
            d -= span
            fillers += 1
        gaps.append(d - 1)
        idx.append(a)
        prev = p
    idx_blob = huffman_encode(np.asarray(idx, np.int64), k + 1)
    gap_blob = huffman_encode(np.asarray(gaps, np.int64), span)
    body = (struct.pack("<HB", k, gap_bits) + codebook.centroids.astype("<f4").tobytes()
            + struct.pack("<I", len(idx_blob)) + idx_blob + struct.pack("<I", len(gap_blob)) + gap_blob)
    stats = {"entries": len(idx), "fillers": fillers, "index_bytes": len(idx_blob),
             "gap_bytes": len(gap_blob), "codebook_bytes": 4 * k}
    return body, stats


def encode(model, codebooks: dict, *, gap_bits=None) -> tuple[bytes, dict]:
    """Serialise all of ``model``'s weights: clustered sparse kernels Huffman coded, the rest float32.

    Args:
      model: a tf_keras model whose clustered kernels equal ``codebooks[name].weights()``.
      codebooks: ``{layer_name: Codebook}`` for the kernels stored in clustered sparse form.
      gap_bits: span bits of the relative index: an int, or a dict by layer name or by
        ``"conv"``/``"dense"``; default 8 for conv and 5 for dense layers (the paper's choice).

    Returns:
      ``(stream, stats)``: the bytes and per-tensor byte counts (``stats[layer]``).

    Raises:
      ValueError: a codebook does not reproduce the layer's current kernel.
    """
    check_tf_keras_model(model)
    gap_bits = {"conv": 8, "dense": 5} if gap_bits is None else gap_bits
    records, stats = [], {}
    for layer in model.layers:
        for w_index, var in enumerate(layer.weights):
            value = var.numpy()
            is_kernel = layer.name in codebooks and var is getattr(layer, "kernel", None)
            head = _pack_str(layer.name) + struct.pack("<HB", w_index, value.ndim)
            head += struct.pack(f"<{value.ndim}I", *value.shape)
            if is_kernel:
                cb = codebooks[layer.name]
                if cb.index.shape != value.shape or not np.array_equal(cb.weights(), value):
                    raise ValueError(f"the codebook of layer {layer.name!r} does not reproduce its kernel "
                                     f"(re-run clustering). Received: layer={layer.name!r}")
                body, st = _sparse_record(cb, _bits_for(layer, gap_bits, "gap_bits"))
                records.append(head + struct.pack("<B", _SPARSE) + body)
            else:
                records.append(head + struct.pack("<B", _RAW) + value.astype("<f4").tobytes())
                st = {"raw_bytes": 4 * value.size}
            st["record_bytes"] = len(records[-1])
            stats.setdefault(layer.name, {})[var.name] = st
    stream = _MAGIC + struct.pack("<I", len(records)) + b"".join(records)
    return stream, stats


def decode(stream: bytes) -> dict:
    """Rebuild every weight from a stream made by :func:`encode`.

    Returns:
      ``{layer_name: [weight arrays in layer.weights order]}`` (float32, bit-exact).
    """
    if not isinstance(stream, (bytes, bytearray)):
        raise TypeError(f"`stream` must be bytes. Received: stream of type {type(stream).__name__}")
    stream = bytes(stream)
    if stream[:6] != _MAGIC:
        raise ValueError(f"`stream` is not a Deep Compression stream (bad magic). Received: {stream[:6]!r}")
    (n,) = struct.unpack_from("<I", stream, 6)
    pos = 10
    out: dict[str, dict[int, np.ndarray]] = {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", stream, pos)
        name = stream[pos + 2: pos + 2 + ln].decode("utf-8")
        pos += 2 + ln
        w_index, ndim = struct.unpack_from("<HB", stream, pos)
        pos += 3
        shape = struct.unpack_from(f"<{ndim}I", stream, pos)
        pos += 4 * ndim
        (kind,) = struct.unpack_from("<B", stream, pos)
        pos += 1
        size = int(np.prod(shape, dtype=np.int64))
        if kind == _RAW:
            value = np.frombuffer(stream, "<f4", size, pos).astype(np.float32).reshape(shape)
            pos += 4 * size
        elif kind == _SPARSE:
            k, gap_bits = struct.unpack_from("<HB", stream, pos)
            pos += 3
            centroids = np.frombuffer(stream, "<f4", k, pos).astype(np.float32)
            pos += 4 * k
            (li,) = struct.unpack_from("<I", stream, pos)
            idx = huffman_decode(stream[pos + 4: pos + 4 + li])
            pos += 4 + li
            (lg,) = struct.unpack_from("<I", stream, pos)
            gaps = huffman_decode(stream[pos + 4: pos + 4 + lg])
            pos += 4 + lg
            positions = np.cumsum(gaps + 1) - 1
            real = idx < k  # filler zeros carry index k
            flat = np.zeros(size, np.float32)
            flat[positions[real]] = centroids[idx[real]]
            value = flat.reshape(shape)
        else:
            raise ValueError(f"`stream` is corrupt: unknown record kind {kind} for layer {name!r}. "
                             f"Received: kind={kind}")
        out.setdefault(name, {})[w_index] = value
    return {name: [ws[i] for i in sorted(ws)] for name, ws in out.items()}


def load_stream_weights(model, stream: bytes) -> None:
    """Set ``model``'s weights from a :func:`encode` stream (layers matched by name)."""
    check_tf_keras_model(model)
    for name, weights in decode(stream).items():
        model.get_layer(name).set_weights(weights)


# ---------------------------------------------------------------------------------------------
# the pipeline


@dataclasses.dataclass
class DeepCompressionResult:
    """The compressed model, its byte stream and the size accounting."""

    model: object
    stream: bytes
    codebooks: dict
    layers: list[dict]
    dense_bytes: int

    @property
    def encoded_bytes(self) -> int:
        return len(self.stream)

    @property
    def compression_ratio(self) -> float:
        """float32 size of all parameters / real encoded stream size."""
        return self.dense_bytes / self.encoded_bytes

    @property
    def clustering_rate(self) -> float:
        """Model-level ``r = sum n b / sum (n log2 k + k b)`` over the clustered kernels."""
        num = sum(r["stored"] * 32 for r in self.layers)
        den = sum(r["stored"] * math.log2(r["k"]) + r["k"] * 32 for r in self.layers)
        return num / den if den else 1.0

    def to_dict(self) -> dict:
        return {"dense_bytes": self.dense_bytes, "encoded_bytes": self.encoded_bytes,
                "compression_ratio": self.compression_ratio, "clustering_rate": self.clustering_rate,
                "layers": self.layers}

    def to_markdown(self) -> str:
        lines = [markdown_table(
            ["layer", "weights", "kept", "k", "r = nb/(n log2 k + kb)", "index bits/entry", "gap bits/entry",
             "fillers", "encoded bytes"],
            [[r["layer"], r["weights"], f"{r['kept']:.2%}", r["k"], f"{r['clustering_rate']:.2f}",
              f"{r['index_bits_per_entry']:.2f}", f"{r['gap_bits_per_entry']:.2f}", r["fillers"],
              r["record_bytes"]]
             for r in self.layers])]
        lines.append(f"\nWhole model: {self.dense_bytes} float32 bytes -> {self.encoded_bytes} encoded bytes "
                     f"(**{self.compression_ratio:.1f}x**, biases stored as float32); clustering rate "
                     f"r = {self.clustering_rate:.2f}.")
        return "\n".join(lines) + "\n"


def _compile(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def cluster_kernels(model, masks: dict, cluster_bits) -> dict:
    """k-means (linear init) over each masked kernel's surviving weights; writes shared weights."""
    codebooks = {}
    for layer in kernel_layers(model):
        if layer.name not in masks:
            continue
        mask = masks[layer.name]
        w = layer.kernel.numpy()
        k = 2 ** _bits_for(layer, cluster_bits, "cluster_bits")
        k = max(1, min(k, int(mask.sum())))
        centroids, assign = kmeans_1d(w[mask], k)
        index = np.full(w.shape, -1, np.int64)
        index[mask] = assign
        codebooks[layer.name] = Codebook(centroids, index)
        layer.kernel.assign(codebooks[layer.name].weights())
    return codebooks


def finetune_centroids(model, codebooks: dict, dataset, *, epochs: int, lr: float):
    """Train centroids (gradient = sum over members) and the other trainable weights."""
    if epochs <= 0:
        return
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = keras.optimizers.Adam(lr)
    names = list(codebooks)
    kernels = [model.get_layer(n).kernel for n in names]
    kernel_ids = {id(v) for v in kernels}
    others = [v for v in model.trainable_variables if id(v) not in kernel_ids]
    cents = [tf.Variable(codebooks[n].centroids, name=f"{n}_centroids") for n in names]
    idx = [tf.constant(np.where(codebooks[n].index >= 0, codebooks[n].index,
                                len(codebooks[n].centroids)).ravel().astype(np.int32)) for n in names]
    zero = tf.zeros([1])

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, kernels + others)
        cgrads = [tf.math.unsorted_segment_sum(tf.reshape(g, [-1]), i, c.shape[0] + 1)[:-1]
                  for g, i, c in zip(grads[:len(kernels)], idx, cents)]
        opt.apply_gradients(zip(cgrads + grads[len(kernels):], cents + others))
        for kern, c, i in zip(kernels, cents, idx):
            kern.assign(tf.reshape(tf.gather(tf.concat([c, zero], 0), i), kern.shape))
        return loss

    for _ in range(epochs):
        for x, y in dataset:
            step(x, y)
    for n, c in zip(names, cents):
        codebooks[n].centroids = c.numpy().astype(np.float32)
        model.get_layer(n).kernel.assign(codebooks[n].weights())


def deep_compress(model, x, y, *, sparsity=0.9, cluster_bits=None, gap_bits=None, prune_epochs: int = 3,
                  finetune_epochs: int = 1, lr: float = 1e-3, finetune_lr: float = 1e-4,
                  batch_size: int = 128, seed: int = 0) -> DeepCompressionResult:
    """Run the three Deep Compression stages on a trained logits model (modified in place).

    Args:
      model: a trained tf_keras model returning logits.
      x, y: training images and integer labels for the retraining stages.
      sparsity: fraction of pruned kernel weights: one number or ``{layer_name: fraction}``.
      cluster_bits: index bits per layer (``k = 2^bits`` shared weights): int or dict by layer
        name or ``"conv"``/``"dense"``; default 8 for conv, 5 for dense (the paper's AlexNet choice).
      gap_bits: relative-index span bits (default 8 conv / 5 dense, as in the paper).
      prune_epochs: pruning epochs; sparsity follows ``s_e = s (1 - (1 - (e + 1) / E)^3)``.
      finetune_epochs: centroid fine-tuning epochs.
      lr, finetune_lr: Adam learning rates of the two retraining stages.
      batch_size: batch size.
      seed: shuffling seed.

    Returns:
      A :class:`DeepCompressionResult` (``result.stream`` decodes to ``model``'s weights exactly).
    """
    check_tf_keras_model(model)
    for name, value in (("prune_epochs", prune_epochs), ("finetune_epochs", finetune_epochs),
                        ("batch_size", batch_size)):
        V.integer(name, value, minimum=1 if name == "batch_size" else 0)
    cluster_bits = {"conv": 8, "dense": 5} if cluster_bits is None else cluster_bits
    gap_bits = {"conv": 8, "dense": 5} if gap_bits is None else gap_bits
    for layer in kernel_layers(model):  # validate before any training
        _bits_for(layer, cluster_bits, "cluster_bits")
        _bits_for(layer, gap_bits, "gap_bits")
    ds = as_tf_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    _compile(model, lr)
    masks = {}
    for e in range(prune_epochs):
        ramp = 1.0 - (1.0 - (e + 1) / prune_epochs) ** 3
        target = ({k: v * ramp for k, v in sparsity.items()} if isinstance(sparsity, dict)
                  else sparsity * ramp)
        masks = magnitude_masks(model, target, previous=masks)
        model.fit(ds, epochs=1, callbacks=[MaskCallback(masks)], verbose=0)
    if prune_epochs == 0:
        masks = magnitude_masks(model, sparsity)
        for name, m in masks.items():
            model.get_layer(name).kernel.assign(model.get_layer(name).kernel * m)
    codebooks = cluster_kernels(model, masks, cluster_bits)
    finetune_centroids(model, codebooks, ds, epochs=finetune_epochs, lr=finetune_lr)
    stream, stats = encode(model, codebooks, gap_bits=gap_bits)
    rows = []
    for layer in kernel_layers(model):
        if layer.name not in codebooks:
            continue
        cb = codebooks[layer.name]
        n = int((cb.index >= 0).sum())
        k = len(cb.centroids)
        st = stats[layer.name][layer.kernel.name]
        entries = max(st["entries"], 1)
        rows.append({
            "layer": layer.name, "weights": int(cb.index.size), "stored": n, "kept": n / cb.index.size,
            "k": k, "clustering_rate": n * 32 / (n * math.log2(k) + k * 32),
            "index_bits_per_entry": 8 * st["index_bytes"] / entries,
            "gap_bits_per_entry": 8 * st["gap_bytes"] / entries,
            "fillers": st["fillers"], "record_bytes": st["record_bytes"],
        })
    dense_bytes = 4 * int(sum(int(np.prod(v.shape)) for v in model.weights))
    return DeepCompressionResult(model, stream, codebooks, rows, dense_bytes)
