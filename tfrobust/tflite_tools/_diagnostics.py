"""Quantization diagnostics: which layers int8 hurts, and which remedy brings the decisions back."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import keras
from tfrobust.tflite_tools import _convert
from tfrobust.tflite_tools._evaluate import batched_logits
from tfrobust.tflite_tools._names import layer_from_name
from tfrobust.tflite_tools._runtime import TFLiteModel
from tfrobust.utils import markdown_table

QAT_ADVICE = ("QAT: fine-tune with fake quantization in the loop "
              "(`tfrobust.compression.quantize(model)`, 1-2 epochs at a lower learning rate, then "
              "`convert(qat_model, 'int8', ...)`); the network learns ranges int8 can represent. Works on "
              "phones and microcontrollers; not measured here (needs training).")


@dataclasses.dataclass
class LayerError:
    """Error of one layer's int8 output against the float model's (accumulated up to that layer).

    ``relative_error`` is the mean over channels of ``RMSE_c / std_c`` (0: exact, ~1: the signal is
    lost); ``added_error`` its increase over the worst earlier layer, i.e. what this layer loses;
    ``rmse_over_scale`` is QuantizationDebugger's metric (~0.29 for pure rounding noise).
    """

    layer: str
    tensor: str
    scale: float
    rmse: float
    rmse_over_scale: float
    relative_error: float
    added_error: float
    value_range: tuple


@dataclasses.dataclass
class QuantizationDiagnosis:
    """Result of :func:`diagnose_quantization`."""

    agreement: float
    float_accuracy: float | None
    int8_accuracy: float | None
    layers: list
    worst_layers: list
    remedies: list
    notes: list

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_markdown(self) -> str:
        acc = "" if self.float_accuracy is None else (
            f" (accuracy float {self.float_accuracy:.4f}, int8 {self.int8_accuracy:.4f})")
        errors = markdown_table(
            ["layer", "tensor scale", "RMSE", "RMSE/scale", "relative error", "added by this layer"],
            [[e.layer, f"{e.scale:.4g}", f"{e.rmse:.4g}", f"{e.rmse_over_scale:.3f}",
              f"{e.relative_error:.3f}", f"{e.added_error:+.3f}"] for e in self.layers])
        remedies = markdown_table(
            ["remedy", "agreement", "where it runs", "note"],
            [[r["remedy"], "-" if r["agreement"] is None else f"{r['agreement']:.4f}", r["runs_on"],
              r["note"]] for r in self.remedies])
        lines = [f"int8 agrees with the float model on **{self.agreement:.4f}** of the inputs{acc}.", "",
                 errors, "", f"Layers that lose most: {', '.join(self.worst_layers) or 'none'}.", "",
                 remedies, ""]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _labels(model_fn, x, batch_size=256):
    return np.argmax(batched_logits(model_fn, x, batch_size), 1)


def int8_agreement(model, model_bytes, x, *, batch_size=256) -> float:
    """Fraction of ``x`` on which the ``.tflite`` and the Keras model predict the same class."""
    x = np.asarray(x, np.float32)
    lite = TFLiteModel(model_bytes)
    return float(np.mean(_labels(lite.predict, x, batch_size)
                         == _labels(lambda b: model(b, training=False), x, batch_size)))


def _converter(model, calibration, *, per_channel=True, int16_activations=False):
    spec = _convert._input_signature(model, None)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([_convert._concrete_function(model, spec)])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _convert._calibration_batches(calibration, spec)
    if int16_activations:
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not per_channel:
        conv._experimental_disable_per_channel = True
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    else:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = False
    return conv, spec


def _layer_outputs(model, model_bytes, x):
    """(layer, tensor name, scale, zero point, int8 values) of each Keras layer's last tensor, in order."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
    interp.allocate_tensors()
    scale, zp = inp["quantization"]
    q = np.clip(np.round(x / scale) + zp, -128, 127).astype(inp["dtype"]) if scale else x.astype(inp["dtype"])
    interp.set_tensor(inp["index"], q)
    interp.invoke()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    out_index = interp.get_output_details()[0]["index"]
    last = {}
    for op in interp._get_ops_details():  # execution order
        for t in op["outputs"]:
            d = details[t]
            name = layer_from_name(d["name"], model)
            if name is None and t == out_index:
                name = model.layers[-1].name
            if name is None or not d["quantization"][0]:
                continue
            last[name] = (t, d)
    order = [layer.name for layer in model.layers if layer.name in last]
    return [(n, last[n][1]["name"], float(last[n][1]["quantization"][0]), int(last[n][1]["quantization"][1]),
             interp.get_tensor(last[n][0]).copy()) for n in order]


def _layer_errors(model, model_bytes, x):
    outputs = _layer_outputs(model, model_bytes, x)
    if not outputs:
        return []
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n, *_ in outputs])
    floats = probe(x, training=False)
    floats = floats if isinstance(floats, (list, tuple)) else [floats]
    errors, worst = [], 0.0
    for (name, tensor, scale, zp, qv), fv in zip(outputs, floats):
        fv = np.asarray(fv, np.float64)
        if fv.shape != qv.shape:
            continue
        deq = scale * (qv.astype(np.float64) - zp)
        diff = (deq - fv).reshape(-1, fv.shape[-1])
        flat = fv.reshape(-1, fv.shape[-1])
        std = flat.std(0)
        live = std > 1e-6 * max(1.0, float(np.abs(flat).max()))
        rmse_c = np.sqrt(np.mean(diff ** 2, 0))
        rel = float(np.mean(rmse_c[live] / std[live])) if live.any() else 0.0
        rmse = float(np.sqrt(np.mean(diff ** 2)))
        errors.append(LayerError(name, tensor, scale, rmse, rmse / scale, rel, rel - worst,
                                 (float(fv.min()), float(fv.max()))))
        worst = max(worst, rel)
    return errors


def _keep_float(model, calibration, debug_x, layers):
    """Selective quantization: ``layers`` and the ops reading their outputs stay float (LiteRT)."""
    from ai_edge_litert.interpreter import Interpreter

    conv, spec = _converter(model, calibration)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    debug_data = _convert._calibration_batches(debug_x, spec)
    base = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=debug_data)
    interp = Interpreter(model_content=base.get_nondebug_quantized_model())
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    produced = {t for op in ops for t in op["outputs"]
                if layer_from_name(details[t]["name"], model) in layers}
    names = {details[t]["name"] for t in produced}
    for op in ops:  # ops reading a float tensor stay float (else it is re-quantized with its range)
        if set(op["inputs"]) & produced:
            names |= {details[t]["name"] for t in op["outputs"]}
    # The converter suffixes a name taken twice ("Identity1"); the debugger matches the original.
    names |= {re.sub(r"\d+$", "", n) for n in names}
    conv, spec = _converter(model, calibration)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=sorted(names))
    dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=debug_data,
                                                    debug_options=options)
    return dbg.get_nondebug_quantized_model()


def diagnose_quantization(model, representative_data, x, y=None, *, model_bytes=None, calibration_pool=None,
                          top=2, remedies=True, batch_size=256) -> QuantizationDiagnosis:
    """Per-layer int8 error of a model, the layers that lose most, and measured remedies.

    Runs the float Keras model and the int8 ``.tflite`` (``model_bytes``, or converted here from
    ``representative_data``) on ``x``, reads every intermediate tensor of the interpreter
    (LiteRT's ``experimental_preserve_all_tensors``), dequantizes it (``s (q - z)``) and compares it
    with the float output of the Keras layer it belongs to. Per layer: RMSE, RMSE / scale (the
    metric of TensorFlow's ``QuantizationDebugger``), and the scale-free relative error
    ``mean_c RMSE_c / std_c`` over channels ``c``; a layer's *added* error is its increase over the
    worst earlier layer, so the layer where the signal is lost is named, not the ones downstream
    of it (a layer with one huge-range channel collapses every other channel to a few levels).

    Remedies, each measured as the agreement with the float model on ``x`` (1.0 = same decisions):

    - more calibration data (``calibration_pool``, when given): phones and microcontrollers;
    - per-channel vs per-tensor weights (per-channel is TFLite's default for Conv and, in current
      TensorFlow, Dense): both;
    - 16x8 (int16 activations, int8 weights): phones (LiteRT); TFLite Micro has int16 kernels for
      only some ops;
    - keeping the worst layers (and the ops reading their outputs) float: phones only -- an
      int8-only microcontroller build has no float kernels and no FPU budget for them;
    - QAT: advised, not measured (it needs training).

    Args:
      model: the float tf_keras model.
      representative_data: calibration images (as for :func:`~tfrobust.tflite_tools.convert`).
      x: images to compare on (a few hundred).
      y: optional labels, to report float and int8 accuracy.
      model_bytes: an existing int8 ``.tflite`` of ``model`` (default: converted here).
      calibration_pool: more calibration images for the "more calibration data" remedy.
      top: how many layers to name.
      remedies: measure the remedies (several conversions; set False for the error table only).
      batch_size: evaluation batch size.

    Returns:
      A :class:`QuantizationDiagnosis` (``to_markdown()``, ``to_dict()``).
    """
    top = V.integer("top", top, minimum=1)
    remedies = V.boolean("remedies", remedies)
    x = V.finite_array("x", x, dtype=np.float32)
    if model_bytes is None:
        model_bytes = _convert.convert(model, "int8", representative_data)
    float_pred = _labels(lambda b: model(b, training=False), x, batch_size)
    int8_pred = _labels(TFLiteModel(model_bytes).predict, x, batch_size)
    agreement = float(np.mean(float_pred == int8_pred))
    float_acc = int8_acc = None
    if y is not None:
        yl = V.labels(y, n=len(x))
        float_acc, int8_acc = float(np.mean(float_pred == yl)), float(np.mean(int8_pred == yl))
    errors = _layer_errors(model, model_bytes, x[:min(len(x), 512)])
    ranked = sorted(errors, key=lambda e: -e.added_error)
    worst = [e.layer for e in ranked[:top] if e.added_error > 0.05]
    notes = [QAT_ADVICE]

    def agree(data):
        return float(np.mean(_labels(TFLiteModel(data).predict, x, batch_size) == float_pred))

    measured = [{"remedy": "none (int8 as converted)", "agreement": agreement, "runs_on": "phones, MCUs",
                 "note": ""}]
    if remedies:
        if calibration_pool is not None:
            pool = np.asarray(calibration_pool, np.float32)
            conv, _ = _converter(model, pool)
            _int8_io(conv)
            measured.append({"remedy": f"more calibration data ({len(pool)} images)", "agreement":
                             agree(conv.convert()), "runs_on": "phones, MCUs", "note": ""})
        else:
            measured.append({"remedy": "more calibration data", "agreement": None, "runs_on": "phones, MCUs",
                             "note": "pass calibration_pool to measure"})
        for per_channel in (True, False):
            conv, _ = _converter(model, representative_data, per_channel=per_channel)
            _int8_io(conv)
            measured.append({"remedy": "per-channel weights" if per_channel else "per-tensor weights (for "
                             "comparison)", "agreement": agree(conv.convert()), "runs_on": "phones, MCUs",
                             "note": "TFLite's default for Conv and Dense" if per_channel else ""})
        conv, _ = _converter(model, representative_data, int16_activations=True)
        try:
            measured.append({"remedy": "16x8 (int16 activations)", "agreement": agree(conv.convert()),
                             "runs_on": "phones (LiteRT)", "note": "TFLM: int16 kernels for some ops only"})
        except Exception as e:  # noqa: BLE001 - an op without a 16x8 kernel: report, do not fail
            measured.append({"remedy": "16x8 (int16 activations)", "agreement": None,
                             "runs_on": "phones (LiteRT)",
                             "note": f"conversion failed: {str(e).splitlines()[0][:80]}"})
        if worst:
            try:
                data = _keep_float(model, representative_data, x[:64], set(worst))
                measured.append({"remedy": f"keep {', '.join(worst)} float", "agreement": agree(data),
                                 "runs_on": "phones only",
                                 "note": "an int8-only MCU cannot run float layers"})
            except Exception as e:  # noqa: BLE001 - selective quantization is experimental in TF
                measured.append({"remedy": f"keep {', '.join(worst)} float", "agreement": None,
                                 "runs_on": "phones only", "note": f"failed: {str(e).splitlines()[0][:80]}"})
    return QuantizationDiagnosis(agreement, float_acc, int8_acc, errors, worst, measured, notes)


def _int8_io(conv):
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
