import numpy as np
import pytest

from tfrobust import utils
from tfrobust._keras import keras
from tfrobust.tflite_tools import convert, diagnose_quantization, int8_agreement


@pytest.fixture(scope="module")
def broken_layer_model():
    """A model whose ``outlier`` layer int8 breaks: one unit with a huge range the head ignores.

    Per-tensor activation scales follow the largest value, so the informative units of ``outlier``
    round to a few levels (here: zero) and int8 loses the decision; every other layer is benign.
    """
    utils.set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (300, 8, 8, 1)).astype(np.float32)
    y = np.argmax(x.reshape(300, 4, 16).mean(2), 1)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten(name="flatten")(inp)
    h = keras.layers.Dense(32, activation="relu", name="features")(h)
    h = keras.layers.Dense(16, name="outlier")(h)
    model = keras.Model(inp, keras.layers.Dense(4, name="head")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, verbose=0)
    k, b = model.get_layer("outlier").get_weights()
    k[:, 0], b[0] = 0.0, 0.0
    k[0, 0] = 2000.0  # unit 0 spans [0, ~2000 * max(features_0)]
    model.get_layer("outlier").set_weights([k, b])
    hk, hb = model.get_layer("head").get_weights()
    hk[0, :] = 0.0  # ... and the head does not read it: float decisions are unchanged
    model.get_layer("head").set_weights([hk, hb])
    return model, x, y


def test_diagnostics_name_the_layer_int8_breaks_and_measure_remedies(broken_layer_model):
    model, x, y = broken_layer_model
    diag = diagnose_quantization(model, x[:200], x, y, calibration_pool=x)
    assert diag.agreement < 0.6
    assert diag.worst_layers[0] == "outlier"
    by_layer = {e.layer: e for e in diag.layers}
    assert by_layer["outlier"].added_error > 0.5
    assert by_layer["features"].relative_error < 0.1
    remedies = {r["remedy"]: r for r in diag.remedies}
    assert remedies["16x8 (int16 activations)"]["agreement"] > 0.9
    assert remedies["keep outlier float"]["agreement"] > 0.9
    assert remedies["keep outlier float"]["runs_on"] == "phones only"
    md = diag.to_markdown()
    assert "outlier" in md and "QAT" in md


def test_int8_agreement_of_a_benign_model_is_high(broken_layer_model):
    _, x, y = broken_layer_model
    utils.set_seed(1)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=20, verbose=0)
    assert int8_agreement(model, convert(model, "int8", x[:200]), x) > 0.95
    diag = diagnose_quantization(model, x[:200], x, remedies=False)
    assert diag.worst_layers == [] and len(diag.remedies) == 1
