"""Defense layers on the microcontroller path: int8 TFLite and the real TFLite Micro runtime."""

import pytest

from tfrobust import tflite_tools
from tfrobust._keras import keras
from tfrobust.layers import KWinnersTakeAll, StochasticActivationPruning, WTADropout


def _cnn(defense):
    inp = keras.Input((12, 12, 1), batch_size=1)
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = defense(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inp, keras.layers.Dense(3)(h))


@pytest.mark.parametrize("defense", [
    lambda: KWinnersTakeAll(k=0.2, implementation="threshold", bisection_steps=16),
    lambda: WTADropout(keep=0.5, implementation="threshold", bisection_steps=16),
    lambda: StochasticActivationPruning(inference_mode="expectation"),
], ids=["kwta", "wta_dropout", "sap_expectation"])
def test_defense_int8_model_runs_in_tflite_micro(rng, defense):
    model = _cnn(defense())
    x = rng.uniform(size=(32, 12, 12, 1)).astype("float32")
    tfl = tflite_tools.convert(model, "int8", representative_data=x, batch_size=1)
    check = tflite_tools.tflm_check(tfl, model=model, x=x[:8], find_arena=False)
    assert check.supported, check.message()
    assert check.parity["max_abs_diff"] <= 1  # int8 LSB


def test_topk_kwta_is_reported_missing_in_tflite_micro_with_its_layer(rng):
    model = _cnn(KWinnersTakeAll(k=0.2, name="kwta_topk"))
    x = rng.uniform(size=(16, 12, 12, 1)).astype("float32")
    tfl = tflite_tools.convert(model, "int8", representative_data=x, batch_size=1)
    missing = tflite_tools.tflm_missing_ops(tfl, model=model)
    assert any(m.op == "TOPK_V2" and "kwta_topk" in (m.layers or []) for m in missing), missing
