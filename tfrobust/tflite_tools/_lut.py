"""TFLite Micro look-up-table (LUT) weight compression of clustered int8 kernels.

A kernel with at most ``2**b`` distinct values (a clustered model, kept clustered through QAT by
``quantize(preserve="clusters")``) is stored as ``b``-bit indices into a value table: for a
tensor of ``n`` int8 weights, ``ceil(n * b / 8)`` bytes of indices plus ``2**b`` table bytes per
table (one table per tensor, or one per output channel). TFLite Micro inserts a ``TFLM_DECODE``
operator before each consumer that expands the kernel into the arena at run time, so the
kernels themselves are unchanged and the outputs are bit-identical to the uncompressed model.

Costs: flash shrinks by about ``b / 8``; the arena grows by the largest decoded kernel that is
live at once (TFLite Micro's planner reuses the space between layers) and each invoke spends
time decoding. The compressed model runs only in TFLite Micro (LiteRT has no ``TFLM_DECODE``).

The encoder is the one the pinned ``tflite-micro`` ships (``tflite_micro.compression``); this
module chooses the tensors, the table layout and the index width, and refuses what would not
compress.

References:
  TFLite Micro compression, https://github.com/tensorflow/tflite-micro/tree/main/tensorflow/lite/micro/compression
  Han et al., Deep Compression, ICLR 2016, https://arxiv.org/abs/1510.00149
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfrobust import _validate
from tfrobust.tflite_tools import _flatbuffer
from tfrobust.tflite_tools._micro import _check_bytes, run_tflm
from tfrobust.tflite_tools._runtime import TFLiteModel
from tfrobust.utils import atomic_write_bytes

_DCM_BYTES = 16


@dataclasses.dataclass(frozen=True)
class _Plan:
    index: int  # kernel tensor
    axis: int | None  # None: one table for the tensor
    bits: int


def _check_params(bits, min_saving):
    # bits: TFLite Micro's LUT index widths are 1-7; 2-4 have fast decoders.
    _validate.integer("bits", bits, minimum=1, maximum=7)
    _validate.integer("min_saving", min_saving, minimum=0)


def _table_size(values: np.ndarray, axis: int | None) -> int:
    if axis is None:
        return len(np.unique(values))
    return max(len(np.unique(s)) for s in np.moveaxis(values, axis, 0))


def _lut_bytes(values: np.ndarray, bits: int, tables: int, table_len: int) -> int:
    """Encoded indices + DECODE header + value tables, as tflite-micro's encoder lays them out."""
    return math.ceil(values.size * bits / 8) + _DCM_BYTES + tables * table_len * values.itemsize


def _plan(model_bytes: bytes, bits: int, min_saving: int) -> list[_Plan]:
    m = _flatbuffer.read_model(model_bytes)
    graph = m.subgraphs[0]
    plans = []
    for k in _flatbuffer.kernel_stats(model_bytes):
        if k.lut_bits is not None:
            raise ValueError(f"kernel of layer {k.layer!r} is already LUT-compressed. Received: "
                             "model_bytes of a compressed model")
        if k.dtype not in ("INT8", "INT16", "FLOAT32"):
            continue
        tensor = graph.tensors[k.index]
        values = np.frombuffer(bytes(m.buffers[tensor.buffer].data),
                               dtype=_flatbuffer._NP_TYPES[k.dtype]).reshape(k.shape)
        q = tensor.quantization
        channel_axis = int(q.quantizedDimension) if q is not None else 0
        if channel_axis not in (0, len(k.shape) - 1):  # TFLM decodes tables along these only
            channel_axis = 0
        if k.nbytes - _lut_bytes(values, 1, 1, 2) < max(min_saving, 1):
            continue  # too small to save min_saving bytes under any setting
        # The table layout follows the kernel's quantization: measured with the pinned tflite-micro,
        # one table for a per-channel quantized kernel (or one per channel for a per-tensor one)
        # decodes to different outputs (up to 202 LSB on a Fashion-MNIST CNN).
        axis = channel_axis if q is not None and q.scale is not None and len(q.scale) > 1 else None
        size = _table_size(values, axis)
        tables = 1 if axis is None else k.shape[axis]
        if size > 2 ** bits:
            if k.nbytes - _lut_bytes(values, bits, tables, 2 ** bits) < max(min_saving, 1):
                continue  # too small to be worth compressing anyway
            where = "the kernel" if axis is None else f"one output channel (axis {axis})"
            raise ValueError(
                f"kernel of layer {k.layer!r} has {size} distinct values in {where}, more than "
                f"2**bits = {2 ** bits}. Cluster the model to <= {2 ** bits} values per kernel "
                "(tfrobust.compression.cluster, strip) and keep them through QAT with "
                f"quantize(..., preserve='clusters'). Received: bits={bits}")
        need = max(1, math.ceil(math.log2(size)))
        if k.nbytes - _lut_bytes(values, need, tables, size) >= max(min_saving, 1):
            plans.append(_Plan(k.index, axis, need))
    return plans


def compress_lut(model_bytes, *, bits: int = 4, min_saving: int = 64, path=None) -> bytes:
    """Store clustered kernels as ``bits``-bit indices + value tables (TFLite Micro LUT).

    Each convolution / fully connected kernel is compressed when it has at most ``2**bits``
    distinct values and that saves at least ``min_saving`` bytes (a tiny first-layer kernel would
    grow by its 16-byte header and tables). Each kernel uses the fewest index bits its table
    needs, at most ``bits``. The table layout follows the kernel's int8 quantization: one table
    for a per-tensor quantized kernel (QAT's Dense kernels), one per output channel for a
    per-channel quantized one (convolutions; Dense after post-training quantization), where one
    shared float value becomes a different int8 value in each channel. The pinned TFLite Micro
    decodes the other pairings wrongly, so they are not offered.

    Args:
      model_bytes: an int8 (or float) .tflite flatbuffer, bytes or path; its weights clustered
        (:func:`tfrobust.compression.cluster` then ``quantize(..., preserve="clusters")``).
      bits: widest index, 1-7 (16 values: 4 bits).
      min_saving: skip kernels that would save fewer bytes.
      path: if given, the compressed bytes are also written there atomically.

    Returns:
      The compressed .tflite (runs in TFLite Micro only; check it with :func:`lut_parity`).

    Raises:
      ValueError: bad arguments, a kernel with more distinct values than ``2**bits`` (named, with
        the fix), a model already compressed, or no kernel worth compressing.

    Example:
      >>> plain = convert(cqat_model, "int8", x_cal, batch_size=1)    # doctest: +SKIP
      >>> small = compress_lut(plain, bits=4, path="model_lut.tflite")  # doctest: +SKIP
      >>> lut_parity(plain, small, x_test[:50])["identical"]          # doctest: +SKIP
      True
    """
    _check_params(bits, min_saving)
    model_bytes = _check_bytes(model_bytes)
    plans = _plan(model_bytes, bits, min_saving)
    if not plans:
        raise ValueError(f"no kernel would save >= {min_saving} bytes with LUT compression (the model "
                         "has no convolution / fully connected kernels, or they are too small). "
                         f"Received: min_saving={min_saving}")
    # Imported on use: it loads tflite-micro's native alignment tool, which nothing else here needs.
    from tflite_micro.tensorflow.lite.micro.compression import spec
    from tflite_micro.tensorflow.lite.micro.compression.compress import compress

    specs = [spec.Tensor(subgraph=0, tensor=p.index, compression=[spec.LookUpTableCompression(
        index_bitwidth=p.bits, mode=spec.PerTensor() if p.axis is None else spec.PerChannel(p.axis))])
        for p in plans]
    data = bytes(compress(model_bytes, specs))
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def lut_parity(model_bytes, compressed_bytes, x, *, arena_size: int | None = None) -> dict:
    """Run the plain and the LUT-compressed model in TFLite Micro on the same inputs.

    Both models receive the identical quantized input; LUT decoding is lossless, so the raw
    outputs must be equal.

    Args:
      model_bytes: the uncompressed .tflite (batch size 1).
      compressed_bytes: :func:`compress_lut` of it.
      x: float inputs ``[N, ...]``.
      arena_size: TFLM arena for both runs (default: generous).

    Returns:
      ``{"examples", "identical", "max_abs_diff" (raw output units), "weight_bytes",
      "compressed_weight_bytes", "file_bytes", "compressed_file_bytes"}`` -- bytes read from the
      files (constant buffers, value tables and indices included).
    """

    plain, small = _check_bytes(model_bytes), _check_bytes(compressed_bytes, "compressed_bytes")
    q = TFLiteModel(plain).quantize_input(np.asarray(x))
    a = run_tflm(plain, q, arena_size=arena_size)
    b = run_tflm(small, q, arena_size=arena_size)
    return {"examples": int(len(q)), "identical": bool(np.array_equal(a, b)),
            "max_abs_diff": float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()),
            "weight_bytes": _weight_bytes(plain), "compressed_weight_bytes": _weight_bytes(small),
            "file_bytes": len(plain), "compressed_file_bytes": len(small)}


def _weight_bytes(model_bytes) -> int:
    """Bytes of every constant buffer in a .tflite (weights, biases, LUT indices and tables)."""
    _, tensors = _flatbuffer.inspect_model(_check_bytes(model_bytes))
    return int(sum(t.nbytes for t in tensors if t.constant))
