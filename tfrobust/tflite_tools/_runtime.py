"""``TFLiteModel``: a .tflite file as a float-in, float-logits-out callable (LiteRT)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V


def _load_bytes(path_or_bytes, argument: str) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        path = Path(path_or_bytes)
        if not path.is_file():
            raise FileNotFoundError(f"No .tflite file at {str(path)!r}. Received: {argument}={str(path)!r}")
        data = path.read_bytes()
    else:
        raise TypeError(f"`{argument}` must be a path or the bytes of a .tflite model. Received: "
                        f"{argument} of type {type(path_or_bytes).__name__}")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"`{argument}` is not a TFLite flatbuffer (no 'TFL3' identifier). "
                         f"Received: {argument} of {len(data)} bytes")
    return data


def _round_half_away(v: np.ndarray) -> np.ndarray:
    # TFLite's reference Quantize rounds half away from zero (std::round), not half to even.
    return np.trunc(v + np.copysign(0.5, v))


class TFLiteModel:
    """Run a .tflite classifier with LiteRT as a ``model_fn``: float images in, float logits out.

    Quantized models are handled here: a float batch ``x`` is quantized with the input tensor's
    parameters, ``q = clip(round(x / s_in) + z_in)``, and raw outputs are dequantized,
    ``logits = s_out * (q_out - z_out)``. Batches of any size run either by resizing a
    dynamic-batch input (``shape_signature[0] == -1``) or, for fixed-batch models (e.g. the
    batch-1 exports for microcontrollers), by looping over chunks with the last one padded.

    Calling the object returns a ``tf.Tensor`` (float32) so it fits the ``model_fn`` contract of
    ``tfrobust.attacks`` and ``tfrobust.evaluation``; inside a ``tf.function`` it runs through
    ``tf.numpy_function``. It has no gradient: use it with gradient-free attacks, or with
    adversarial examples crafted on the Keras model (transfer). :meth:`predict` returns NumPy.

    Args:
      path_or_bytes: a .tflite path or its bytes.
      num_threads: LiteRT CPU threads (None: LiteRT's default).
      batch_size: largest chunk run per ``invoke`` on dynamic-batch models.
      reference_kernels: run LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``) instead
        of its optimized ones (XNNPACK, ruy). TFLite Micro ports the reference kernels, so this is
        the runtime TFLM must match bit for bit; the optimized int8 kernels may round differently
        by an LSB, which a data-dependent mask (k-WTA, WTA-dropout) can turn into a flipped
        near-tie.

    Example:
      >>> lite = TFLiteModel(convert(model, "int8", x_cal))  # doctest: +SKIP
      >>> logits = lite(x_test[:8])                           # tf.Tensor [8, 10], float32
    """

    def __init__(self, path_or_bytes, num_threads: int | None = None, *, batch_size: int = 256,
                 reference_kernels: bool = False):
        if num_threads is not None:
            V.integer("num_threads", num_threads, minimum=1)
        V.integer("batch_size", batch_size, minimum=1)
        if not isinstance(reference_kernels, bool):
            raise TypeError("`reference_kernels` must be a bool. Received: "
                            f"reference_kernels={reference_kernels!r}")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.model_bytes = _load_bytes(path_or_bytes, "path_or_bytes")
        self.num_threads = num_threads
        self.batch_size = batch_size
        self.reference_kernels = reference_kernels
        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        self._interp = Interpreter(model_content=self.model_bytes, num_threads=num_threads,
                                   experimental_op_resolver_type=resolver)
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError("TFLiteModel runs single-input, single-output classifiers. Received: a model "
                             f"with {len(inputs)} inputs and {len(outputs)} outputs")
        self._in, self._out = inputs[0], outputs[0]
        signature = self._in.get("shape_signature", self._in["shape"])
        self.dynamic_batch = len(signature) > 0 and int(signature[0]) == -1
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self._in_scale, self._in_zp = self._in["quantization"]
        self._out_scale, self._out_zp = self._out["quantization"]
        self._current_batch = None
        if not self.dynamic_batch:
            self._interp.allocate_tensors()
            self._current_batch = self.input_shape[0]

    @property
    def input_details(self) -> dict:
        """LiteRT's details of the input tensor (name, shape, dtype, quantization)."""
        return dict(self._in)

    @property
    def output_details(self) -> dict:
        """LiteRT's details of the output tensor."""
        return dict(self._out)

    # -- (de)quantization ------------------------------------------------------------------
    @property
    def quantized_input(self) -> bool:
        return np.issubdtype(self.input_dtype, np.integer)

    @property
    def quantized_output(self) -> bool:
        return np.issubdtype(self.output_dtype, np.integer)

    @property
    def input_quantization(self):
        """``(scale, zero_point, qmin, qmax)`` of an integer input tensor, or ``None`` (float input).

        A full-integer file sees ``q = round(x / scale) + zero_point`` clipped to ``[qmin, qmax]``:
        only the grid ``x = (q - zero_point) . scale`` reaches it, so a float candidate inside an
        eps-ball may reach the file half a step outside it. :func:`tfrobust.evaluation.
        robust_accuracy_deployed` moves each candidate onto this grid inside the ball before it
        confirms a success (as for :class:`BitpackRunner`'s ``uint8`` pixels).
        """
        if not self.quantized_input:
            return None
        info = np.iinfo(self.input_dtype)
        return (float(self._in_scale), int(self._in_zp), int(info.min), int(info.max))

    def quantize_input(self, x) -> np.ndarray:
        """Float images -> the input tensor's dtype (identity cast for float models)."""
        x = self._check_x(x)
        if not self.quantized_input:
            return x.astype(self.input_dtype)
        info = np.iinfo(self.input_dtype)
        q = _round_half_away(x.astype(np.float64) / self._in_scale) + self._in_zp
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def dequantize_output(self, raw) -> np.ndarray:
        """Raw output tensor values -> float32 logits."""
        raw = np.asarray(raw)
        if not self.quantized_output:
            return raw.astype(np.float32)
        return ((raw.astype(np.float32) - np.float32(self._out_zp)) * np.float32(self._out_scale))

    def _check_x(self, x) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError("`x` must be float images in the range the model was trained on (tfrobust "
                            f"datasets give [0, 1]); cast integer images, e.g. x / 255. Received: "
                            f"x.dtype={x.dtype}")
        if x.ndim != len(self.input_shape) or tuple(x.shape[1:]) != self.input_shape[1:]:
            raise ValueError(f"`x` must have shape [N, {', '.join(map(str, self.input_shape[1:]))}]. "
                             f"Received: x.shape={x.shape}")
        return x

    # -- running ---------------------------------------------------------------------------
    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        if self.dynamic_batch and self._current_batch != len(chunk):
            self._interp.resize_tensor_input(self._in["index"], [len(chunk), *self.input_shape[1:]])
            self._interp.allocate_tensors()
            self._current_batch = len(chunk)
        self._interp.set_tensor(self._in["index"], chunk)
        self._interp.invoke()
        return np.array(self._interp.get_tensor(self._out["index"]), copy=True)

    def run_raw(self, q) -> np.ndarray:
        """Run on inputs already in the input dtype; return raw outputs (int8 for int8 models)."""
        q = np.asarray(q, dtype=self.input_dtype)
        if len(q) == 0:
            return np.zeros((0, *self._out["shape"][1:]), self.output_dtype)
        step = self.batch_size if self.dynamic_batch else self.input_shape[0]
        outs = []
        for start in range(0, len(q), step):
            chunk = q[start:start + step]
            n = len(chunk)
            if not self.dynamic_batch and n < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            outs.append(self._invoke(np.ascontiguousarray(chunk))[:n])
        return np.concatenate(outs)

    def predict(self, x) -> np.ndarray:
        """Float images ``[N, H, W, C]`` -> float32 logits ``[N, K]`` as NumPy."""
        return self.dequantize_output(self.run_raw(self.quantize_input(x)))

    def __call__(self, x) -> tf.Tensor:
        """Float images -> float32 logits as a ``tf.Tensor`` (works inside ``tf.function``)."""
        if isinstance(x, tf.Tensor) and not tf.executing_eagerly():
            out = tf.numpy_function(lambda a: self.predict(a), [x], tf.float32, stateful=False)
            out.set_shape([x.shape[0], *self._out["shape"][1:]])
            return out
        return tf.convert_to_tensor(self.predict(np.asarray(x)))

    def __repr__(self) -> str:
        return (f"TFLiteModel(input={self.input_dtype.name}{list(self.input_shape)}, "
                f"output={self.output_dtype.name}, bytes={len(self.model_bytes)}, "
                f"num_threads={self.num_threads})")
