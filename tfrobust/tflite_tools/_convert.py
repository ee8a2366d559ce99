"""``convert``: a Keras 3 or tf_keras model -> .tflite bytes (float, float16, dynamic-range, int8, binary)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import check_keras_model, flavour, keras, rebuild
from tfrobust.tflite_tools._binary_int8 import bake_binary_to_int8
from tfrobust.tflite_tools._names import layer_from_name
from tfrobust.utils import atomic_write_bytes

MODES = ("float", "float16", "dynamic", "int8", "binary")
_OP_RE = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
_LIST_RE = re.compile(r"(?:Custom|Flex) ops: ([\w, .]+)")


@dataclasses.dataclass(frozen=True)
class UnsupportedOp:
    """A TensorFlow op the requested TFLite op sets cannot express, and the layer using it."""

    op: str  # TensorFlow op name, e.g. "Svd"
    layer: str | None


class UnsupportedOpsError(ValueError):
    """Conversion needs ops outside the allowed sets; ``.ops`` lists them with their layers."""

    def __init__(self, message: str, ops: list[UnsupportedOp]):
        super().__init__(message)
        self.ops = ops


def _input_signature(model, batch_size):
    if not model.inputs or len(model.inputs) != 1:
        raise ValueError("`model` must be a built single-input model (functional or Sequential with a "
                         "known input shape). Received: model with inputs="
                         f"{None if not model.inputs else len(model.inputs)}")
    inp = model.inputs[0]
    if batch_size is not None:
        V.integer("batch_size", batch_size, minimum=1)
    batch = batch_size if batch_size is not None else inp.shape[0]
    shape = [batch, *inp.shape[1:]]
    if any(d is None for d in shape[1:]):
        raise ValueError(f"`model` must have a fully known input shape besides the batch axis. Received: "
                         f"input shape {tuple(inp.shape)}")
    return tf.TensorSpec(shape, inp.dtype, name="x")


def _concrete_function(model, spec):
    # A fixed input signature: the traced graph (and so the .tflite) has the exact shape we ask
    # for (batch 1 avoids dynamic-shape ops on microcontrollers).
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return fn.get_concrete_function()


def _calibration_batches(data, spec):
    """Normalise representative data to a generator function yielding ``[batch]`` lists."""
    batch = spec.shape[0] or 1
    if callable(data) and not isinstance(data, (np.ndarray, tf.Tensor)):
        return data
    if isinstance(data, tf.data.Dataset):
        def arrays():
            for element in data:
                yield np.asarray(element[0] if isinstance(element, (tuple, list)) else element)
    else:
        arr = np.asarray(data)
        if arr.ndim != len(spec.shape) or tuple(arr.shape[1:]) != tuple(spec.shape[1:]):
            dims = ", ".join(map(str, spec.shape[1:]))
            raise ValueError(f"`representative_data` must be images shaped [N, {dims}]. Received: "
                             f"representative_data.shape={arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError("`representative_data` must be float images in the model's input range. "
                            f"Received: representative_data.dtype={arr.dtype}")
        # NaN/inf calibration images would silently set an activation range to NaN or inf.
        V.finite_array("representative_data", arr)

        def arrays():
            yield arr

    def gen():
        for arr in arrays():
            arr = V.finite_array("representative_data", arr).astype(spec.dtype.as_numpy_dtype)
            for start in range(0, len(arr) - batch + 1, batch):
                yield [arr[start:start + batch]]

    return gen


def _parse_unsupported(error) -> list[tuple[str, str | None]]:
    """(op, location name or None) pairs from a converter error."""
    found: list[tuple[str, str | None]] = []
    for err in getattr(error, "errors", None) or []:
        op = getattr(getattr(err, "operator", None), "name", "")
        if not op:
            continue
        op = op.split(".", 1)[-1]
        location = None
        for call in getattr(getattr(err, "location", None), "call", []):
            if "/" in (call.name or ""):
                location = call.name
                break
        found.append((op, location))
    text = str(error)
    for op in _OP_RE.findall(text):
        if op not in [o for o, _ in found]:
            found.append((op, None))
    for group in _LIST_RE.findall(text):
        for op in (o.strip() for o in group.split(",")):
            if op and op not in [o for o, _ in found]:
                found.append((op, None))
    return found


def _layers_by_conversion(model, ops: set[str], supported_ops) -> dict[str, list[str]]:
    """Convert each top-level layer alone and record which ones fail on which of ``ops``."""
    where: dict[str, list[str]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            inp = layer.input
        except (AttributeError, ValueError):
            continue
        if not isinstance(inp, tf.Tensor) and not hasattr(inp, "shape"):
            continue
        if isinstance(inp, (list, tuple, dict)) or any(d is None for d in inp.shape[1:]):
            continue
        spec = tf.TensorSpec([1, *inp.shape[1:]], inp.dtype)
        try:
            fn = tf.function(lambda x, _layer=layer: _layer(x, training=False), input_signature=[spec])
            conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
            conv.target_spec.supported_ops = supported_ops
            conv.convert()
        except Exception as e:  # noqa: BLE001 - any failure is examined for the ops we look for
            for op, _ in _parse_unsupported(e):
                if op in ops:
                    where.setdefault(op, []).append(layer.name)
    return where


def _unsupported_error(model, error, supported_ops, allow_select_ops) -> UnsupportedOpsError | None:
    pairs = _parse_unsupported(error)
    if not pairs:
        return None
    result: list[UnsupportedOp] = []
    unresolved = set()
    for op, location in pairs:
        layer = layer_from_name(location, model) if location else None
        if layer is None:
            unresolved.add(op)
        elif UnsupportedOp(op, layer) not in result:
            result.append(UnsupportedOp(op, layer))
    if unresolved:
        where = _layers_by_conversion(model, unresolved, supported_ops)
        for op in sorted(unresolved):
            for layer in where.get(op, [None]):
                if UnsupportedOp(op, layer) not in result:
                    result.append(UnsupportedOp(op, layer))
    # An op located in a layer makes its "layer unknown" twin redundant.
    located = {u.op for u in result if u.layer}
    result = [u for u in result if u.layer or u.op not in located]
    listed = "; ".join(f"layer {u.layer!r} uses TF op {u.op!r}" if u.layer else
                       f"TF op {u.op!r} (layer not found)" for u in result)
    hint = ("it is neither a TFLite builtin nor a Select TF op (it needs a custom op)" if allow_select_ops
            else "TFLite builtins cannot express it. Rewrite the layer with builtin-convertible ops, or "
                 "pass allow_select_ops=True (the .tflite then needs the Flex delegate, which stock "
                 "microcontroller and many mobile runtimes lack)")
    return UnsupportedOpsError(f"Cannot convert `model` {model.name!r}: {listed}; {hint}. "
                               f"Received: allow_select_ops={allow_select_ops}", result)


def _convert_binary(model, representative_data, allow_select_ops, batch_size) -> bytes:
    baked = bake_binary_to_int8(model, representative_data=representative_data)  # a tf_keras model
    return convert(baked, "int8", representative_data, allow_select_ops=allow_select_ops,
                   batch_size=batch_size)


def convert(model, mode: str = "float", representative_data=None, path=None, allow_select_ops: bool = False,
            *, batch_size: int | None = None) -> bytes:
    """Convert a Keras 3 or tf_keras model to a TFLite flatbuffer.

    Modes (TFLite post-training quantization, all from a concrete function with a fixed input
    signature):

    * ``"float"``: float32 weights and activations.
    * ``"float16"``: weights stored as float16 (dequantized to float32 at load time).
    * ``"dynamic"``: dynamic-range quantization; weights int8 (``w ~ s * q``, per channel),
      activations float, quantized on the fly by the kernels.
    * ``"int8"``: full integer: weights and activations int8 with scales from
      ``representative_data`` (``x ~ s * (q - z)``); the model's input and output tensors are
      int8 too (:class:`TFLiteModel` (de)quantizes for you). Needs ``representative_data``.
    * ``"binary"``: binary-weight layers baked to int8 weights of +-1 with per-channel scales;
      :func:`tfrobust.tflite_tools.bake_binary_to_int8` rewrites them as ``Dense``/``Conv2D``,
      then the result is converted as ``"int8"``.

    Only TFLite builtin ops are allowed unless ``allow_select_ops=True`` (Select TF ops, which
    need the Flex delegate). When the model needs anything else, the error is an
    :class:`UnsupportedOpsError` naming each layer and TensorFlow op (from the converter's
    error locations, or by converting the layers one by one when no location survived).

    Args:
      model: a built, single-input Keras 3 or tf_keras model (``"binary"`` rebuilds a Keras 3
        model as tf_keras first, see ``docs/keras3.md``).
      mode: one of ``"float"``, ``"float16"``, ``"dynamic"``, ``"int8"``, ``"binary"``.
      representative_data: calibration images for ``"int8"``/``"binary"``: a float array
        ``[N, H, W, C]`` (a few hundred training images are enough), a ``tf.data.Dataset`` of
        image batches or ``(image, label)`` batches, or a generator function as TFLite expects.
      path: if given, the bytes are also written there atomically.
      allow_select_ops: allow Select TF ops (Flex) besides builtins.
      batch_size: batch size of the .tflite input (None keeps the model's, dynamic if unset; use 1
        for microcontrollers).

    Returns:
      The .tflite bytes.

    Raises:
      TypeError: ``model`` is not a Keras model (Keras 3 and tf_keras both convert), bad data dtype.
      ValueError: bad ``mode``, missing calibration data, bad shapes.
      UnsupportedOpsError: the model needs ops outside the allowed op sets (a ``ValueError``).

    Example:
      >>> data = convert(model, "int8", representative_data=x_train[:300], path="m.tflite")  # doctest: +SKIP

    References:
      Jacob et al., Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
      Inference, CVPR 2018, https://arxiv.org/abs/1712.05877
    """
    check_keras_model(model)  # Keras 3 models convert natively (float, dynamic, float16, int8)
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(repr(m) for m in MODES)}. "
                         f"Received: mode={mode!r}")
    if not isinstance(allow_select_ops, bool):
        raise TypeError(f"`allow_select_ops` must be a bool. Received: allow_select_ops={allow_select_ops!r}")
    if mode in ("int8", "binary") and representative_data is None:
        raise ValueError(f"mode={mode!r} needs `representative_data` (a few hundred training images) to "
                         "calibrate int8 activation ranges. Received: representative_data=None")
    if mode not in ("int8", "binary") and representative_data is not None:
        raise ValueError(f"`representative_data` is only used by mode='int8' or 'binary'. Received: "
                         f"mode={mode!r} with representative_data")
    spec = _input_signature(model, batch_size)
    if mode == "binary":
        # The binary path rewrites tf_keras layers; a Keras 3 model goes through the bridge.
        model = rebuild(model, "tf_keras") if flavour(model) == "keras3" else model
        data = _convert_binary(model, representative_data, allow_select_ops, batch_size)
    else:
        concrete = _concrete_function(model, spec)
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS
        supported = [builtins] + ([tf.lite.OpsSet.SELECT_TF_OPS] if allow_select_ops else [])

        def build(trackable):
            args = ([concrete],) if trackable is None else ([concrete], trackable)
            converter = tf.lite.TFLiteConverter.from_concrete_functions(*args)
            converter.target_spec.supported_ops = supported
            if mode != "float":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if mode == "float16":
                converter.target_spec.supported_types = [tf.float16]
            if mode == "int8":
                converter.representative_dataset = _calibration_batches(representative_data, spec)
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            return converter

        try:
            # Fast path without the trackable object: passing the model makes TF save it as a
            # SavedModel first (~8x slower on small models) for byte-identical results.
            data = build(None).convert()
        except Exception:  # noqa: BLE001 - retried on the path that handles every model
            try:
                data = build(model).convert()
            except Exception as e:  # noqa: BLE001 - unsupported-op failures are re-raised with the layer
                mapped = _unsupported_error(model, e, supported, allow_select_ops)
                if mapped is None:
                    raise
                raise mapped from e
    if path is not None:
        atomic_write_bytes(path, data)
    return data
