"""Defense layers on the microcontroller path: int8 TFLite and the real TFLite Micro runtime."""

import numpy as np
import pytest

from tfrobust import tflite_tools
from tfrobust._keras import keras
from tfrobust.layers import (
    ChannelActivationSuppressing,
    ChannelImportanceFeatureSelection,
    KWinnersTakeAll,
    NoisyWeights,
    PrunedWeights,
    RandomNoisyActivations,
    RandomScaledActivations,
    StochasticActivationPruning,
    WTADropout,
)


def _conv():
    return keras.layers.Conv2D(4, 3, activation="relu")


def _cnn(body):
    """Batch-1 12x12 input -> ``body`` (conv + defense) -> Flatten -> Dense(3)."""
    inp = keras.Input((12, 12, 1), batch_size=1)
    return keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(body(inp))))


# Every defense layer in its export form (stochastic layers: inference_mode="expectation").
DEFENSES = {
    "kwta": lambda h: KWinnersTakeAll(k=0.2, implementation="threshold", bisection_steps=16)(_conv()(h)),
    "wta_dropout": lambda h: WTADropout(keep=0.5, implementation="threshold", bisection_steps=16)(_conv()(h)),
    "sap": lambda h: StochasticActivationPruning(inference_mode="expectation")(_conv()(h)),
    "rna": lambda h: RandomNoisyActivations(0.1, inference_mode="expectation")(_conv()(h)),
    "rsa": lambda h: RandomScaledActivations(0.1, inference_mode="expectation")(_conv()(h)),
    "rnw": lambda h: NoisyWeights(_conv(), mode="additive", inference_mode="expectation")(h),
    "rsw": lambda h: NoisyWeights(_conv(), mode="multiplicative", inference_mode="expectation")(h),
    "dwp": lambda h: PrunedWeights(_conv(), mode="deterministic", keep=0.5)(h),
    "swp": lambda h: PrunedWeights(_conv(), mode="stochastic", inference_mode="expectation")(h),
    "cas": lambda h: ChannelActivationSuppressing(3)(_conv()(h)),
    "cifs": lambda h: ChannelImportanceFeatureSelection(3)(_conv()(h)),
    "cifs_nonlinear": lambda h: ChannelImportanceFeatureSelection(3, probe="nonlinear", hidden=8)(_conv()(h)),
}


@pytest.mark.parametrize("name", list(DEFENSES))
def test_defense_int8_model_matches_keras_and_runs_in_tflite_micro(rng, name):
    keras.utils.set_random_seed(0)
    model = _cnn(DEFENSES[name])
    x = rng.uniform(size=(64, 12, 12, 1)).astype("float32")
    tfl = tflite_tools.convert(model, "int8", representative_data=x[:32], batch_size=1)
    # Stated tolerance: int8 logits within 5% of the logits' mean magnitude, on average; 15% for
    # k-WTA, which also keeps the units tied with the k-th on the int8 grid (docs/defenses.md).
    logits, int8 = model.predict(x, verbose=0), tflite_tools.TFLiteModel(tfl).predict(x)
    tolerance = 0.15 if name == "kwta" else 0.05
    assert np.mean(np.abs(int8 - logits)) <= tolerance * np.mean(np.abs(logits))
    if name == "cifs_nonlinear":  # softplus needs int8 EXP and LOG, which TFLM only has in float
        with pytest.raises(ValueError, match=r"rejected EXP \(from layer .channel_importance"):
            tflite_tools.tflm_check(tfl, model=model, x=x[:8], find_arena=False)
        return
    check = tflite_tools.tflm_check(tfl, model=model, x=x[:8], find_arena=False)
    assert check.supported, check.message()
    # TFLM ports LiteRT's reference kernels: bit-exact. (LiteRT's optimized kernels may round an
    # intermediate by an LSB and flip a near-tie of a mask, so they are reported, not asserted.)
    assert check.parity["reference_max_abs_diff"] == 0


@pytest.mark.parametrize("layer", ["kwta", "wta_dropout"])
def test_int8_threshold_keeps_the_top_k_on_inputs_unlike_the_calibration_data(rng, layer):
    """Post-training quantization calibrates each intermediate tensor on the representative data.

    Calibrate where the k-th largest value always lies in the lower half of the range (the first
    bisection step always says "no"), then run inputs where it lies in the upper half: the int8
    model must still keep the k largest values (plus, at most, those within its documented
    margin of (max - min) / 128 and one int8 step below the k-th value).
    """
    n, k = 16, 4
    inp = keras.Input((n,), batch_size=1)
    if layer == "kwta":
        out = KWinnersTakeAll(k=k, implementation="threshold", bisection_steps=12)(inp)
    else:
        out = WTADropout(keep=k, structure="element", implementation="threshold", bisection_steps=12)(inp)
    model = keras.Model(inp, out)
    calib = rng.uniform(0.05, 0.4, size=(64, n)).astype("float32")
    calib[:, 0] = 1.0  # range [~0.05, 1], 4th largest <= 0.4 < midpoint
    x = rng.uniform(0.05, 1.0, size=(32, n)).astype("float32")
    x[:, 0], x[:, 1] = 1.0, 0.05  # same range; the 4th largest is now ~0.8
    lite = tflite_tools.TFLiteModel(tflite_tools.convert(model, "int8", representative_data=calib,
                                                         batch_size=1))
    kept = lite.predict(x) > 0
    v_k = np.sort(x, axis=1)[:, -k]
    assert np.all(kept[x >= v_k[:, None]]), "an int8 model dropped one of the k largest values"
    span = x.max(axis=1) - x.min(axis=1)
    step = lite.input_details["quantization"][0]
    floor = (v_k - span / 128 - 2 * step)[:, None]
    assert not np.any(kept & (x < floor)), "an int8 model kept values far below the k-th largest"


def test_topk_kwta_is_reported_missing_in_tflite_micro_with_its_layer(rng):
    model = _cnn(lambda h: KWinnersTakeAll(k=0.2, name="kwta_topk")(_conv()(h)))
    x = rng.uniform(size=(16, 12, 12, 1)).astype("float32")
    tfl = tflite_tools.convert(model, "int8", representative_data=x, batch_size=1)
    missing = tflite_tools.tflm_missing_ops(tfl, model=model)
    assert any(m.op == "TOPK_V2" and "kwta_topk" in (m.layers or []) for m in missing), missing
