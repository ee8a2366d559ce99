"""Every registered architecture: builds for 28x28x1 and 32x32x3, trains one step, round-trips
through its config and a .keras file, and converts to a float TFLite model (builtin ops) whose
LiteRT outputs match Keras."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import layers, losses, models
from tfrobust._keras import keras

# Tiny widths keep the whole parametrised test CPU-cheap; unknown (newly registered) models are
# built with their defaults.
TINY = {
    "alexnet": {"width": 0.0625, "fc_units": 16},
    "binary_cnn": {"width": 4},
    "binary_madry_cnn": {"padding": "valid"},
    "binary_small_cnn": {"width": 4, "dense_units": 16},
    "bn_inception": {"width": 0.0625},
    "capsnet": {"conv_filters": 8, "primary_channels": 2, "primary_dim": 4, "class_dim": 4},
    "cbam_resnet": {"width": 4},
    "densenet": {"growth_rate": 4, "layers_per_block": (2, 2)},
    "googlenet": {"width": 0.0625},
    "inception_v3": {"width": 4},
    "lenet_300_100": {},
    "madry_cnn": {"padding": "valid"},
    "mlp_mixer": {"dim": 16, "depth": 1, "token_mlp_dim": 8, "channel_mlp_dim": 16},
    "mobilenet": {"alpha": 0.125, "depth": 0},
    "nf_resnet": {"width": 4},
    "preact_resnet": {"width": 4},
    "residual_attention": {"width": 4},
    "resnet": {"width": 4},
    "resnext": {"width": 8, "cardinality": 2, "group_width": 2},
    "se_resnet": {"width": 4},
    "shufflenet": {"groups": 2, "stage_channels": (16, 32, 64), "stem_channels": 8},
    "small_cnn": {"width": 4, "dense_units": 16},
    "squeezenet": {"width": 0.125},
    "stn": {"width": 4, "loc_width": 4, "dense_units": 16},
    "vgg": {"width": 0.0625, "fc_units": 16},
    "vit": {"dim": 16, "heads": 2, "mlp_dim": 16, "depth": 1},
}

ZOO = [
    "alexnet",
    "binary_cnn",
    "binary_madry_cnn",
    "binary_small_cnn",
    "bn_inception",
    "capsnet",
    "cbam_resnet",
    "densenet",
    "googlenet",
    "inception_v3",
    "mlp_mixer",
    "mobilenet",
    "nf_resnet",
    "preact_resnet",
    "residual_attention",
    "resnet",
    "resnext",
    "se_resnet",
    "shufflenet",
    "squeezenet",
    "stn",
    "vgg",
    "vit",
]


def _loss(name):
    if name == "capsnet":
        return losses.MarginLoss()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _tflite_float(model, x):
    fn = tf.function(lambda t: model(t, training=False), input_signature=[tf.TensorSpec(x.shape, tf.float32)])
    # No trackable object: passing the model makes the converter save it as a SavedModel first,
    # which costs ~20x the conversion itself here; the model stays alive, so its variables do too.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=converter.convert())
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def test_zoo_is_registered():
    assert set(ZOO) <= set(models.names())


@pytest.mark.parametrize("name", models.names())
def test_registered_model_builds_trains_round_trips_and_converts(name):
    keras.utils.set_random_seed(0)
    kwargs = TINY.get(name, {})
    rng = np.random.default_rng(0)

    color = models.get(name, input_shape=(32, 32, 3), num_classes=5, **kwargs)
    assert color(rng.uniform(size=(2, 32, 32, 3)).astype("float32")).shape == (2, 5)

    model = models.get(name, input_shape=(28, 28, 1), num_classes=10, **kwargs)
    x = rng.uniform(size=(2, 28, 28, 1)).astype("float32")
    y = np.array([3, 7])
    out = model(x, training=False).numpy()
    assert out.shape == (2, 10) and np.all(np.isfinite(out))

    # One eager step: a traced train step costs ~10x more CPU for the big graphs, and
    # benchmarks/models.py trains every registered model through the traced path anyway.
    model.compile(keras.optimizers.Adam(1e-2), _loss(name), run_eagerly=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    out = model(x, training=False).numpy()

    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), out, rtol=1e-5, atol=1e-5)

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"{name}.keras")
        model.save(path)
        loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), out, rtol=1e-5, atol=1e-5)

    tfl = _tflite_float(model, x)
    np.testing.assert_allclose(tfl, out, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(out).max())))


@pytest.mark.parametrize("config", ["A", "A-LRN", "B", "C", "D", "E"])
def test_vgg_configurations_have_their_weight_layer_counts(config):
    weight_layers = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}[config]
    model = models.vgg(config=config, width=0.0625, fc_units=8)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert len(convs) + len(dense) == weight_layers
    assert model(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)
    if config == "C":
        assert sum(layer.kernel_size == (1, 1) for layer in convs) == 3


@pytest.mark.parametrize(
    "builder, kwargs, layer_type",
    [
        (models.resnet, {"block": "bottleneck"}, keras.layers.BatchNormalization),
        (models.vgg, {"batch_norm": True}, keras.layers.BatchNormalization),
        (models.alexnet, {"batch_norm": True, "lrn": False}, keras.layers.BatchNormalization),
        (models.alexnet, {"lrn_implementation": "decomposed"}, keras.layers.Dropout),
        (models.binary_cnn, {"mode": "bwn", "width": 4}, layers.BinaryConv2D),
        (models.binary_cnn, {"mode": "binaryconnect", "width": 4}, layers.BinaryConv2D),
    ],
)
def test_variants_build(builder, kwargs, layer_type):
    model = builder(**kwargs)
    assert any(isinstance(layer, layer_type) for layer in model.layers)
    assert model(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)


def test_bottleneck_resnet_expands_channels_four_times():
    model = models.resnet(block="bottleneck", width=4)
    assert model.get_layer("gap").input_shape[-1] == 4 * 4 * 4


def test_preact_units_leave_the_addition_unactivated():
    model = models.preact_resnet(width=4)
    add = model.get_layer("stage1_block1_add")
    consumers = [n.outbound_layer for n in add._outbound_nodes]  # noqa: SLF001 - graph inspection only
    assert not any(isinstance(c, keras.layers.Activation) for c in consumers)


def test_nf_resnet_has_no_normalisation_layers():
    model = models.nf_resnet()
    assert not any(
        isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization))
        for layer in model.layers
    )


def test_nf_resnet_preserves_signal_scale_at_initialisation():
    # Scaled WS + gamma-ReLU keep the residual stream's variance near the analytic expectation
    # (not exploding with depth): after 3 stages of 2 units it should stay within [0.3, 3].
    keras.utils.set_random_seed(0)
    model = models.nf_resnet(width=16, blocks_per_stage=(2, 2, 2))
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype("float32")
    probe = keras.Model(model.input, model.get_layer("stage3_block2_add").output)
    var = float(np.var(probe(x).numpy()))
    assert 0.3 < var < 3.0, var


def test_capsnet_scores_are_lengths_in_unit_interval():
    model = models.capsnet(conv_filters=8, primary_channels=2, primary_dim=4, class_dim=4)
    out = model(np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype("float32")).numpy()
    assert np.all(out >= 0) and np.all(out < 1)


def test_stn_starts_from_the_identity_transform():
    model = models.stn(width=4, loc_width=4, dense_units=16)
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype("float32")
    warped = keras.Model(model.input, model.get_layer("transformer").output)(x).numpy()
    np.testing.assert_allclose(warped, x, atol=1e-5)


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        (models.vgg, {"config": "F"}, "config"),
        (models.alexnet, {"width": 0}, "width"),
        (models.alexnet, {"dropout": 1.0}, "dropout"),
        (models.resnet, {"block": "wide"}, "block"),
        (models.resnet, {"attention": "eca"}, "attention"),
        (models.resnet, {"blocks_per_stage": (1, 0)}, "blocks_per_stage"),
        (models.densenet, {"compression": 1.5}, "compression"),
        (models.shufflenet, {"groups": 5}, "stage_channels"),
        (models.shufflenet, {"repeats": (1, 1)}, "repeats"),
        (models.vit, {"heads": 5}, "heads"),
        (models.vit, {"patch_size": 5}, "patch_size"),
        (models.mlp_mixer, {"depth": 0}, "depth"),
        (models.capsnet, {"input_shape": (16, 16, 1)}, "input_shape"),
        (models.capsnet, {"routings": 0}, "routings"),
        (models.mobilenet, {"alpha": -1.0}, "alpha"),
        (models.nf_resnet, {"alpha": 0}, "alpha"),
        (models.googlenet, {"num_classes": 1}, "num_classes"),
        (models.squeezenet, {"batch_size": 0}, "batch_size"),
        (models.binary_cnn, {"mode": "ternary"}, "mode"),
        (models.vit, {"activation": "swishy"}, "activation"),
    ],
)
def test_bad_arguments_raise(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)
