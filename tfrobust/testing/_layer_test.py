"""``layer_test``: the harness every tfrobust layer goes through (after Keras' ``run_layer_test``)."""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrobust._keras import flavour as _flavour_of
from tfrobust._keras import for_keras3, keras, keras3
from tfrobust.utils import set_seed


@dataclasses.dataclass
class LayerTestResult:
    """What ``layer_test`` measured, for tests that want to assert more."""

    output: np.ndarray
    tflite_output: np.ndarray | None
    tflite_max_abs_diff: float | None
    tflite_ops: list[str]
    saved_formats: list[str]


def _plain(value):
    """A config with tuples as lists: Keras 3 files store JSON, so (None, 4) reloads as [None, 4]."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _convert_builtin(*args) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(*args)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _tflite_ops(model_bytes: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    details = getattr(interp, "_get_ops_details", None)
    if details is None:
        return []
    return sorted({op["op_name"] for op in details()})


def _run_tflite(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(out["index"])


def layer_test(layer_cls, kwargs=None, *, input_shape, input_data=None, input_dtype="float32",
               expected_output_shape=None, expected_output_dtype=None, deterministic=True,
               custom_objects=None, check_fit=True, check_save=True, check_tflite=True,
               tflite_atol=1e-5, seed=0, flavour="tf_keras") -> LayerTestResult:
    """Exercise a layer the way users and the deployment path will.

    Steps, each failing with an ``AssertionError`` that names the step:

    1. instantiate ``layer_cls(**kwargs)`` and call it on ``input_data`` (random if None);
    2. check the output shape (``expected_output_shape``, ``None`` entries are wildcards) and
       that ``compute_output_shape`` agrees;
    3. ``get_config`` -> ``from_config`` round trip gives an equal config and, with the weights
       copied, equal outputs;
    4. save and reload a functional model holding the layer in ``.keras``, ``.h5`` and SavedModel
       formats (Keras 3: ``.keras``, ``.h5`` and ``model.export``'s SavedModel, called through its
       ``serve`` endpoint), with equal outputs (``deterministic=False`` skips output equality for random
       layers but still checks the reloaded layer's class and config);
    5. one ``fit`` step of ``layer -> Flatten -> Dense`` that changes the trainable weights
       (gradients reach the input side);
    6. TFLite conversion with builtin ops only, run in LiteRT, outputs within ``tflite_atol``.

    Args:
      layer_cls: the layer class.
      kwargs: constructor arguments.
      input_shape: full input shape including the batch size, e.g. ``(2, 8, 8, 3)``.
      input_data: optional input array (overrides random data).
      input_dtype: dtype of generated input data.
      expected_output_shape: shape to check, ``None`` entries match anything.
      expected_output_dtype: dtype to check.
      deterministic: whether two calls on the same input give the same output at inference.
      custom_objects: passed to ``load_model`` (not needed for registered layers).
      check_fit / check_save / check_tflite: switch steps off (say why at the call site).
      tflite_atol: tolerance for Keras vs LiteRT outputs.
      seed: seed of the random input and of TF.
      flavour: ``"tf_keras"`` (the class as given) or ``"keras3"``: the same steps on
        ``tfrobust._keras.for_keras3(layer_cls)`` in Keras 3 models; tf_keras layers in ``kwargs``
        (a wrapper's inner layer) are rebuilt as Keras 3 layers from their config.

    Returns:
      A :class:`LayerTestResult`.
    """
    kwargs = dict(kwargs or {})
    if flavour not in ("tf_keras", "keras3"):
        raise ValueError(f"`flavour` must be 'tf_keras' or 'keras3'. Received: flavour={flavour!r}")
    K = keras  # noqa: N806 - the Keras module of the flavour under test
    if flavour == "keras3":
        K, layer_cls = keras3, for_keras3(layer_cls)  # noqa: N806
        kwargs = {name: keras3.layers.deserialize(keras.layers.serialize(value))
                  if _flavour_of(value) == "tf_keras" else value for name, value in kwargs.items()}
    set_seed(seed)  # tf.random.set_seed alone leaves tf_keras' initializers unseeded
    rng = np.random.default_rng(seed)
    if input_data is None:
        input_data = rng.uniform(-1.0, 1.0, size=input_shape).astype(input_dtype)
    input_data = np.asarray(input_data)
    batch = input_data.shape[0]

    layer = layer_cls(**kwargs)
    out = layer(tf.convert_to_tensor(input_data), training=False)
    out_np = np.asarray(out)
    if expected_output_dtype is not None:
        assert out.dtype == tf.as_dtype(expected_output_dtype), (
            f"[output dtype] expected {expected_output_dtype}, got {out.dtype.name}"
        )
    if expected_output_shape is not None:
        exp = tuple(expected_output_shape)
        assert len(exp) == out_np.ndim and all(
            e is None or e == a for e, a in zip(exp, out_np.shape)
        ), f"[output shape] expected {exp}, got {out_np.shape}"
    try:
        computed = layer.compute_output_shape(tf.TensorShape(input_data.shape))
    except NotImplementedError:  # Keras 3 infers no output shape; its symbolic call does
        if flavour != "keras3":
            raise
        computed = layer.compute_output_spec(keras3.KerasTensor(input_data.shape, input_data.dtype)).shape
    computed = tuple(tf.TensorShape(computed).as_list())
    assert computed == out_np.shape, f"[compute_output_shape] says {computed}, call gave {out_np.shape}"
    if deterministic:
        again = np.asarray(layer(tf.convert_to_tensor(input_data), training=False))
        np.testing.assert_allclose(again, out_np, rtol=0, atol=0, err_msg="[determinism] two calls differ")

    # Config round trip.
    config = layer.get_config()
    clone = layer_cls.from_config(copy.deepcopy(config))  # Keras 3 wrappers pop from it
    clone_out = clone(tf.convert_to_tensor(input_data), training=False)
    assert clone.get_config() == config, (
        f"[config round trip] configs differ:\n{config}\n{clone.get_config()}"
    )
    clone.set_weights(layer.get_weights())
    if deterministic:
        np.testing.assert_allclose(np.asarray(clone(input_data, training=False)), out_np, rtol=1e-6,
                                   atol=1e-6, err_msg="[config round trip] outputs differ")
    del clone_out

    # A functional model around a fresh layer with the same weights.
    inp = K.Input(batch_shape=(None, *input_data.shape[1:]), dtype=input_data.dtype)
    model_layer = layer_cls.from_config(copy.deepcopy(config))
    model = K.Model(inp, model_layer(inp))
    model_layer.set_weights(layer.get_weights())
    model_out = np.asarray(model(input_data, training=False))
    if deterministic:
        np.testing.assert_allclose(model_out, out_np, rtol=1e-6, atol=1e-6,
                                   err_msg="[functional model] output differs from the bare layer")

    saved = []
    if check_save:
        with tempfile.TemporaryDirectory() as tmp:
            for fmt, path in (("keras", Path(tmp) / "m.keras"), ("h5", Path(tmp) / "m.h5"),
                              ("savedmodel", Path(tmp) / "sm")):
                if fmt == "savedmodel" and flavour == "keras3":
                    model.export(str(path), verbose=False)  # Keras 3 writes no Keras SavedModel
                    exported = tf.saved_model.load(str(path))  # held: .serve alone loses the variables
                    if deterministic:
                        np.testing.assert_allclose(np.asarray(exported.serve(tf.constant(input_data))),
                                                   model_out,
                                                   rtol=1e-6, atol=1e-6,
                                                   err_msg="[save/load savedmodel] outputs differ")
                    saved.append(fmt)
                    continue
                if fmt == "savedmodel":
                    model.save(str(path), save_format="tf")
                else:
                    model.save(str(path))
                loaded = K.models.load_model(str(path), custom_objects=custom_objects)
                loaded_layer = loaded.layers[-1]
                assert type(loaded_layer) is layer_cls, (
                    f"[save/load {fmt}] reloaded layer is {type(loaded_layer).__name__}, not "
                    f"{layer_cls.__name__}"
                )
                assert _plain(loaded_layer.get_config()) == _plain(model_layer.get_config()), (
                    f"[save/load {fmt}] config changed"
                )
                if deterministic:
                    reloaded_out = np.asarray(loaded(input_data, training=False))
                    np.testing.assert_allclose(reloaded_out, model_out, rtol=1e-6, atol=1e-6,
                                               err_msg=f"[save/load {fmt}] outputs differ")
                saved.append(fmt)

    if check_fit:
        fit_inp = K.Input(batch_shape=(None, *input_data.shape[1:]), dtype=input_data.dtype)
        h = layer_cls.from_config(copy.deepcopy(config))(fit_inp)
        h = K.layers.Flatten()(h)
        head = K.layers.Dense(2)
        fit_model = K.Model(fit_inp, head(h))
        fit_model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
        before = [w.numpy().copy() for w in fit_model.trainable_weights]
        targets = rng.normal(size=(batch, 2)).astype("float32")
        history = fit_model.fit(input_data, targets, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        loss = history.history["loss"][0]
        assert np.isfinite(loss), f"[fit] loss is not finite: {loss}"
        after = [w.numpy() for w in fit_model.trainable_weights]
        assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "[fit] no weight changed"

    tfl_out = tfl_diff = None
    ops: list[str] = []
    if check_tflite:
        fn = tf.function(lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec((batch, *input_data.shape[1:]), input_data.dtype)])
        concrete = fn.get_concrete_function()
        try:
            tfl_bytes = _convert_builtin([concrete])  # fast path: no SavedModel round trip
        except Exception:  # noqa: BLE001 - retried on the path that handles every model
            try:
                tfl_bytes = _convert_builtin([concrete], model)
            except Exception as e:  # noqa: BLE001 - re-raised as a harness failure with the reason
                raise AssertionError(f"[tflite] conversion with builtin ops failed: {e}") from e
        ops = _tflite_ops(tfl_bytes)
        tfl_out = _run_tflite(tfl_bytes, input_data)
        assert tfl_out.shape == out_np.shape, f"[tflite] shape {tfl_out.shape} != {out_np.shape}"
        if deterministic:
            tfl_diff = float(np.max(np.abs(tfl_out.astype(np.float64) - model_out))) if tfl_out.size else 0.0
            assert tfl_diff <= tflite_atol, f"[tflite] max |LiteRT - Keras| = {tfl_diff} > {tflite_atol}"

    return LayerTestResult(out_np, tfl_out, tfl_diff, ops, saved)
