"""Stock-runtime path for binary-weight models: bake binary layers into plain Conv2D/Dense.

Every TFLite runtime (LiteRT, TFLite Micro, vendor NPUs) already runs int8 convolutions; none runs
binary ones. :func:`bake_binary_to_int8` replaces each :class:`~tfrobust.layers.BinaryDense` /
:class:`~tfrobust.layers.BinaryConv2D` with real-valued inputs (modes ``"binaryconnect"`` and
``"bwn"``) by a standard ``Dense`` / ``Conv2D`` whose kernel is the deployed binary kernel
``alpha_j . sign(W)`` (``alpha_j = 1`` for BinaryConnect). The standard full-integer converter then
quantizes each output channel ``j`` symmetrically with scale ``s_j = alpha_j / 127``, so every
baked kernel holds exactly two int8 values per channel, ``q = +-127`` with ``q . s_j = +-alpha_j``
exactly: one bit of information per weight, ready for TFLite Micro's 1-bit (two-entry lookup table)
weight compression, and no accuracy lost to weight rounding. :func:`binary_weight_report` checks
that property on the converted flatbuffer, and :func:`unit_binary_weights` rewrites such kernels to
int8 ``+-1`` with scale ``alpha_j`` (the same real weights).

Layers that binarize their *inputs* (``"xnor"`` mode, or ``binary_inputs=True``) cannot be
expressed by a stock int8 convolution (the sign of the activation and XNOR-Net's ``K`` map are
run-time operations); they are refused with an error pointing to the bit-packed C export
(``tfrobust.tflite_tools._bitpack``).

References:
  Courbariaux et al., BinaryConnect, https://arxiv.org/abs/1511.00363
  Rastegari et al., XNOR-Net, https://arxiv.org/abs/1603.05279
"""

from __future__ import annotations

import numpy as np

from tfrobust._keras import check_tf_keras_model, keras
from tfrobust.layers import BinaryConv2D, BinaryDense

__all__ = ["bake_binary_to_int8", "binary_weight_report", "unit_binary_weights"]

_BINARY_TYPES = (BinaryDense, BinaryConv2D)


def _baked_layer(layer):
    if layer.binary_inputs:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}, mode={layer.mode!r}) binarizes its inputs "
            "at run time, which no stock int8 kernel can do; bake only binary-weight layers (modes "
            "'binaryconnect'/'bwn' with binary_inputs=False), or export the whole network with the "
            "bit-packed C path (tfrobust.tflite_tools._bitpack.generate_c). Received: "
            f"binary_inputs={layer.binary_inputs}"
        )
    common = dict(activation=layer.activation, use_bias=layer.use_bias, name=layer.name,
                  dtype=layer.dtype_policy)
    if isinstance(layer, BinaryDense):
        return keras.layers.Dense(layer.units, **common)
    return keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                               padding=layer.padding, **common)


def _clone_function(layer):
    if isinstance(layer, _BINARY_TYPES):
        return _baked_layer(layer)
    if isinstance(layer, keras.Model) and any(isinstance(sub, _BINARY_TYPES) for sub in layer.submodules):
        raise ValueError(
            f"Nested model '{layer.name}' contains binary layers; flatten it into the outer model before "
            f"baking. Received: layer={layer.name!r}"
        )
    return layer.__class__.from_config(layer.get_config())


def bake_binary_to_int8(model, representative_data=None):
    """Return a tf_keras model with binary-weight layers replaced by ``Dense``/``Conv2D``.

    The returned model computes the same function as ``model`` at inference (the kernels are the
    binary layers' deployed kernels ``alpha . sign(W)``) and contains only standard layers, so
    ``tfrobust.tflite_tools.convert(baked, mode="int8", representative_data=...)`` produces a
    full-integer model whose baked kernels are ``+-127`` per channel with scale ``alpha_j / 127``.

    This function returns a **Keras model, not TFLite bytes**; the caller converts it.

    Args:
      model: a tf_keras functional or Sequential model (top-level binary layers; nested models with
        binary layers are refused).
      representative_data: optional float array of model inputs. When given, up to 64 of its
        rows check that the baked model reproduces ``model``'s outputs (a safety net for custom
        layers that do not clone faithfully); a mismatch raises ``RuntimeError``.

    Returns:
      A new tf_keras model with the same layer names.

    Raises:
      TypeError: ``model`` is not a tf_keras model.
      ValueError: a binary layer binarizes its inputs (``"xnor"`` mode or ``binary_inputs=True``),
        naming the layer.
    """
    check_tf_keras_model(model)
    if not any(isinstance(layer, _BINARY_TYPES) for layer in model.layers):
        raise ValueError(
            "`model` has no BinaryDense/BinaryConv2D layer to bake. Received: model with layers "
            f"{[layer.name for layer in model.layers]}"
        )
    baked = keras.models.clone_model(model, clone_function=_clone_function)
    for old, new in zip(model.layers, baked.layers):
        if isinstance(old, _BINARY_TYPES):
            weights = [old.binary_kernel(training=False).numpy()]
            if old.use_bias:
                weights.append(old.bias.numpy())
            new.set_weights(weights)
        else:
            new.set_weights(old.get_weights())
    if representative_data is not None and hasattr(representative_data, "shape"):
        x = np.asarray(representative_data[:64], dtype=np.float32)
        ref = np.asarray(model(x, training=False))
        got = np.asarray(baked(x, training=False))
        tol = 1e-4 * max(1.0, float(np.max(np.abs(ref))))
        if ref.shape != got.shape or float(np.max(np.abs(ref - got))) > tol:
            raise RuntimeError(
                "The baked model does not reproduce the binary model on `representative_data` "
                f"(max abs diff {float(np.max(np.abs(ref - got)))}); a layer did not clone faithfully."
            )
    return baked


_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _check_bytes(tflite_bytes):
    if not isinstance(tflite_bytes, (bytes, bytearray)):
        raise TypeError(f"`tflite_bytes` must be bytes. Received: tflite_bytes of type "
                        f"{type(tflite_bytes).__name__}")


def _int8_kernels(model_obj):
    """Yield ``(tensor, buffer, values, bias)`` for every constant int8 kernel (input 1 of conv / FC ops).

    ``bias`` is ``(tensor, buffer)`` of the op's constant int32 bias (input 2) or None.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for graph in model_obj.subgraphs:
        seen = set()
        for op in graph.operators:
            code = model_obj.operatorCodes[op.opcodeIndex]
            name = names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "")
            if name not in _KERNEL_OPS or op.inputs is None or len(op.inputs) < 2:
                continue
            idx = int(op.inputs[1])
            tensor = graph.tensors[idx]
            if idx in seen or tensor.type != schema.TensorType.INT8 or not tensor.buffer:
                continue
            buffer = model_obj.buffers[tensor.buffer]
            if buffer.data is None or len(buffer.data) == 0:
                continue
            seen.add(idx)
            values = np.frombuffer(bytes(bytearray(buffer.data)), dtype=np.int8).reshape(tensor.shape)
            bias = None
            if len(op.inputs) > 2 and int(op.inputs[2]) >= 0:
                bias_tensor = graph.tensors[int(op.inputs[2])]
                bias_buffer = model_obj.buffers[bias_tensor.buffer] if bias_tensor.buffer else None
                if (bias_tensor.type == schema.TensorType.INT32 and bias_buffer is not None
                        and bias_buffer.data is not None and len(bias_buffer.data) > 0):
                    bias = (bias_tensor, bias_buffer)
            yield tensor, buffer, values, bias


def _channel_levels(tensor, values):
    q = tensor.quantization
    axis = int(q.quantizedDimension) if q is not None else 0
    per_channel = q is not None and q.scale is not None and len(q.scale) > 1
    if not per_channel:
        return axis, False, [np.unique(values)]
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return axis, True, [np.unique(row) for row in moved]


def _is_binary(levels):
    return all(len(lv) <= 2 and (len(lv) < 2 or lv[0] == -lv[1]) for lv in levels)


def binary_weight_report(tflite_bytes: bytes) -> list[dict]:
    """Describe the int8 kernels of a converted model and whether each one is binary per channel.

    For every constant int8 kernel (input 1 of ``CONV_2D``, ``DEPTHWISE_CONV_2D``,
    ``FULLY_CONNECTED``) it reports the number of distinct values per output channel and whether
    each channel holds only ``{-q, +q}`` (a binary kernel with a per-channel scale).

    Args:
      tflite_bytes: a ``.tflite`` flatbuffer.

    Returns:
      One dict per kernel: ``name``, ``shape``, ``quantized_dimension``, ``per_channel`` (bool),
      ``max_levels_per_channel``, ``binary`` (bool), ``levels`` (the distinct int8 values, sorted).
    """
    _check_bytes(tflite_bytes)
    from ai_edge_litert.tools import flatbuffer_utils

    model_obj = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    rows = []
    for tensor, _, values, _ in _int8_kernels(model_obj):
        axis, per_channel, levels = _channel_levels(tensor, values)
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        rows.append({
            "name": name,
            "shape": [int(d) for d in values.shape],
            "quantized_dimension": axis,
            "per_channel": per_channel,
            "max_levels_per_channel": max(len(lv) for lv in levels),
            "binary": _is_binary(levels),
            "levels": [int(v) for v in np.unique(values)],
        })
    return rows


def unit_binary_weights(tflite_bytes: bytes) -> bytes:
    """Rewrite binary int8 kernels from ``+-q_j`` (scale ``s_j``) to ``+-1`` (scale ``q_j s_j``).

    The converter stores a baked binary kernel as ``+-127`` with scale ``alpha_j / 127``; this
    pass stores the same real weights ``+-alpha_j`` as int8 ``+-1`` with scale ``alpha_j`` (the
    product ``q . s`` is unchanged, so the integer kernels compute the same accumulators divided by
    ``q_j`` and requantize with a multiplier ``q_j`` times larger). The op's int32 bias, stored on
    the accumulator scale, is divided by ``q_j`` too (rounded: at most half an accumulator step of
    the new scale). Kernels that are not binary per channel are left untouched.

    Args:
      tflite_bytes: a ``.tflite`` flatbuffer (e.g. from ``convert(model, "binary", ...)``).

    Returns:
      The rewritten flatbuffer.
    """
    _check_bytes(tflite_bytes)
    from ai_edge_litert.tools import flatbuffer_utils

    model_obj = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    for tensor, buffer, values, bias in _int8_kernels(model_obj):
        _, _, levels = _channel_levels(tensor, values)
        if not _is_binary(levels):
            continue
        mags = np.array([float(np.max(np.abs(lv.astype(np.int32)))) for lv in levels])
        mags[mags == 0] = 1.0
        q = tensor.quantization
        q.scale = [float(s) * m for s, m in zip(q.scale, mags)]
        buffer.data = np.sign(values).astype(np.int8).reshape(-1).view(np.uint8)
        if bias is not None:
            # The int32 bias lives on the accumulator's scale (input scale x weight scale), which
            # grows by q_j: divide the stored integers by q_j (rounding) and scale up likewise.
            bias_tensor, bias_buffer = bias
            stored = np.frombuffer(bytes(bytearray(bias_buffer.data)), dtype=np.int32)
            per = mags if len(mags) == stored.size else np.full(stored.size, mags[0])
            bias_buffer.data = np.round(stored / per).astype(np.int32).view(np.uint8)
            bq = bias_tensor.quantization
            if bq is not None and bq.scale is not None:
                bq.scale = [float(s) * m for s, m in zip(bq.scale, per if len(bq.scale) > 1 else per[:1])]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_obj))
