"""SAP samples at inference only by default (Dhillon et al. apply it post hoc); training is an option."""

import numpy as np

from tfrobust.layers import StochasticActivationPruning


def test_sap_is_identity_in_training_and_random_at_inference_by_default(rng):
    x = rng.uniform(size=(2, 30)).astype("float32")
    layer = StochasticActivationPruning(ratio=0.2)
    assert layer.get_config()["apply_in_training"] is False
    np.testing.assert_array_equal(layer(x, training=True).numpy(), x)
    assert not np.array_equal(layer(x, training=False).numpy(), layer(x, training=False).numpy())


def test_sap_training_application_is_an_option(rng):
    x = rng.uniform(size=(2, 30)).astype("float32")
    layer = StochasticActivationPruning(ratio=0.2, apply_in_training=True)
    assert not np.array_equal(layer(x, training=True).numpy(), x)
