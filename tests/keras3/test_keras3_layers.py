"""Every tfrobust layer through the one layer harness, under Keras 3 (``flavour="keras3"``).

The tf_keras parametrisation of the same harness runs in ``tests/layers`` (each layer's own test,
with the same arguments as here); this file runs the Keras 3 one, for every registered layer, so a
layer added without a Keras 3 twin fails ``test_every_registered_layer_is_covered``.
"""

import numpy as np
import pytest

from tfrobust import layers as L
from tfrobust._keras import for_keras3, keras, keras3, keras3_custom_objects
from tfrobust.compression import ActivationThreshold
from tfrobust.losses import PrototypeConformity
from tfrobust.testing import layer_test

# (class, kwargs, input_shape, harness options): the arguments of the tf_keras tests in tests/layers.
CASES = [
    (L.KWinnersTakeAll, {"k": 0.25, "implementation": "threshold"}, (2, 4, 4, 3), {}),
    (L.WTADropout, {"keep": 0.5, "implementation": "threshold"}, (2, 4, 4, 4), {}),
    (L.StochasticActivationPruning, {"ratio": 0.5, "seed": 3}, (2, 4, 4, 2), {"deterministic": False}),
    (L.RandomNoisyActivations, {"stddev": 0.2}, (2, 4, 4, 2), {"deterministic": False}),
    (L.RandomScaledActivations, {"inference_mode": "expectation"}, (2, 6), {}),
    (L.NoisyWeights, {"layer": keras.layers.Dense(3), "mode": "multiplicative",
                      "inference_mode": "expectation"}, (2, 4), {}),
    (L.PrunedWeights, {"layer": keras.layers.Conv2D(3, 3), "keep": 0.3}, (2, 6, 6, 2), {}),
    (L.ChannelActivationSuppressing, {"num_classes": 3}, (2, 4, 4, 6), {"tflite_atol": 1e-4}),
    (L.ChannelImportanceFeatureSelection, {"num_classes": 3, "probe": "nonlinear", "hidden": 4},
     (2, 4, 4, 6), {"tflite_atol": 1e-4}),
    (L.BinaryDense, {"units": 3, "mode": "xnor", "activation": "relu"}, (4, 5), {"tflite_atol": 1e-4}),
    (L.BinaryConv2D, {"filters": 3, "kernel_size": (3, 2), "strides": 2, "padding": "same",
                      "mode": "xnor"}, (2, 7, 7, 2), {"tflite_atol": 1e-4}),
    (L.LocalResponseNormalization, {"alpha": 0.01}, (2, 4, 4, 6), {"tflite_atol": 1e-4}),
    (L.ChannelShuffle, {"groups": 3}, (2, 3, 3, 12), {}),
    (L.GroupConv2D, {"filters": 4, "kernel_size": 3, "groups": 2, "strides": 2}, (2, 6, 6, 4),
     {"tflite_atol": 1e-4}),
    (L.SqueezeExcitation, {"ratio": 4}, (2, 4, 4, 8), {"tflite_atol": 1e-4}),
    (L.CBAM, {"ratio": 2, "kernel_size": 3}, (2, 5, 5, 4), {"tflite_atol": 1e-4}),
    (L.ScaledWSConv2D, {"filters": 4, "kernel_size": 3, "padding": "same"}, (2, 5, 5, 3),
     {"tflite_atol": 1e-4}),
    (L.Squash, {}, (2, 6, 8), {}),
    (L.DynamicRoutingCapsules, {"num_capsules": 3, "dim_capsule": 4, "routings": 2}, (2, 6, 5),
     {"tflite_atol": 1e-4}),
    (L.CapsuleLength, {}, (2, 3, 4), {}),
    (L.ClassToken, {}, (2, 5, 4), {}),
    (L.AddPositionEmbedding, {}, (2, 5, 4), {}),
    (PrototypeConformity, {"num_classes": 3}, (2, 5), {}),
    (ActivationThreshold, {"threshold": 0.1}, (2, 6), {}),
]


@pytest.mark.parametrize("cls, kwargs, input_shape, options", CASES,
                         ids=[case[0].__name__ for case in CASES])
def test_layer_passes_the_harness_under_keras3(cls, kwargs, input_shape, options):
    res = layer_test(cls, kwargs, input_shape=input_shape, flavour="keras3", **options)
    assert res.saved_formats == ["keras", "h5", "savedmodel"]


def test_every_registered_layer_is_covered():
    layers = {name.split(">")[1] for name, obj in keras3_custom_objects().items()
              if issubclass(obj, keras3.layers.Layer) and not issubclass(obj, keras3.Model)}
    covered = {case[0].__name__ for case in CASES} | {"AffineGridSampler"}  # two inputs: below
    assert layers - covered == set(), "add these layers to CASES"


def test_keras3_twin_keeps_name_arguments_and_math():
    rng = np.random.default_rng(0)
    twin = for_keras3(L.KWinnersTakeAll)
    assert twin.__name__ == "KWinnersTakeAll" and issubclass(twin, keras3.layers.Layer)
    assert twin.call.__code__ is L.KWinnersTakeAll.call.__code__  # the same body, not a copy
    x = rng.normal(size=(3, 12)).astype("float32")
    np.testing.assert_array_equal(twin(k=4)(x).numpy(), L.KWinnersTakeAll(k=4)(x).numpy())
    model = keras3.Sequential([keras3.Input((12,)), twin(k=4)])  # a keras.Layer, unlike the tf_keras one
    assert model.output_shape == (None, 12)


def test_affine_grid_sampler_two_input_model_saves_and_converts_under_keras3(tmp_path):
    import tensorflow as tf

    sampler = for_keras3(L.AffineGridSampler)
    img_in, theta_in = keras3.Input((6, 6, 2)), keras3.Input((6,))
    model = keras3.Model([img_in, theta_in], sampler(output_size=(4, 5))([img_in, theta_in]))
    img = np.random.default_rng(0).uniform(size=(2, 6, 6, 2)).astype("float32")
    theta = np.tile(np.array([[1, 0, 0, 0, 1, 0]], np.float32), (2, 1))
    out = model([img, theta]).numpy()
    np.testing.assert_array_equal(out, L.AffineGridSampler(output_size=(4, 5))([img, theta]).numpy())
    model.save(tmp_path / "stn.keras")
    reloaded = keras3.models.load_model(tmp_path / "stn.keras")
    np.testing.assert_array_equal(reloaded([img, theta]).numpy(), out)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    assert converter.convert()


def test_margin_loss_trains_and_saves_in_a_keras3_model(tmp_path):
    from tfrobust.losses import MarginLoss
    from tfrobust.losses import for_keras3 as losses_for_keras3

    loss = losses_for_keras3(MarginLoss)(lam=0.4)
    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(3, activation="sigmoid")])
    model.compile(optimizer="adam", loss=loss)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(8, 4)).astype("float32"), np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["loss"][0])
    np.testing.assert_allclose(float(loss(y, model(x))), float(MarginLoss(lam=0.4)(y, model(x).numpy())),
                               rtol=1e-6)
    model.save(tmp_path / "m.keras")
    assert keras3.models.load_model(tmp_path / "m.keras").loss.get_config()["lam"] == 0.4


class _NestedHelper(keras.layers.Layer):
    """A tf_keras layer whose sublayer is made by a function defined inside ``build``."""

    def build(self, input_shape):
        def make():
            return keras.layers.Dense(2)

        self.dense = make()


def test_functions_defined_inside_methods_also_see_keras3():
    layer = for_keras3(_NestedHelper)()
    layer.build((None, 3))
    assert isinstance(layer.dense, keras3.layers.Dense)
